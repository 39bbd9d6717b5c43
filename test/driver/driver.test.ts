import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getHeader } from '../../operator/envoy-sim/ext-proc/headers.js';
import { passThrough, type FakeCall } from './fake-server.js';
import {
  cont,
  getHeaders,
  grpc,
  headerValue,
  postHeaders,
  raw,
  sleep,
  withServer,
} from './helpers.js';

const BUFFERED = {
  processingMode: { requestBodyMode: 'BUFFERED', responseBodyMode: 'BUFFERED' },
} as const;

test('well-behaved server: four phases, Envoy framing of every message', async () => {
  await withServer(passThrough, async (h) => {
    const f = h.filter({
      ...BUFFERED,
      requestAttributes: { 'xds.route_name': 'r1' },
      responseAttributes: { 'xds.cluster_name': 'c1' },
      metadataContext: { 'sluice.io': { consumer: 'team-a' } },
      initialMetadata: { 'x-sluice-filter': 'router' },
    });
    const req = await f.runRequest(
      postHeaders([
        ['Content-Length', '13'],
        ['x-bin', 'caf\xe9'],
      ]),
      [Buffer.from('{"model":'), Buffer.from('"m"}')],
    );
    assert.equal(req.kind, 'continue');
    assert.equal(req.body.toString(), '{"model":"m"}');
    const res = await f.runResponse([[':status', '200']], [Buffer.from('{"ok":true}')]);
    assert.equal(res.kind, 'continue');
    assert.equal(res.body.toString(), '{"ok":true}');
    assert.deepEqual(f.violations, []);
    assert.deepEqual(
      f.timings.map((t) => t.phase),
      ['request_headers', 'request_body', 'response_headers', 'response_body'],
    );

    const call = h.server.calls[0]!;
    await call.closed();
    assert.equal(h.server.calls.length, 1, 'one stream per HTTP request');
    assert.ok(call.halfClosed, 'Envoy half-closes when done');
    assert.equal(call.metadata.get('x-sluice-filter')[0], 'router');
    const [m1, m2, m3, m4] = call.received;
    assert.deepEqual(
      call.received.map((m) => m.request),
      ['request_headers', 'request_body', 'response_headers', 'response_body'],
    );
    assert.deepEqual(m1!.protocol_config, {
      request_body_mode: 'BUFFERED',
      response_body_mode: 'BUFFERED',
    });
    for (const m of [m2, m3, m4]) assert.equal(m!.protocol_config, undefined);
    for (const m of call.received) {
      assert.equal(
        m.metadata_context?.filter_metadata?.['sluice.io']?.fields?.consumer?.stringValue,
        'team-a',
      );
    }
    const attr = (m: typeof m1) => m!.attributes?.['envoy.filters.http.ext_proc']?.fields;
    assert.equal(attr(m1)?.['xds.route_name']?.stringValue, 'r1');
    assert.equal(attr(m2), undefined);
    assert.equal(attr(m3)?.['xds.cluster_name']?.stringValue, 'c1');
    assert.equal(attr(m4), undefined);
    const hv = m1!.request_headers!.headers!.headers!;
    assert.ok(hv.every((x) => x.value === undefined && x.raw_value !== undefined));
    assert.ok(hv.some((x) => x.key === ':authority'));
    assert.equal(headerValue(m1!, 'content-length'), '13', 'Envoy lowercases keys');
    assert.equal(
      m1!
        .request_headers!.headers!.headers!.find((x) => x.key === 'x-bin')!
        .raw_value!.toString('hex'),
      '636166e9',
    );
    assert.equal(m1!.request_headers!.end_of_stream, undefined);
    assert.equal(m2!.request_body!.end_of_stream, true);
    assert.equal(headerValue(m3!, ':status'), '200');
  });
});

test('wrong oneof is spurious: status_on_error and a violation', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send(cont('response_headers'));
      await call.closed();
    },
    async (h) => {
      const f = h.filter({ statusOnError: 503 });
      const r = await f.runRequest(getHeaders());
      assert.equal(r.kind, 'local-reply');
      assert.equal(r.kind === 'local-reply' && r.status, 503);
      assert.match(f.violations.join(), /spurious response_headers/);
    },
  );
});

