import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK, SPARSE, SeqMarkers } from './seq-markers.js';

const T0 = 1_800_000_000_000;

/** SeqMarkers with what it hands back kept in a Map, as the memory store keeps them by id. */
function markers() {
  const evicted = new Map<string, number>();
  const m = new SeqMarkers((scope, seq, until) => evicted.set(`${scope}/${seq}`, until));
  return { m, evicted };
}

describe('SeqMarkers', () => {
  it('keeps exact times per (number, scope)', () => {
    const { m } = markers();
    assert.equal(m.set(5, 1, T0 + 1), true);
    assert.equal(m.set(6, 2, T0 - 10), true);
    assert.equal(m.get(5, 1), T0 + 1);
    assert.equal(m.get(5, 2), undefined, 'another scope');
    assert.equal(m.get(6, 2), T0 - 10);
    assert.equal(m.get(7, 1), undefined);
    assert.equal(m.get(BLOCK * 3 + 5, 1), undefined, 'a block never made');
    assert.equal(m.set(5, 1, T0 + 1_800_000), true, 'set again');
    assert.equal(m.get(5, 1), T0 + 1_800_000);
    assert.equal(m.size, 2);
  });

  it('refuses what it cannot keep exactly, and then holds no marker of it', () => {
    const { m } = markers();
    assert.equal(m.set(0, 1, T0 + 0.5), false, 'no block yet: not an integer');
    assert.equal(m.set(0, 1, T0), true);
    assert.equal(m.set(0, 2, T0), false, 'its slot is taken by scope 1');
    assert.equal(m.set(1, 1, T0 + 0.5), false, 'not an integer');
    assert.equal(m.set(1, 1, T0 + 2 ** 31), false, 'past the block span');
    assert.equal(m.set(1, 1, T0 - 2 ** 31), false, 'before it');
    assert.equal(m.set(1, 1, T0 + 2 ** 31 - 1), true, 'the last ms of it');
    assert.equal(m.get(1, 1), T0 + 2 ** 31 - 1);
    assert.equal(m.set(1, 1, T0 + 2 ** 32), false, 'an update that does not fit');
    assert.equal(m.get(1, 1), undefined, 'clears the marker it held');
    assert.equal(m.size, 1);
  });

  it('drops a block once all its markers expired and all its numbers were issued', () => {
    const { m, evicted } = markers();
    for (let s = 0; s < BLOCK; s++) m.set(s, 1, T0 + 60_000 + s);
    for (let s = BLOCK; s < BLOCK + 10; s++) m.set(s, 1, T0 + 60_000);
    assert.equal(m.blockCount, 2);
    m.sweep(T0 + 59_999, 2 * BLOCK);
    assert.equal(m.size, BLOCK + 10, 'nothing due');
    m.sweep(T0 + 60_000 + BLOCK, 2 * BLOCK);
    assert.equal(m.blockCount, 0);
    assert.equal(m.size, 0);
    assert.equal(evicted.size, 0, 'expired markers are not handed back');
    // Its numbers are kept by id from now on (a late settlement of a long request).
    assert.equal(m.set(3, 1, T0 + 200_000), false);
  });

  it('keeps the block whose numbers are still being issued, clearing its expired markers', () => {
    const { m } = markers();
    for (let s = 0; s < 100; s++) m.set(s, 1, T0 + 1000);
    m.sweep(T0 + 1000, 100);
    assert.equal(m.size, 0);
    assert.equal(m.blockCount, 1);
    assert.equal(m.set(100, 1, T0 + 5000), true);
    assert.equal(m.get(100, 1), T0 + 5000);
  });

  it('hands a few long-lived markers back and drops their block', () => {
    const { m, evicted } = markers();
    // A block of short-lived markers with SPARSE long-lived ones among them (another policy's).
    for (let s = 0; s < BLOCK; s++) {
      const long = s % 8 === 0 && s / 8 < SPARSE;
      m.set(s, long ? 2 : 1, T0 + (long ? 7_200_000 : 60_000));
    }
    m.sweep(T0 + 60_000, BLOCK);
    assert.equal(m.blockCount, 0);
    assert.equal(evicted.size, SPARSE);
    for (const [key, until] of evicted) {
      const [scope, seq] = key.split('/').map(Number);
      assert.equal(scope, 2);
      assert.equal(seq! % 8, 0);
      assert.equal(until, T0 + 7_200_000);
    }
    assert.equal(m.size, 0);
  });

  it('keeps a block that still holds more than SPARSE live markers', () => {
    const { m, evicted } = markers();
    for (let s = 0; s < BLOCK; s++) m.set(s, 1, T0 + (s <= SPARSE ? 7_200_000 : 60_000));
    m.sweep(T0 + 60_000, BLOCK);
    assert.equal(m.blockCount, 1);
    assert.equal(m.size, SPARSE + 1);
    assert.equal(evicted.size, 0);
    assert.equal(m.get(0, 1), T0 + 7_200_000);
    assert.equal(m.get(SPARSE + 1, 1), undefined, 'an expired one is cleared');
    assert.equal(m.set(SPARSE + 1, 1, T0 + 120_000), true, 'and its slot is free');
  });

  it('bounds the work of one sweep: at most 64 blocks scanned per call', () => {
    const { m } = markers();
    // 200 blocks, each with 500 markers due and 200 that are not (too many to hand back).
    for (let s = 0; s < 200 * BLOCK; s++) {
      const i = s % BLOCK;
      if (i < 500) m.set(s, 1, T0 + 1000);
      else if (i < 700) m.set(s, 1, T0 + 3_600_000);
    }
    const total = 200 * 700;
    assert.equal(m.size, total);
    m.sweep(T0 + 1000, 200 * BLOCK);
    assert.equal(m.size, total - 64 * 500, 'one call scanned 64 blocks');
    m.sweep(T0 + 1000, 200 * BLOCK);
    m.sweep(T0 + 1000, 200 * BLOCK);
    m.sweep(T0 + 1000, 200 * BLOCK);
    assert.equal(m.size, 200 * 200, 'the next calls went on where it stopped');
    assert.equal(m.blockCount, 200);
  });

  it('visits at most 512 blocks per call', () => {
    const { m } = markers();
    for (let n = 0; n < 2000; n++) m.set(n * BLOCK, 1, T0 + 1000);
    assert.equal(m.blockCount, 2000);
    m.sweep(T0 + 1000, 2000 * BLOCK);
    assert.equal(m.blockCount, 2000 - 512);
    for (let i = 0; i < 3; i++) m.sweep(T0 + 1000, 2000 * BLOCK);
    assert.equal(m.blockCount, 0);
    assert.equal(m.size, 0);
  });

  it('answers as a map of (scope, number) would, over a long random run', () => {
    const { m, evicted } = markers();
    const ref = new Map<string, number>();
    let seed = 99;
    const rand = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    let issued = 0;
    let now = T0;
    const pending: [at: number, seq: number, scope: number, ttl: number][] = [];
    /** What the memory store answers: the slot, or else what was handed back. */
    const lookup = (seq: number, scope: number): number | undefined =>
      m.get(seq, scope) ?? evicted.get(`${scope}/${seq}`);
    for (let step = 0; step < 400; step++) {
      now += 1000;
      for (let k = 0; k < 300; k++) {
        const seq = issued++;
        const scope = 1 + Math.floor(rand() * 3);
        // Settled later (some much later), with one of a few TTLs per scope.
        const lag = rand() < 0.02 ? Math.floor(rand() * 200) : Math.floor(rand() * 5);
        const ttl = [20_000, 60_000, 600_000][scope - 1]!;
        pending.push([now + lag * 1000, seq, scope, ttl]);
      }
      pending.sort((a, b) => a[0] - b[0]);
      while (pending.length > 0 && pending[0]![0] <= now) {
        const [, seq, scope, ttl] = pending.shift()!;
        const key = `${scope}/${seq}`;
        // Some are settled again (a retry), some of those after their marker expired.
        if (rand() < 0.03) pending.push([now + Math.floor(rand() * 900) * 1000, seq, scope, ttl]);
        const held = lookup(seq, scope);
        assert.equal(held !== undefined && held > now, (ref.get(key) ?? -Infinity) > now, key);
        if (held !== undefined && held > now) continue;
        if (!m.set(seq, scope, now + ttl)) evicted.set(key, now + ttl);
        else evicted.delete(key);
        ref.set(key, now + ttl);
      }
      m.sweep(now, issued);
      if (step % 50 === 0) {
        for (const [key, until] of ref) {
          const [scope, seq] = key.split('/').map(Number) as [number, number];
          const held = lookup(seq, scope);
          assert.equal(held !== undefined && held > now, until > now, key);
        }
      }
    }
    // Memory follows the live markers: blocks of the last ~600 s (the longest TTL) and a few more.
    assert.ok(m.blockCount <= Math.ceil((700 * 300) / BLOCK), `${m.blockCount} blocks`);
  });
});
