import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryCacheStore } from './store.js';

const digest = (i: number): string => i.toString(16).padStart(64, '0');

describe('memory cache store', () => {
  it('never holds more than its bound, dropping the least recently used first', () => {
    let t = 0;
    const s = new MemoryCacheStore({ maxBytes: 10_000, now: () => t });
    const value = 'v'.repeat(1000);
    for (let i = 0; i < 4; i++) s.set(digest(i), value, 60_000);
    assert.equal(s.size, 4);
    // Reading 0 makes 1 the least recently used.
    assert.equal(s.get(digest(0)), value);
    s.set(digest(4), value, 60_000);
    assert.ok(s.bytes <= 10_000);
    assert.equal(s.get(digest(1)), undefined);
    assert.equal(s.get(digest(0)), value);
    for (let i = 5; i < 100; i++) {
      s.set(digest(i), value, 60_000);
      assert.ok(s.bytes <= 10_000, `bytes ${s.bytes}`);
    }
    assert.equal(s.size, 4);
    t++;
  });

  it('forgets entries after their TTL', () => {
    let t = 0;
    const s = new MemoryCacheStore({ maxBytes: 10_000, now: () => t });
    s.set(digest(1), 'a', 1000);
    t = 999;
    assert.equal(s.get(digest(1)), 'a');
    t = 1000;
    assert.equal(s.get(digest(1)), undefined);
    assert.equal(s.bytes, 0);
  });

  it('keeps no entry larger than the whole store, and replacing an entry frees the old bytes', () => {
    const s = new MemoryCacheStore({ maxBytes: 1000, now: () => 0 });
    s.set(digest(1), 'x'.repeat(2000), 1000);
    assert.equal(s.size, 0);
    s.set(digest(2), 'x'.repeat(100), 1000);
    const one = s.bytes;
    s.set(digest(2), 'x'.repeat(100), 1000);
    assert.equal(s.bytes, one);
  });
});
