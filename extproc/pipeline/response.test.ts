import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { Limits } from '../config/contract.js';
import { SluiceError } from '../errors.js';
import { CONTINUE, type Mutation, type Outcome } from './mutation.js';
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

describe('response: replies the data plane generated', () => {
  const details = (v: string) => ({
    'envoy.filters.http.ext_proc': { fields: { 'response.code_details': { stringValue: v } } },
  });
  const envoy503 = new Map([
    [':status', '503'],
    ['content-type', 'text/plain'],
    ['content-length', '91'],
  ]);
  const TLS =
    'upstream_reset_before_response_started{connection_failure,TLS_error:CERTIFICATE_VERIFY_FAILED}';

  it('a local reply becomes our error; the detail is kept for the access log only', () => {
    const p = new ResponseProcessor(req(), limits, () => 0, 0);
    assert.throws(
      () => p.headers(envoy503, false, details(TLS)),
      (e: unknown) =>
        e instanceof SluiceError &&
        e.code === 'upstream_unavailable' &&
        e.status === 503 &&
        !e.message.includes('TLS') &&
        !e.message.includes('reset'),
    );
    const r = p.result();
    assert.deepEqual(r.localReply, { status: 503, details: TLS });
    assert.equal(r.usage, undefined);
  });

  it('an upstream timeout becomes 504 upstream_timeout, also when the reply has no body', () => {
    const p = new ResponseProcessor(req(), limits, () => 0, 0);
    assert.throws(
      () => p.headers(new Map([[':status', '504']]), true, details('response_timeout')),
      (e: unknown) => e instanceof SluiceError && e.code === 'upstream_timeout' && e.status === 504,
    );
  });

  it("a backend's own error goes on untouched, body and all", async () => {
    const body = Buffer.from(JSON.stringify({ error: { message: 'overloaded', code: 'x' } }));
    for (const status of ['429', '500', '503']) {
      const p = new ResponseProcessor(req({ stream: false }), limits, () => 0, 0);
      const h = new Map([
        [':status', status],
        ['content-type', 'application/json'],
      ]);
      const m = mutationOf(p.headers(h, false, details('via_upstream')));
      assert.deepEqual(m?.setHeaders, [['x-sluice-request-id', 'r1']]);
      assert.deepEqual(m?.removeHeaders, []);
      assert.equal(await p.body(body, true, true), CONTINUE);
      assert.equal(p.result().localReply, undefined);
    }
  });

  it('the upstream phase refused the last attempt: its refusal says why, not the timeout', () => {
    const refusal = new SluiceError('unsupported_backend', 'Cannot send that there.');
    for (const [status, why] of [
      ['504', 'upstream_per_try_timeout'],
      ['504', 'response_timeout'],
      ['500', 'ext_proc_error_gRPC_error_13{x}'],
    ] as const) {
      const p = new ResponseProcessor(req({ refusal }), limits, () => 0, 0);
      assert.throws(
        () => p.headers(new Map([[':status', status]]), true, details(why)),
        (e: unknown) => e === refusal,
      );
      assert.deepEqual(p.result().localReply, { status: Number(status), details: why });
    }
    // A backend's own answer cannot have come from a refused attempt: it goes on as it came.
    const ok = new ResponseProcessor(req({ refusal, stream: false }), limits, () => 0, 0);
    const h = new Map([
      [':status', '200'],
      ['content-type', 'application/json'],
    ]);
    assert.equal(ok.headers(h, false, details('via_upstream')).kind, 'continue');
  });

  it('without the attribute (not requested) nothing is rewritten', () => {
    const p = new ResponseProcessor(req(), limits, () => 0, 0);
    assert.equal(p.headers(envoy503, false, undefined).kind, 'continue');
    assert.equal(p.result().localReply, undefined);
  });
});
