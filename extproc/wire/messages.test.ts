import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { answer, immediate, type WireResponse } from './messages.js';
import { referenceService, responseEncoder } from './proto.js';

/** What Envoy would read: encoded as the server sends it, decoded by proto-loader (enum names). */
function onTheWire(w: WireResponse): any {
  const ref = referenceService()['Process']!;
  return ref.responseDeserialize(responseEncoder()(w));
}

describe('wire messages', () => {
  it('answers every kind with its own oneof, even when there is nothing to change', () => {
    for (const kind of [
      'request_headers',
      'request_body',
      'request_trailers',
      'response_headers',
      'response_body',
      'response_trailers',
    ] as const) {
      assert.deepEqual(Object.keys(answer(kind, { kind: 'continue' })), [kind]);
    }
  });

  it('puts header values in raw_value only, as replacements', () => {
    const w = answer('request_body', {
      kind: 'continue',
      mutation: { setHeaders: [['x-a', 'é']], removeHeaders: ['x-b'] },
    }) as any;
    const opt = w.request_body.response.header_mutation.set_headers[0];
    assert.equal(opt.header.key, 'x-a');
    assert.equal(opt.header.value, undefined);
    // The bytes as a latin1 string (encode.ts writes them): é is the one byte 0xe9.
    assert.equal(opt.header.raw_latin1, '\u00e9');
    assert.equal(opt.header.raw_value, undefined);
    assert.deepEqual(opt.append, { value: false });
    assert.deepEqual(w.request_body.response.header_mutation.remove_headers, ['x-b']);
  });

  it('adds an empty header mutation when clearing the route cache', () => {
    const w = answer('request_body', {
      kind: 'continue',
      mutation: { clearRouteCache: true },
    }) as any;
    assert.equal(w.request_body.response.clear_route_cache, true);
    assert.deepEqual(w.request_body.response.header_mutation, {
      set_headers: [],
      remove_headers: [],
    });
  });

  it('restates both body modes in a mode override', () => {
    for (const [requestBody, responseBody] of [
      ['BUFFERED', 'STREAMED'],
      ['NONE', 'BUFFERED_PARTIAL'],
    ] as const) {
      const w = answer('response_headers', {
        kind: 'continue',
        mutation: { modeOverride: { requestBody, responseBody } },
      });
      assert.deepEqual(onTheWire(w).mode_override, {
        request_body_mode: requestBody,
        response_body_mode: responseBody,
      });
    }
  });

  it('sends a header mode in an override only when one is asked for', () => {
    const w = answer('request_headers', {
      kind: 'continue',
      mutation: {
        modeOverride: { requestBody: 'NONE', responseBody: 'NONE', responseHeader: 'SEND' },
      },
    });
    assert.deepEqual(onTheWire(w).mode_override, {
      request_body_mode: 'NONE',
      response_body_mode: 'NONE',
      response_header_mode: 'SEND',
    });
  });

  it('uses CONTINUE_AND_REPLACE for a body created in a headers answer', () => {
    const w = answer('request_headers', {
      kind: 'continue',
      mutation: { replace: true, body: Buffer.from('{}') },
    }) as any;
    const decoded = onTheWire(w);
    assert.equal(decoded.request_headers.response.status, 'CONTINUE_AND_REPLACE');
    assert.deepEqual(decoded.request_headers.response.body_mutation, {
      body: Buffer.from('{}'),
      mutation: 'body',
    });
  });

  it('refuses combinations Envoy would reject or ignore', () => {
    assert.throws(() => answer('request_body', { kind: 'continue', mutation: { replace: true } }));
    assert.throws(() =>
      answer('request_headers', { kind: 'continue', mutation: { body: Buffer.from('x') } }),
    );
    assert.throws(() =>
      answer('response_body', {
        kind: 'continue',
        mutation: { modeOverride: { requestBody: 'NONE', responseBody: 'STREAMED' } },
      }),
    );
  });

  it('builds an immediate response with status, headers, body and details', () => {
    const w = immediate({
      status: 404,
      headers: [['content-type', 'application/json']],
      body: '{"a":1}',
      details: 'sluice_x',
    }) as any;
    assert.deepEqual(w.immediate_response.status, { code: 404 });
    assert.equal(w.immediate_response.details, 'sluice_x');
    assert.deepEqual(w.immediate_response.body, Buffer.from('{"a":1}'));
    assert.equal(
      w.immediate_response.headers.set_headers[0].header.raw_value.toString(),
      'application/json',
    );
  });

  it('encodes exactly the bytes proto-loader would for the same answers', () => {
    const ref = referenceService()['Process']!;
    const encode = responseEncoder();
    const answers: WireResponse[] = [
      answer('request_headers', { kind: 'continue' }),
      answer('request_body', {
        kind: 'continue',
        mutation: {
          setHeaders: [
            ['x-sluice-model', 'gpt-4o-mini'],
            ['content-length', '42'],
          ],
          removeHeaders: ['authorization'],
          body: Buffer.from('{"model":"gpt-4o-mini"}'),
          clearRouteCache: true,
        },
      }),
      answer('request_headers', {
        kind: 'continue',
        mutation: { replace: true, body: Buffer.from([0, 0xff]), setHeaders: [[':path', '/x']] },
      }),
      answer('response_headers', {
        kind: 'continue',
        mutation: { modeOverride: { requestBody: 'NONE', responseBody: 'STREAMED' } },
      }),
      answer('response_trailers', { kind: 'continue', mutation: { setHeaders: [['x-t', '1']] } }),
      immediate({ status: 429, headers: [['retry-after', '3']], body: 'slow down', details: 'x' }),
    ];
    for (const w of answers) assert.deepEqual(encode(w), ref.responseSerialize(w));
  });
});
