import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeProcessingResponse } from './encode.js';
import { answer, immediate, MutationAnswer, reply, type MessageKind } from './messages.js';
import type { Outcome } from './mutation.js';
import { responseEncoder } from './proto.js';

const protobufjs = responseEncoder();

/** A copy with every raw_latin1 as the raw_value bytes it stands for (protobufjs knows no raw_latin1). */
function withBytes(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withBytes);
  if (typeof v !== 'object' || v === null || Buffer.isBuffer(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === 'raw_latin1') out['raw_value'] = Buffer.from(x as string, 'latin1');
    else out[k] = withBytes(x);
  }
  return out;
}

/** protobufjs's bytes for what wire/messages.ts built. */
const reference = (msg: object): Buffer => protobufjs(withBytes(msg) as object);
const KINDS: MessageKind[] = [
  'request_headers',
  'request_body',
  'request_trailers',
  'response_headers',
  'response_body',
  'response_trailers',
];

/** Every shape wire/messages.ts builds, per kind where it is valid. */
function outcomes(kind: MessageKind): Outcome[] {
  const headers = kind === 'request_headers' || kind === 'response_headers';
  const trailers = kind.endsWith('_trailers');
  const list: Outcome[] = [
    { kind: 'continue' },
    { kind: 'continue', mutation: {} },
    {
      kind: 'continue',
      mutation: {
        setHeaders: [
          ['x-sluice-model', 'gpt-4o-mini'],
          ['x-é', 'ünïcødé \u00ff'],
          // Beyond latin1: the low byte, as Buffer.from(value, 'latin1') gives it.
          ['x-wide', '\u20ac\u0100'],
          [':path', '/v1/chat/completions?' + 'q'.repeat(300)],
        ],
        removeHeaders: ['content-length', 'x-api-key'],
      },
    },
    { kind: 'continue', mutation: { removeHeaders: ['a'] } },
  ];
  if (!trailers) {
    list.push(
      { kind: 'continue', mutation: { clearRouteCache: true } },
      { kind: 'continue', mutation: { setHeaders: [['a', 'b']], clearRouteCache: true } },
    );
  }
  if (!trailers && !headers) {
    list.push(
      { kind: 'continue', mutation: { body: Buffer.alloc(0) } },
      { kind: 'continue', mutation: { body: Buffer.alloc(200_000, 'x') } },
      {
        kind: 'continue',
        mutation: { body: Buffer.from('{"model":"m"}'), setHeaders: [['content-length', '13']] },
      },
    );
  }
  if (headers) {
    list.push(
      { kind: 'continue', mutation: { replace: true, body: Buffer.from('{}') } },
      {
        kind: 'continue',
        mutation: {
          setHeaders: [['x', 'y']],
          modeOverride: { requestBody: 'BUFFERED', responseBody: 'STREAMED' },
        },
      },
      {
        kind: 'continue',
        mutation: {
          modeOverride: {
            requestBody: 'NONE',
            responseBody: 'NONE',
            requestHeader: 'SKIP',
            responseHeader: 'SEND',
          },
        },
      },
    );
  }
  list.push({
    kind: 'respond',
    verdict: {
      status: 429,
      headers: [['content-type', 'application/json']],
      body: '{"error":{}}',
      details: 'sluice_budget',
    },
  });
  return list;
}

/** Mutations beyond outcomes(): what the pipeline's answers combine (upstream, router). */
function moreMutations(kind: MessageKind): Outcome[] {
  const headers = kind === 'request_headers' || kind === 'response_headers';
  const list: Outcome[] = [
    {
      kind: 'continue',
      mutation: {
        setHeaders: [
          ['x-sluice-model', 'gpt-4o-mini'],
          ['empty', ''],
          ['long', 'v'.repeat(200)],
        ],
        removeHeaders: [],
        clearRouteCache: true,
      },
    },
    { kind: 'continue', mutation: { setHeaders: [], removeHeaders: [] } },
    { kind: 'continue', mutation: { clearRouteCache: false, replace: false } },
  ];
  if (headers) {
    list.push({
      kind: 'continue',
      mutation: {
        setHeaders: [
          [':path', '/v1/chat/completions'],
          ['accept-encoding', 'identity'],
        ],
        removeHeaders: ['authorization', 'x-sluice-request-id'],
        replace: true,
        body: Buffer.alloc(300, 'b'),
        clearRouteCache: true,
        modeOverride: {
          requestBody: 'NONE',
          responseBody: 'BUFFERED_PARTIAL',
          requestHeader: 'SEND',
          responseHeader: 'SEND',
        },
      },
    });
  } else if (!kind.endsWith('_trailers')) {
    list.push({
      kind: 'continue',
      mutation: { body: Buffer.alloc(0), removeHeaders: ['content-length'], clearRouteCache: true },
    });
  } else {
    // A trailers answer carries only the header mutation; the rest is ignored, as answer() does.
    list.push({
      kind: 'continue',
      mutation: {
        setHeaders: [['grpc-status', '0']],
        body: Buffer.from('x'),
        clearRouteCache: true,
        modeOverride: { requestBody: 'NONE', responseBody: 'NONE' },
      },
    });
  }
  return list;
}

