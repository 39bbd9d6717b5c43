import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { extProcCodec } from '../../operator/envoy-sim/ext-proc/codec.js';
import { DecodeError, decodeProcessingRequest } from './decode.js';
import { headerMap, RawHeaderMap, type WireHeader } from './headers.js';
import { referenceService } from './proto.js';

const envoy = extProcCodec();
const reference = referenceService()['Process']!;

type Header = { key: string; raw_value?: Buffer; value?: string };

/** Our view of these headers and the Map of proto-loader's decoding of the same bytes. */
function both(headers: Header[]): [ReadonlyMap<string, string>, ReadonlyMap<string, string>] {
  const buf = envoy.encodeRequest({ request_headers: { headers: { headers } } });
  const ours = decodeProcessingRequest(buf).request_headers?.headers;
  assert.ok(ours instanceof RawHeaderMap);
  return [headerMap(ours), headerMap(reference.requestDeserialize(buf).request_headers.headers)];
}

const raw = (key: string, v: string | Buffer): Header => ({
  key,
  raw_value: typeof v === 'string' ? Buffer.from(v, 'latin1') : v,
});

const HEADERS: Header[] = [
  raw(':method', 'POST'),
  raw(':path', '/v1/chat/completions'),
  raw('content-type', 'application/json'),
  raw('X-Mixed-Case', 'kept'),
  raw('accept', 'a/b'),
  raw('accept', 'c/d'),
  raw('x-bytes', Buffer.from([0x63, 0xe9, 0xff, 0x00, 0x80])),
  { key: 'x-old-envoy', value: 'välue' },
  { key: 'x-both', value: 'value', raw_value: Buffer.from('raw') },
  { key: 'x-raw-empty', value: 'from value', raw_value: Buffer.alloc(0) },
  { key: 'x-nothing' },
  { key: '', raw_value: Buffer.from('no name') },
  raw('accept', 'e/f'),
];

/** Names asked for: every key as sent and lowercased, and some that are not there. */
const NAMES = [
  ...new Set(HEADERS.flatMap((h) => [h.key, h.key.toLowerCase(), h.key.toUpperCase()])),
  'content-length',
  'x',
  'accep',
  'acceptt',
  ':status',
];

