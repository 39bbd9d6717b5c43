import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FakeCall } from './fake-server.js';
import { passThrough } from './fake-server.js';
import { getHeader } from '../../operator/envoy-sim/ext-proc/headers.js';
import { ExtProcClient } from '../../operator/envoy-sim/ext-proc/client.js';
import { ExtProcFilter } from '../../operator/envoy-sim/ext-proc/filter.js';
import {
  cont,
  getHeaders,
  postHeaders,
  raw,
  sleep,
  waitFor,
  within,
  withServer,
} from './helpers.js';

const SSE = { processingMode: { responseBodyMode: 'STREAMED' } } as const;

/** Upper-cases the response body, holding back the last `hold` bytes until end of stream. */
function holdBackServer(hold: number) {
  return async (call: FakeCall): Promise<void> => {
    let carry = Buffer.alloc(0);
    for (;;) {
      const m = await call.next();
      if (!m) return;
      if (m.request !== 'response_body') {
        call.send(cont(m.request!));
        continue;
      }
      const b = m.response_body!;
      carry = Buffer.concat([carry, b.body ?? Buffer.alloc(0)]);
      const cut = b.end_of_stream ? carry.length : Math.max(0, carry.length - hold);
      const out = Buffer.from(carry.subarray(0, cut).toString('latin1').toUpperCase(), 'latin1');
      carry = carry.subarray(cut);
      // Every second answer is longer than its chunk: a marker the caller can count.
      call.send({ response_body: { response: { body_mutation: { body: out } } } });
    }
  };
}

test('STREAMED: 200 chunks, one answer each, in order, with length-changing replacements', async () => {
  await withServer(holdBackServer(7), async (h) => {
    // 200 answers in flight: the point is order and replacement, not latency (a loaded machine
    // stalls the process past the default 200 ms message timeout: a 504 instead).
    const f = h.filter({ ...SSE, messageTimeoutMs: 5000 });
    await f.runRequest(postHeaders(), [Buffer.from('{}')]);
    const chunks = Array.from({ length: 200 }, (_, i) => Buffer.from(`data: {"i":${i}}\n\n`));
    const s = f.streamResponse([
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ]);
    const released: Buffer[] = [];
    const reader = (async () => {
      for await (const c of s) released.push(c.data);
    })();
    for (const c of chunks) s.write(c);
    s.end();
    const r = await s.result;
    await reader;
    assert.equal(r.kind, 'continue', f.violations.join('; '));
    const expected = Buffer.concat([...chunks])
      .toString()
      .toUpperCase();
    assert.equal(r.body.toString(), expected);
    assert.equal(Buffer.concat(released).toString(), expected);
    assert.deepEqual(f.violations, []);
    const bodies = h.server.calls[0]!.received.filter((m) => m.request === 'response_body');
    assert.equal(bodies.length, 201, 'one message per chunk plus the empty end chunk');
    assert.equal(bodies.at(-1)!.response_body!.end_of_stream, true);
    assert.equal(f.timings.filter((t) => t.phase === 'response_body').length, 201);
  });
});

test('STREAMED: each processed chunk is released as soon as its answer arrives', async () => {
  await withServer(passThrough, async (h) => {
    const f = h.filter(SSE);
    await f.runRequest(postHeaders(), [Buffer.from('{}')]);
    const s = f.streamResponse([[':status', '200']]);
    const hdrs = await s.headers;
    assert.ok(Array.isArray(hdrs));
    const it = s[Symbol.asyncIterator]();
    s.write(Buffer.from('first'));
    const first = await it.next();
    assert.equal(first.value?.data.toString(), 'first', 'released before the stream ends');
    await sleep(10);
    s.write(Buffer.from('second'));
    assert.equal((await it.next()).value?.data.toString(), 'second');
    s.end(Buffer.from('last'));
    const last = await it.next();
    assert.equal(last.value?.endStream, true);
    assert.equal((await it.next()).done, true);
  });
});