test('an answer with no oneof set fails the request', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send({ dynamic_metadata: { fields: {} } });
      await call.closed();
    },
    async (h) => {
      const f = h.filter();
      const r = await f.runRequest(getHeaders());
      assert.equal(r.kind === 'local-reply' && r.status, 500);
      assert.match(f.violations.join(), /no response oneof/);
    },
  );
});

test('spurious answer with failure_mode_allow: processor dropped, request continues', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send(cont('request_body'));
      await call.closed();
    },
    async (h) => {
      const f = h.filter({ failureModeAllow: true });
      const r = await f.runRequest(getHeaders());
      assert.equal(r.kind, 'continue');
      assert.equal(r.kind === 'continue' && r.processorBypassed, true);
      assert.equal(f.violations.length, 1);
    },
  );
});

test('header values: value-only sets an empty header, both value and raw_value is a 500', async () => {
  await withServer(
    async (call) => {
      const m = await call.expect();
      if (headerValue(m, 'x-case') === 'value-only') {
        call.send({
          request_headers: {
            response: {
              header_mutation: { set_headers: [{ header: { key: 'x-a', value: 'v' } }] },
            },
          },
        });
      } else {
        call.send({
          request_headers: {
            response: {
              header_mutation: {
                set_headers: [{ header: { key: 'x-a', value: 'v', raw_value: Buffer.from('v') } }],
              },
            },
          },
        });
      }
      await call.closed();
    },
    async (h) => {
      const f1 = h.filter();
      const r1 = await f1.runRequest([...getHeaders(), ['x-case', 'value-only']]);
      assert.equal(r1.kind, 'continue');
      assert.equal(getHeader(r1.headers, 'x-a'), '');
      assert.match(f1.violations.join(), /value instead of raw_value/);

      const f2 = h.filter();
      const r2 = await f2.runRequest([...getHeaders(), ['x-case', 'both']]);
      assert.equal(r2.kind === 'local-reply' && r2.status, 500);
      assert.match(f2.violations.join(), /both value and raw_value/);
    },
  );
});

test('header mutation order, append, :path change, disallowed changes ignored and recorded', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send({
        request_headers: {
          response: {
            header_mutation: {
              remove_headers: ['x-old', ':path', 'host'],
              set_headers: [
                raw('x-old', 'new'),
                { ...raw('x-multi', 'b'), append: { value: true } },
                raw(':path', '/v2'),
                raw('host', 'evil'),
                raw(':authority', 'evil'),
                raw(':scheme', 'https'),
                raw(':method', 'DELETE'),
                raw('x-envoy-original-path', '/x'),
              ],
            },
          },
        },
      });
      await call.closed();
    },
    async (h) => {
      const f = h.filter();
      const r = await f.runRequest([...getHeaders(), ['x-old', 'old'], ['x-multi', 'a']]);
      assert.equal(r.kind, 'continue');
      assert.equal(getHeader(r.headers, 'x-old'), 'new', 'remove runs before set');
      assert.deepEqual(
        r.headers.filter(([k]) => k === 'x-multi').map(([, v]) => v),
        ['a', 'b'],
      );
      assert.equal(getHeader(r.headers, ':path'), '/v2');
      assert.equal(getHeader(r.headers, ':authority'), 'gw.example');
      assert.equal(getHeader(r.headers, ':scheme'), 'http');
      assert.equal(getHeader(r.headers, ':method'), 'GET');
      assert.equal(getHeader(r.headers, 'host'), undefined);
      assert.equal(getHeader(r.headers, 'x-envoy-original-path'), undefined);
      const v = f.violations.join('\n');
      for (const name of [
        ':path"',
        'host"',
        ':authority',
        ':scheme',
        ':method',
        'x-envoy-original-path',
      ]) {
        assert.ok(v.includes(name), `violation for ${name}`);
      }
    },
  );
});

