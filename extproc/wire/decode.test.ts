import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { extProcCodec, type ProcessingRequest } from '../../operator/envoy-sim/ext-proc/codec.js';
import { DecodeError, decodeProcessingRequest } from './decode.js';
import { headerMap } from './headers.js';
import { referenceService } from './proto.js';

const reference = referenceService()['Process']!;

function sameAsReference(buf: Buffer): void {
  const ours = decodeProcessingRequest(buf) as any;
  const theirs = reference.requestDeserialize(buf);
  // raw_value comes back as a latin1 string: turn it into the Buffer proto-loader gives.
  const withBuffers = JSON.parse(JSON.stringify(ours));
  for (const side of [
    'request_headers',
    'response_headers',
    'request_trailers',
    'response_trailers',
  ]) {
    const map = ours[side]?.headers ?? ours[side]?.trailers;
    const copy = withBuffers[side]?.headers ?? withBuffers[side]?.trailers;
    map?.headers?.forEach((h: any, i: number) => {
      if (h.raw_latin1 !== undefined) {
        delete copy.headers[i].raw_latin1;
        copy.headers[i].raw_value = JSON.parse(JSON.stringify(Buffer.from(h.raw_latin1, 'latin1')));
      }
    });
  }
  assert.deepEqual(withBuffers, JSON.parse(JSON.stringify(theirs)));
}

// Envoy's encoding (the official protos, as the driver speaks them).
const envoy = extProcCodec();

const HEADERS = {
  headers: [
    { key: ':method', raw_value: Buffer.from('POST') },
    { key: ':path', raw_value: Buffer.from('/v1/chat/completions') },
    { key: 'x-bytes', raw_value: Buffer.from([0x63, 0xe9, 0xff, 0x00, 0x80]) },
    { key: 'x-old-envoy', value: 'välue' },
    { key: 'x-empty', raw_value: Buffer.alloc(0) },
  ],
};

const CASES: [string, ProcessingRequest][] = [
  [
    'request headers with protocol_config and metadata_context',
    {
      request_headers: { headers: HEADERS },
      metadata_context: {},
      protocol_config: {
        request_body_mode: 'BUFFERED',
        response_body_mode: 'FULL_DUPLEX_STREAMED',
        send_body_without_waiting_for_header_response: true,
      },
    },
  ],
  [
    'response headers ending the stream',
    { response_headers: { headers: HEADERS, end_of_stream: true } },
  ],
  ['a request body', { request_body: { body: Buffer.from('{"model":"m"}'), end_of_stream: true } }],
  ['an empty response body', { response_body: { body: Buffer.alloc(0), end_of_stream: true } }],
  ['a body message without a body', { response_body: {} }],
  ['request trailers', { request_trailers: { trailers: HEADERS } }],
  ['response trailers', { response_trailers: { trailers: { headers: [] } } }],
  ['observability mode', { request_body: { body: Buffer.from('x') }, observability_mode: true }],
  [
    'attributes of every Value kind',
    {
      request_headers: { headers: HEADERS },
      attributes: {
        'envoy.filters.http.ext_proc': {
          fields: {
            'xds.cluster_name': { stringValue: 'sluice/backend/openai' },
            n: { numberValue: -1.5 },
            b: { boolValue: false },
            z: { nullValue: 'NULL_VALUE' },
            s: {
              structValue: {
                fields: {
                  deep: { listValue: { values: [{ stringValue: 'a' }, { numberValue: 2 }] } },
                },
              },
            },
            empty: { stringValue: '' },
          },
        },
        other: {},
      },
    },
  ],
];

describe('decodeProcessingRequest', () => {
  for (const [name, msg] of CASES) {
    it(`matches proto-loader: ${name}`, () => sameAsReference(envoy.encodeRequest(msg)));
  }

  it('reads header bytes as latin1, the way headerMap() reads raw_value', () => {
    const buf = envoy.encodeRequest({ request_headers: { headers: HEADERS } });
    const fromOurs = headerMap(decodeProcessingRequest(buf).request_headers?.headers);
    const fromTheirs = headerMap(reference.requestDeserialize(buf).request_headers.headers);
    assert.deepEqual([...fromOurs], [...fromTheirs]);
    assert.equal(fromOurs.get('x-bytes'), 'c\u00e9\u00ff\u0000\u0080');
    assert.equal(fromOurs.get('x-old-envoy'), 'välue');
    assert.equal(fromOurs.get('x-empty'), '');
  });

  it('skips fields it does not know, of every wire type, as proto-loader does', () => {
    const known = envoy.encodeRequest({
      request_body: { body: Buffer.from('b'), end_of_stream: true },
    });
    const unknown = Buffer.from([
      (12 << 3) | 0,
      0x96,
      0x01, // varint
      (13 << 3) | 1,
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8, // fixed64
      (14 << 3) | 2,
      3,
      0x61,
      0x62,
      0x63, // length-delimited
      (15 << 3) | 5,
      1,
      2,
      3,
      4, // fixed32
    ]);
    const buf = Buffer.concat([unknown, known, unknown]);
    sameAsReference(buf);
    assert.deepEqual(decodeProcessingRequest(buf).request_body?.body, Buffer.from('b'));
  });

  // protobufjs keeps both members here; the protobuf spec says the last one wins.
  it('keeps the last member of the oneof when a message carries two', () => {
    const buf = Buffer.concat([
      envoy.encodeRequest({ request_headers: { headers: HEADERS } }),
      envoy.encodeRequest({ response_body: { body: Buffer.from('last') } }),
    ]);
    const m = decodeProcessingRequest(buf);
    assert.equal(m.request, 'response_body');
    assert.equal(m.request_headers, undefined);
  });

  it('refuses truncated messages instead of reading past them', () => {
    const buf = envoy.encodeRequest({ request_headers: { headers: HEADERS } });
    for (const cut of [1, 2, buf.length - 1]) {
      assert.throws(() => decodeProcessingRequest(buf.subarray(0, cut)), DecodeError);
    }
    assert.throws(() => decodeProcessingRequest(Buffer.from([(9 << 3) | 3])), DecodeError);
  });

  it('gives the same result whatever the encoder (proto-loader, from the project protos)', () => {
    const msg = {
      request_headers: { headers: HEADERS, end_of_stream: true },
      metadata_context: {},
    };
    const buf = reference.requestSerialize(msg);
    sameAsReference(buf);
  });
});