describe('ProcessingResponse encoder', () => {
  it('writes the bytes protobufjs writes, for every answer wire/messages.ts builds', () => {
    let n = 0;
    for (const kind of KINDS) {
      for (const o of outcomes(kind)) {
        const msg = answer(kind, o);
        const want = reference(msg);
        const got = encodeProcessingResponse(msg, 0, reference);
        assert.ok(got.equals(want), `${kind} ${JSON.stringify(o).slice(0, 200)}`);
        n++;
      }
    }
    assert.ok(n > 40);
  });

  it("writes a MutationAnswer (what the stream sends) as the bytes of answer()'s tree", () => {
    let n = 0;
    for (const kind of KINDS) {
      for (const o of [...outcomes(kind), ...moreMutations(kind)]) {
        const tree = answer(kind, o);
        const sent = reply(kind, o);
        const what = `${kind} ${JSON.stringify(o).slice(0, 200)}`;
        assert.equal(sent instanceof MutationAnswer, o.kind === 'continue' && !!o.mutation, what);
        for (const prefix of [0, 5]) {
          const got = encodeProcessingResponse(sent, prefix, reference);
          assert.ok(got.subarray(prefix).equals(reference(tree)), `${what} prefix ${prefix}`);
        }
        if (sent instanceof MutationAnswer) assert.deepEqual(sent.toWire(), tree, what);
        n++;
      }
    }
    assert.ok(n > 60);
  });

  it('refuses in reply() what answer() refuses, with the same error', () => {
    const bad: [MessageKind, Outcome][] = [
      ['request_body', { kind: 'continue', mutation: { replace: true } }],
      ['request_headers', { kind: 'continue', mutation: { body: Buffer.from('x') } }],
      [
        'response_body',
        {
          kind: 'continue',
          mutation: { modeOverride: { requestBody: 'NONE', responseBody: 'NONE' } },
        },
      ],
    ];
    for (const [kind, o] of bad) {
      const err = (() => {
        try {
          answer(kind, o);
        } catch (e) {
          return e as Error;
        }
        return undefined;
      })();
      assert.ok(err, kind);
      assert.throws(() => reply(kind, o), { message: err.message });
    }
  });

  it('leaves room for the gRPC prefix in front, on both paths', () => {
    const msg = answer('request_body', {
      kind: 'continue',
      mutation: { setHeaders: [['a', 'b']], body: Buffer.from('xyz') },
    });
    const got = encodeProcessingResponse(msg, 5, reference);
    assert.ok(got.subarray(5).equals(reference(msg)));
    const refused = immediate({ status: 403, headers: [], body: 'no', details: 'x' });
    const viaFallback = encodeProcessingResponse(refused, 5, reference);
    assert.ok(viaFallback.subarray(5).equals(reference(refused)));
  });

  it('refuses a raw_latin1 value in a shape it leaves to protobufjs, which would drop it', () => {
    const m = {
      request_headers: {
        response: {
          header_mutation: { set_headers: [{ header: { key: 'k', raw_latin1: 'v' } }] },
          trailers: {},
        },
      },
    };
    assert.throws(() => encodeProcessingResponse(m, 0, protobufjs), /raw_latin1/);
  });

  it('writes no Buffer per header value of an answer', () => {
    const msg = answer('request_headers', {
      kind: 'continue',
      mutation: { setHeaders: [['x-request-id', 'abc']] },
    }) as any;
    const h = msg.request_headers.response.header_mutation.set_headers[0].header;
    assert.deepEqual(h, { key: 'x-request-id', raw_latin1: 'abc' });
  });

  it('sends any shape it does not know to the fallback instead of dropping a field', () => {
    let calls = 0;
    const fallback = (m: object): Buffer => {
      calls++;
      return reference(m);
    };
    const shapes: object[] = [
      immediate({ status: 500, headers: [['a', 'b']], body: '{}', details: 'd' }),
      { request_headers: { response: { trailers: { headers: [] } } } },
      { request_body: { response: { body_mutation: { streamed_response: {} } } } },
      { request_headers: {}, override_message_timeout: { seconds: 1 } },
      { request_headers: { response: {} }, response_headers: { response: {} } },
      {
        request_headers: {
          response: {
            header_mutation: { set_headers: [{ header: { key: 'k', raw_value: 'v' } }] },
          },
        },
      },
    ];
    for (const m of shapes) {
      const before = calls;
      encodeProcessingResponse(m, 0, fallback);
      assert.equal(calls, before + 1, JSON.stringify(m).slice(0, 120));
    }
  });
});
