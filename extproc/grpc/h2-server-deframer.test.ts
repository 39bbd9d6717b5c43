import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Deframer, Status } from './h2-call.js';

const frame = (body: Buffer, flag = 0): Buffer => {
  const out = Buffer.alloc(5 + body.length);
  out[0] = flag;
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
};

/** What a Deframer hands on for `bytes` cut at `cuts` (ascending offsets). */
function read(
  bytes: Buffer,
  cuts: number[],
  max = 1 << 20,
): { messages: string[]; failed?: string } {
  const messages: string[] = [];
  let failed: string | undefined;
  const d = new Deframer(max, {
    message: (b) => messages.push(b.toString('latin1')),
    fail: (code, message) => (failed ??= `${code} ${message}`),
  });
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    if (failed) break;
    d.push(bytes.subarray(at, c));
    at = c;
  }
  return failed === undefined ? { messages } : { messages, failed };
}

const BODIES = ['a', '', 'hello world', 'x'.repeat(300), '', 'z'];
const STREAM = Buffer.concat(BODIES.map((b) => frame(Buffer.from(b, 'latin1'))));

describe('Deframer', () => {
  it('gives every message whole wherever one cut falls, and two cuts', () => {
    for (let i = 1; i < STREAM.length; i++) {
      assert.deepEqual(read(STREAM, [i]), { messages: BODIES }, `cut at ${i}`);
      for (let j = i + 1; j < STREAM.length; j += 7) {
        assert.deepEqual(read(STREAM, [i, j]), { messages: BODIES }, `cuts at ${i}, ${j}`);
      }
    }
  });

  it('gives every message whole fed byte by byte, and in one chunk', () => {
    const all = Array.from({ length: STREAM.length - 1 }, (_, i) => i + 1);
    assert.deepEqual(read(STREAM, all), { messages: BODIES });
    assert.deepEqual(read(STREAM, []), { messages: BODIES });
  });

  it('hands on views of the chunk, not copies, when a chunk holds the message', () => {
    const chunk = Buffer.concat([frame(Buffer.from('one')), frame(Buffer.from('two'))]);
    const seen: Buffer[] = [];
    const d = new Deframer(100, { message: (b) => seen.push(b), fail: () => undefined });
    d.push(chunk);
    assert.equal(seen.length, 2);
    assert.equal(seen[0]!.buffer, chunk.buffer);
    assert.equal(seen[1]!.toString(), 'two');
  });

  it('refuses a compressed message and one over the limit, wherever the prefix is cut', () => {
    const compressed = Buffer.concat([frame(Buffer.from('ok')), frame(Buffer.from('zz'), 1)]);
    const big = Buffer.concat([frame(Buffer.from('ok')), frame(Buffer.alloc(11))]);
    for (let i = 0; i < compressed.length; i++) {
      const r = read(compressed, i === 0 ? [] : [i]);
      assert.deepEqual(r.messages, ['ok']);
      assert.equal(r.failed, `${Status.UNIMPLEMENTED} compressed messages are not supported`);
      const b = read(big, i === 0 ? [] : [i], 10);
      assert.deepEqual(b.messages, ['ok']);
      assert.equal(
        b.failed,
        `${Status.RESOURCE_EXHAUSTED} received message larger than max (11 vs. 10)`,
      );
    }
  });
});
