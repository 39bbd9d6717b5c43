import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SluiceError } from '../errors.js';
import { errorVerdict, jsonVerdict } from '../pipeline/verdict.js';
import { protoType } from '../shared/proto.js';
import { encodeProcessingResponse } from './encode.js';
import { answer, immediate, MutationAnswer, reply, type MessageKind } from './messages.js';
import type { Outcome, Verdict } from './mutation.js';
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
    // Counts only: protobufjs itself throws on some of these (a number as a string, say).
    const fallback = (): Buffer => {
      calls++;
      return Buffer.alloc(0);
    };
    const shapes: object[] = [
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
      // Immediate responses and metadata in shapes wire/messages.ts never builds.
      { streamed_immediate_response: { headers_response: {} } },
      { immediate_response: { status: { code: 403 }, trailers: {} } },
      { immediate_response: { status: { code: -1 } } },
      { immediate_response: { status: { code: 403 }, body: 'base64 in protobufjs' } },
      { immediate_response: { grpc_status: { status: 2 ** 32 } } },
      { immediate_response: { details: 7 } },
      { immediate_response: {}, dynamic_metadata: { fields: { a: { nullValue: 'NULL_VALUE' } } } },
      { immediate_response: {}, dynamic_metadata: { fields: { a: { numberValue: '1' } } } },
      { immediate_response: {}, dynamic_metadata: { fields: { a: { boolValue: 1 } } } },
      { immediate_response: {}, dynamic_metadata: { fields: { a: { other: 1 } } } },
      { immediate_response: {}, dynamic_metadata: { fields: [] } },
      { immediate_response: {}, dynamic_metadata: { fields: {}, extra: {} } },
      {
        immediate_response: {},
        dynamic_metadata: { fields: { a: { listValue: { values: {} } } } },
      },
    ];
    for (const m of shapes) {
      const before = calls;
      encodeProcessingResponse(m, 0, fallback);
      assert.equal(calls, before + 1, JSON.stringify(m).slice(0, 120));
    }
  });
});

// Immediate responses and dynamic metadata: what wire/messages.ts builds (immediate(), with the
// reply mark), and every field of ImmediateResponse and Struct beyond it.

/** A fallback that fails the test: these shapes must not need protobufjs. */
const noFallback = (m: object): Buffer => {
  assert.fail(`sent to protobufjs: ${JSON.stringify(m).slice(0, 200)}`);
};

/** Encodes `msg` by hand, with and without the gRPC prefix, and compares with protobufjs. */
function assertSameBytes(msg: object, what: string): void {
  const want = reference(msg);
  for (const prefix of [0, 5]) {
    const got = encodeProcessingResponse(msg, prefix, noFallback);
    assert.ok(got.subarray(prefix).equals(want), `${what} prefix ${prefix}`);
    assert.equal(got.length, prefix + want.length, what);
  }
}

/** JSON as a google.protobuf.Value the way wire/messages.ts writes them (NullValue as 0). */
function toValue(v: unknown): Record<string, unknown> {
  if (v === null) return { nullValue: 0 };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v as Record<string, unknown>) };
}

function toStruct(o: Record<string, unknown>): Record<string, unknown> {
  return { fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, toValue(v)])) };
}

/** `levels` Structs, each the only field of the one around it. */
function deepStruct(levels: number): Record<string, unknown> {
  let s: Record<string, unknown> = { fields: { leaf: { stringValue: 'x' } } };
  for (let i = 1; i < levels; i++) s = { fields: { [`l${i}`]: { structValue: s } } };
  return s;
}

