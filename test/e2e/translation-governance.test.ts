// Translation with masking and budgets on, through `sluice run` from YAML: placeholders are
// restored in a translated stream; the output cap that budgets reserve reaches the other API's
// backend in its own field, so spend never overshoots; a budget refusal is the caller's error and
// never a reason to fall back.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI from 'openai';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import {
  KEYS,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  type YamlGateway,
  sdkClients,
  until,
} from './harness.js';

const MICROS_PER_TOKEN = 1000;
const PRICE = { inputPerMTok: MICROS_PER_TOKEN, outputPerMTok: MICROS_PER_TOKEN };
const DAILY_USD = 0.2; // 200 tokens at a thousandth of a dollar each
const MAX_TOKENS = 40;

function backend(name: string, provider: string, service: string, priority = 0): unknown {
  return {
    name,
    provider,
    endpoint: { service: { name: service, port: 80 } },
    credential: { secretRef: { name: provider } },
    priority,
  };
}

function route(name: string, model: string, backends: unknown[]): unknown {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'e2e' },
    spec: {
      models: [{ exact: model }],
      backends,
      retry: { attempts: 2, retryOn: ['5xx', 'rate-limited', 'connect-failure'] },
    },
  };
}

function policy(name: string, targets: string[], spec: Record<string, unknown>): unknown {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIPolicy',
    metadata: { name, namespace: 'e2e' },
    spec: { targetRefs: targets.map((t) => ({ name: t })), ...spec },
  };
}

describe('e2e: translation with masking and budgets', () => {
  let g: YamlGateway;
  let openaiMock: MockProvider;
  let anthropicMock: MockProvider;
  let openai: OpenAI;

  before(async () => {
    openaiMock = await startMockProvider({ name: 'openai-mock', auth: { bearer: KEYS.primary } });
    anthropicMock = await startMockProvider({
      name: 'anthropic-mock',
      auth: { anthropicKey: KEYS.anthropic },
    });
    g = await startYamlGateway([
      route('masked', 'claude-masked', [backend('anthropic', 'anthropic', 'anthropic-mock')]),
      route('budget', 'claude-budget', [
        backend('anthropic', 'anthropic', 'anthropic-mock'),
        backend('openai', 'openai', 'openai-mock', 1),
      ]),
      policy('pii', ['masked'], {
        masking: { detectors: ['EMAIL'], actions: { EMAIL: 'mask' }, reversible: true },
      }),
      policy('spend', ['budget'], {
        pricing: { models: { 'claude-*': PRICE } },
        limits: { rules: [{ name: 'daily', per: ['route'], spendPerDayUsd: DAILY_USD }] },
      }),
      ...serviceDocs('openai-mock', openaiMock.port),
      ...serviceDocs('anthropic-mock', anthropicMock.port),
      secretDoc('openai', KEYS.primary),
      secretDoc('anthropic', KEYS.anthropic),
    ]);
    ({ openai } = sdkClients(g.gateway.url));
  });
  beforeEach(() => {
    openaiMock.take();
    anthropicMock.take();
  });
  after(async () => {
    await g?.close();
    await openaiMock?.close();
    await anthropicMock?.close();
  });

  it('masked before the Anthropic backend, restored in the translated stream, cut anywhere', async () => {
    // The mock echoes the last user message three characters per event, so the placeholder
    // reaches the router filter split across several translated chunks.
    anthropicMock.enqueue({ chunkChars: 3 });
    const stream = await openai.chat.completions.create({
      model: 'claude-masked',
      messages: [{ role: 'user', content: 'mail jane.doe@example.com today' }],
      stream: true,
    });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
    assert.equal(text, 'echo: mail jane.doe@example.com today');
    const [seen] = anthropicMock.take();
    assert.ok(seen);
    assert.doesNotMatch(seen.body.toString(), /jane\.doe@example\.com/);
    assert.match(JSON.stringify(seen.json?.['messages']), /\[EMAIL_1\]/);
  });

  it('the budget’s output cap reaches the Anthropic backend; spend never overshoots; a refusal falls back nowhere', async () => {
    let served = 0;
    let refused: unknown;
    for (let i = 0; i < 20 && refused === undefined; i++) {
      // The provider would write 500 tokens; the cap it is sent holds it to what was reserved.
      anthropicMock.enqueue({ usage: { input: 10, output: 500 }, honourMaxTokens: true });
      try {
        const s = await openai.chat.completions.create({
          model: 'claude-budget',
          messages: [{ role: 'user', content: 'write a lot' }],
          max_tokens: MAX_TOKENS,
          stream: true,
        });
        for await (const _ of s) void _;
        served++;
      } catch (e) {
        refused = e;
      }
    }
    assert.ok(refused instanceof OpenAI.RateLimitError, String(refused));
    assert.ok(served >= 1);
    const sent = anthropicMock.take();
    assert.equal(sent.length, served, 'the refused request reached no backend');
    assert.deepEqual(openaiMock.take(), [], 'and was not sent to the fallback');
    for (const r of sent) assert.ok((r.json?.['max_tokens'] as number) <= MAX_TOKENS);
    const lines = await until(() => {
      const l = g.accessLog.filter((e) => e['route'] === 'e2e/budget' && e['status'] === 200);
      return l.length === served ? l : undefined;
    });
    const spent = lines.reduce((s, l) => s + Number(l['cost_usd'] ?? 0), 0);
    assert.ok(spent > 0, 'usage of the translated stream was charged');
    assert.ok(spent <= DAILY_USD + 1e-9, `spent ${spent} of ${DAILY_USD}`);
  });
});
