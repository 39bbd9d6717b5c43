// The cache in the router phase: a hit is answered before the budget reservation (nothing is
// reserved, nothing charged) unless the policy charges hits a share, which is then reserved and
// settled like a request; a miss reserves as usual and its answer is stored.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { body, chatRequest, header, verdictOf } from '../../test/support/messages.js';
import { ExtprocConfig } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import { Budget } from '../governance/budget.js';
import { buildUsageReport } from '../governance/usage-report.js';
import { RequestStore } from '../pipeline/request-store.js';
import { RouterExchange } from '../pipeline/router.js';
import { MemoryStore } from '../state/memory.js';
import type { StateStore } from '../state/store.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { ResponseCache } from './cache.js';
import { MemoryCacheStore } from './store.js';

const KEY = 'sk-sluice-alice-cache-hook';
const sha = (k: string) => createHash('sha256').update(k).digest('hex');

function runtime(): RuntimeConfig {
  const route = (name: string, model: string, hitCostFraction: number) => ({
    name,
    models: [{ exact: model }],
    backends: [{ name: 'openai' }],
    governance: 'gov',
    policy: { name: `cache-${name}`, cache: { hitCostFraction } },
  });
  return new RuntimeConfig(
    ExtprocConfig.parse({
      apiVersion: 'sluice.dev/extproc/v1',
      kind: 'ExtprocConfig',
      backends: [{ name: 'openai', cluster: 'c-openai', provider: 'openai' }],
      consumers: [{ name: 'alice', team: 'red', keyHashes: [sha(KEY)] }],
      policies: [
        {
          name: 'gov',
          identity: { keys: {} },
          limits: { rules: [{ name: 'tpm', per: ['consumer'], tokensPerMinute: 1_000_000 }] },
          pricing: { models: { '*': { inputPerMTok: 1_000_000, outputPerMTok: 1_000_000 } } },
        },
      ],
      routes: [route('free', 'gpt-free', 0), route('half', 'gpt-half', 0.5)],
    }),
    new Map(),
  );
}

function gateway() {
  const cfg = runtime();
  const lines: Record<string, unknown>[] = [];
  const telemetry = new Telemetry(
    new Registry(),
    pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) }),
  );
  const memory = new MemoryStore();
  let reserves = 0;
  const counted: StateStore = Object.assign(Object.create(memory) as StateStore, {
    reserve: (req: Parameters<StateStore['reserve']>[0]) => {
      reserves++;
      return memory.reserve(req);
    },
  });
  const budget = new Budget({ store: counted, clock: () => Date.parse('2026-12-06T12:00:00Z') });
  const cache = new ResponseCache({
    store: new MemoryCacheStore({ maxBytes: 1 << 20, now: () => 0 }),
    registry: new Registry(),
    wallNow: () => 0,
  });
  const store = new RequestStore(() => 0);
  const pending: Promise<unknown>[] = [];
  let n = 0;
  const exchange = () =>
    new RouterExchange({
      config: cfg,
      store,
      telemetry,
      now: () => 0,
      newId: () => `id-${++n}`,
      budget,
      wallNow: () => Date.parse('2026-12-06T12:00:00Z'),
      settling: (p) => pending.push(p),
      cache,
    });
  const usage = async () =>
    buildUsageReport(await memory.usage('day', '2026-12-06'), {
      period: 'day',
      periodKey: '2026-12-06',
      by: 'consumer',
    }).rows;
  return {
    exchange,
    lines,
    reserves: () => reserves,
    settled: () => Promise.all(pending),
    usage,
  };
}

const request = (model: string) => ({
  model,
  temperature: 0,
  messages: [{ role: 'user', content: 'What is a sluice?' }],
});
const ANSWER = {
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1,
  model: 'gpt',
  choices: [
    { index: 0, message: { role: 'assistant', content: 'A gate.' }, finish_reason: 'stop' },
  ],
  usage: { prompt_tokens: 100, completion_tokens: 50, total_tokens: 150 },
};

async function miss(g: ReturnType<typeof gateway>, model: string): Promise<void> {
  const ex = g.exchange();
  await ex.requestHeaders(chatRequest({ authorization: `Bearer ${KEY}` }));
  const out = await ex.requestBody(body(request(model)));
  assert.equal(out.kind, 'continue');
  const h = ex.responseHeaders({
    headers: {
      headers: [
        { key: ':status', raw_value: Buffer.from('200') },
        { key: 'content-type', raw_value: Buffer.from('application/json') },
      ],
    },
  });
  assert.equal(
    header(h.kind === 'continue' ? h.mutation?.setHeaders : undefined, 'x-sluice-cache'),
    'miss',
  );
  await ex.responseBody(body(ANSWER));
  ex.finish('complete');
  await g.settled();
}

async function hit(g: ReturnType<typeof gateway>, model: string) {
  const ex = g.exchange();
  await ex.requestHeaders(chatRequest({ authorization: `Bearer ${KEY}` }));
  const v = verdictOf(await ex.requestBody(body(request(model))));
  ex.finish('complete');
  await g.settled();
  return v;
}

describe('response cache in the router phase', () => {
  it('a hit reserves nothing and costs nothing', async () => {
    const g = gateway();
    await miss(g, 'gpt-free');
    assert.equal(g.reserves(), 1);
    const v = await hit(g, 'gpt-free');
    assert.equal(v.status, 200);
    assert.equal(header(v.headers, 'x-sluice-cache'), 'hit');
    assert.equal(header(v.headers, 'x-sluice-request-id'), 'id-2');
    assert.equal(JSON.parse(v.body).choices[0].message.content, 'A gate.');
    assert.equal(g.reserves(), 1, 'the hit made no reservation');
    const log = g.lines.filter((l) => l.event === 'request');
    assert.equal(log.length, 2);
    // (The miss's own cost is the upstream phase's to record; it is not run here.)
    assert.deepEqual(log[1]!.cache, {
      result: 'hit',
      ageSeconds: 0,
      savedTokens: 150,
      savedUsd: 150,
    });
    assert.equal(log[1]!.cost_usd, 0);
    assert.equal(log[1]!.status, 200);
    assert.ok(!(log[1]!.verdicts as string[]).includes('reserved'));
    // Counted as cached in the usage report, apart from requests a provider answered.
    const [alice] = await g.usage();
    assert.deepEqual(
      [alice?.key, alice?.requests, alice?.cachedRequests, alice?.savedTokens, alice?.savedMicros],
      ['alice', 0, 1, 150, 150_000_000],
    );
    assert.equal(alice?.costMicros, 0);
  });

  it('a hit charged a share of its cost is reserved and settled at that share', async () => {
    const g = gateway();
    await miss(g, 'gpt-half');
    const v = await hit(g, 'gpt-half');
    assert.equal(header(v.headers, 'x-sluice-cache'), 'hit');
    assert.equal(g.reserves(), 2);
    const log = g.lines.filter((l) => l.event === 'request');
    assert.equal(log[1]!.cost_usd, 75);
    assert.ok((log[1]!.verdicts as string[]).includes('reserved'));
    assert.deepEqual((log[1]!.tokens as { total: number }).total, 75);
    const [alice] = await g.usage();
    assert.deepEqual(
      [alice?.requests, alice?.cachedRequests, alice?.savedTokens, alice?.savedMicros],
      [0, 1, 75, 75_000_000],
    );
    assert.deepEqual([alice?.totalTokens, alice?.costMicros], [75, 75_000_000]);
  });
});
