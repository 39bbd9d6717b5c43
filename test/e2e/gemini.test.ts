// The Gemini API through `sluice run` from YAML: the openai and @anthropic-ai/sdk SDKs reach a
// Gemini backend (the mock, which insists on its API key in x-goog-api-key), plain, streaming and
// with tools, with masking and a budget on: placeholders never reach Google and are restored in
// the translated stream; usage is charged from usageMetadata; the budget's cap reaches
// generationConfig.maxOutputTokens; a safety block reaches each SDK as an error in its format.
// Vertex AI: the project/location path, with an OAuth token minted from a service-account key.
// Fallback from Gemini to the OpenAI API and back, each attempt translated (and authenticated) for
// the backend it reached.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type Anthropic from '@anthropic-ai/sdk';
import type OpenAI from 'openai';
import { startMockGemini, type MockGemini } from '../../operator/mock-provider/gemini.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import { testServiceAccount } from '../support/service-account.js';
import {
  FALLBACK_RETRY,
  KEYS as API_KEYS,
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

const API_KEY = 'AIza-e2e-gemini-key';
const SA = testServiceAccount('sluice@sluice-e2e.iam.gserviceaccount.com');
const PRICE = { inputPerMTok: 1000, outputPerMTok: 1000 };
const MAX_TOKENS = 40;

describe('e2e: Gemini API backends through sluice run', () => {
  let g: YamlGateway;
  let mock: MockGemini;
  let openaiMock: MockProvider;
  let openai: OpenAI;
  let anthropic: Anthropic;

  before(async () => {
    mock = await startMockGemini({
      apiKey: API_KEY,
      vertex: SA.vertex('sluice-e2e', 'us-central1'),
    });
    openaiMock = await startMockProvider({
      name: 'openai-mock',
      auth: { bearer: API_KEYS.primary },
    });
    const geminiBackend = (priority?: number): unknown => ({
      name: 'gemini',
      provider: 'gemini',
      endpoint: { service: { name: 'gemini-mock', port: 80 } },
      credential: { secretRef: { name: 'google' } },
      modelOverride: 'gemini-2.5-flash',
      ...(priority === undefined ? {} : { priority }),
    });
    const openaiBackend = (priority: number): unknown => ({
      name: 'openai',
      provider: 'openai',
      endpoint: { service: { name: 'openai-mock', port: 80 } },
      credential: { secretRef: { name: 'openai' } },
      priority,
    });
    const fallbackRoute = (name: string, backends: unknown[]): unknown =>
      routeDoc(name, backends, { retry: FALLBACK_RETRY });
    g = await startYamlGateway([
      routeDoc('gemini', [geminiBackend()], { model: 'gemini-x' }),
      policyDoc('gemini-policy', ['gemini'], {
        masking: { detectors: ['EMAIL'], actions: { EMAIL: 'mask' }, reversible: true },
        pricing: { models: { 'gemini-*': PRICE } },
        limits: { rules: [{ name: 'daily', per: ['route'], spendPerDayUsd: 100 }] },
      }),
      routeDoc(
        'vertex',
        [
          {
            name: 'vertex',
            provider: 'gcp-vertex',
            endpoint: { service: { name: 'gemini-mock', port: 80 } },
            credential: { secretRef: { name: 'vertex-sa' } },
            modelOverride: 'gemini-2.5-pro',
            gcp: { project: 'sluice-e2e', region: 'us-central1' },
          },
        ],
        { model: 'vertex-x' },
      ),
      fallbackRoute('gemini-first', [geminiBackend(0), openaiBackend(1)]),
      fallbackRoute('openai-first', [openaiBackend(0), geminiBackend(1)]),
      ...serviceDocs('gemini-mock', mock.port),
      ...serviceDocs('openai-mock', openaiMock.port),
      secretDoc('google', API_KEY),
      secretDoc('openai', API_KEYS.primary),
      secretDoc('vertex-sa', SA.keyFile(`${mock.url}/token`)),
    ]);
    ({ openai, anthropic } = sdkClients(g.gateway.url));
  });
  beforeEach(() => {
    mock.take();
    openaiMock.take();
  });
  after(async () => {
    await g?.close();
    await mock?.close();
    await openaiMock?.close();
  });

  const cost = (count: number): Promise<number> => lastCost(g, 'gemini', count);
  const seenSoFar = (): number => routeLog(g, 'gemini').length;

  it('openai SDK → Gemini: plain, masked, capped, usage charged from usageMetadata', async () => {
    const before = seenSoFar();
    mock.enqueue({ usage: { input: 20, output: 7 } });
    const r = await openai.chat.completions.create({
      model: 'gemini-x',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'mail jane.doe@example.com today' },
      ],
      max_tokens: MAX_TOKENS,
    });
    assert.equal(r.choices[0]!.message.content, 'echo: mail jane.doe@example.com today');
    assert.deepEqual({ p: r.usage?.prompt_tokens, c: r.usage?.completion_tokens }, { p: 20, c: 7 });
    const [seen] = mock.take();
    assert.equal(seen?.model, 'gemini-2.5-flash');
    assert.equal(seen.headers['x-goog-api-key'], API_KEY);
    assert.doesNotMatch(seen.body.toString(), /jane\.doe@example\.com/);
    assert.deepEqual(seen.json?.['systemInstruction'], { parts: [{ text: 'be brief' }] });
    const cfg = seen.json?.['generationConfig'] as { maxOutputTokens: number };
    assert.ok(cfg.maxOutputTokens <= MAX_TOKENS);
    assert.ok(Math.abs((await cost(before + 1)) - 27 * 0.001) < 1e-9);
  });

  it('openai SDK → Gemini streaming: placeholders restored, usage chunk', async () => {
    const before = seenSoFar();
    mock.enqueue({ chunkChars: 3, usage: { input: 5, output: 11 } });
    const stream = await openai.chat.completions.create({
      model: 'gemini-x',
      messages: [{ role: 'user', content: 'mail jane.doe@example.com today' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: unknown;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      if (c.usage) usage = { p: c.usage.prompt_tokens, c: c.usage.completion_tokens };
    }
    assert.equal(text, 'echo: mail jane.doe@example.com today');
    assert.deepEqual(usage, { p: 5, c: 11 });
    const [seen] = mock.take();
    assert.equal(seen?.stream, true);
    assert.doesNotMatch(seen.body.toString(), /jane\.doe/);
    assert.ok(Math.abs((await cost(before + 1)) - 16 * 0.001) < 1e-9);
  });

  it('anthropic SDK → Gemini: streaming text, then a tool call', async () => {
    mock.enqueue({ chunkChars: 2, usage: { input: 6, output: 4 } });
    const final = await anthropic.messages
      .stream({
        model: 'gemini-x',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'hello gemini' }],
      })
      .finalMessage();
    assert.deepEqual(final.content, [{ type: 'text', text: 'echo: hello gemini' }]);
    assert.equal(final.usage.output_tokens, 4);
    mock.enqueue({ toolCall: { name: 'weather', arguments: { city: 'Rome' } } });
    const t = await anthropic.messages.create({
      model: 'gemini-x',
      max_tokens: 100,
      tools: [{ name: 'weather', input_schema: { type: 'object' } }],
      messages: [{ role: 'user', content: 'weather?' }],
    });
    assert.equal(t.stop_reason, 'tool_use');
    assert.equal(t.content[0]?.type, 'tool_use');
    assert.deepEqual((t.content[0] as { input: unknown }).input, { city: 'Rome' });
    const sent = mock.take();
    assert.deepEqual((sent[1]?.json?.['tools'] as unknown[])[0], {
      functionDeclarations: [{ name: 'weather', parametersJsonSchema: { type: 'object' } }],
    });
  });

  it('a safety block reaches each SDK as an error in its own format', async () => {
    mock.enqueue({ block: 'prompt' });
    await assert.rejects(
      openai.chat.completions.create({
        model: 'gemini-x',
        messages: [{ role: 'user', content: 'x' }],
      }),
      (e: { status?: number; message?: string }) =>
        e.status === 400 && /safety system blocked the prompt/.test(String(e.message)),
    );
    mock.enqueue({ block: 'answer' });
    await assert.rejects(
      anthropic.messages.create({
        model: 'gemini-x',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'x' }],
      }),
      (e: { status?: number; error?: { type?: string } }) =>
        e.status === 400 && e.error?.type === 'error',
    );
  });
  it('openai and anthropic SDKs → Vertex AI: the project path, an OAuth token from the service account', async () => {
    mock.enqueue({ usage: { input: 3, output: 2 } });
    const r = await openai.chat.completions.create({
      model: 'vertex-x',
      messages: [{ role: 'user', content: 'hello vertex' }],
    });
    assert.equal(r.choices[0]!.message.content, 'echo: hello vertex');
    mock.enqueue({ chunkChars: 4 });
    const final = await anthropic.messages
      .stream({
        model: 'vertex-x',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'stream it' }],
      })
      .finalMessage();
    assert.deepEqual(final.content, [{ type: 'text', text: 'echo: stream it' }]);
    const sent = mock.take();
    assert.deepEqual(
      sent.map((x) => x.path),
      [
        '/v1/projects/sluice-e2e/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent',
        '/v1/projects/sluice-e2e/locations/us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse',
      ],
    );
    for (const x of sent) assert.match(String(x.headers.authorization), /^Bearer ya29\.mock-\d+$/);
    // The token was minted once and reused, not fetched per request.
    assert.equal(mock.tokensIssued, 1);
  });

  it('fallback: Gemini answers 503, OpenAI serves the Anthropic caller; OpenAI answers 429, Gemini streams to the OpenAI caller', async () => {
    mock.enqueue({ status: 503 });
    openaiMock.enqueue({ content: 'from openai' });
    const a = await anthropic.messages
      .create({
        model: 'gemini-first',
        max_tokens: 30,
        messages: [{ role: 'user', content: 'hi' }],
      })
      .withResponse();
    assert.deepEqual(a.data.content, [{ type: 'text', text: 'from openai' }]);
    assert.equal(mock.take().length, 1);
    const [toOpenai] = openaiMock.take();
    assert.equal(toOpenai?.headers.authorization, `Bearer ${API_KEYS.primary}`);
    assert.equal(toOpenai.headers['x-goog-api-key'], undefined);
    let id = a.response.headers.get('x-sluice-request-id');
    let line = await until(() => g.accessLog.find((l) => l['request_id'] === id));
    assert.deepEqual([line['attempts'], line['provider']], [2, 'openai']);

    openaiMock.enqueue({ status: 429 });
    mock.enqueue({ content: 'from gemini', chunkChars: 4 });
    const s = await openai.chat.completions
      .create({ model: 'openai-first', messages: [{ role: 'user', content: 'hi' }], stream: true })
      .withResponse();
    let text = '';
    for await (const c of s.data) text += c.choices[0]?.delta.content ?? '';
    assert.equal(text, 'from gemini');
    const [toGemini] = mock.take();
    assert.equal(toGemini?.headers['x-goog-api-key'], API_KEY);
    assert.equal(toGemini.headers.authorization, undefined);
    id = s.response.headers.get('x-sluice-request-id');
    line = await until(() => g.accessLog.find((l) => l['request_id'] === id));
    assert.deepEqual([line['attempts'], line['provider']], [2, 'gemini']);
  });
});