test('content-length in BUFFERED + header SEND: mismatch is a 500, fixed when the server sets it', async () => {
  const body = Buffer.from('{"model":"gpt"}');
  const replacement = Buffer.from('{"model":"gpt-4o-mini"}');
  await withServer(
    async (call) => {
      const m = await call.expect();
      const fix = headerValue(m, 'x-case') === 'fix';
      call.send(cont('request_headers'));
      await call.expect();
      call.send({
        request_body: {
          response: {
            header_mutation: fix
              ? { set_headers: [raw('content-length', String(replacement.length))] }
              : {},
            body_mutation: { body: replacement },
          },
        },
      });
      await call.closed();
    },
    async (h) => {
      const cl = String(body.length);
      const f1 = h.filter(BUFFERED);
      const r1 = await f1.runRequest(postHeaders([['content-length', cl]]), [body]);
      assert.equal(r1.kind === 'local-reply' && r1.status, 500);
      assert.match(f1.violations.join(), /content-length 15 does not match/);

      const f2 = h.filter(BUFFERED);
      const r2 = await f2.runRequest(
        postHeaders([
          ['content-length', cl],
          ['x-case', 'fix'],
        ]),
        [body],
      );
      assert.equal(r2.kind, 'continue');
      assert.deepEqual(r2.body, replacement);
      assert.equal(getHeader(r2.headers, 'content-length'), String(replacement.length));
      assert.deepEqual(f2.violations, []);
    },
  );
});

test('content-length is removed in STREAMED after the headers went out', async () => {
  await withServer(passThrough, async (h) => {
    const f = h.filter({ processingMode: { requestBodyMode: 'STREAMED' } });
    const r = await f.runRequest(postHeaders([['content-length', '2']]), [Buffer.from('{}')]);
    assert.equal(r.kind, 'continue');
    assert.equal(getHeader(r.headers, 'content-length'), undefined);
    assert.equal(headerValue(h.server.calls[0]!.received[0]!, 'content-length'), '2');
  });
});

test('server closes OK after the headers answer: the rest goes on unprocessed', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send({
        request_headers: { response: { header_mutation: { set_headers: [raw('x-seen', '1')] } } },
      });
      call.end();
    },
    async (h) => {
      const f = h.filter(BUFFERED);
      const r = await f.runRequest(postHeaders(), [Buffer.from('a'), Buffer.from('b')]);
      assert.equal(r.kind, 'continue');
      assert.equal(r.kind === 'continue' && r.processorBypassed, true);
      assert.equal(r.body.toString(), 'ab');
      assert.equal(getHeader(r.headers, 'x-seen'), '1');
      const res = await f.runResponse([[':status', '200']], [Buffer.from('x')]);
      assert.equal(res.kind, 'continue');
      assert.equal(res.body.toString(), 'x');
      assert.equal(h.server.calls[0]!.received.length, 1);
      assert.deepEqual(f.violations, []);
    },
  );
});

test('server fails between messages: status_on_error, or continue with failure_mode_allow', async () => {
  const handler = async (call: FakeCall): Promise<void> => {
    await call.expect();
    call.send(cont('request_headers'));
    await call.expect();
    call.fail(grpc.status.UNAVAILABLE, 'boom');
  };
  await withServer(handler, async (h) => {
    const f = h.filter(BUFFERED);
    const r = await f.runRequest(postHeaders(), [Buffer.from('{}')]);
    assert.equal(r.kind, 'local-reply');
    if (r.kind === 'local-reply') {
      assert.equal(r.status, 500);
      assert.match(r.details, /gRPC_error_14/);
    }
    const g = h.filter({ ...BUFFERED, failureModeAllow: true });
    const r2 = await g.runRequest(postHeaders(), [Buffer.from('{}')]);
    assert.equal(r2.kind, 'continue');
    assert.equal(r2.body.toString(), '{}');
  });
});

test('message timeout: 504, or continue without the processor with failure_mode_allow', async () => {
  await withServer(
    async (call) => {
      await call.closed();
    },
    async (h) => {
      const f = h.filter({ messageTimeoutMs: 50 });
      const t0 = performance.now();
      const r = await f.runRequest(getHeaders());
      assert.equal(r.kind === 'local-reply' && r.status, 504);
      assert.ok(performance.now() - t0 >= 45);
      assert.match(f.violations.join(), /timeout/);
      const g = h.filter({ messageTimeoutMs: 50, failureModeAllow: true });
      const r2 = await g.runRequest(getHeaders());
      assert.equal(r2.kind, 'continue');
    },
  );
});