test('STREAMED: body that arrived before the headers answer goes out as one message', async () => {
  await withServer(passThrough, async (h) => {
    const f = h.filter({ processingMode: { requestBodyMode: 'STREAMED' } });
    const r = await f.runRequest(postHeaders(), [Buffer.from('a'), Buffer.from('b')], undefined, {
      dataWithHeaders: true,
    });
    assert.equal(r.body.toString(), 'ab');
    const msgs = h.server.calls[0]!.received;
    assert.deepEqual(
      msgs.map((m) => m.request),
      ['request_headers', 'request_body'],
    );
    assert.equal(msgs[1]!.request_body!.body!.toString(), 'ab');
  });
});

test('STREAMED: header_mutation and clear_route_cache in a chunk answer come too late', async () => {
  await withServer(
    async (call) => {
      for (;;) {
        const m = await call.next();
        if (!m) return;
        if (m.request === 'request_body') {
          call.send({
            request_body: {
              response: {
                header_mutation: { set_headers: [raw('x-sluice-model', 'm')] },
                clear_route_cache: true,
              },
            },
          });
        } else call.send(cont(m.request!));
      }
    },
    async (h) => {
      const f = h.filter({ processingMode: { requestBodyMode: 'STREAMED' } });
      const r = await f.runRequest(postHeaders(), [Buffer.from('{}')]);
      assert.equal(r.kind === 'continue' && r.routeCacheCleared, false);
      assert.equal(r.kind === 'continue' && getHeader(r.headers, 'x-sluice-model'), undefined);
      assert.match(f.violations.join('\n'), /header_mutation in a STREAMED body answer/);
      assert.match(f.violations.join('\n'), /too late/);
    },
  );
});

test('STREAMED: server closes mid-body, the remaining chunks pass unprocessed', async () => {
  await withServer(
    async (call) => {
      let n = 0;
      for (;;) {
        const m = await call.next();
        if (!m) return;
        if (m.request === 'response_body') {
          n++;
          call.send({
            response_body: { response: { body_mutation: { body: Buffer.from(`<${n}>`) } } },
          });
          if (n === 2) {
            call.end();
            return;
          }
        } else call.send(cont(m.request!));
      }
    },
    async (h) => {
      const f = h.filter(SSE);
      await f.runRequest(postHeaders(), [Buffer.from('{}')]);
      const s = f.streamResponse([[':status', '200']]);
      for (const c of ['a', 'b', 'c', 'd']) {
        s.write(Buffer.from(c));
        await sleep(5);
      }
      s.end(Buffer.from('e'));
      const r = await s.result;
      assert.equal(r.kind === 'continue' && r.processorBypassed, true);
      // Chunks answered before the close are replaced; the rest pass as they came.
      assert.equal(r.body.toString(), '<1><2>cde');
      assert.deepEqual(f.violations, []);
    },
  );
});

test('STREAMED: gRPC error mid-body fails the response with status_on_error', async () => {
  const { grpc } = await import('./helpers.js');
  await withServer(
    async (call) => {
      for (;;) {
        const m = await call.next();
        if (!m) return;
        if (m.request === 'response_body') {
          call.fail(grpc.status.INTERNAL, 'crash');
          return;
        }
        call.send(cont(m.request!));
      }
    },
    async (h) => {
      const f = h.filter(SSE);
      await f.runRequest(postHeaders(), [Buffer.from('{}')]);
      const r = await f.runResponse([[':status', '200']], [Buffer.from('a'), Buffer.from('b')]);
      assert.equal(r.kind, 'local-reply');
      assert.equal(r.kind === 'local-reply' && r.responseStarted, true, 'Envoy would reset');
    },
  );
});

test('FULL_DUPLEX_STREAMED: chunks go out at once, streamed_response answers are released', async () => {
  await withServer(
    async (call) => {
      const bodies: Buffer[] = [];
      for (;;) {
        const m = await call.next();
        if (!m) return;
        if (m.request === 'request_headers') {
          call.send(cont('request_headers'));
        } else if (m.request === 'request_body') {
          bodies.push(m.request_body!.body ?? Buffer.alloc(0));
          if (m.request_body!.end_of_stream) {
            const all = Buffer.concat(bodies).toString();
            for (const part of [all.slice(0, 3), all.slice(3)]) {
              call.send({
                request_body: {
                  response: {
                    body_mutation: {
                      streamed_response: {
                        body: Buffer.from(part.toUpperCase()),
                        end_of_stream: part !== all.slice(0, 3),
                      },
                    },
                  },
                },
              });
            }
          }
        } else call.send(cont(m.request!));
      }
    },
    async (h) => {
      const f = h.filter({ processingMode: { requestBodyMode: 'FULL_DUPLEX_STREAMED' } });
      const r = await f.runRequest(
        postHeaders(),
        [Buffer.from('hello '), Buffer.from('world')],
        undefined,
        { dataWithHeaders: true },
      );
      assert.equal(r.kind === 'continue' && r.body.toString(), 'HELLO WORLD');
      assert.deepEqual(f.violations, []);
      const first = h.server.calls[0]!.received[0]!;
      assert.equal(first.protocol_config?.request_body_mode, 'FULL_DUPLEX_STREAMED');
      assert.deepEqual(
        h.server.calls[0]!.received.map((m) => m.request),
        ['request_headers', 'request_body', 'request_body'],
      );
    },
  );
});

