import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { HpackDecoder, HpackError, encodeHeaderBlock } from './hpack.js';
import { HUFFMAN_CODES, HUFFMAN_LENGTHS } from './hpack-huffman.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

type Fields = Array<[string, string]>;

function decodeAll(d: HpackDecoder, block: Uint8Array, start = 0, end = block.length) {
  const fields: Fields = [];
  const size = d.decode(block, start, end, (n, v) => fields.push([n, v]));
  return { fields, size };
}

/** The dynamic table, newest entry first. */
function table(d: HpackDecoder): Fields {
  const out: Fields = [];
  for (let i = 0; i < d.tableLength; i++) out.push([...d.tableEntry(i)!]);
  return out;
}

/** Reference Huffman encoder (RFC 7541 §5.2) written from the same code table: most
 * significant bit first, the last octet padded with the high bits of EOS (ones). */
function huffmanEncode(octets: Uint8Array | number[]): Buffer {
  const out: number[] = [];
  let acc = 0n;
  let bits = 0n;
  for (const o of octets) {
    acc = (acc << BigInt(HUFFMAN_LENGTHS[o]!)) | BigInt(HUFFMAN_CODES[o]!);
    bits += BigInt(HUFFMAN_LENGTHS[o]!);
    while (bits >= 8n) {
      bits -= 8n;
      out.push(Number((acc >> bits) & 0xffn));
    }
    acc &= (1n << bits) - 1n;
  }
  if (bits > 0n) out.push(Number(((acc << (8n - bits)) | ((1n << (8n - bits)) - 1n)) & 0xffn));
  return Buffer.from(out);
}

