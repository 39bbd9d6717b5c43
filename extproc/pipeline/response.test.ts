import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { Limits } from '../config/contract.js';
import { CONTINUE, type Mutation, type Outcome } from '../wire/mutation.js';
import type { RequestState } from './request-store.js';
import { ResponseProcessor } from './response.js';

const limits = Limits.parse({});

function req(over: Partial<RequestState> = {}): RequestState {
  const body = {
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Say hello to the world please' }],
    stream: true,
  };
  return {
    id: 'r1',
    api: 'openai',
    operation: 'chat',
    model: 'gpt-4o-mini',
    routeName: 'r',
    body,
    rawBody: Buffer.from(JSON.stringify(body)),
    stream: true,
    forcedUsage: false,
    attempts: [],
    createdAt: 0,
    ...over,
  };
}

const sseHeaders = new Map([
  [':status', '200'],
  ['content-type', 'text/event-stream; charset=utf-8'],
]);

function chunk(content: string): string {
  return `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', model: 'gpt-4o-mini-2024', choices: [{ index: 0, delta: { content } }] })}\n\n`;
}
const USAGE_CHUNK = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', model: 'gpt-4o-mini-2024', choices: [], usage: { prompt_tokens: 12, completion_tokens: 4, total_tokens: 16 } })}\n\n`;
const STREAM = chunk('Hel') + chunk('lo ') + chunk('wörld') + USAGE_CHUNK + 'data: [DONE]\n\n';

function mutationOf(o: Outcome): Mutation | undefined {
  assert.equal(o.kind, 'continue');
  return o.kind === 'continue' ? o.mutation : undefined;
}

/** Feeds `bytes` cut at the given offsets; returns what the client receives. */
async function feed(p: ResponseProcessor, bytes: Buffer, cuts: number[]): Promise<Buffer> {
  const out: Buffer[] = [];
  let at = 0;
  const ends = [...cuts, bytes.length];
  for (let i = 0; i < ends.length; i++) {
    const piece = bytes.subarray(at, ends[i]);
    at = ends[i]!;
    const m = mutationOf(await p.body(piece, i === ends.length - 1));
    out.push(m?.body ?? piece);
  }
  return Buffer.concat(out);
}

describe('response: streams', () => {
  it('switches SSE to STREAMED, restating both body modes, and drops content-length', () => {
    const p = new ResponseProcessor(req(), limits, () => 0, 0);
    const m = mutationOf(p.headers(sseHeaders, false));
    assert.deepEqual(m?.modeOverride, { requestBody: 'BUFFERED', responseBody: 'STREAMED' });
    assert.ok(m?.removeHeaders?.includes('content-length'));
    assert.deepEqual(m?.setHeaders, [['x-sluice-request-id', 'r1']]);
  });

  it('passes a stream through unchanged and reads its usage, split anywhere', async () => {
    const bytes = Buffer.from(STREAM);
    for (let cut = 1; cut < bytes.length; cut += 7) {
      const p = new ResponseProcessor(req(), limits, () => 5, 0);
      p.headers(sseHeaders, false);
      const out = await feed(p, bytes, [cut]);
      assert.equal(out.toString(), STREAM);
      const r = p.result();
      assert.equal(r.usage?.inputTokens, 12);
      assert.equal(r.usage?.outputTokens, 4);
      assert.equal(r.usage?.estimated, false);
      assert.equal(r.model, 'gpt-4o-mini-2024');
    }
  });

  it('removes exactly the usage chunk it forced, wherever the stream is cut', async () => {
    const bytes = Buffer.from(STREAM);
    const expected = STREAM.replace(USAGE_CHUNK, '');
    for (let a = 1; a < bytes.length - 1; a += 5) {
      const b = Math.min(bytes.length - 1, a + 1 + ((a * 13) % 40));
      const p = new ResponseProcessor(req({ forcedUsage: true }), limits, () => 0, 0);
      p.headers(sseHeaders, false);
      const out = await feed(p, bytes, [a, b]);
      assert.equal(out.toString(), expected, `cut at ${a},${b}`);
      assert.equal(p.result().usage?.outputTokens, 4);
    }
  });

  it('estimates usage, marked as such, when a stream carries none', async () => {
    const text = chunk('Hello there, how are you today?') + 'data: [DONE]\n\n';
    const p = new ResponseProcessor(req(), limits, () => 0, 0);
    p.headers(sseHeaders, false);
    await feed(p, Buffer.from(text), []);
    const u = p.result().usage!;
    assert.equal(u.estimated, true);
    assert.ok(u.inputTokens > 3 && u.outputTokens > 3, JSON.stringify(u));
  });

  it('decodes a gzip stream, says so in the headers, and still reads usage', async () => {
    const p = new ResponseProcessor(req(), limits, () => 0, 0);
    const m = mutationOf(p.headers(new Map([...sseHeaders, ['content-encoding', 'gzip']]), false));
    assert.ok(m?.removeHeaders?.includes('content-encoding'));
    const gz = gzipSync(Buffer.from(STREAM));
    const out = await feed(p, gz, [10, 30, 31]);
    assert.equal(out.toString(), STREAM);
    assert.equal(p.result().usage?.totalTokens, 16);
  });

  it('records time to first byte at the first body bytes', async () => {
    let t = 0;
    const p = new ResponseProcessor(req(), limits, () => t, 0);
    p.headers(sseHeaders, false);
    t = 40;
    await p.body(Buffer.from(chunk('a')), false);
    t = 90;
    await p.body(Buffer.from('data: [DONE]\n\n'), true);
    assert.equal(p.result().ttftMs, 40);
  });
});

