/**
 * The output cap end to end through both phases: governance in the router phase decides it from
 * the reservation, the upstream phase writes it in the chosen backend's own field.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ExtprocConfig } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import { Budget } from '../governance/budget.js';
import { estimateRequestInputTokens } from '../usage/estimate.js';
import { admit } from './governance.js';
import { MemoryStore } from '../state/memory.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { body, chatRequest, clusterAttributes, headers } from '../../test/support/messages.js';
import type { Mutation } from '../wire/mutation.js';
import { RequestStore } from './request-store.js';
import { RouterExchange } from './router.js';
import { UpstreamExchange } from './upstream.js';

function config(over: { mode?: 'enforce' | 'shadow'; defaultMaxTokens?: number } = {}) {
  return new RuntimeConfig(
    ExtprocConfig.parse({
      apiVersion: 'sluice.dev/extproc/v1',
      kind: 'ExtprocConfig',
      backends: [
        { name: 'openai', cluster: 'c-openai', provider: 'openai' },
        { name: 'local', cluster: 'c-local', provider: 'openai-compatible' },
        { name: 'claude', cluster: 'c-claude', provider: 'anthropic' },
      ],
      policies: [
        {
          name: 'budget',
          mode: over.mode ?? 'enforce',
          limits: {
            rules: [{ name: 'daily', spendPerDayUsd: 1000 }],
            defaultMaxTokens: over.defaultMaxTokens ?? 300,
          },
          pricing: { models: { '*': { inputPerMTok: 1, outputPerMTok: 2 } } },
        },
      ],
      routes: [
        {
          name: 'gpt',
          models: [{ exact: 'gpt' }],
          backends: [{ name: 'openai' }],
          governance: 'budget',
        },
        {
          name: 'llama',
          models: [{ exact: 'llama' }],
          backends: [{ name: 'local' }],
          governance: 'budget',
        },
        {
          name: 'claude',
          models: [{ exact: 'claude' }],
          backends: [{ name: 'claude' }],
          governance: 'budget',
        },
        { name: 'free', models: [{ exact: 'free' }], backends: [{ name: 'openai' }] },
      ],
    }),
    new Map(),
  );
}

/** The body the backend receives (the client's when the upstream phase left it alone). */
async function sent(
  cfg: RuntimeConfig,
  cluster: string,
  req: Record<string, unknown>,
  path = '/v1/chat/completions',
): Promise<Record<string, unknown>> {
  const store = new RequestStore(() => 0);
  const router = new RouterExchange({
    config: cfg,
    store,
    telemetry: new Telemetry(new Registry(), pino({ level: 'silent' })),
    now: () => 0,
    newId: () => 'req-1',
    budget: new Budget({ store: new MemoryStore() }),
  });
  const extra: Record<string, string> = { ':path': path };
  if (path === '/v1/messages') extra['anthropic-version'] = '2023-06-01';
  await router.requestHeaders(chatRequest(extra));
  const r = await router.requestBody(body(req));
  assert.equal(r.kind, 'continue', JSON.stringify(r));
  const up = new UpstreamExchange({ config: cfg, store });
  const o = await up.requestHeaders(
    headers({ ':method': 'POST', ':path': path, 'x-sluice-request-id': 'req-1' }),
    clusterAttributes(cluster),
  );
  assert.equal(o.kind, 'continue');
  const m = (o as { mutation?: Mutation }).mutation;
  return m?.body ? (JSON.parse(m.body.toString('utf8')) as Record<string, unknown>) : req;
}

const messages = [{ role: 'user', content: 'hi' }];

describe('output cap: the backend is held to what the budget reserved', () => {
  it('injects defaultMaxTokens in the backend field when the caller set no cap', async () => {
    const cfg = config();
    const openai = await sent(cfg, 'c-openai', { model: 'gpt', messages });
    assert.equal(openai.max_completion_tokens, 300);
    assert.equal(openai.max_tokens, undefined);
    const local = await sent(cfg, 'c-local', { model: 'llama', messages });
    assert.equal(local.max_tokens, 300);
    const claude = await sent(cfg, 'c-claude', { model: 'claude', messages }, '/v1/messages');
    assert.equal(claude.max_tokens, 300);
    const resp = await sent(cfg, 'c-openai', { model: 'gpt', input: 'hi' }, '/v1/responses');
    assert.equal(resp.max_output_tokens, 300);
    const legacy = await sent(cfg, 'c-openai', { model: 'gpt', prompt: 'hi' }, '/v1/completions');
    assert.equal(legacy.max_tokens, 300);
  });

  it("keeps the caller's own cap (it is what was reserved) and clamps the other spelling", async () => {
    const cfg = config();
    const own = await sent(cfg, 'c-openai', { model: 'gpt', messages, max_tokens: 5000 });
    assert.equal(own.max_tokens, 5000);
    assert.equal(own.max_completion_tokens, undefined);
    const sneaky = await sent(cfg, 'c-local', {
      model: 'llama',
      messages,
      max_completion_tokens: 10,
      max_tokens: 1_000_000,
    });
    assert.equal(sneaky.max_completion_tokens, 10);
    assert.equal(sneaky.max_tokens, 10);
  });

  it('changes nothing without a budget, in shadow mode, or with defaultMaxTokens 0', async () => {
    const free = await sent(config(), 'c-openai', { model: 'free', messages });
    assert.equal(free.max_completion_tokens, undefined);
    const shadow = await sent(config({ mode: 'shadow' }), 'c-openai', { model: 'gpt', messages });
    assert.equal(shadow.max_completion_tokens, undefined);
    const zero = await sent(config({ defaultMaxTokens: 0 }), 'c-openai', {
      model: 'gpt',
      messages,
    });
    assert.equal(zero.max_completion_tokens, undefined);
  });

  it('reserves the cap for every choice the provider generates and bills: n, and best_of', async () => {
    const cfg = config();
    const reserved = async (op: 'chat' | 'completions', body: Record<string, unknown>) => {
      const a = await admit({
        compiled: cfg.governanceFor('gpt')!,
        consumers: cfg.consumers,
        headers: new Map(),
        operation: op,
        body,
        model: 'gpt',
        route: 'gpt',
        budget: new Budget({ store: new MemoryStore() }),
        wallNow: 0,
      });
      assert.equal(a.outputTokenCap, 300);
      const output = a.state.reservation!.estimate.tokens - estimateRequestInputTokens(op, body);
      assert.equal(a.state.outputReserved, output);
      return output;
    };
    assert.equal(await reserved('chat', { model: 'gpt', messages }), 300);
    assert.equal(await reserved('chat', { model: 'gpt', messages, n: 3 }), 900);
    assert.equal(
      await reserved('completions', { model: 'gpt', prompt: 'x', best_of: 5, n: 2 }),
      1500,
    );
  });
});