/** Verdicts as the pipeline makes them (pipeline/verdict.ts, router, cache, sessions). */
function verdicts(): Verdict[] {
  const list: Verdict[] = [];
  for (const api of ['openai', 'anthropic'] as const) {
    list.push(
      errorVerdict(api, new SluiceError('unauthenticated', 'A valid API key is required.')),
      errorVerdict(
        api,
        new SluiceError('rate_limit_exceeded', 'Too many requests.', {
          headers: { 'retry-after': '17' },
        }),
        'req-0123456789abcdef',
      ),
      errorVerdict(
        api,
        new SluiceError('policy_blocked', 'Blocked: the prompt holds «CREDIT_CARD» data — ✋.'),
        'req-é',
      ),
      errorVerdict(
        api,
        new SluiceError('method_not_allowed', 'Use POST.', { headers: { allow: 'POST' } }),
      ),
      errorVerdict(api, new SluiceError('upstream_unavailable', 'No backend.', { status: 502 })),
      errorVerdict(api, new SluiceError('gateway_error', 'x'.repeat(20_000))),
    );
  }
  list.push(
    jsonVerdict(200, { object: 'list', data: [{ id: 'gpt-4o-mini' }] }, 'sluice_models'),
    jsonVerdict(
      404,
      { error: { message: 'Ünknown conversation 会话 😀' } },
      'sluice_conversations',
    ),
    // A cache hit: a streamed body replayed, the age, the request id, governance headers.
    {
      status: 200,
      headers: [
        ['content-type', 'text/event-stream'],
        ['x-sluice-cache', 'hit'],
        ['age', '0'],
        ['x-sluice-request-id', 'r1'],
        ['x-ratelimit-remaining-tokens', '999999'],
      ],
      body:
        'data: {"choices":[{"delta":{"content":"héllo 👋"}}]}\n\n'.repeat(500) + 'data: [DONE]\n\n',
      details: 'sluice_cache_hit',
    },
    // Nothing: no header, no body, no details.
    { status: 204, headers: [], body: '', details: '' },
    // Header values as Envoy hands them over (latin1 bytes), one beyond latin1 (its low byte),
    // empty ones, long ones (multi-byte lengths).
    {
      status: 413,
      headers: [
        ['x-latin1', 'caf\u00e9 \u00ff\u0080'],
        ['x-wide', '\u20ac'],
        ['x-empty', ''],
        ['x-long', 'v'.repeat(300)],
      ],
      body: '{}',
      details: 'sluice_request_too_large',
    },
  );
  for (const status of [
    100, 200, 301, 400, 401, 403, 404, 405, 415, 422, 429, 451, 500, 503, 504, 599,
  ]) {
    list.push({
      status,
      headers: [['content-type', 'application/json']],
      body: '{"e":1}',
      details: 'd',
    });
  }
  return list;
}

/** A seeded generator (mulberry32): the same trees on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A string of ASCII, latin1, other BMP and astral characters (whole surrogate pairs only). */
function randomString(r: () => number, max: number): string {
  const n = Math.floor(r() * max);
  let s = '';
  for (let i = 0; i < n; i++) {
    const pick = r();
    if (pick < 0.6) s += String.fromCharCode(0x20 + Math.floor(r() * 0x5f));
    else if (pick < 0.75) s += String.fromCharCode(0x80 + Math.floor(r() * 0x80));
    else if (pick < 0.9) s += String.fromCharCode(0x100 + Math.floor(r() * (0xd800 - 0x100)));
    else s += String.fromCodePoint(0x10000 + Math.floor(r() * 0xfffff));
  }
  return s;
}

const NUMBERS = [
  0,
  -0,
  1,
  -1,
  1.5,
  2 ** 53,
  -(2 ** 63),
  1e-300,
  Number.MAX_VALUE,
  Infinity,
  -Infinity,
  NaN,
];

function randomValue(r: () => number, depth: number): Record<string, unknown> {
  const pick = Math.floor(r() * (depth > 4 ? 4 : 7));
  switch (pick) {
    case 0:
      return { nullValue: 0 };
    case 1:
      return {
        numberValue: r() < 0.5 ? NUMBERS[Math.floor(r() * NUMBERS.length)] : (r() - 0.5) * 1e6,
      };
    case 2:
      return { stringValue: randomString(r, 80) };
    case 3:
      return { boolValue: r() < 0.5 };
    case 4:
    case 5:
      return { structValue: randomStruct(r, depth + 1) };
    default: {
      const values = [];
      for (let i = Math.floor(r() * 5); i > 0; i--) values.push(randomValue(r, depth + 1));
      return { listValue: { values } };
    }
  }
}

function randomStruct(r: () => number, depth: number): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (let i = Math.floor(r() * 6); i > 0; i--) {
    // Integer-like keys too: V8 puts them first, and both encoders follow Object.keys.
    const key = r() < 0.2 ? String(Math.floor(r() * 100)) : randomString(r, 50);
    fields[key] = randomValue(r, depth);
  }
  return { fields };
}