test('FULL_DUPLEX_STREAMED: a body answer before the headers answer is a 500', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send({
        request_body: {
          response: { body_mutation: { streamed_response: { body: Buffer.from('x') } } },
        },
      });
      await call.closed();
    },
    async (h) => {
      const f = h.filter({ processingMode: { requestBodyMode: 'FULL_DUPLEX_STREAMED' } });
      const r = await f.runRequest(postHeaders(), [Buffer.from('a')], undefined, {
        dataWithHeaders: true,
      });
      assert.equal(r.kind === 'local-reply' && r.status, 500);
      assert.match(f.violations.join(), /spurious request_body/);
    },
  );
});

test('observability mode: nothing waits, answers are ignored', async () => {
  await withServer(
    async (call) => {
      await call.closed();
    },
    async (h) => {
      const f = h.filter({
        observabilityMode: true,
        processingMode: { requestBodyMode: 'STREAMED' },
      });
      const r = await f.runRequest(postHeaders(), [Buffer.from('a'), Buffer.from('b')]);
      assert.equal(r.kind === 'continue' && r.body.toString(), 'ab');
      await f.runResponse([[':status', '200']]);
      // Nothing waited for the server: the stream may not have reached it yet.
      await waitFor(() => h.server.calls.length > 0, 10_000, 'the server never saw the stream');
      const call = h.server.calls[0]!;
      await within(call.closed(), 10_000, 'the driver never closed the stream');
      assert.ok(call.received.every((m) => m.observability_mode === true));
      assert.deepEqual(
        call.received.map((m) => m.request),
        ['request_headers', 'request_body', 'request_body', 'response_headers'],
      );
    },
  );
});

test('observability mode: a filter done before the channel connects still reaches the server', async () => {
  // Nothing waits for the server here, so the filter finishes (and closes) while grpc-js still
  // connects. With no reset grace at all, only deferred_close_timeout keeps the stream alive.
  await withServer(
    async (call) => {
      await call.closed();
    },
    async (h) => {
      const client = new ExtProcClient(h.server.target, { closeGraceMs: 0 });
      try {
        const f = new ExtProcFilter(client, { observabilityMode: true });
        await f.runRequest(getHeaders());
        await f.runResponse([[':status', '204']]);
        f.close();
        await waitFor(() => h.server.calls.length > 0, 10_000, 'the server never saw the stream');
        const call = h.server.calls[0]!;
        await within(call.closed(), 10_000, 'the driver never closed the stream');
        assert.deepEqual(
          call.received.map((m) => m.request),
          ['request_headers', 'response_headers'],
        );
      } finally {
        client.close();
      }
    },
  );
});

test('many concurrent filters share one channel', async () => {
  await withServer(passThrough, async (h) => {
    // 300 streams start in one tick; the point here is channel sharing, not latency.
    const cfg = {
      messageTimeoutMs: 5000,
      processingMode: { requestBodyMode: 'BUFFERED', responseBodyMode: 'BUFFERED' },
    } as const;
    await h.client.connect();
    const results = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const f = h.filter(cfg);
        const body = Buffer.from(`{"n":${i}}`);
        const a = await f.runRequest(postHeaders(), [body]);
        const b = await f.runResponse([[':status', '200']], [body]);
        return a.body.equals(body) && b.body.equals(body) && f.violations.length === 0;
      }),
    );
    assert.ok(results.every(Boolean));
    assert.equal(h.server.calls.length, 300);
  });
});