describe('response: JSON', () => {
  const json = {
    id: 'x',
    object: 'chat.completion',
    model: 'gpt-4o-mini-2024',
    choices: [],
    usage: {
      prompt_tokens: 9,
      completion_tokens: 2,
      total_tokens: 11,
      prompt_tokens_details: { cached_tokens: 4 },
    },
  };

  it('reads usage from a buffered body without changing it', async () => {
    const p = new ResponseProcessor(req({ stream: false }), limits, () => 0, 0);
    const m = mutationOf(
      p.headers(
        new Map([
          [':status', '200'],
          ['content-type', 'application/json'],
          // A declared length that fits the buffer keeps the configured BUFFERED mode.
          ['content-length', String(Buffer.byteLength(JSON.stringify(json)))],
        ]),
        false,
      ),
    );
    assert.equal(m?.modeOverride, undefined);
    const o = await p.body(Buffer.from(JSON.stringify(json)), true);
    assert.equal(mutationOf(o), undefined);
    assert.equal(p.result().usage?.cachedInputTokens, 4);
  });

  it('decodes a gzip JSON body and replaces it with the plain bytes', async () => {
    const p = new ResponseProcessor(req({ stream: false }), limits, () => 0, 0);
    const m = mutationOf(
      p.headers(
        new Map([
          [':status', '200'],
          ['content-type', 'application/json'],
          ['content-encoding', 'gzip'],
          ['content-length', '99'],
        ]),
        false,
      ),
    );
    assert.deepEqual(m?.removeHeaders, ['content-encoding', 'content-length']);
    const o = mutationOf(await p.body(gzipSync(Buffer.from(JSON.stringify(json))), true));
    assert.deepEqual(JSON.parse(o!.body!.toString()), json);
    assert.equal(p.result().usage?.inputTokens, 9);
  });

  it('leaves error responses and unknown encodings alone', async () => {
    const err = new ResponseProcessor(req(), limits, () => 0, 0);
    mutationOf(
      err.headers(
        new Map([
          [':status', '429'],
          ['content-type', 'application/json'],
          ['content-encoding', 'gzip'],
        ]),
        false,
      ),
    );
    assert.equal(mutationOf(await err.body(Buffer.from('x'), true)), undefined);
    assert.equal(err.result().usage, undefined);
    const z = new ResponseProcessor(req({ stream: false }), limits, () => 0, 0);
    const m = mutationOf(
      z.headers(
        new Map([
          [':status', '200'],
          ['content-type', 'application/json'],
          ['content-encoding', 'zstd'],
        ]),
        false,
      ),
    );
    assert.ok(!m?.removeHeaders?.includes('content-encoding'));
    assert.equal(mutationOf(await z.body(Buffer.from([1, 2, 3]), true)), undefined);
    assert.equal(z.result().usage?.estimated, true);
  });
});

describe('response: error responses go on as they came', () => {
  it("a backend's own error, body and all", async () => {
    const body = Buffer.from(JSON.stringify({ error: { message: 'overloaded', code: 'x' } }));
    for (const status of ['429', '500', '503']) {
      const p = new ResponseProcessor(req({ stream: false }), limits, () => 0, 0);
      const h = new Map([
        [':status', status],
        ['content-type', 'application/json'],
      ]);
      const m = mutationOf(p.headers(h, false));
      assert.deepEqual(m?.setHeaders, [['x-sluice-request-id', 'r1']]);
      assert.deepEqual(m?.removeHeaders, []);
      assert.equal(await p.body(body, true, true), CONTINUE);
      assert.equal(p.result().usage, undefined);
    }
  });

  it('a local reply of the upstream filter chain (Envoy 1.37+): already in the caller’s format', async () => {
    // The upstream phase's refusal, or Envoy's reply shaped by local_reply_config: never rewritten.
    const body = Buffer.from(
      JSON.stringify({
        error: { message: 'x', type: 'server_error', code: 'extproc_unavailable' },
      }),
    );
    const p = new ResponseProcessor(req({ stream: false }), limits, () => 0, 0);
    const h = new Map([
      [':status', '504'],
      ['content-type', 'application/json'],
      ['x-sluice-error-code', 'extproc_unavailable'],
    ]);
    assert.equal(p.headers(h, false).kind, 'continue');
    assert.equal(await p.body(body, true, true), CONTINUE);
  });
});