/** Integer with an N-bit prefix (RFC 7541 §5.1). */
function int(high: number, bits: number, value: number): number[] {
  const max = (1 << bits) - 1;
  if (value < max) return [high | value];
  const out = [high | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

function str(s: string | Buffer, huffman = false): number[] {
  const octets = typeof s === 'string' ? Buffer.from(s, 'latin1') : s;
  const body = huffman ? huffmanEncode(octets) : octets;
  return [...int(huffman ? 0x80 : 0, 7, body.length), ...body];
}

const throwsHpack = (block: number[] | Buffer, d = new HpackDecoder(), why?: RegExp): void => {
  const b = Buffer.from(block);
  assert.throws(
    () => d.decode(b, 0, b.length, () => undefined),
    (e: unknown) => e instanceof HpackError && (why === undefined || why.test(e.message)),
    `${b.toString('hex')} should be refused`,
  );
};

describe('HpackDecoder: RFC 7541 Appendix C', () => {
  it('C.2: one field of each representation', () => {
    const cases: Array<[string, Fields, Fields]> = [
      [
        '400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572',
        [['custom-key', 'custom-header']],
        [['custom-key', 'custom-header']],
      ],
      ['040c 2f73 616d 706c 652f 7061 7468', [[':path', '/sample/path']], []],
      ['1008 7061 7373 776f 7264 0673 6563 7265 74', [['password', 'secret']], []],
      ['82', [[':method', 'GET']], []],
    ];
    for (const [block, fields, dyn] of cases) {
      const d = new HpackDecoder();
      const got = decodeAll(d, hex(block));
      assert.deepEqual(got.fields, fields, block);
      assert.equal(
        got.size,
        fields.reduce((n, [a, b]) => n + a.length + b.length + 32, 0),
      );
      assert.deepEqual(table(d), dyn, block);
    }
  });

  const requests: Array<[Fields, Fields, number]> = [
    [
      [
        [':method', 'GET'],
        [':scheme', 'http'],
        [':path', '/'],
        [':authority', 'www.example.com'],
      ],
      [[':authority', 'www.example.com']],
      57,
    ],
    [
      [
        [':method', 'GET'],
        [':scheme', 'http'],
        [':path', '/'],
        [':authority', 'www.example.com'],
        ['cache-control', 'no-cache'],
      ],
      [
        ['cache-control', 'no-cache'],
        [':authority', 'www.example.com'],
      ],
      110,
    ],
    [
      [
        [':method', 'GET'],
        [':scheme', 'https'],
        [':path', '/index.html'],
        [':authority', 'www.example.com'],
        ['custom-key', 'custom-value'],
      ],
      [
        ['custom-key', 'custom-value'],
        ['cache-control', 'no-cache'],
        [':authority', 'www.example.com'],
      ],
      164,
    ],
  ];
  const date1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
  const date2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
  const loc = 'https://www.example.com';
  const cookie = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
  const responses: Array<[Fields, Fields, number]> = [
    [
      [
        [':status', '302'],
        ['cache-control', 'private'],
        ['date', date1],
        ['location', loc],
      ],
      [
        ['location', loc],
        ['date', date1],
        ['cache-control', 'private'],
        [':status', '302'],
      ],
      222,
    ],
    [
      [
        [':status', '307'],
        ['cache-control', 'private'],
        ['date', date1],
        ['location', loc],
      ],
      [
        [':status', '307'],
        ['location', loc],
        ['date', date1],
        ['cache-control', 'private'],
      ],
      222,
    ],
    [
      [
        [':status', '200'],
        ['cache-control', 'private'],
        ['date', date2],
        ['location', loc],
        ['content-encoding', 'gzip'],
        ['set-cookie', cookie],
      ],
      [
        ['set-cookie', cookie],
        ['content-encoding', 'gzip'],
        ['date', date2],
      ],
      215,
    ],
  ];

  const series = (max: number, blocks: string[], want: Array<[Fields, Fields, number]>): void => {
    const d = new HpackDecoder(max);
    blocks.forEach((block, i) => {
      const got = decodeAll(d, hex(block));
      assert.deepEqual(got.fields, want[i]![0], `block ${i}`);
      assert.deepEqual(table(d), want[i]![1], `table after block ${i}`);
      assert.equal(d.tableSize, want[i]![2], `table size after block ${i}`);
    });
  };

  it('C.3: requests without Huffman', () => {
    series(
      4096,
      [
        '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
        '8286 84be 5808 6e6f 2d63 6163 6865',
        '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
      ],
      requests,
    );
  });

  it('C.4: requests with Huffman', () => {
    series(
      4096,
      [
        '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
        '8286 84be 5886 a8eb 1064 9cbf',
        '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
      ],
      requests,
    );
  });

  it('C.5: responses without Huffman, with evictions (table size 256)', () => {
    series(
      256,
      [
        `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d`,
        '4803 3330 37c1 c0bf',
        `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
         3d31`,
      ],
      responses,
    );
  });

  it('C.6: responses with Huffman, with evictions (table size 256)', () => {
    series(
      256,
      [
        `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
        '4883 640e ffc1 c0bf',
        `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
         9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
      ],
      responses,
    );
  });

  it('decodes the block at [start, end) of a larger buffer, Buffer or plain Uint8Array', () => {
    const block = hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff');
    const big = Buffer.concat([Buffer.from([0xff, 0xff, 0x80]), block, Buffer.from([0xff])]);
    for (const b of [big, new Uint8Array(big)]) {
      const got = decodeAll(new HpackDecoder(), b, 3, 3 + block.length);
      assert.deepEqual(got.fields, requests[0]![0]);
    }
  });
});

describe('HpackDecoder: dynamic table', () => {
  it('evicts per RFC 7541 §4.4 and empties the table for an entry larger than it', () => {
    const d = new HpackDecoder(100);
    // 'a'/'b'*30: 1 + 30 + 32 = 63 octets; a second one evicts the first.
    decodeAll(d, Buffer.from([0x40, ...str('a'), ...str('b'.repeat(30))]));
    assert.equal(d.tableSize, 63);
    decodeAll(d, Buffer.from([0x40, ...str('c'), ...str('d'.repeat(30))]));
    assert.deepEqual(table(d), [['c', 'd'.repeat(30)]]);
    // Two of 34 + one of 32 fit exactly in 100.
    decodeAll(d, Buffer.from([0x40, ...str('e'), ...str('f'), 0x40, ...str('g'), ...str('h')]));
    assert.deepEqual(table(d), [
      ['g', 'h'],
      ['e', 'f'],
    ]);
    decodeAll(d, Buffer.from([0x40, ...str(''), ...str('')]));
    assert.equal(d.tableSize, 100);
    assert.equal(d.tableLength, 3);
    // Larger than the table: the table is emptied, the field still delivered.
    const got = decodeAll(d, Buffer.from([0x40, ...str('x'), ...str('y'.repeat(68))]));
    assert.deepEqual(got.fields, [['x', 'y'.repeat(68)]]);
    assert.equal(d.tableLength, 0);
    assert.equal(d.tableSize, 0);
    // Exactly the table's size: kept.
    decodeAll(d, Buffer.from([0x40, ...str('x'), ...str('y'.repeat(67))]));
    assert.equal(d.tableSize, 100);
  });

  it('a literal may name a dynamic entry that its own insertion evicts', () => {
    const d = new HpackDecoder(70);
    decodeAll(d, Buffer.from([0x40, ...str('name'), ...str('v1')])); // 38
    // Name: index 62 (that entry); adding 'name'/'v2' (38) evicts it first.
    const got = decodeAll(d, Buffer.from([0x40 | 62, ...str('v2'), 0xbe]));
    assert.deepEqual(got.fields, [
      ['name', 'v2'],
      ['name', 'v2'],
    ]);
    assert.deepEqual(table(d), [['name', 'v2']]);
  });

  it('applies size updates at the start of a block, several of them, down to 0 and back', () => {
    const d = new HpackDecoder(4096);
    decodeAll(d, Buffer.from([0x40, ...str('k'), ...str('v'), 0x40, ...str('k2'), ...str('v2')]));
    assert.equal(d.tableLength, 2);
    // An update to 0 empties the table; one back up to 4096 in the same block.
    const got = decodeAll(d, Buffer.from([0x20 | 0, ...int(0x20, 5, 4096), 0x82]));
    assert.deepEqual(got.fields, [[':method', 'GET']]);
    assert.equal(d.tableLength, 0);
    decodeAll(d, Buffer.from([...int(0x20, 5, 40), 0x40, ...str('k'), ...str('v')]));
    decodeAll(d, Buffer.from([0x40, ...str('k3'), ...str('v')]));
    assert.deepEqual(table(d), [['k3', 'v']]);
    throwsHpack([0xbf], d); // index 63: beyond a one-entry table
  });

  it('keeps ring order across many insertions and wrap-arounds', () => {
    const d = new HpackDecoder(4096);
    const model: Fields = [];
    let size = 0;
    for (let i = 0; i < 3000; i++) {
      const name = `n${i % 17}`;
      const value = 'v'.repeat(i % 97) + i;
      decodeAll(d, Buffer.from([0x40, ...str(name), ...str(value)]));
      model.unshift([name, value]);
      size += name.length + value.length + 32;
      while (size > 4096) {
        const [n, v] = model.pop()!;
        size -= n.length + v.length + 32;
      }
      if (i % 101 === 0 || i > 2990) {
        assert.deepEqual(table(d), model);
        assert.equal(d.tableSize, size);
        // Every entry by index.
        const block = Buffer.from(model.flatMap((_, j) => int(0x80, 7, 62 + j)));
        assert.deepEqual(decodeAll(d, block).fields, model);
      }
    }
  });

  it('grows its ring with a large table (2^31 - 1 octets allowed, nothing allocated up front)', () => {
    const d = new HpackDecoder(2 ** 31 - 1);
    const n = 5000;
    const block = Buffer.from(
      Array.from({ length: n }, (_, i) => [0x40, ...str(`k${i}`), ...str('v')]).flat(),
    );
    decodeAll(d, block);
    assert.equal(d.tableLength, n);
    assert.deepEqual(d.tableEntry(0), [`k${n - 1}`, 'v']);
    assert.deepEqual(d.tableEntry(n - 1), ['k0', 'v']);
    const oldest = Buffer.from(int(0x80, 7, 61 + n));
    assert.deepEqual(decodeAll(d, oldest).fields, [['k0', 'v']]);
  });

  it('gives the very same string objects for an indexed field in every block', () => {
    v8.setFlagsFromString('--allow-natives-syntax');
    // A string's identity is visible only to V8's natives syntax.
    const same = vm.runInThisContext('(a, b) => %ReferenceEqual(a, b)') as (
      a: string,
      b: string,
    ) => boolean;
    const d = new HpackDecoder();
    decodeAll(d, Buffer.from([0x40, ...str('x-request-id'), ...str('abc', true), 0x82]));
    const first = decodeAll(d, Buffer.from([0xbe, 0x82, 0x7e, ...str('zz')])).fields;
    const again = decodeAll(d, Buffer.from([0xbf, 0xbf, 0x82, 0x7f, 0x00, ...str('zz')])).fields;
    // 0xbe then: x-request-id/abc; after the first block's insert it is 63 (0xbf).
    assert.deepEqual(first[0], ['x-request-id', 'abc']);
    assert.deepEqual(again[0], ['x-request-id', 'abc']);
    for (const [a, b] of [
      [first[0], again[0]],
      [first[0], again[1]!],
      [first[1]!, again[2]!],
    ] as const) {
      assert.ok(same(a[0], b[0]) && same(a[1], b[1]), `${a.join(':')} / ${b.join(':')}`);
    }
    // A literal with an indexed name: the table's name, a fresh value (equal, not the same).
    assert.deepEqual(first[2], ['x-request-id', 'zz']);
    assert.deepEqual(again[3], ['x-request-id', 'zz']);
    assert.ok(same(first[2][0], again[3][0]) && same(first[2][0], first[0][0]));
    assert.ok(!same(first[2][1], again[3][1]));
  });
});

describe('HpackDecoder: literal values kept per static name', () => {
  it('gives the same string for a repeated literal without indexing of a static name', () => {
    v8.setFlagsFromString('--allow-natives-syntax');
    const same = vm.runInThisContext('(a, b) => %ReferenceEqual(a, b)') as (
      a: string,
      b: string,
    ) => boolean;
    const d = new HpackDecoder();
    const path = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';
    const value = (block: number[]): string => decodeAll(d, Buffer.from(block)).fields[0]![1];
    const a = value([0x04, ...str(path, true)]);
    const b = value([0x04, ...str(path, true)]);
    assert.equal(a, path);
    assert.ok(same(a, b));
    // The same text, coded otherwise: right, not the kept string; then that one is kept.
    const c = value([0x04, ...str(path)]);
    assert.equal(c, path);
    assert.ok(!same(a, c));
    assert.ok(same(c, value([0x04, ...str(path)])));
    // Another value replaces it; other names are kept apart.
    assert.equal(value([0x04, ...str('/x')]), '/x');
    assert.equal(value([0x01, ...str('/x')]), '/x');
    assert.equal(value([0x04, ...str('/y')]), '/y');
    assert.equal(value([0x01, ...str('/x')]), '/x');
    // Never indexed (sensitive): not kept.
    const s1 = value([0x17, ...str('Bearer t')]);
    const s2 = value([0x17, ...str('Bearer t')]);
    assert.equal(s1, 'Bearer t');
    assert.ok(!same(s1, s2));
    // Longer than kept: still right.
    const long = 'p'.repeat(500);
    assert.equal(value([0x04, ...str(long)]), long);
    assert.equal(value([0x04, ...str(long)]), long);
    // A kept value cut short is still refused.
    const cut = [0x04, ...str('/y')].slice(0, -1);
    throwsHpack(cut, d, /truncated/);
  });
});

describe('HpackDecoder: malformed blocks (HpackError)', () => {
  it('refuses bad indices', () => {
    throwsHpack([0x80], undefined, /index 0/);
    throwsHpack([0xbe], undefined, /beyond/); // 62, empty dynamic table
    throwsHpack([0xff, 0x80, 0x01], undefined, /beyond/); // 255
    throwsHpack([0x7e, ...str('v')], undefined, /beyond/); // literal, name index 62
    throwsHpack([0x0f, 0x2f, ...str('v')], undefined, /beyond/); // without indexing, name 62
    throwsHpack([0x1f, 0x2f, ...str('v')], undefined, /beyond/); // never indexed, name 62
    assert.deepEqual(decodeAll(new HpackDecoder(), Buffer.from([0xbd])).fields, [
      ['www-authenticate', ''],
    ]);
  });

  it('refuses integers that overflow or run on, and truncated ones', () => {
    // 127 + 127 + 127*128 + 127*128^2 + 127*128^3 + 15*128^4 > 2^31
    throwsHpack([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], undefined, /overflow/);
    // 2^31 exactly: 127 + (2^31 - 127) = 0x7fffff81 -> 7-bit groups.
    throwsHpack([0xff, ...int(0, 7, 2 ** 31).slice(1)], undefined, /overflow/);
    // 2^31 - 1 is a valid integer (here a bad index).
    throwsHpack([0xff, ...int(0, 7, 2 ** 31 - 1).slice(1)], undefined, /beyond/);
    // Zero-valued continuation octets beyond five.
    throwsHpack([0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], undefined, /too long/);
    throwsHpack([0xff, 0x81, 0x80, 0x80, 0x80, 0x00], undefined, /beyond/); // 5: allowed
    throwsHpack([0xff], undefined, /truncated/);
    throwsHpack([0xff, 0x80], undefined, /truncated/);
    throwsHpack([0x40, 0x7f], undefined, /truncated/); // string length
    throwsHpack([0x40, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x0f], undefined, /overflow/);
    throwsHpack([0x3f, 0xff, 0xff, 0xff, 0xff, 0x0f], undefined, /overflow/); // size update
  });

  it('refuses truncated strings and fields', () => {
    throwsHpack([0x00, 0x05, 0x61], undefined, /truncated/);
    throwsHpack([0x00, 0x01, 0x61], undefined, /truncated/); // no value
    throwsHpack([0x40], undefined, /truncated/); // no name
    throwsHpack([0x04], undefined, /truncated/);
    throwsHpack([0x04, 0x83, 0x61], undefined, /truncated/); // Huffman value cut
    throwsHpack([0x82, 0x00, ...str('a'), 0x02, 0x61], undefined, /truncated/);
  });

  it('refuses bad Huffman: EOS inside, padding over 7 bits, padding not all ones', () => {
    const eos = [0xff, 0xff, 0xff, 0xff]; // EOS (30 ones) + 2 bits of padding
    throwsHpack([0x00, ...int(0x80, 7, 4), ...eos, ...str('v')], undefined, /Huffman/);
    throwsHpack([0x00, ...str('n'), ...int(0x80, 7, 4), ...eos], undefined, /Huffman/);
    // 'a' (00011) then EOS then 'a' again, bit-packed: EOS in the middle.
    const bits = '00011' + '1'.repeat(30) + '00011';
    const padded = bits + '1'.repeat((8 - (bits.length % 8)) % 8);
    const octets = padded.match(/.{8}/g)!.map((b) => parseInt(b, 2));
    throwsHpack(
      [0x00, ...str('n'), ...int(0x80, 7, octets.length), ...octets],
      undefined,
      /Huffman/,
    );
    // 'a' + 11 ones: 11 bits of padding.
    throwsHpack([0x00, ...str('n'), 0x82, 0x1f, 0xff], undefined, /Huffman/);
    // Only padding: 8 ones; 16 ones.
    throwsHpack([0x00, ...str('n'), 0x81, 0xff], undefined, /Huffman/);
    throwsHpack([0x00, ...str('n'), 0x82, 0xff, 0xff], undefined, /Huffman/);
    // 'a' + 000: padding of zeros; 'a' + 101: not all ones.
    throwsHpack([0x00, ...str('n'), 0x81, 0x18], undefined, /Huffman/);
    throwsHpack([0x00, ...str('n'), 0x81, 0x1d], undefined, /Huffman/);
    // Valid: 'a' + 111, and an empty Huffman string.
    assert.deepEqual(
      decodeAll(new HpackDecoder(), Buffer.from([0x00, ...str('n'), 0x81, 0x1f])).fields,
      [['n', 'a']],
    );
    assert.deepEqual(decodeAll(new HpackDecoder(), Buffer.from([0x00, 0x80, 0x80])).fields, [
      ['', ''],
    ]);
  });

  it('refuses a size update above the maximum or after a field', () => {
    throwsHpack(int(0x20, 5, 4097), undefined, /size update/);
    throwsHpack(int(0x20, 5, 257), new HpackDecoder(256), /size update/);
    throwsHpack([0x82, 0x20], undefined, /after a header field/);
    throwsHpack([0x20, 0x82, 0x3f, 0x01], undefined, /after a header field/);
    assert.deepEqual(decodeAll(new HpackDecoder(), Buffer.from(int(0x20, 5, 4096))).fields, []);
    // Each block may start with updates again.
    const d = new HpackDecoder();
    decodeAll(d, Buffer.from([0x20, 0x82]));
    decodeAll(d, Buffer.from([0x3f, 0x01, 0x82]));
  });

  it('checks its range argument', () => {
    const d = new HpackDecoder();
    assert.throws(() => d.decode(Buffer.alloc(2), 1, 3, () => undefined), RangeError);
    assert.throws(() => d.decode(Buffer.alloc(2), 2, 1, () => undefined), RangeError);
    assert.equal(
      d.decode(Buffer.alloc(2), 1, 1, () => undefined),
      0,
    );
    assert.throws(() => new HpackDecoder(-1), RangeError);
  });
});

describe('HpackDecoder: fuzz', () => {
  it('on random and mutated blocks either decodes or throws HpackError, nothing else', () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const valid = [
      hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'),
      hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'),
      hex('4883 640e ffc1 c0bf'),
      hex('8286 84be 5808 6e6f 2d63 6163 6865'),
    ];
    let d = new HpackDecoder(256);
    let ok = 0;
    for (let i = 0; i < 30_000; i++) {
      let block: Buffer;
      if (i % 2) {
        block = Buffer.from(Array.from({ length: rand(48) }, () => rand(256)));
      } else {
        block = Buffer.from(valid[rand(valid.length)]!);
        for (let k = 1 + rand(3); k > 0; k--) block[rand(block.length)] = rand(256);
      }
      try {
        const size = d.decode(block, 0, block.length, (n, v) => {
          assert.equal(typeof n, 'string');
          assert.equal(typeof v, 'string');
        });
        assert.ok(size >= 0);
        assert.ok(d.tableSize <= 256);
        ok++;
      } catch (e) {
        if (!(e instanceof HpackError)) throw e;
        d = new HpackDecoder(256);
      }
    }
    assert.ok(ok > 1000, `${ok} decoded`);
  });
});

describe('Huffman decoding', () => {
  let seed = 0x9e3779b9;
  const rand = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };

  it('decodes what the reference encoder makes, for every octet and random strings', () => {
    const d = new HpackDecoder(0);
    const check = (octets: Buffer): void => {
      const block = Buffer.from([0x00, ...str('n'), ...str(octets, true)]);
      const got = decodeAll(d, block).fields;
      assert.equal(got[0]![1], octets.toString('latin1'));
    };
    for (let o = 0; o < 256; o++) {
      check(Buffer.from([o]));
      check(Buffer.from([o, o, o]));
      check(Buffer.from([o, 255 - o, (o * 7) & 255, o]));
    }
    check(Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
    for (let i = 0; i < 5000; i++) {
      const len = rand(40);
      const octets = Buffer.alloc(len);
      // Half printable ASCII (short codes), half any octet (long codes).
      for (let j = 0; j < len; j++) octets[j] = i % 2 ? rand(256) : 32 + rand(95);
      check(octets);
    }
    check(Buffer.alloc(100_000, 'a')); // beyond the reused scratch buffer
    check(Buffer.from(Array.from({ length: 70_000 }, () => rand(256))));
  });

  it('is linear: a 1 MiB Huffman string and a 1 MiB block of small literals', () => {
    const big = Buffer.from(Array.from({ length: 1 << 20 }, () => 32 + rand(95)));
    const huff = huffmanEncode(big);
    const block1 = Buffer.from([0x00, ...str('n'), ...int(0x80, 7, huff.length)]);
    const parts: Buffer[] = [];
    let n = 0;
    for (let len = 0; len < 1 << 20; n++) {
      const p = Buffer.from([
        (n & 3) === 0 ? 0x40 : 0x00,
        ...str(`k${n % 50}`),
        ...str(`v${n}`, (n & 1) === 1),
        0x82,
        0xbe,
      ]);
      parts.push(p);
      len += p.length;
    }
    const block2 = Buffer.concat(parts);
    const t0 = process.cpuUsage();
    const got = decodeAll(new HpackDecoder(), Buffer.concat([block1, huff])).fields;
    assert.equal(got[0]![1], big.toString('latin1'));
    let count = 0;
    new HpackDecoder().decode(block2, 0, block2.length, () => count++);
    assert.equal(count, 3 * n);
    const cpu = process.cpuUsage(t0);
    // Generous: both take tens of milliseconds.
    assert.ok(cpu.user + cpu.system < 3_000_000, `${(cpu.user + cpu.system) / 1000} ms of CPU`);
  });
});

describe('encodeHeaderBlock', () => {
  it('encodes literals without indexing, static name indices, no Huffman', () => {
    assert.deepEqual(
      encodeHeaderBlock([
        [':status', '200'],
        ['content-type', 'application/grpc'],
        ['grpc-status', '0'],
      ]),
      Buffer.from([
        0x08,
        ...str('200'),
        0x0f,
        0x10,
        ...str('application/grpc'),
        0x00,
        ...str('grpc-status'),
        ...str('0'),
      ]),
    );
    assert.equal(encodeHeaderBlock([]).length, 0);
  });

  it('round-trips through HpackDecoder and leaves its table empty', () => {
    const fields: Fields = [
      [':status', '200'],
      [':authority', ''],
      ['www-authenticate', 'x'],
      ['grpc-message', 'a'.repeat(300)],
      ['x-latin1', '\u00e9\u00ff\u0000\u007f'],
      ['y'.repeat(127), 'z'.repeat(127)],
      ['q', 'q'],
    ];
    const d = new HpackDecoder();
    const block = encodeHeaderBlock(fields);
    const got = decodeAll(d, block);
    assert.deepEqual(got.fields, fields);
    assert.equal(
      got.size,
      fields.reduce((n, [a, b]) => n + a.length + b.length + 32, 0),
    );
    assert.equal(d.tableLength, 0);
  });

  it('round-trips random fields (static and other names, lengths across integer prefixes)', () => {
    let seed = 99;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const names = [':path', 'content-type', 'www-authenticate', 'grpc-status', 'x'];
    const text = (len: number, lower: boolean): string =>
      Array.from({ length: len }, () => {
        const c = rand(256);
        return String.fromCharCode(lower && c >= 0x41 && c <= 0x5a ? c + 32 : c);
      }).join('');
    const d = new HpackDecoder();
    for (let i = 0; i < 1000; i++) {
      const fields: Fields = Array.from({ length: rand(6) }, () => [
        rand(3) === 0 ? text(1 + rand(300), true) : names[rand(names.length)]!,
        text([0, 1, 126, 127, 128, 255, 16_510][rand(7)]! + rand(3), false),
      ]);
      assert.deepEqual(decodeAll(d, encodeHeaderBlock(fields)).fields, fields);
    }
  });

  it('refuses upper case names and non-latin1 text', () => {
    assert.throws(() => encodeHeaderBlock([['Content-Type', 'x']]), TypeError);
    assert.throws(() => encodeHeaderBlock([['x', '\u0100']]), TypeError);
    assert.throws(() => encodeHeaderBlock([['', 'x']]), TypeError);
  });
});

describe('against nghttp2 (a node:http2 client)', () => {
  it('decodes the HEADERS blocks of many requests on one connection', async () => {
    const blocks: Buffer[] = [];
    let want = 0;
    let done: () => void = () => undefined;
    const allIn = new Promise<void>((resolve) => (done = resolve));
    const server = net.createServer((socket) => {
      let buf = Buffer.alloc(0);
      let preface = false;
      let pending: Buffer[] = [];
      // Empty SETTINGS, so the client proceeds.
      socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (!preface) {
          if (buf.length < 24) return;
          buf = buf.subarray(24);
          preface = true;
        }
        while (buf.length >= 9) {
          const len = buf.readUIntBE(0, 3);
          if (buf.length < 9 + len) break;
          const type = buf[3]!;
          const flags = buf[4]!;
          let payload = buf.subarray(9, 9 + len);
          buf = buf.subarray(9 + len);
          if (type === 4 && (flags & 1) === 0) {
            socket.write(Buffer.from([0, 0, 0, 4, 1, 0, 0, 0, 0])); // SETTINGS ACK
          }
          if (type === 1 || type === 9) {
            if (type === 1) {
              let pad = 0;
              if (flags & 0x8) {
                pad = payload[0]!;
                payload = payload.subarray(1);
              }
              if (flags & 0x20) payload = payload.subarray(5);
              payload = payload.subarray(0, payload.length - pad);
            }
            pending.push(Buffer.from(payload));
            if (flags & 0x4) {
              blocks.push(Buffer.concat(pending));
              pending = [];
              if (blocks.length === want) done();
            }
          }
        }
      });
      socket.on('error', () => undefined);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as net.AddressInfo;
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => undefined);

    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const pool = Array.from({ length: 40 }, (_, i): [string, string] => [
      `x-h${i % 13}`,
      `value-${i}-${'abcdefghij'.slice(0, i % 10)}`,
    ]);
    const sent: Fields[] = [];
    for (let r = 0; r < 300; r++) {
      const headers: Record<string, string> = {
        ':method': r % 3 ? 'POST' : 'GET',
        ':path': r % 5 ? '/envoy.service.ext_proc.v3.ExternalProcessor/Process' : `/p/${r}`,
        'content-type': 'application/grpc',
        te: 'trailers',
        'x-request-id': `${r.toString(16).padStart(8, '0')}-9c1e-4f6a-8b2d-${rand(1e9)}`,
      };
      for (let k = rand(8); k > 0; k--) {
        const [n, v] = pool[rand(pool.length)]!;
        headers[n] = v;
      }
      if (r % 50 === 7)
        headers['x-random'] = Array.from({ length: 2000 }, () =>
          String.fromCharCode(32 + rand(95)),
        ).join('');
      if (r === 123) headers['x-big'] = 'B'.repeat(20_000); // HEADERS + CONTINUATION
      sent.push(Object.entries(headers));
      const req = client.request(headers, { endStream: true });
      req.on('error', () => undefined);
    }
    want = sent.length;
    await allIn;
    client.destroy();
    server.close();

    const d = new HpackDecoder(4096);
    assert.equal(blocks.length, sent.length);
    blocks.forEach((block, i) => {
      const got = decodeAll(d, block).fields;
      const byName = new Map(got);
      assert.equal(byName.size, got.length, `request ${i}: duplicate names`);
      for (const [n, v] of sent[i]!) assert.equal(byName.get(n), v, `request ${i}: ${n}`);
      assert.equal(byName.get(':scheme'), 'http');
      assert.equal(byName.get(':authority'), `127.0.0.1:${port}`);
      assert.equal(got.length, sent[i]!.length + 2);
    });
    // The client's encoder did use the dynamic table.
    assert.ok(d.tableLength > 10, `${d.tableLength} entries`);
  });
});

