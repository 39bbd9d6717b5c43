import { test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import {
  BodyDecodeError,
  DecompressionLimitError,
  createBodyDecoder,
  isBodyDecoder,
  type BodyDecoder,
} from './decode.js';

const MAX = 1 << 20;

function decoder(enc: string, max = MAX): BodyDecoder {
  const d = createBodyDecoder(enc, { maxOutputBytes: max });
  assert.ok(isBodyDecoder(d), enc);
  return d;
}

async function decodeAll(enc: string, data: Buffer, step: number, max = MAX): Promise<Buffer> {
  const d = decoder(enc, max);
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += step) out.push(await d.push(data.subarray(i, i + step)));
  out.push(await d.end());
  return Buffer.concat(out);
}

const SAMPLE = Buffer.from(
  Array.from({ length: 200 }, (_, i) => `data: {"i":${i},"t":"héllo 世界"}\n\n`).join(''),
);

test('absent, identity and empty encodings need no decoder; unknown ones are reported', () => {
  assert.equal(createBodyDecoder(undefined, { maxOutputBytes: 1 }), null);
  assert.equal(createBodyDecoder('identity', { maxOutputBytes: 1 }), null);
  assert.equal(createBodyDecoder(' ', { maxOutputBytes: 1 }), null);
  assert.deepEqual(createBodyDecoder('zstd', { maxOutputBytes: 1 }), {
    supported: false,
    encoding: 'zstd',
  });
  assert.deepEqual(createBodyDecoder('gzip, compress', { maxOutputBytes: 1 }), {
    supported: false,
    encoding: 'compress',
  });
  assert.ok(isBodyDecoder(createBodyDecoder(' GZip ', { maxOutputBytes: 1 })));
});

test('gzip / x-gzip / deflate (zlib and raw) / br decode at every small chunk size', async () => {
  const cases: [string, Buffer][] = [
    ['gzip', zlib.gzipSync(SAMPLE)],
    ['x-gzip', zlib.gzipSync(SAMPLE)],
    ['deflate', zlib.deflateSync(SAMPLE)],
    ['deflate', zlib.deflateRawSync(SAMPLE)],
    ['br', zlib.brotliCompressSync(SAMPLE)],
  ];
  for (const [enc, data] of cases) {
    for (const step of [1, 2, 3, 5, 7, 13, data.length]) {
      assert.deepEqual(await decodeAll(enc, data, step), SAMPLE, `${enc} step ${step}`);
    }
  }
});

test('each push returns everything decodable so far (a streamed, flushed response)', async () => {
  for (const [enc, make, flush] of [
    ['gzip', () => zlib.createGzip(), zlib.constants.Z_SYNC_FLUSH],
    ['deflate', () => zlib.createDeflate(), zlib.constants.Z_SYNC_FLUSH],
    ['br', () => zlib.createBrotliCompress(), zlib.constants.BROTLI_OPERATION_FLUSH],
  ] as const) {
    // An upstream compressing an SSE stream flushes after each event; so must we.
    const c = make();
    const parts: Buffer[] = [];
    c.on('data', (b: Buffer) => parts.push(b));
    const d = decoder(enc);
    for (let i = 0; i < 5; i++) {
      const ev = Buffer.from(`data: {"n":${i}}\n\n`);
      await new Promise<void>((resolve) => {
        c.write(ev);
        c.flush(flush, () => resolve());
      });
      const compressed = Buffer.concat(parts.splice(0));
      assert.deepEqual(await d.push(compressed), ev, `${enc} event ${i}`);
    }
    await new Promise<void>((resolve) => {
      c.once('end', resolve);
      c.end();
    });
    assert.equal((await d.push(Buffer.concat(parts))).length + (await d.end()).length, 0);
  }
});

test('concatenated gzip members decode as one body', async () => {
  const data = Buffer.concat([zlib.gzipSync('first,'), zlib.gzipSync('second')]);
  for (const step of [1, 4, data.length]) {
    assert.equal((await decodeAll('gzip', data, step)).toString(), 'first,second');
  }
});

test('a list of codings is decoded in reverse order', async () => {
  const data = zlib.brotliCompressSync(zlib.gzipSync(SAMPLE));
  assert.deepEqual(await decodeAll('gzip, br', data, 9), SAMPLE);
});

test('overlapping pushes (not awaited one by one) still come out in order', async () => {
  const data = zlib.gzipSync(SAMPLE);
  const d = decoder('gzip');
  const pending: Promise<Buffer>[] = [];
  for (let i = 0; i < data.length; i += 11) pending.push(d.push(data.subarray(i, i + 11)));
  pending.push(d.end());
  assert.deepEqual(Buffer.concat(await Promise.all(pending)), SAMPLE);
});

test('a decompression bomb is stopped at the bound with a typed error', async () => {
  const bomb = zlib.gzipSync(Buffer.alloc(64 << 20)); // 64 MiB of zeros, ~64 KiB compressed
  assert.ok(bomb.length < 100_000);
  const d = decoder('gzip', 1 << 20);
  const before = process.memoryUsage().arrayBuffers;
  await assert.rejects(d.push(bomb), (e) => {
    assert.ok(e instanceof DecompressionLimitError);
    assert.equal(e.code, 'response_too_large');
    return true;
  });
  // It stopped early instead of inflating everything first.
  assert.ok(process.memoryUsage().arrayBuffers - before < 32 << 20);
  await assert.rejects(d.push(Buffer.from('x')), DecompressionLimitError);
  await assert.rejects(d.end(), DecompressionLimitError);

  // The bound counts across pushes, and through a chain.
  const small = zlib.gzipSync(Buffer.alloc(3000));
  await assert.rejects(decodeAll('gzip', small, 10, 2000), DecompressionLimitError);
  await assert.rejects(
    decodeAll('deflate', zlib.deflateSync(Buffer.alloc(3000)), 1, 2000),
    DecompressionLimitError,
  );
  await assert.rejects(
    decodeAll('br', zlib.brotliCompressSync(Buffer.alloc(3000)), 10, 2000),
    DecompressionLimitError,
  );
  assert.deepEqual(await decodeAll('gzip', small, 10, 3000), Buffer.alloc(3000));
});

test('corrupt or truncated input rejects with a typed error', async () => {
  const garbage = Buffer.from('this is definitely not compressed data at all, no sir');
  for (const enc of ['gzip', 'deflate', 'br']) {
    await assert.rejects(decodeAll(enc, garbage, 8), (e) => {
      assert.ok(e instanceof BodyDecodeError, enc);
      assert.equal(e.code, 'gateway_error');
      assert.ok(!e.message.includes('zlib'), 'no foreign error text');
      return true;
    });
  }
  const gz = zlib.gzipSync(SAMPLE);
  await assert.rejects(decodeAll('gzip', gz.subarray(0, gz.length - 10), 7), BodyDecodeError);
  await assert.rejects(decodeAll('deflate', Buffer.from([0x78]), 1), BodyDecodeError);
  // A flipped byte in the middle: either the data or the CRC check fails.
  const flipped = Buffer.from(gz);
  flipped[Math.floor(flipped.length / 2)]! ^= 0xff;
  await assert.rejects(decodeAll('gzip', flipped, 64), BodyDecodeError);
});

test('an empty body decodes to nothing', async () => {
  const d = decoder('gzip');
  assert.equal((await d.push(Buffer.alloc(0))).length, 0);
  // gzip with no bytes at all is an unexpected end of input.
  await assert.rejects(d.end(), BodyDecodeError);
  assert.equal((await decoder('deflate').end()).length, 0);
});