test('override_message_timeout extends the timer only when max_message_timeout allows', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send({ override_message_timeout: { seconds: 0, nanos: 300e6 } });
      await sleep(120);
      call.send(cont('request_headers'));
      await call.closed();
    },
    async (h) => {
      const ok = await h
        .filter({ messageTimeoutMs: 60, maxMessageTimeoutMs: 1000 })
        .runRequest(getHeaders());
      assert.equal(ok.kind, 'continue');
      const f = h.filter({ messageTimeoutMs: 60 });
      const r = await f.runRequest(getHeaders());
      assert.equal(r.kind === 'local-reply' && r.status, 504);
      assert.match(f.violations.join(), /override_message_timeout .* ignored/);
    },
  );
});

for (const phase of [
  'request_headers',
  'request_body',
  'response_headers',
  'response_body',
] as const) {
  test(`immediate_response during ${phase}`, async () => {
    await withServer(
      async (call) => {
        for (;;) {
          const m = await call.next();
          if (!m) return;
          if (m.request === phase) {
            call.send({
              immediate_response: {
                status: { code: phase === 'request_headers' ? 100 : 403 },
                body: Buffer.from('denied'),
                details: 'policy_denied',
                headers:
                  phase === 'response_body'
                    ? { set_headers: [raw('content-type', 'application/json')] }
                    : null,
              },
            });
          } else call.send(cont(m.request!));
        }
      },
      async (h) => {
        const f = h.filter(BUFFERED);
        let r = await f.runRequest(postHeaders(), [Buffer.from('{}')]);
        if (phase.startsWith('response')) {
          assert.equal(r.kind, 'continue');
          r = await f.runResponse([[':status', '200']], [Buffer.from('{}')]);
        }
        assert.equal(r.kind, 'local-reply');
        if (r.kind !== 'local-reply') return;
        assert.equal(r.status, phase === 'request_headers' ? 200 : 403, 'status < 200 becomes 200');
        assert.equal(r.body.toString(), 'denied');
        assert.equal(r.details, 'policy_denied');
        assert.equal(
          getHeader(r.headers, 'content-type'),
          phase === 'response_body' ? 'application/json' : 'text/plain',
        );
        const call = h.server.calls[0]!;
        await call.closed();
        assert.equal(call.received.at(-1)!.request, phase, 'nothing is sent after it');
      },
    );
  });
}

test('CONTINUE_AND_REPLACE turns a GET into a POST with a created body', async () => {
  const body = Buffer.from('{"translated":true}');
  await withServer(
    async (call) => {
      await call.expect();
      call.send({
        request_headers: {
          response: {
            status: 'CONTINUE_AND_REPLACE',
            header_mutation: {
              set_headers: [raw(':method', 'POST'), raw('content-length', '999')],
            },
            body_mutation: { body },
          },
        },
      });
      await call.closed();
    },
    async (h) => {
      const f = h.filter(BUFFERED);
      const r = await f.runRequest(getHeaders());
      assert.equal(r.kind, 'continue');
      if (r.kind !== 'continue') return;
      assert.equal(getHeader(r.headers, ':method'), 'POST');
      assert.equal(getHeader(r.headers, 'content-length'), undefined, 'content-length dropped');
      assert.ok(r.hasBody);
      assert.deepEqual(r.body, body);
      assert.equal(h.server.calls[0]!.received.length, 1, 'no body message after replace');
      assert.deepEqual(f.violations, []);
    },
  );
});

test('CONTINUE_AND_REPLACE discards the original body and stops the direction', async () => {
  await withServer(passThroughReplace, async (h) => {
    const f = h.filter(BUFFERED);
    const r = await f.runRequest(postHeaders(), [Buffer.from('orig-1'), Buffer.from('orig-2')]);
    assert.equal(r.kind === 'continue' && r.body.toString(), 'new');
    assert.deepEqual(
      h.server.calls[0]!.received.map((m) => m.request),
      ['request_headers'],
    );
  });
});

