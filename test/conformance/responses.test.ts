import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import type { ExtProcFilter } from '../../operator/envoy-sim/ext-proc/index.js';
import {
  accessLines,
  chatHeaders,
  continued,
  get,
  sendRequest,
  startHarness,
  waitFor,
  type Harness,
} from './harness.js';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h.stop();
});

const SSE = [['content-type', 'text/event-stream']] as [string, string][];

function openaiChunk(content: string): string {
  return `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini-2024-07-18', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
}
function usageChunk(prompt: number, completion: number): string {
  return `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini-2024-07-18', choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } })}\n\n`;
}

async function routed(
  body: object,
  path = '/v1/chat/completions',
  cluster = 'sluice/backend/openai',
): Promise<ExtProcFilter> {
  const { router, routed: r } = await sendRequest(h, chatHeaders([], path), body, cluster);
  continued(r);
  return router;
}

/** Cuts `bytes` into pieces at pseudo-random places, many of them inside characters and tokens. */
function cutAnywhere(bytes: Buffer, pieces: number, seed: number): Buffer[] {
  const cuts = new Set<number>();
  let x = seed;
  while (cuts.size < pieces - 1) {
    x = (x * 1103515245 + 12345) % 2147483648;
    cuts.add(1 + (x % (bytes.length - 1)));
  }
  const sorted = [...cuts].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...sorted, bytes.length]) {
    out.push(bytes.subarray(at, c));
    at = c;
  }
  return out;
}

async function stream(
  router: ExtProcFilter,
  chunks: Buffer[],
): Promise<{ text: string; releases: number }> {
  const s = router.streamResponse([[':status', '200'], ...SSE]);
  const headers = await s.headers;
  assert.ok(Array.isArray(headers), 'the response headers continue');
  let releases = 0;
  const received: Buffer[] = [];
  const reading = (async () => {
    for await (const c of s) {
      releases++;
      received.push(c.data);
    }
  })();
  for (const c of chunks.slice(0, -1)) s.write(c);
  s.end(chunks.at(-1));
  await reading;
  const result = await s.result;
  assert.equal(result.kind, 'continue');
  assert.deepEqual(router.violations, []);
  return { text: Buffer.concat(received).toString('utf8'), releases };
}

