import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { reservationId } from '../governance/budget.js';
import { IdIssuer } from './issued-ids.js';
import { PackedIdTimes } from './packed-ids.js';

describe('PackedIdTimes', () => {
  it('holds only 22 base64url characters', () => {
    assert.equal(PackedIdTimes.fits(reservationId()), true);
    assert.equal(PackedIdTimes.fits('AAAAAAAAAAAAAAAAAAAAA_'), true);
    assert.equal(PackedIdTimes.fits('AAAAAAAAAAAAAAAAAAAAA'), false, '21');
    assert.equal(PackedIdTimes.fits('AAAAAAAAAAAAAAAAAAAAAAA'), false, '23');
    assert.equal(PackedIdTimes.fits('AAAAAAAAAAAAAAAAAAAAA='), false);
    assert.equal(PackedIdTimes.fits('AAAAAAAAAAAAAAAAAAAAAé'), false);
    assert.equal(PackedIdTimes.fits('AAAAAAAAAAAAAAAAAAAAA\u0141'), false);
    assert.throws(() => new PackedIdTimes().set('r-1', 5), RangeError);
  });

  it('answers as a Map would, through growth, sweeps and reuse of deleted slots', () => {
    const t = new PackedIdTimes();
    const ref = new Map<string, number>();
    let now = 1_000;
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 500; i++) {
        const id = reservationId();
        const until = now + 1 + ((i * 7919) % 5000);
        t.set(id, until);
        ref.set(id, until);
      }
      // Some are set again (a later time), as a re-settled id is.
      let k = 0;
      for (const id of ref.keys()) {
        if (k++ % 13 !== 0) continue;
        ref.set(id, now + 6000);
        t.set(id, now + 6000);
      }
      now += 1000;
      t.sweep(now);
      for (const [id, until] of ref) if (until <= now) ref.delete(id);
      assert.equal(t.size, ref.size);
    }
    for (const [id, until] of ref) assert.equal(t.get(id), until);
    for (let i = 0; i < 1000; i++) assert.equal(t.get(reservationId()), undefined);
  });

  it('never takes one id for another: ids one character apart', () => {
    const t = new PackedIdTimes();
    const base = 'abcdefghijklmnopqrstuv';
    t.set(base, 1);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (let i = 0; i < base.length; i++) {
      for (const c of alphabet) {
        const id = base.slice(0, i) + c + base.slice(i + 1);
        if (id !== base) assert.equal(t.get(id), undefined, id);
      }
    }
    assert.equal(t.get(base), 1);
  });

  it('sweeps a few tables per call, every table in turn', () => {
    const t = new PackedIdTimes();
    for (let i = 0; i < 2000; i++) t.set(reservationId(), 10);
    t.sweep(100, 4);
    assert.ok(t.size > 0 && t.size < 2000, 'part of the tables swept');
    for (let i = 0; i < 16; i++) t.sweep(100, 4);
    assert.equal(t.size, 0);
  });

  it("spreads ids that share a long prefix (one process's issued ids) over the tables", () => {
    const issuer = new IdIssuer();
    const t = new PackedIdTimes();
    for (let i = 0; i < 6400; i++) t.set(issuer.issue(), 10);
    // One table of 64 swept: about 100 gone, not none or all of them.
    t.sweep(100, 1);
    assert.ok(t.size > 6400 - 250 && t.size < 6400 - 20, `${6400 - t.size} in the first table`);
    for (let i = 0; i < 63; i++) {
      const before = t.size;
      t.sweep(100, 1);
      assert.ok(before - t.size < 250, `table ${i + 1}: ${before - t.size}`);
    }
    assert.equal(t.size, 0);
  });

  it('keeps a time ≤ 0 as one that compares like 0', () => {
    const t = new PackedIdTimes();
    const id = reservationId();
    t.set(id, 0);
    const at = t.get(id)!;
    assert.ok(at > 0 && !(at > 0.5));
  });
});