describe('headerMap of a RawHeaderMap (decoded on lookup)', () => {
  it('answers get and has as the Map of the same headers does, before and after iterating', () => {
    const [view, map] = both(HEADERS);
    for (const name of NAMES) {
      assert.equal(view.get(name), map.get(name), `get(${JSON.stringify(name)})`);
      assert.equal(view.has(name), map.has(name), `has(${JSON.stringify(name)})`);
    }
    assert.equal(view.get('accept'), 'a/b, c/d, e/f');
    assert.equal(view.get('x-mixed-case'), 'kept');
    assert.equal(view.get('X-Mixed-Case'), undefined);
    assert.equal(view.get('x-both'), 'raw');
    assert.equal(view.get('x-raw-empty'), 'from value');
    assert.equal(view.get('x-nothing'), '');
    assert.equal(view.get(''), undefined);
    assert.deepEqual([...view], [...map]);
    assert.equal(view.size, map.size);
    for (const name of NAMES) assert.equal(view.get(name), map.get(name));
  });

  it('iterates like the Map: entries, keys, values, forEach', () => {
    const [view, map] = both(HEADERS);
    assert.deepEqual([...view.entries()], [...map.entries()]);
    assert.deepEqual([...view.keys()], [...map.keys()]);
    assert.deepEqual([...view.values()], [...map.values()]);
    const seen: [string, string][] = [];
    view.forEach(function (this: unknown, v, k, m) {
      assert.equal(m, view);
      assert.equal(this, seen);
      seen.push([k, v]);
    }, seen);
    assert.deepEqual(seen, [...map]);
  });

  it('answers lookups that alternate between maps (one shared index, refilled per map)', () => {
    const other: Header[] = [
      raw(':method', 'GET'),
      raw(':path', '/v1/models'),
      raw('accept', 'x/y'),
      raw('x-only-here', '1'),
    ];
    const [a, aMap] = both(HEADERS);
    const [b, bMap] = both(other);
    // Another map between each lookup: every lookup finds the index holding the other map.
    for (let round = 0; round < 2; round++) {
      for (const name of [...NAMES, 'x-only-here']) {
        assert.equal(a.get(name), aMap.get(name), `a.get(${JSON.stringify(name)})`);
        assert.equal(b.get(name), bMap.get(name), `b.get(${JSON.stringify(name)})`);
        assert.equal(a.has(name), aMap.has(name), `a.has(${JSON.stringify(name)})`);
        assert.equal(b.has(name), bMap.has(name), `b.has(${JSON.stringify(name)})`);
      }
    }
  });

  it('answers a map with more headers than the index holds by walking it', () => {
    const many: Header[] = [];
    for (let i = 0; i < 600; i++) many.push(raw(`x-h${i % 300}`, `v${i}`));
    many.push(raw('content-type', 'application/json'));
    const [view, map] = both(many);
    for (const name of ['x-h0', 'x-h299', 'x-h300', 'content-type', 'absent']) {
      assert.equal(view.get(name), map.get(name), name);
      assert.equal(view.has(name), map.has(name), name);
    }
    assert.equal(view.get('x-h7'), 'v7, v307');
    // A small map in between, then the large one again.
    const [small, smallMap] = both([raw('x-h0', 'small')]);
    assert.equal(small.get('x-h0'), smallMap.get('x-h0'));
    assert.equal(view.get('content-type'), 'application/json');
  });

  it('matches a key outside ASCII as toLowerCase does (U+212A KELVIN SIGN is "k")', () => {
    const [view, map] = both([raw('\u212Aey', 'kelvin'), raw('key', 'ascii')]);
    assert.equal(map.get('key'), 'kelvin, ascii');
    assert.equal(view.get('key'), 'kelvin, ascii');
    assert.equal(view.has('key'), true);
  });

  it('keeps the last occurrence of a HeaderValue field and merges a repeated HeaderMap', () => {
    // HeaderValue { key: "x-a", key: "x-b", raw_value: "1" } in one HeaderMap, then a second
    // HeaderMap field of the same HttpHeaders with { key: "x-b", raw_value: "2" }.
    const hv = (...fields: [number, string][]): Buffer =>
      Buffer.concat(
        fields.map(([f, s]) =>
          Buffer.concat([Buffer.from([(f << 3) | 2, s.length]), Buffer.from(s)]),
        ),
      );
    const entry = (b: Buffer): Buffer => Buffer.concat([Buffer.from([(1 << 3) | 2, b.length]), b]);
    const map1 = entry(hv([1, 'x-a'], [1, 'x-b'], [3, '1']));
    const map2 = entry(hv([1, 'x-b'], [3, '2']));
    const http = Buffer.concat([
      Buffer.from([(1 << 3) | 2, map1.length]),
      map1,
      Buffer.from([(1 << 3) | 2, map2.length]),
      map2,
    ]);
    const buf = Buffer.concat([Buffer.from([(2 << 3) | 2, http.length]), http]);
    const ours = decodeProcessingRequest(buf).request_headers?.headers;
    const view = headerMap(ours);
    assert.equal(view.get('x-a'), undefined);
    // A merge after a lookup (the index holds the map as it was) is seen by the next lookup.
    const grown = new RawHeaderMap(buf, 4, 4 + map1.length);
    assert.equal(headerMap(grown).get('x-b'), '1');
    grown.merge(4 + map1.length + 2, buf.length);
    assert.equal(headerMap(grown).get('x-b'), '1, 2');
    assert.equal(view.get('x-b'), '1, 2');
    // (protobufjs keeps only the last HeaderMap; the protobuf spec, and this decoder, merge.)
    assert.deepEqual([...view], [['x-b', '1, 2']]);
    assert.deepEqual(
      (ours?.headers as WireHeader[]).map((h) => [h.key, h.raw_latin1]),
      [
        ['x-b', '1'],
        ['x-b', '2'],
      ],
    );
  });

  it('skips unknown fields of every wire type inside a HeaderValue and the HeaderMap', () => {
    // HeaderMap { 7: varint 300, headers { 9: fixed64, key "a", 8: fixed32, raw_value "v", 10: varint } }
    const hv = Buffer.from([
      (9 << 3) | 1,
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8,
      (1 << 3) | 2,
      1,
      0x61,
      (8 << 3) | 5,
      1,
      2,
      3,
      4,
      (3 << 3) | 2,
      1,
      0x76,
      (10 << 3) | 0,
      0x96,
      0x01,
    ]);
    const map = Buffer.concat([
      Buffer.from([(7 << 3) | 0, 0xac, 0x02, (1 << 3) | 2, hv.length]),
      hv,
    ]);
    const http = Buffer.concat([Buffer.from([(1 << 3) | 2, map.length]), map]);
    const buf = Buffer.concat([Buffer.from([(2 << 3) | 2, http.length]), http]);
    const ours = decodeProcessingRequest(buf).request_headers?.headers;
    const theirs = reference.requestDeserialize(buf).request_headers.headers;
    assert.equal(headerMap(ours).get('a'), 'v');
    assert.deepEqual([...headerMap(ours)], [...headerMap(theirs)]);
  });

  it('still refuses a malformed HeaderValue when the message is decoded', () => {
    // A HeaderValue whose key claims 9 bytes where 1 follows.
    const hv = Buffer.from([(1 << 3) | 2, 9, 0x61]);
    const map = Buffer.concat([Buffer.from([(1 << 3) | 2, hv.length]), hv]);
    const http = Buffer.concat([Buffer.from([(1 << 3) | 2, map.length]), map]);
    const buf = Buffer.concat([Buffer.from([(2 << 3) | 2, http.length]), http]);
    assert.throws(() => decodeProcessingRequest(buf), DecodeError);
  });

  it('gives an empty view for a HeaderMap without headers', () => {
    const [view, map] = both([]);
    assert.equal(view.get(':path'), undefined);
    assert.equal(view.size, 0);
    assert.equal(map.size, 0);
  });
});