describe('conformance: streamed responses', () => {
  const content = ['Bonjour', ' le ', 'mönde 🌍', ' — ', 'ça va', '?'];
  const body = content.map(openaiChunk).join('') + usageChunk(21, 9) + 'data: [DONE]\n\n';

  it('removes the forced usage chunk across 150+ chunks cut inside characters, tokens and events', async () => {
    for (const seed of [1, 2, 3]) {
      const router = await routed({
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      });
      const bytes = Buffer.from(body.repeat(1));
      const chunks = cutAnywhere(bytes, Math.min(160, bytes.length - 1), seed);
      assert.ok(chunks.length >= 150);
      const { text } = await stream(router, chunks);
      assert.equal(
        text,
        body.replace(usageChunk(21, 9), ''),
        'the client sees exactly what it would without the gateway',
      );
    }
    await waitFor(() => accessLines(h).filter((l) => l.stream).length >= 3);
    const line = accessLines(h)
      .filter((l) => l.stream)
      .at(-1)!;
    assert.deepEqual(line.tokens, {
      input: 21,
      output: 9,
      cached_input: 0,
      reasoning: 0,
      total: 30,
      estimated: false,
    });
    assert.equal(line.response_model, 'gpt-4o-mini-2024-07-18');
    assert.equal(typeof line.ttft_ms, 'number');
  });

  it('passes a stream through byte for byte when the client asked for usage itself', async () => {
    const router = await routed({
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { include_usage: true },
      messages: [],
    });
    const chunks = cutAnywhere(Buffer.from(body), 40, 7);
    const { text } = await stream(router, chunks);
    assert.equal(text, body);
  });

  it('reads Anthropic stream usage split anywhere', async () => {
    const events = [
      [
        'message_start',
        {
          type: 'message_start',
          message: {
            id: 'msg_1',
            type: 'message',
            role: 'assistant',
            model: 'claude-sonnet-4-5-20250929',
            content: [],
            usage: { input_tokens: 25, output_tokens: 1 },
          },
        },
      ],
      [
        'content_block_start',
        { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      ],
      ['ping', { type: 'ping' }],
      [
        'content_block_delta',
        { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Grüße' } },
      ],
      ['content_block_stop', { type: 'content_block_stop', index: 0 }],
      [
        'message_delta',
        { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 15 } },
      ],
      ['message_stop', { type: 'message_stop' }],
    ] as const;
    const text = events.map(([e, d]) => `event: ${e}\ndata: ${JSON.stringify(d)}\n\n`).join('');
    const router = await routed(
      { model: 'claude-sonnet-4-5', max_tokens: 100, stream: true, messages: [] },
      '/v1/messages',
      'sluice/backend/anthropic',
    );
    const { text: out } = await stream(router, cutAnywhere(Buffer.from(text), 50, 11));
    assert.equal(out, text);
    await waitFor(() => accessLines(h).some((l) => l.api === 'anthropic' && l.tokens));
    const line = accessLines(h)
      .filter((l) => l.api === 'anthropic' && l.tokens)
      .at(-1)!;
    assert.equal(line.tokens.input, 25);
    assert.equal(line.tokens.output, 15);
  });

  it('reconciles usage when the client aborts mid-stream, and keeps nothing afterwards', async () => {
    const router = await routed({
      model: 'gpt-4o-mini',
      stream: true,
      messages: [{ role: 'user', content: 'Tell me a story' }],
    });
    const s = router.streamResponse([[':status', '200'], ...SSE]);
    await s.headers;
    s.write(Buffer.from(openaiChunk('Once upon') + openaiChunk(' a time')));
    const it = s[Symbol.asyncIterator]();
    await it.next();
    const before = accessLines(h).length;
    router.close();
    await waitFor(() => accessLines(h).length === before + 1);
    const line = accessLines(h).at(-1)!;
    assert.equal(line.outcome, 'aborted');
    assert.equal(line.tokens.estimated, true);
    assert.ok(line.tokens.output >= 2);
    await waitFor(() => h.ext.pendingRequests === 0 && h.ext.activeStreams === 0);
  });
});

describe('conformance: buffered responses', () => {
  const completion = {
    id: 'chatcmpl-2',
    object: 'chat.completion',
    model: 'gpt-4o-mini-2024-07-18',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hi!' }, finish_reason: 'stop' }],
    usage: {
      prompt_tokens: 11,
      completion_tokens: 2,
      total_tokens: 13,
      prompt_tokens_details: { cached_tokens: 8 },
      completion_tokens_details: { reasoning_tokens: 0 },
    },
  };

  it('keeps a JSON body and its content-length as they are, reading usage', async () => {
    const router = await routed({ model: 'gpt-4o-mini', messages: [] });
    const bytes = Buffer.from(JSON.stringify(completion));
    const r = continued(
      await router.runResponse(
        [
          [':status', '200'],
          ['content-type', 'application/json'],
          ['content-length', String(bytes.length)],
        ],
        [bytes],
      ),
    );
    assert.deepEqual(r.violations, []);
    assert.deepEqual(r.body, bytes);
    assert.equal(get(r.headers, 'content-length'), String(bytes.length));
    assert.match(get(r.headers, 'x-sluice-request-id') ?? '', /^[0-9a-f-]{36}$/);
    await waitFor(() => accessLines(h).some((l) => l.tokens?.cached_input === 8));
  });

  it('decodes a gzip body, keeping content-length consistent, as Envoy checks', async () => {
    const router = await routed({ model: 'gpt-4o-mini', messages: [] });
    const gz = gzipSync(Buffer.from(JSON.stringify(completion)));
    const r = continued(
      await router.runResponse(
        [
          [':status', '200'],
          ['content-type', 'application/json'],
          ['content-encoding', 'gzip'],
          ['content-length', String(gz.length)],
        ],
        [gz.subarray(0, 20), gz.subarray(20)],
      ),
    );
    assert.deepEqual(r.violations, []);
    assert.equal(get(r.headers, 'content-encoding'), undefined);
    assert.deepEqual(JSON.parse(r.body.toString()), completion);
  });

  it('passes provider errors through untouched', async () => {
    const router = await routed({ model: 'gpt-4o-mini', messages: [] });
    const err = Buffer.from(
      JSON.stringify({
        error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' },
      }),
    );
    const r = continued(
      await router.runResponse(
        [
          [':status', '429'],
          ['content-type', 'application/json'],
          ['retry-after', '3'],
        ],
        [err],
      ),
    );
    assert.deepEqual(r.body, err);
    assert.equal(get(r.headers, 'retry-after'), '3');
  });

  it('handles responses with trailers and with no body', async () => {
    const a = await routed({ model: 'gpt-4o-mini', messages: [] });
    const r = continued(
      await a.runResponse(
        [
          [':status', '200'],
          ['content-type', 'application/json'],
        ],
        [Buffer.from(JSON.stringify(completion))],
        [['grpc-status', '0']],
      ),
    );
    assert.deepEqual(r.violations, []);
    const b = await routed({ model: 'gpt-4o-mini', messages: [] });
    const e = continued(await b.runResponse([[':status', '204']], []));
    assert.deepEqual(e.violations, []);
  });
});