async function passThroughReplace(call: FakeCall): Promise<void> {
  for (;;) {
    const m = await call.next();
    if (!m) return;
    if (m.request === 'request_headers') {
      call.send({
        request_headers: {
          response: { status: 'CONTINUE_AND_REPLACE', body_mutation: { body: Buffer.from('new') } },
        },
      });
    } else call.send(cont(m.request!));
  }
}

test('mode_override: honoured when allowed, refused (and recorded) otherwise', async () => {
  const handler = async (call: FakeCall): Promise<void> => {
    for (;;) {
      const m = await call.next();
      if (!m) return;
      const r = cont(m.request!);
      if (m.request === 'response_headers') {
        r.mode_override = { response_body_mode: 'STREAMED', response_header_mode: 'SEND' };
      }
      call.send(r);
    }
  };
  await withServer(handler, async (h) => {
    const f = h.filter({ ...BUFFERED, allowModeOverride: true });
    await f.runRequest(postHeaders(), [Buffer.from('{}')]);
    const r = await f.runResponse(
      [[':status', '200']],
      [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')],
    );
    assert.equal(r.body.toString(), 'abc');
    assert.deepEqual(f.violations, []);
    const bodies = h.server.calls[0]!.received.filter((m) => m.request === 'response_body');
    assert.deepEqual(
      bodies.map((m) => m.response_body!.body!.toString()),
      ['a', 'b', 'c'],
    );

    const g = h.filter(BUFFERED);
    await g.runRequest(postHeaders(), [Buffer.from('{}')]);
    await g.runResponse([[':status', '200']], [Buffer.from('a'), Buffer.from('b')]);
    assert.match(g.violations.join(), /allow_mode_override is false/);
    const gb = h.server.calls[1]!.received.filter((m) => m.request === 'response_body');
    assert.deepEqual(
      gb.map((m) => m.response_body!.body!.toString()),
      ['ab'],
    );
  });
});

test('mode_override body modes are copied from the override (unset = NONE)', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send({ request_headers: {}, mode_override: { request_header_mode: 'SEND' } });
      await call.expect();
      call.send(cont('response_headers'));
      await call.closed();
    },
    async (h) => {
      const f = h.filter({ ...BUFFERED, allowModeOverride: true });
      const r = await f.runRequest(postHeaders(), [Buffer.from('{}')]);
      assert.equal(r.kind === 'continue' && r.body.toString(), '{}');
      const res = await f.runResponse([[':status', '200']], [Buffer.from('x')]);
      assert.equal(res.kind, 'continue');
      assert.equal(
        h.server.calls[0]!.received.length,
        2,
        'no body messages, response headers only',
      );
    },
  );
});

for (const mode of ['BUFFERED', 'STREAMED', 'BUFFERED_PARTIAL'] as const) {
  test(`empty vs absent body in ${mode}`, async () => {
    await withServer(passThrough, async (h) => {
      const cfg = {
        processingMode: { requestBodyMode: mode, requestTrailerMode: 'SEND' },
      } as const;
      // headers with END_STREAM: no body message
      const a = await h.filter(cfg).runRequest(getHeaders());
      assert.equal(a.kind === 'continue' && a.hasBody, false);
      // empty DATA frame with END_STREAM: one empty body message with end_of_stream
      const b = await h.filter(cfg).runRequest(postHeaders(), [Buffer.alloc(0)]);
      assert.equal(b.kind === 'continue' && b.hasBody, true);
      // headers + trailers: no body message, trailers message
      const c = await h.filter(cfg).runRequest(postHeaders(), [], [['x-t', '1']]);
      assert.deepEqual(c.kind === 'continue' && c.trailers, [['x-t', '1']]);
      const kinds = h.server.calls.map((call) => call.received.map((m) => m.request));
      assert.deepEqual(kinds, [
        ['request_headers'],
        ['request_headers', 'request_body'],
        ['request_headers', 'request_trailers'],
      ]);
      const emptyBody = h.server.calls[1]!.received[1]!.request_body!;
      assert.equal(emptyBody.body, undefined);
      assert.equal(emptyBody.end_of_stream, true);
      assert.equal(h.server.calls[0]!.received[0]!.request_headers!.end_of_stream, true);
    });
  });
}

