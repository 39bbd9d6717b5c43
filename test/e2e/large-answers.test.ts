// A JSON answer larger than Envoy buffers (8 MiB), through `sluice run` with the official SDK
// (issue 11, item 4). Before, Envoy answered it with its own empty 500 and the request was billed
// for its prompt only; now the caller gets the answer and its reported usage is what is charged.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
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

const UPSTREAM_KEY = 'sk-upstream-large-answers';
// USD per million tokens = micro-dollars per token: one token costs exactly $0.001.
const MICROS_PER_TOKEN = 1000;
const USAGE = { input: 10, output: 2_000_000 };
/** Over the 8 MiB the operator lets Envoy buffer (per_connection_buffer_limit_bytes). */
const CONTENT = 'token '.repeat(Math.ceil((9 * 1024 * 1024) / 6));

function manifests(port: number): unknown[] {
  return [
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name: 'big', namespace: 'e2e' },
      spec: {
        models: [{ exact: 'gpt-big' }],
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
      metadata: { name: 'priced', namespace: 'e2e' },
      spec: {
        targetRefs: [{ name: 'big' }],
        limits: { rules: [{ name: 'daily', spendPerDayUsd: 1_000_000 }] },
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

describe('e2e: a JSON answer over the buffer limit', () => {
  let mock: MockProvider;
  let g: YamlGateway;

  before(async () => {
    mock = await startMockProvider({
      name: 'openai',
      auth: { bearer: UPSTREAM_KEY },
      defaults: { content: CONTENT, usage: USAGE },
    });
    g = await startYamlGateway(manifests(mock.port));
  });
  after(async () => {
    await g?.close();
    await mock?.close();
  });

  it('reaches the caller whole and is charged the usage it reports', async () => {
    const { openai } = sdkClients(g.gateway.url);
    const r = await openai.withOptions({ timeout: 60_000 }).chat.completions.create({
      model: 'gpt-big',
      max_tokens: 3_000_000,
      messages: [{ role: 'user', content: 'Write as much as you can' }],
    });
    assert.equal(r.choices[0]?.message.content, CONTENT);
    assert.equal(r.usage?.completion_tokens, USAGE.output);
    await until(() => (g.accessLog.some((e) => e['status'] === 200) ? true : undefined));
    const line = g.accessLog.find((e) => e['status'] === 200)!;
    const tokens = line['tokens'] as { input: number; output: number; estimated: boolean };
    assert.deepEqual(
      { input: tokens.input, output: tokens.output, estimated: tokens.estimated },
      { ...USAGE, estimated: false },
    );
    const spent = Math.round((await counterValue(g.registry, 'sluice_spend_usd_total', {})) * 1e6);
    assert.equal(spent, (USAGE.input + USAGE.output) * MICROS_PER_TOKEN);
  });
});
