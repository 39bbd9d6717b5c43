// Claude on Vertex AI through `sluice run` from YAML: a gcp-vertex backend with
// `gcp.publisher: anthropic` serves the @anthropic-ai/sdk caller (its Messages body sent to
// rawPredict / streamRawPredict without `model`, with anthropic_version vertex-2023-10-16, the
// SSE events passed on unchanged) and the openai caller (through the OpenAI → Anthropic
// translation), with masking and a budget on: placeholders never reach Google and are restored,
// usage is charged from Claude's counts, the budget's cap reaches max_tokens, the token minted
// from the service-account key is used and reused. Errors of both shapes reach each SDK in its
// format; fallback from Vertex to the Anthropic API and back; embeddings are refused before any
// attempt (Claude makes none).
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type Anthropic from '@anthropic-ai/sdk';
import type OpenAI from 'openai';
import { startMockGemini, type MockGemini } from '../../operator/mock-provider/gemini.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import { testServiceAccount } from '../support/service-account.js';
import {
  FALLBACK_RETRY,
  failure,
  KEYS,
  lastCost,
  policyDoc,
  routeDoc,
  routeLog,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  type YamlGateway,
  sdkClients,
  until,
} from './harness.js';

const PROJECT = 'sluice-e2e';
const REGION = 'us-east5';
const SA = testServiceAccount('claude@sluice-e2e.iam.gserviceaccount.com');
const MODEL = 'claude-sonnet-4@20250514';
const PRICE = { inputPerMTok: 1000, outputPerMTok: 1000 };
const CAP = 64;

function vertexClaude(priority = 0): unknown {
  return {
    name: 'vertex-claude',
    provider: 'gcp-vertex',
    endpoint: { service: { name: 'vertex-mock', port: 80 } },
    credential: { secretRef: { name: 'vertex-sa' } },
    modelOverride: MODEL,
    gcp: { project: PROJECT, region: REGION, publisher: 'anthropic' },
    priority,
  };
}

function anthropicApi(priority = 0): unknown {
  return {
    name: 'anthropic',
    provider: 'anthropic',
    endpoint: { service: { name: 'anthropic-mock', port: 80 } },
    credential: { secretRef: { name: 'anthropic' } },
    priority,
  };
}

function route(name: string, backends: unknown[]): unknown {
  return routeDoc(name, backends, { retry: FALLBACK_RETRY });
}