test('trailers: sent only in SEND mode and only if present; body end_of_stream=false before them', async () => {
  await withServer(
    async (call) => {
      for (;;) {
        const m = await call.next();
        if (!m) return;
        if (m.request === 'request_trailers') {
          call.send({
            request_trailers: { header_mutation: { set_headers: [raw('x-t', 'changed')] } },
          });
        } else call.send(cont(m.request!));
      }
    },
    async (h) => {
      const cfg = {
        processingMode: { requestBodyMode: 'BUFFERED', requestTrailerMode: 'SEND' },
      } as const;
      const r = await h.filter(cfg).runRequest(postHeaders(), [Buffer.from('{}')], [['x-t', 'v']]);
      assert.deepEqual(r.kind === 'continue' && r.trailers, [['x-t', 'changed']]);
      const msgs = h.server.calls[0]!.received;
      assert.deepEqual(
        msgs.map((m) => m.request),
        ['request_headers', 'request_body', 'request_trailers'],
      );
      assert.equal(msgs[1]!.request_body!.end_of_stream, undefined);

      const skip = await h
        .filter(BUFFERED)
        .runRequest(postHeaders(), [Buffer.from('{}')], [['x-t', 'v']]);
      assert.deepEqual(skip.kind === 'continue' && skip.trailers, [['x-t', 'v']]);
      assert.deepEqual(
        h.server.calls[1]!.received.map((m) => m.request),
        ['request_headers', 'request_body'],
      );

      const none = await h.filter(cfg).runRequest(postHeaders(), [Buffer.from('{}')]);
      assert.equal(none.kind === 'continue' && none.trailers, undefined);
      assert.deepEqual(
        h.server.calls[2]!.received.map((m) => m.request),
        ['request_headers', 'request_body'],
      );
    },
  );
});

test('large multi-frame BUFFERED body arrives as one message', async () => {
  await withServer(passThrough, async (h) => {
    const chunks = Array.from({ length: 64 }, (_, i) => Buffer.alloc(16 * 1024, 97 + (i % 26)));
    const total = Buffer.concat(chunks);
    const r = await h.filter(BUFFERED).runRequest(postHeaders(), chunks);
    assert.deepEqual(r.kind === 'continue' && r.body, total);
    const body = h.server.calls[0]!.received[1]!.request_body!;
    assert.equal(body.body!.length, total.length);
    assert.equal(body.end_of_stream, true);
  });
});

test('BUFFERED over the buffer limit: 413 on requests, 500 on responses', async () => {
  await withServer(passThrough, async (h) => {
    const cfg = { ...BUFFERED, bufferLimitBytes: 1000 };
    const r = await h.filter(cfg).runRequest(postHeaders(), [Buffer.alloc(600), Buffer.alloc(600)]);
    assert.equal(r.kind === 'local-reply' && r.status, 413);
    const f = h.filter(cfg);
    await f.runRequest(postHeaders(), [Buffer.from('{}')]);
    const s = await f.runResponse([[':status', '200']], [Buffer.alloc(1001)]);
    assert.equal(s.kind === 'local-reply' && s.status, 500);
  });
});

test('clear_route_cache: honoured in the request body answer with a header_mutation', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send(cont('request_headers'));
      await call.expect();
      call.send({
        request_body: {
          response: {
            header_mutation: { set_headers: [raw('x-sluice-model', 'gpt-4o')] },
            clear_route_cache: true,
          },
        },
      });
      await call.closed();
    },
    async (h) => {
      const f = h.filter(BUFFERED);
      const r = await f.runRequest(postHeaders(), [Buffer.from('{}')]);
      assert.equal(r.kind === 'continue' && r.routeCacheCleared, true);
      assert.equal(r.kind === 'continue' && getHeader(r.headers, 'x-sluice-model'), 'gpt-4o');
      assert.deepEqual(f.violations, []);
    },
  );
});