describe('allocation', () => {
  it('a repeated fully indexed block allocates nothing', () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const d = new HpackDecoder();
    const first = Buffer.from([
      0x83,
      0x86,
      0x44,
      ...str('/envoy.service.ext_proc.v3.ExternalProcessor/Process'),
      0x41,
      ...str('ext_proc_cluster', true),
      0x5f,
      ...str('application/grpc'),
      0x40,
      ...str('te'),
      ...str('trailers'),
    ]);
    decodeAll(d, first);
    // Indices, and :path as nghttp2 sends it (literal without indexing).
    const repeat = Buffer.from([
      0x83,
      0x86,
      0xc1,
      0xc0,
      0xbf,
      0xbe,
      0x04,
      ...str('/envoy.service.ext_proc.v3.ExternalProcessor/Process', true),
    ]);
    let octets = 0;
    const sink = (n: string, v: string): void => {
      octets += n.length + v.length;
    };
    for (let i = 0; i < 20_000; i++) d.decode(repeat, 0, repeat.length, sink);
    const runs: number[] = [];
    for (let r = 0; r < 3; r++) {
      gc();
      const before = process.memoryUsage().heapUsed;
      for (let i = 0; i < 10_000; i++) d.decode(repeat, 0, repeat.length, sink);
      runs.push((process.memoryUsage().heapUsed - before) / 10_000);
    }
    assert.ok(octets > 0);
    // A string per field would be >= 16 B each, ~100 B per block.
    assert.ok(Math.min(...runs) < 2, `bytes per block: ${runs.join(', ')}`);
  });
});