describe('e2e: Claude on Vertex AI through sluice run', () => {
  let g: YamlGateway;
  let mock: MockGemini;
  let anthropicMock: MockProvider;
  let openai: OpenAI;
  let anthropic: Anthropic;

  before(async () => {
    mock = await startMockGemini({
      apiKey: 'unused',
      vertex: SA.vertex(PROJECT, REGION),
    });
    anthropicMock = await startMockProvider({
      name: 'anthropic-mock',
      auth: { anthropicKey: KEYS.anthropic },
    });
    g = await startYamlGateway([
      route('claude-vertex', [vertexClaude()]),
      route('vertex-first', [vertexClaude(), anthropicApi(1)]),
      route('anthropic-first', [anthropicApi(), vertexClaude(1)]),
      policyDoc('claude-vertex-policy', ['claude-vertex'], {
        masking: { detectors: ['EMAIL'], actions: { EMAIL: 'mask' }, reversible: true },
        pricing: { models: { '*': PRICE } },
        limits: {
          rules: [{ name: 'daily', per: ['route'], spendPerDayUsd: 100 }],
          // What a request that sets no output limit is reserved, and held to.
          defaultMaxTokens: CAP,
        },
      }),
      ...serviceDocs('vertex-mock', mock.port),
      ...serviceDocs('anthropic-mock', anthropicMock.port),
      secretDoc('vertex-sa', SA.keyFile(`${mock.url}/token`)),
      secretDoc('anthropic', KEYS.anthropic),
    ]);
    ({ openai, anthropic } = sdkClients(g.gateway.url));
  });
  beforeEach(() => {
    mock.take();
    anthropicMock.take();
  });
  after(async () => {
    await g?.close();
    await mock?.close();
    await anthropicMock?.close();
  });

  const routeLines = (): Record<string, unknown>[] => routeLog(g, 'claude-vertex');
  const cost = (count: number): Promise<number> => lastCost(g, 'claude-vertex', count);

  it('anthropic SDK → Claude on Vertex: rawPredict, masked, usage charged', async () => {
    const before = routeLines().length;
    mock.enqueue({ usage: { input: 14, output: 6 } });
    const m = await anthropic.messages.create({
      model: 'claude-vertex',
      max_tokens: 1000,
      system: [{ type: 'text', text: 'be brief', cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: 'mail jane.doe@example.com today' }],
    });
    assert.deepEqual(m.content, [{ type: 'text', text: 'echo: mail jane.doe@example.com today' }]);
    assert.deepEqual([m.usage.input_tokens, m.usage.output_tokens], [14, 6]);
    const [seen] = mock.take();
    assert.equal(
      seen!.path,
      `/v1/projects/${PROJECT}/locations/${REGION}/publishers/anthropic/models/${encodeURIComponent(MODEL)}:rawPredict`,
    );
    assert.match(String(seen!.headers.authorization), /^Bearer ya29\.mock-\d+$/);
    assert.equal(seen!.json?.['anthropic_version'], 'vertex-2023-10-16');
    assert.equal('model' in seen!.json, false);
    assert.equal(seen!.json?.['max_tokens'], 1000);
    // Native fields go as written.
    assert.deepEqual(seen!.json?.['system'], [
      { type: 'text', text: 'be brief', cache_control: { type: 'ephemeral' } },
    ]);
    assert.doesNotMatch(seen!.body.toString(), /jane\.doe/);
    assert.ok(Math.abs((await cost(before + 1)) - 20 * 0.001) < 1e-9);
  });

  it('anthropic SDK → Claude on Vertex streaming: events as sent, placeholders restored', async () => {
    mock.enqueue({ chunkChars: 3, usage: { input: 5, output: 9 } });
    const final = await anthropic.messages
      .stream({
        model: 'claude-vertex',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'mail jane.doe@example.com' }],
      })
      .finalMessage();
    assert.deepEqual(final.content, [{ type: 'text', text: 'echo: mail jane.doe@example.com' }]);
    assert.deepEqual([final.usage.input_tokens, final.usage.output_tokens], [5, 9]);
    const [seen] = mock.take();
    assert.match(seen!.path, /:streamRawPredict$/);
    assert.equal(seen!.json?.['stream'], true);
    assert.doesNotMatch(seen!.body.toString(), /jane\.doe/);
  });

  it('openai SDK → Claude on Vertex: plain and streaming with usage, held to the budget’s cap', async () => {
    mock.enqueue({ usage: { input: 7, output: 3 } });
    const r = await openai.chat.completions.create({
      model: 'claude-vertex',
      messages: [
        { role: 'system', content: 'sys' },
        { role: 'user', content: 'write to jane.doe@example.com' },
      ],
    });
    assert.equal(r.choices[0]!.message.content, 'echo: write to jane.doe@example.com');
    assert.deepEqual([r.usage?.prompt_tokens, r.usage?.completion_tokens], [7, 3]);
    mock.enqueue({ chunkChars: 4, usage: { input: 2, output: 8 } });
    const s = await openai.chat.completions.create({
      model: 'claude-vertex',
      messages: [{ role: 'user', content: 'stream to jane.doe@example.com' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: number[] | undefined;
    for await (const c of s) {
      text += c.choices[0]?.delta.content ?? '';
      if (c.usage) usage = [c.usage.prompt_tokens, c.usage.completion_tokens];
    }
    assert.equal(text, 'echo: stream to jane.doe@example.com');
    assert.deepEqual(usage, [2, 8]);
    const [plain, streamed] = mock.take();
    assert.match(plain!.path, /:rawPredict$/);
    assert.match(streamed!.path, /:streamRawPredict$/);
    for (const x of [plain!, streamed!]) {
      assert.equal(x.json?.['anthropic_version'], 'vertex-2023-10-16');
      assert.equal(x.json?.['max_tokens'], CAP);
      assert.doesNotMatch(x.body.toString(), /jane\.doe/);
    }
    assert.deepEqual(plain!.json?.['system'], [{ type: 'text', text: 'sys' }]);
    // One token, minted once and reused.
    assert.equal(mock.tokensIssued, 1);
  });

  it('errors of both shapes reach each SDK in its format', async () => {
    // Google's front door (quota): RESOURCE_EXHAUSTED.
    mock.enqueue({ status: 429 }, { status: 429 }, { status: 429 });
    const a = (await failure(
      anthropic.messages.create({
        model: 'claude-vertex',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'x' }],
      }),
    )) as { status?: number; error?: { error?: { type?: string; message?: string } } };
    assert.equal(a.status, 429);
    assert.equal(a.error?.error?.type, 'rate_limit_error');
    assert.match(String(a.error?.error?.message), /Quota exceeded/);
    // The model's own error (Anthropic's shape) as an OpenAI error.
    mock.enqueue({ status: 400 });
    const o = (await failure(
      openai.chat.completions.create({
        model: 'claude-vertex',
        messages: [{ role: 'user', content: 'x' }],
      }),
    )) as { status?: number; code?: string; message?: string };
    assert.equal(o.status, 400);
    assert.equal(o.code, 'invalid_request_error');
    assert.match(String(o.message), /mock failure 400/);
  });

  it('embeddings to a Claude backend are refused before any attempt', async () => {
    const e = (await failure(openai.embeddings.create({ model: 'claude-vertex', input: 'x' }))) as {
      status?: number;
      code?: string;
    };
    assert.equal(e.status, 501);
    assert.equal(e.code, 'unsupported_backend');
    assert.equal(mock.take().length, 0);
  });

  it('fallback: Vertex answers 503, the Anthropic API serves; and back the other way', async () => {
    mock.enqueue({ status: 503 });
    anthropicMock.enqueue({ content: 'from anthropic' });
    const r = await openai.chat.completions
      .create({ model: 'vertex-first', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    assert.equal(r.data.choices[0]!.message.content, 'from anthropic');
    let id = r.response.headers.get('x-sluice-request-id');
    let line = await until(() => g.accessLog.find((l) => l['request_id'] === id));
    assert.equal(line['attempts'], 2);
    assert.equal(line['provider'], 'anthropic');
    assert.equal(mock.take().length, 1);

    anthropicMock.enqueue({ status: 529 });
    mock.enqueue({ content: 'from vertex', usage: { input: 3, output: 2 } });
    const s = await anthropic.messages
      .create({
        model: 'anthropic-first',
        max_tokens: 20,
        messages: [{ role: 'user', content: 'hi' }],
      })
      .withResponse();
    assert.deepEqual(s.data.content, [{ type: 'text', text: 'from vertex' }]);
    const [seen] = mock.take();
    assert.match(seen!.path, /publishers\/anthropic\/models\/.*:rawPredict$/);
    id = s.response.headers.get('x-sluice-request-id');
    line = await until(() => g.accessLog.find((l) => l['request_id'] === id));
    assert.equal(line['attempts'], 2);
    assert.equal(line['provider'], 'gcp-vertex');
  });
});