describe('ImmediateResponse and dynamic metadata encoder', () => {
  it('writes every immediate response the pipeline builds as protobufjs does, without it', () => {
    let n = 0;
    for (const v of verdicts()) {
      const msg = immediate(v);
      assertSameBytes(msg, `${v.status} ${v.details} ${JSON.stringify(v.headers)}`);
      // reply() and answer() hand the same tree to the stream, in every phase.
      for (const kind of KINDS) {
        const o: Outcome = { kind: 'respond', verdict: v };
        assert.deepEqual(reply(kind, o), msg);
        assert.deepEqual(answer(kind, o), msg);
      }
      n++;
    }
    assert.ok(n > 30);
  });

  it('writes every field of an ImmediateResponse, set or not, as protobufjs does', () => {
    const base = immediate({
      status: 403,
      headers: [['content-type', 'application/json']],
      body: '{"error":"no"}',
      details: 'sluice_access_denied',
    }) as { immediate_response: Record<string, unknown>; dynamic_metadata: unknown };
    const ir = base.immediate_response;
    const shapes: Record<string, Record<string, unknown>> = {
      'grpc_status ok': { ...ir, grpc_status: { status: 0 } },
      'grpc_status 16': { ...ir, grpc_status: { status: 16 } },
      'grpc_status max': { ...ir, grpc_status: { status: 2 ** 32 - 1 } },
      'grpc_status empty': { ...ir, grpc_status: {} },
      'status without code': { ...ir, status: {} },
      'status code 0': { ...ir, status: { code: 0 } },
      'no status': { ...ir, status: undefined },
      'no headers': { ...ir, headers: undefined },
      'empty headers': { ...ir, headers: {} },
      'headers removed and set': {
        ...ir,
        headers: {
          set_headers: [
            { header: { key: 'x-a', value: 'plain' }, append: { value: true } },
            { header: { key: 'x-b', raw_value: Buffer.from([0, 0xff, 0x80]) }, append_action: 2 },
            { header: { key: 'x-c', raw_latin1: 'caf\u00e9' }, keep_empty_value: true },
            { header: { key: 'x-d' }, append: {} },
          ],
          remove_headers: ['x-e', 'x-ü'],
        },
      },
      'no body': { ...ir, body: undefined },
      'empty body': { ...ir, body: Buffer.alloc(0) },
      'binary body': { ...ir, body: Buffer.from([0, 1, 0xfe, 0xff]) },
      'no details': { ...ir, details: undefined },
      'empty details': { ...ir, details: '' },
      'non-ASCII details': { ...ir, details: 'détails ✓' },
      'nothing set': {},
      'null fields': { status: null, headers: null, body: null, grpc_status: null, details: null },
    };
    for (const [what, immediate_response] of Object.entries(shapes)) {
      assertSameBytes({ immediate_response, dynamic_metadata: base.dynamic_metadata }, what);
      assertSameBytes({ immediate_response }, `${what}, no metadata`);
    }
  });

  it('writes dynamic metadata (Struct, Value, ListValue) as protobufjs does', () => {
    const metadata = toStruct({
      sluice: { reply: 'extproc', route: 'gpt', ключ: 'значение 😀', long: 'ü'.repeat(50) },
      numbers: [0, -0, 1, -1, 0.1, 2 ** 31, 2 ** 53, -1e300, Infinity, -Infinity, NaN],
      flags: { on: true, off: false },
      nothing: null,
      empty: {},
      emptyList: [],
      emptyString: '',
      nested: {
        a: [{ b: [[], [null, 'x', { c: { d: 1.25 } }]] }],
        '2': 'integer-like key',
        '10': 'x',
      },
    });
    const ir = (
      immediate({ status: 429, headers: [], body: 'slow down', details: 'd' }) as Record<
        string,
        unknown
      >
    )['immediate_response'];
    assertSameBytes({ immediate_response: ir, dynamic_metadata: metadata }, 'metadata');
    // Values with no kind, or a kind left null, and a Struct with no fields.
    const odd = {
      fields: {
        none: {},
        nulls: { stringValue: null, structValue: undefined },
        noFields: { structValue: {} },
        noValues: { listValue: {} },
        nullFields: { structValue: { fields: null } },
      },
    };
    assertSameBytes({ immediate_response: ir, dynamic_metadata: odd }, 'odd values');
    assertSameBytes({ immediate_response: ir, dynamic_metadata: {} }, 'empty struct');
    // Beside a continue answer and a mode override: the fields in number order (1-6, 8, 9).
    for (const kind of KINDS) {
      const msg = answer(kind, {
        kind: 'continue',
        mutation: {
          setHeaders: [['a', 'b']],
          ...(kind.endsWith('_headers')
            ? { modeOverride: { requestBody: 'BUFFERED', responseBody: 'NONE' } }
            : {}),
        },
      });
      assertSameBytes(
        withBytes({ ...msg, dynamic_metadata: metadata }) as object,
        `${kind} with metadata`,
      );
    }
  });

  it('refuses metadata nested past 100 messages where protobufjs does, and writes the rest', () => {
    /** `levels` ListValues, each the only value of the one around it, in a Struct. */
    const deepList = (levels: number): Record<string, unknown> => {
      let v: Record<string, unknown> = { numberValue: 1 };
      for (let i = 0; i < levels; i++) v = { listValue: { values: [v] } };
      return { fields: { list: v } };
    };
    let refused = 0;
    for (const [what, make] of [
      ['structs', deepStruct],
      ['lists', deepList],
    ] as const) {
      for (let levels = 30; levels <= 60; levels++) {
        const msg = { immediate_response: {}, dynamic_metadata: make(levels) };
        let want: Buffer | undefined;
        try {
          want = reference(msg);
        } catch (e) {
          assert.match((e as Error).message, /max depth exceeded/);
        }
        if (want) assertSameBytes(msg, `${what} ${levels}`);
        else {
          refused++;
          assert.throws(() => encodeProcessingResponse(msg, 5, noFallback), /deeper than 100/);
        }
      }
    }
    assert.ok(refused > 10 && refused < 50, `${refused} refused`);
    // A cycle is as deep as it gets.
    const cycle: Record<string, unknown> = { fields: {} };
    (cycle['fields'] as Record<string, unknown>)['self'] = { structValue: cycle };
    assert.throws(
      () =>
        encodeProcessingResponse(
          { immediate_response: {}, dynamic_metadata: cycle },
          0,
          noFallback,
        ),
      /deeper than 100/,
    );
  });

  it('writes random Structs as protobufjs does', () => {
    const r = random(16);
    let bytes = 0;
    for (let i = 0; i < 300; i++) {
      const msg = {
        immediate_response: { status: { code: 400 + i }, details: randomString(r, 60) },
        dynamic_metadata: randomStruct(r, 0),
      };
      assertSameBytes(msg, `tree ${i}: ${JSON.stringify(msg.dynamic_metadata).slice(0, 300)}`);
      bytes += reference(msg).length;
    }
    // The trees are not all trivial.
    assert.ok(bytes > 50_000, `${bytes} bytes`);
  });

  it('writes a lone surrogate as U+FFFD (valid UTF-8), where protobufjs writes invalid bytes', () => {
    const decoder = protoType(
      'envoy/service/ext_proc/v3/external_processor.proto',
      'envoy.service.ext_proc.v3.ProcessingResponse',
    );
    const msg = {
      immediate_response: { details: 'a\ud800b' },
      dynamic_metadata: { fields: { '\udc00': { stringValue: 'x\ud83d' } } },
    };
    const got = encodeProcessingResponse(msg, 0, noFallback);
    const back = decoder.toObject(decoder.decode(got)) as any;
    assert.equal(back.immediate_response.details, 'a\ufffdb');
    assert.deepEqual(Object.keys(back.dynamic_metadata.fields), ['\ufffd']);
    assert.equal(back.dynamic_metadata.fields['\ufffd'].stringValue, 'x\ufffd');
    assert.ok(got.includes(Buffer.from('a\ufffdb')), got.toString('hex'));
    // protobufjs writes this short string's surrogate as its own bytes (ED A0 80): not UTF-8.
    assert.ok(!reference(msg).includes(Buffer.from('a\ufffdb')));
  });
});
