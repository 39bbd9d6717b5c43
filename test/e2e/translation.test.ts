// One API to every model, through `sluice run` from YAML: callers written against one SDK reach a
// backend that speaks the other API, and get answers in their own format.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import type Anthropic from '@anthropic-ai/sdk';
import OpenAIClass from 'openai';
import type OpenAI from 'openai';
import { servesApi } from '../../extproc/providers/index.js';
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

type Provider = 'openai' | 'anthropic';

/** A port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function backend(name: string, provider: Provider, service: string, priority = 0): unknown {
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
      timeout: '30s',
      retry: { attempts: 2, retryOn: ['5xx', 'rate-limited', 'reset', 'connect-failure'] },
    },
  };
}

describe('e2e: translation between the OpenAI and Anthropic APIs', () => {
  let g: YamlGateway;
  let openaiMock: MockProvider;
  let anthropicMock: MockProvider;
  let openai: OpenAI;
  let anthropic: Anthropic;
  let closedPort: number;

  before(async () => {
    closedPort = await freePort();
    openaiMock = await startMockProvider({ name: 'openai-mock', auth: { bearer: KEYS.primary } });
    anthropicMock = await startMockProvider({
      name: 'anthropic-mock',
      auth: { anthropicKey: KEYS.anthropic },
    });
    g = await startYamlGateway([
      route('claude', 'claude-x', [backend('anthropic', 'anthropic', 'anthropic-mock')]),
      route('gpt', 'gpt-x', [backend('openai', 'openai', 'openai-mock')]),
      // Fallback across APIs: the primary speaks one API, the next priority the other.
      route('gpt-first', 'gpt-first', [
        backend('openai', 'openai', 'openai-mock'),
        backend('anthropic', 'anthropic', 'anthropic-mock', 1),
      ]),
      route('claude-first', 'claude-first', [
        backend('anthropic', 'anthropic', 'anthropic-mock'),
        backend('openai', 'openai', 'openai-mock', 1),
      ]),
      route('down-first', 'down-first', [
        backend('down', 'openai', 'nothing-listens'),
        backend('anthropic', 'anthropic', 'anthropic-mock', 1),
      ]),
      route('flaky-first', 'flaky-first', [
        backend('openai', 'openai', 'openai-mock'),
        backend('anthropic', 'anthropic', 'anthropic-mock', 1),
      ]),
      // A model on a Vertex backend: listed only to callers whose API a translator carries there.
      route('gemini', 'gemini-x', [
        {
          name: 'vertex',
          provider: 'gcp-vertex',
          endpoint: { url: 'https://us-central1-aiplatform.googleapis.com' },
          gcp: { project: 'sluice-e2e', region: 'us-central1' },
        },
      ]),
      ...serviceDocs('nothing-listens', closedPort),
      ...serviceDocs('openai-mock', openaiMock.port),
      ...serviceDocs('anthropic-mock', anthropicMock.port),
      secretDoc('openai', KEYS.primary),
      secretDoc('anthropic', KEYS.anthropic),
    ]);
    ({ openai, anthropic } = sdkClients(g.gateway.url));
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

  it('openai SDK → Anthropic backend: a plain chat completion', async () => {
    anthropicMock.enqueue({ content: 'bonjour', usage: { input: 7, output: 3 } });
    const r = await openai.chat.completions.create({
      model: 'claude-x',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hello' },
      ],
    });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0]!.message.content, 'bonjour');
    assert.equal(r.choices[0]!.finish_reason, 'stop');
    assert.deepEqual({ p: r.usage?.prompt_tokens, c: r.usage?.completion_tokens }, { p: 7, c: 3 });
    const [seen] = anthropicMock.take();
    assert.equal(seen?.path, '/v1/messages');
    assert.deepEqual(seen?.json?.['system'], [{ type: 'text', text: 'be brief' }]);
    assert.equal(seen?.json?.['max_tokens'], 4096);
  });

  it('openai SDK → Anthropic backend: streaming, usage once', async () => {
    anthropicMock.enqueue({ content: 'one two three', usage: { input: 5, output: 3 } });
    const stream = await openai.chat.completions.create({
      model: 'claude-x',
      messages: [{ role: 'user', content: 'count' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined;
    let finish: string | null = null;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
      if (c.usage) usage = c.usage;
    }
    assert.equal(text, 'one two three');
    assert.equal(finish, 'stop');
    assert.equal(usage?.completion_tokens, 3);
    assert.equal(usage?.prompt_tokens, 5);
  });

  it('anthropic SDK → OpenAI backend: a plain message', async () => {
    openaiMock.enqueue({ content: 'hola', usage: { input: 9, output: 2 } });
    const m = await anthropic.messages.create({
      model: 'gpt-x',
      max_tokens: 64,
      system: 'be brief',
      messages: [{ role: 'user', content: 'hello' }],
    });
    assert.equal(m.type, 'message');
    assert.deepEqual(m.content, [{ type: 'text', text: 'hola' }]);
    assert.equal(m.stop_reason, 'end_turn');
    assert.equal(m.usage.input_tokens, 9);
    assert.equal(m.usage.output_tokens, 2);
    const [seen] = openaiMock.take();
    assert.equal(seen?.path, '/v1/chat/completions');
    assert.equal(seen?.headers['authorization'], `Bearer ${KEYS.primary}`);
    assert.deepEqual(seen?.json?.['messages'], [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hello' },
    ]);
  });

  it('anthropic SDK → OpenAI backend: streaming with usage', async () => {
    openaiMock.enqueue({ content: 'uno dos tres', usage: { input: 4, output: 3 } });
    const stream = anthropic.messages.stream({
      model: 'gpt-x',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'count' }],
    });
    let text = '';
    stream.on('text', (t) => (text += t));
    const final = await stream.finalMessage();
    assert.equal(text, 'uno dos tres');
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(final.usage.output_tokens, 3);
    assert.equal(final.usage.input_tokens, 4);
  });

  it('fallback: OpenAI primary answers 500, the Anthropic fallback serves the OpenAI caller', async () => {
    openaiMock.enqueue({ status: 500 });
    anthropicMock.enqueue({ content: 'from claude', usage: { input: 6, output: 2 } });
    const r = await openai.chat.completions
      .create({ model: 'gpt-first', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    assert.equal(r.data.choices[0]!.message.content, 'from claude');
    assert.equal(r.data.usage?.completion_tokens, 2);
    assert.equal(openaiMock.take().length, 1);
    assert.equal(anthropicMock.take().length, 1);
    const id = r.response.headers.get('x-sluice-request-id');
    const line = await until(() => g.accessLog.find((l) => l['request_id'] === id));
    assert.equal(line['attempts'], 2);
    assert.equal(line['provider'], 'anthropic');
    assert.equal(line['status'], 200);
  });

  it('fallback, streaming: Anthropic primary answers 429, the OpenAI fallback streams to the Anthropic caller', async () => {
    anthropicMock.enqueue({ status: 429 });
    openaiMock.enqueue({ content: 'from gpt in pieces', usage: { input: 3, output: 4 } });
    const stream = anthropic.messages.stream({
      model: 'claude-first',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const final = await stream.finalMessage();
    assert.deepEqual(final.content, [{ type: 'text', text: 'from gpt in pieces' }]);
    assert.equal(final.usage.output_tokens, 4);
    assert.equal(anthropicMock.take().length, 1);
    const [sent] = openaiMock.take();
    assert.equal(
      (sent?.json?.['stream_options'] as { include_usage?: boolean }).include_usage,
      true,
    );
  });

  it('fallback: a primary that refuses connections, the next priority in the other API serves', async () => {
    anthropicMock.enqueue({ content: 'still here' });
    const stream = await openai.chat.completions.create({
      model: 'down-first',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
    assert.equal(text, 'still here');
  });

  it('a translated error reaches the caller in its own format when no fallback is left', async () => {
    anthropicMock.enqueue({ status: 400 });
    const e = await openai.chat.completions
      .create({ model: 'claude-x', messages: [{ role: 'user', content: 'x' }] })
      .then(
        () => assert.fail('no error'),
        (err: unknown) => err,
      );
    assert.ok(e instanceof OpenAIClass.APIError, String(e));
    assert.equal(e.status, 400);
    assert.equal((e.error as { message?: string }).message, 'mock failure 400');
    assert.equal((e.error as { type?: string }).type, 'invalid_request_error');
  });

  it('a field the backend cannot take is a 400 in the caller’s format, naming it', async () => {
    const e = await openai.chat.completions
      .create({ model: 'claude-x', messages: [{ role: 'user', content: 'x' }], n: 3 })
      .then(
        () => assert.fail('no error'),
        (err: unknown) => err,
      );
    assert.ok(e instanceof OpenAIClass.APIError, String(e));
    assert.equal(e.status, 400);
    assert.equal((e.error as { param?: string }).param, 'n');
    assert.equal((e.error as { code?: string }).code, 'unsupported_field');
    assert.deepEqual(anthropicMock.take(), [], 'nothing reached the backend');
  });

  it('/v1/models lists every model the caller can use, whatever its backend’s API', async () => {
    const o = (await openai.models.list()).data.map((m) => m.id);
    const a = (await anthropic.models.list()).data.map((m) => m.id);
    for (const [ids, api] of [
      [o, 'openai'],
      [a, 'anthropic'],
    ] as const) {
      assert.ok(ids.includes('claude-x') && ids.includes('gpt-x'), ids.join());
      // Listed exactly when a translator reaches Vertex from this API (issue 15 adds them).
      assert.equal(
        ids.includes('gemini-x'),
        servesApi(api, { provider: 'gcp-vertex' }),
        ids.join(),
      );
    }
  });

  it('passive health: a primary that keeps failing stops getting first attempts', async () => {
    const ask = () =>
      openai.chat.completions.create({
        model: 'flaky-first',
        messages: [{ role: 'user', content: 'hi' }],
      });
    // Three gateway errors in a row eject the OpenAI host of this route's cluster; each request
    // is still served, by the Anthropic fallback.
    for (let i = 0; i < 3; i++) {
      openaiMock.enqueue({ status: 503 });
      anthropicMock.enqueue({ content: `fallback ${i}` });
      const r = await ask();
      assert.equal(r.choices[0]!.message.content, `fallback ${i}`);
    }
    assert.equal(openaiMock.take().length, 3);
    anthropicMock.take();
    anthropicMock.enqueue({ content: 'first try' });
    const r = await ask();
    assert.equal(r.choices[0]!.message.content, 'first try');
    assert.deepEqual(openaiMock.take(), [], 'the ejected primary got no attempt');
    assert.equal(anthropicMock.take().length, 1);
  });

  // The matrix: each SDK against each backend API, plain, streaming, tools and image input.
  const IMAGE = 'iVBORw0KGgo=';
  for (const sdk of ['openai', 'anthropic'] as const) {
    for (const api of ['openai', 'anthropic'] as const) {
      const model = api === 'openai' ? 'gpt-x' : 'claude-x';
      const mock = (): MockProvider => (api === 'openai' ? openaiMock : anthropicMock);
      for (const mode of ['plain', 'streaming', 'tools', 'image'] as const) {
        it(`matrix: ${sdk} SDK → ${api} backend, ${mode}`, async () => {
          const tool = { name: 'lookup', arguments: { q: 'Zürich' } };
          mock().enqueue(
            mode === 'tools'
              ? { toolCall: tool, usage: { input: 5, output: 4 } }
              : { content: 'ok 😀', usage: { input: 5, output: 4 } },
          );
          const stream = mode !== 'plain';
          let text: string;
          let toolArgs: unknown;
          let outputTokens: number | undefined;
          if (sdk === 'openai') {
            const content: OpenAI.ChatCompletionContentPart[] | string =
              mode === 'image'
                ? [
                    { type: 'text', text: 'what is it?' },
                    { type: 'image_url', image_url: { url: `data:image/png;base64,${IMAGE}` } },
                  ]
                : 'hi';
            const params = {
              model,
              messages: [{ role: 'user' as const, content }],
              ...(mode === 'tools'
                ? {
                    tools: [
                      {
                        type: 'function' as const,
                        function: { name: 'lookup', parameters: { type: 'object' } },
                      },
                    ],
                  }
                : {}),
            };
            const done = stream
              ? await openai.chat.completions
                  .stream({ ...params, stream_options: { include_usage: true } })
                  .finalChatCompletion()
              : await openai.chat.completions.create(params);
            text = done.choices[0]!.message.content ?? '';
            const call = done.choices[0]!.message.tool_calls?.[0];
            if (call?.type === 'function') toolArgs = JSON.parse(call.function.arguments);
            outputTokens = done.usage?.completion_tokens;
          } else {
            const content: Anthropic.ContentBlockParam[] | string =
              mode === 'image'
                ? [
                    { type: 'text', text: 'what is it?' },
                    {
                      type: 'image',
                      source: { type: 'base64', media_type: 'image/png', data: IMAGE },
                    },
                  ]
                : 'hi';
            const params = {
              model,
              max_tokens: 64,
              messages: [{ role: 'user' as const, content }],
              ...(mode === 'tools'
                ? { tools: [{ name: 'lookup', input_schema: { type: 'object' as const } }] }
                : {}),
            };
            const m = stream
              ? await anthropic.messages.stream(params).finalMessage()
              : await anthropic.messages.create(params);
            text = m.content.map((b) => (b.type === 'text' ? b.text : '')).join('');
            const use = m.content.find((b) => b.type === 'tool_use');
            if (use?.type === 'tool_use') toolArgs = use.input;
            outputTokens = m.usage.output_tokens;
          }
          if (mode === 'tools') assert.deepEqual(toolArgs, tool.arguments);
          else assert.equal(text, 'ok 😀');
          assert.equal(outputTokens, 4);
          const [seen] = mock().take();
          assert.ok(seen, 'the backend got the request');
          assert.equal(seen.api, api, 'in its own API');
          if (mode === 'image') {
            const parts = JSON.stringify(seen.json?.['messages']);
            assert.ok(
              parts.includes(
                api === 'openai' ? `data:image/png;base64,${IMAGE}` : `"data":"${IMAGE}"`,
              ),
              'the image arrived in the backend API’s form',
            );
          }
          if (mode === 'tools') assert.ok(Array.isArray(seen.json?.['tools']));
        });
      }
    }
  }
});