test('clear_route_cache ignored: upstream filter, no header_mutation, response direction', async () => {
  await withServer(
    async (call) => {
      for (;;) {
        const m = await call.next();
        if (!m) return;
        const noMutation = headerValue(m, 'x-case') === 'no-mutation';
        const r = cont(m.request!);
        (r as Record<string, unknown>)[m.request!] = {
          response: {
            clear_route_cache: true,
            header_mutation: noMutation ? null : {},
          },
        };
        call.send(r);
      }
    },
    async (h) => {
      const up = h.filter({ upstream: true });
      const a = await up.runRequest(getHeaders());
      assert.equal(a.kind === 'continue' && a.routeCacheCleared, false);
      assert.match(up.violations.join(), /upstream filter/);

      const nm = h.filter();
      const b = await nm.runRequest([...getHeaders(), ['x-case', 'no-mutation']]);
      assert.equal(b.kind === 'continue' && b.routeCacheCleared, false);
      assert.match(nm.violations.join(), /without a header_mutation/);

      const down = h.filter();
      const c = await down.runRequest(getHeaders());
      assert.equal(c.kind === 'continue' && c.routeCacheCleared, true, 'an empty mutation counts');
      await down.runResponse([[':status', '200']]);
      assert.match(down.violations.join(), /response direction/);
    },
  );
});

test('ordering: response messages go out while request messages are unanswered', async () => {
  await withServer(
    async (call) => {
      const m1 = await call.expect();
      const m2 = await call.expect();
      assert.equal(m1.request, 'request_headers');
      assert.equal(m2.request, 'response_headers');
      call.send(cont('response_headers'));
      call.send(cont('request_headers'));
      await call.closed();
    },
    async (h) => {
      const f = h.filter();
      f.request.headers(getHeaders(), true);
      f.response.headers([[':status', '200']], true);
      const [a, b] = await Promise.all([f.request.result(), f.response.result()]);
      assert.equal(a.kind, 'continue');
      assert.equal(b.kind, 'continue');
      assert.deepEqual(f.violations, []);
    },
  );
});

test('extra answer after the stream is done is recorded', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send(cont('request_headers'));
      call.send(cont('request_headers'));
      await call.closed();
    },
    async (h) => {
      const f = h.filter({ envoyRelease: '1.34' });
      const r = await f.runRequest(getHeaders());
      assert.equal(r.kind, 'continue');
      await sleep(20);
      assert.match(f.violations.join(), /spurious request_headers/);
    },
  );
});

test('strict mode rejects at the first violation', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send({
        request_headers: { response: { header_mutation: { set_headers: [raw('host', 'x')] } } },
      });
      await call.closed();
    },
    async (h) => {
      await assert.rejects(h.filter({ strict: true }).runRequest(getHeaders()), /host/);
    },
  );
});

test('dynamic metadata is kept only for receiving namespaces', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send({
        request_headers: {},
        dynamic_metadata: {
          fields: {
            'sluice.io': { structValue: { fields: { model: { stringValue: 'm' } } } },
            other: { structValue: { fields: {} } },
          },
        },
      });
      await call.closed();
    },
    async (h) => {
      const f = h.filter({ receivingNamespaces: ['sluice.io'] });
      await f.runRequest(getHeaders());
      assert.equal(f.dynamicMetadata['sluice.io']?.fields?.model?.stringValue, 'm');
      assert.match(f.violations.join(), /"other"/);
    },
  );
});

test('a closed server socket fails the request with status_on_error', async () => {
  const { ExtProcClient, ExtProcFilter } =
    await import('../../operator/envoy-sim/ext-proc/index.js');
  const client = new ExtProcClient('unix:/nonexistent/sluice.sock');
  try {
    const r = await new ExtProcFilter(client, { messageTimeoutMs: 2000 }).runRequest(getHeaders());
    assert.equal(r.kind === 'local-reply' && r.status, 500);
    const ok = await new ExtProcFilter(client, { failureModeAllow: true }).runRequest(getHeaders());
    assert.equal(ok.kind, 'continue');
  } finally {
    client.close();
  }
});
