// A burst of requests that set no max_tokens against a small daily spend budget, through
// `sluice run` with the official SDK (issue 11, item 3). The gateway reserves the policy's
// defaultMaxTokens for each and must hold the provider to it: the mock would generate far more,
// and stops only at the limit the request carries, as a real provider does. Every admitted
// request is held at the provider until all of them have been judged, so all reservations are in
// flight together when the budget is checked.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { estimateRequestInputTokens } from '../../extproc/usage/estimate.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import {
  counterValue,
  sdkClients,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  until,
  type YamlGateway,
} from './harness.js';

const UPSTREAM_KEY = 'sk-upstream-spend-cap';
// USD per million tokens = micro-dollars per token: one token costs exactly $0.001.
const MICROS_PER_TOKEN = 1000;
const DEFAULT_MAX_TOKENS = 100;
/** What the model would generate if nothing stopped it. */
const UNCAPPED_OUTPUT = 5000;
const REQUESTS = 240;

const body = (i: number) => ({
  model: 'gpt-capped',
  messages: [{ role: 'user' as const, content: `request ${i}: write a long story` }],
});
// All prompts tokenize alike; the mock bills exactly the prompt the gateway estimated, so the
// only estimate error left is the output's, which the cap must remove.
const INPUT_TOKENS = estimateRequestInputTokens('chat', body(100));
const ESTIMATE_TOKENS = INPUT_TOKENS + DEFAULT_MAX_TOKENS;
// Room for 40 reservations at once.
const FITS = 40;
const DAILY_USD = (FITS * ESTIMATE_TOKENS * MICROS_PER_TOKEN) / 1e6;

function manifests(port: number): unknown[] {
  return [
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name: 'capped', namespace: 'e2e' },
      spec: {
        models: [{ exact: 'gpt-capped' }],
        backends: [
          {
            name: 'openai',
            provider: 'openai',
            endpoint: { service: { name: 'mock-openai', port: 80 } },
            credential: { secretRef: { name: 'openai' } },
          },
        ],
      },
    },
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIPolicy',
      metadata: { name: 'small-budget', namespace: 'e2e' },
      spec: {
        targetRefs: [{ name: 'capped' }],
        limits: {
          defaultMaxTokens: DEFAULT_MAX_TOKENS,
          rules: [{ name: 'daily', spendPerDayUsd: DAILY_USD }],
        },
        pricing: {
          models: {
            'gpt-*': { inputPerMTok: MICROS_PER_TOKEN, outputPerMTok: MICROS_PER_TOKEN },
          },
        },
      },
    },
    secretDoc('openai', UPSTREAM_KEY),
    ...serviceDocs('mock-openai', port),
  ];
}

describe('e2e: a burst without max_tokens stays within the spend budget', () => {
  let mock: MockProvider;
  let g: YamlGateway;
  let open!: () => void;

  before(async () => {
    const gate = new Promise<void>((r) => (open = r));
    mock = await startMockProvider({
      name: 'openai',
      auth: { bearer: UPSTREAM_KEY },
      defaults: {
        hold: gate,
        usage: { input: INPUT_TOKENS, output: UNCAPPED_OUTPUT },
        honourMaxTokens: true,
      },
    });
    g = await startYamlGateway(manifests(mock.port));
  });
  after(async () => {
    open?.();
    await g?.close();
    await mock?.close();
  });

  it(`${REQUESTS} concurrent requests: the provider is held to the reservation, the budget holds`, async () => {
    const { openai } = sdkClients(g.gateway.url);
    const client = openai.withOptions({ timeout: 60_000 });
    const startDay = Math.floor(Date.now() / 86_400_000);
    let refused = 0;
    const calls = Array.from({ length: REQUESTS }, (_, i) => {
      const b = body(i);
      // Half of them stream: the cap and the accounting must hold for both.
      const p =
        i % 2 === 0
          ? client.chat.completions.create(b).then((r) => r.usage?.completion_tokens)
          : client.chat.completions.create({ ...b, stream: true }).then(async (s) => {
              let text = '';
              for await (const chunk of s) text += chunk.choices[0]?.delta.content ?? '';
              return text.length > 0 ? -1 : undefined;
            });
      return p.catch((err: unknown) => {
        assert.ok(err instanceof OpenAI.RateLimitError, String(err));
        refused++;
        return undefined;
      });
    });
    // Every request judged: admitted ones wait at the provider, the others were refused.
    await until(() => (mock.requests.length + refused === REQUESTS ? true : undefined), 60_000);
    const admitted = mock.requests.length;
    open();
    const outcomes = await Promise.all(calls);

    if (Math.floor(Date.now() / 86_400_000) === startDay) assert.equal(admitted, FITS);
    assert.equal(refused, REQUESTS - admitted);
    // Settled once each request's stream has ended at the gateway, which may trail the client.
    await until(() =>
      g.accessLog.filter((e) => e['status'] === 200).length === admitted ? true : undefined,
    );
    const spent = Math.round((await counterValue(g.registry, 'sluice_spend_usd_total', {})) * 1e6);
    const limit = Math.round(DAILY_USD * 1e6);
    // One request's estimate error: what a request may cost beyond its reservation (here the
    // prompt is billed as estimated and the output is held to the reservation, so none).
    const actualPerRequest = INPUT_TOKENS + Math.min(UNCAPPED_OUTPUT, DEFAULT_MAX_TOKENS);
    const estimateError = Math.max(0, actualPerRequest - ESTIMATE_TOKENS) * MICROS_PER_TOKEN;
    assert.ok(
      spent <= limit + estimateError,
      `spent ${spent} µ$ of a ${limit} µ$ budget (${(spent / limit).toFixed(1)}×)`,
    );
    assert.equal(spent, admitted * actualPerRequest * MICROS_PER_TOKEN);
    // What left the gateway: the reserved cap, in OpenAI's own field.
    for (const r of mock.requests) {
      assert.equal(r.json?.max_completion_tokens, DEFAULT_MAX_TOKENS, JSON.stringify(r.json));
    }
    for (const o of outcomes.filter((o) => typeof o === 'number' && o >= 0)) {
      assert.equal(o, DEFAULT_MAX_TOKENS);
    }
  });
});
