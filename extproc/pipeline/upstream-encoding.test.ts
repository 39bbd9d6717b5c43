import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { ExtprocConfig } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import type { Mutation, Outcome } from '../wire/mutation.js';
import { RequestStore, type RequestState } from './request-store.js';
import { UpstreamExchange } from './upstream.js';
import {
  body,
  clusterAttributes,
  headers,
  jsonOf,
  verdictOf,
} from '../../test/support/messages.js';

const LIMIT = 64 * 1024;

const config = new RuntimeConfig(
  ExtprocConfig.parse({
    apiVersion: 'sluice.dev/extproc/v1',
    kind: 'ExtprocConfig',
    limits: { maxResponseBodyBytes: LIMIT },
    backends: [
      {
        name: 'claude',
        cluster: 'c-claude',
        provider: 'anthropic',
        credential: { value: 'x' },
        modelOverride: 'claude-x-1',
      },
    ],
    routes: [{ name: 'r', models: [{ prefix: 'gpt' }], backends: [{ name: 'claude' }] }],
  }),
  new Map([['claude', 'sk-ant-secret']]),
);

function state(stream: boolean): RequestState {
  const b = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream };
  return {
    id: 'req-1',
    api: 'openai',
    operation: 'chat',
    model: 'gpt-4o-mini',
    routeName: 'r',
    body: b,
    rawBody: Buffer.from(JSON.stringify(b)),
    stream,
    forcedUsage: false,
    attempts: [],
    createdAt: 0,
  };
}

/** An OpenAI caller's attempt on the Anthropic backend: translated both ways. */
function attempt(stream = false): { ex: UpstreamExchange; sent: Mutation } {
  const store = new RequestStore(() => 0);
  store.put(state(stream));
  const ex = new UpstreamExchange({ config, store });
  const o = ex.requestHeaders(
    headers({
      ':method': 'POST',
      ':path': '/v1/chat/completions',
      'x-sluice-request-id': 'req-1',
      'content-type': 'application/json',
      'accept-encoding': 'gzip, br',
    }),
    clusterAttributes('c-claude'),
  ) as Outcome;
  assert.equal(o.kind, 'continue');
  return { ex, sent: (o as { mutation: Mutation }).mutation };
}

async function step(ex: UpstreamExchange, f: () => Outcome | Promise<Outcome>): Promise<Outcome> {
  try {
    return await f();
  } catch (err) {
    return ex.fail(err);
  }
}

const ANSWER = {
  id: 'msg_1',
  type: 'message',
  role: 'assistant',
  model: 'claude-x-1',
  content: [{ type: 'text', text: 'Hello there' }],
  stop_reason: 'end_turn',
  usage: { input_tokens: 3, output_tokens: 2 },
};

describe('upstream phase: a compressed answer to a translated attempt', () => {
  it('asks the backend for identity, whatever the caller accepts', () => {
    const { sent } = attempt();
    assert.deepEqual(
      sent.setHeaders?.filter(([k]) => k === 'accept-encoding'),
      [['accept-encoding', 'identity']],
    );
  });

  for (const [name, enc] of [
    ['gzip', gzipSync],
    ['deflate', deflateSync],
    ['br', brotliCompressSync],
  ] as const) {
    it(`decodes ${name} before translating, and says the answer is no longer encoded`, async () => {
      const { ex } = attempt();
      const raw = enc(Buffer.from(JSON.stringify(ANSWER)));
      const h = await step(ex, () =>
        ex.responseHeaders(
          headers({
            ':status': '200',
            'content-type': 'application/json',
            'content-encoding': name,
            'content-length': String(raw.length),
          }),
        ),
      );
      assert.equal(h.kind, 'continue');
      const hm = (h as { mutation: Mutation }).mutation;
      assert.ok(hm.removeHeaders?.includes('content-encoding'), JSON.stringify(hm));
      const b = await step(ex, () => ex.responseBody(body(raw)));
      assert.equal(b.kind, 'continue', JSON.stringify(b));
      const bm = (b as { mutation: Mutation }).mutation;
      const out = JSON.parse(bm.body!.toString('utf8')) as {
        object: string;
        choices: [{ message: { content: string } }];
      };
      assert.equal(out.object, 'chat.completion');
      assert.equal(out.choices[0].message.content, 'Hello there');
      assert.deepEqual(bm.setHeaders, [['content-length', String(bm.body!.length)]]);
    });
  }

  it('decodes a gzip error answer into the caller’s error object', async () => {
    const { ex } = attempt();
    const raw = gzipSync(
      JSON.stringify({ type: 'error', error: { type: 'rate_limit_error', message: 'slow down' } }),
    );
    await step(ex, () =>
      ex.responseHeaders(
        headers({
          ':status': '429',
          'content-type': 'application/json',
          'content-encoding': 'gzip',
        }),
      ),
    );
    const b = (await step(ex, () => ex.responseBody(body(raw)))) as { mutation: Mutation };
    const out = JSON.parse(b.mutation.body!.toString('utf8')) as { error: { message: string } };
    assert.match(out.error.message, /slow down/);
  });

  it('stops a decompression bomb at maxResponseBodyBytes: 502 response_too_large, OpenAI format', async () => {
    const { ex } = attempt();
    const bomb = gzipSync(Buffer.alloc(LIMIT * 64, 0x20));
    assert.ok(bomb.length < LIMIT / 8);
    await step(ex, () =>
      ex.responseHeaders(
        headers({
          ':status': '200',
          'content-type': 'application/json',
          'content-encoding': 'gzip',
        }),
      ),
    );
    const v = verdictOf(await step(ex, () => ex.responseBody(body(bomb))));
    assert.equal(v.status, 502);
    assert.equal(jsonOf(v).error.code, 'response_too_large');
    assert.deepEqual(
      v.headers.find(([k]) => k === 'x-sluice-request-id'),
      ['x-sluice-request-id', 'req-1'],
    );
  });

  it('decodes a gzip stream chunk by chunk; the bound is per chunk, not the whole stream', async () => {
    const { ex } = attempt(true);
    const events = [
      { type: 'message_start', message: { ...ANSWER, content: [], stop_reason: null } },
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      ...Array.from({ length: 40 }, () => ({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'text_delta', text: 'x'.repeat(4000) },
      })),
      { type: 'content_block_stop', index: 0 },
      { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 9 } },
      { type: 'message_stop' },
    ];
    const sse = events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join('');
    // More than the limit in all: a stream may run long.
    assert.ok(sse.length > LIMIT * 2);
    const raw = gzipSync(sse);
    await step(ex, () =>
      ex.responseHeaders(
        headers({
          ':status': '200',
          'content-type': 'text/event-stream',
          'content-encoding': 'gzip',
        }),
      ),
    );
    let text = '';
    const cut = Math.ceil(raw.length / 7);
    for (let i = 0; i < raw.length; i += cut) {
      const last = i + cut >= raw.length;
      const o = await step(ex, () => ex.responseBody(body(raw.subarray(i, i + cut), last)));
      assert.equal(o.kind, 'continue', JSON.stringify(o).slice(0, 300));
      text += (o as { mutation: Mutation }).mutation.body?.toString('utf8') ?? '';
    }
    let content = '';
    for (const line of text.split('\n')) {
      if (!line.startsWith('data: {')) continue;
      const c = JSON.parse(line.slice(6)) as { choices: [{ delta?: { content?: string } }] };
      content += c.choices[0]?.delta?.content ?? '';
    }
    assert.equal(content, 'x'.repeat(4000 * 40));
  });

  it('an encoding it cannot decode is 502 bad_upstream_response', async () => {
    const { ex } = attempt();
    const v = verdictOf(
      await step(ex, () =>
        ex.responseHeaders(
          headers({
            ':status': '200',
            'content-type': 'application/json',
            'content-encoding': 'zstd',
          }),
        ),
      ),
    );
    assert.equal(v.status, 502);
    assert.equal(jsonOf(v).error.code, 'bad_upstream_response');
  });
});
