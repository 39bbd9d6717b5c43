import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { reservationId } from '../governance/budget.js';
import { MemoryStore } from './memory.js';
import { storeSuite } from './testing/store-suite.js';
import type { SettleRequest } from './store.js';

storeSuite('memory', { store: () => new MemoryStore() });

describe('memory store: settled markers', () => {
  const settle = (id: string, nowMs: number, markerTtlMs: number): SettleRequest => ({
    scope: 'p',
    id,
    nowMs,
    markerTtlMs,
    buckets: [],
    usage: [],
  });
  const reserve = (id: string, nowMs: number) => ({
    scope: 'p',
    id,
    nowMs,
    ttlMs: 60_000,
    buckets: [],
  });
  const T0 = 1_800_000_000_000;

  it('the sweep forgets the markers that are due and keeps the live ones', async () => {
    const store = new MemoryStore();
    for (let i = 0; i < 500; i++) await store.settle(settle(`a-${i}`, T0, 60_000));
    for (let i = 0; i < 500; i++) await store.settle(settle(`b-${i}`, T0 + 30_000, 60_000));
    assert.equal(store.settledMarkers, 1000);
    // The sweep runs with a reserve, at most once a second.
    await store.reserve(reserve('r-1', T0 + 60_000));
    assert.equal(store.settledMarkers, 500, 'the first 500 were due at T0 + 60 s');
    assert.deepEqual(await store.settle(settle('b-7', T0 + 60_000, 60_000)), {
      applied: false,
      pendingFound: false,
    });
    assert.deepEqual(await store.settle(settle('a-7', T0 + 60_000, 60_000)), {
      applied: true,
      pendingFound: false,
    });
    await store.reserve(reserve('r-2', T0 + 200_000));
    assert.equal(store.settledMarkers, 0);
  });

  it('a marker behind a longer-lived one is still forgotten at its own time', async () => {
    const store = new MemoryStore();
    // Many ids, so some short-lived ones share a map with an earlier long-lived one.
    for (let i = 0; i < 200; i++) await store.settle(settle(`long-${i}`, T0, 3_600_000));
    for (let i = 0; i < 200; i++) await store.settle(settle(`short-${i}`, T0, 10_000));
    await store.reserve(reserve('r-1', T0 + 20_000));
    for (let i = 0; i < 200; i++) {
      assert.deepEqual(await store.settle(settle(`short-${i}`, T0 + 20_000, 10_000)), {
        applied: true,
        pendingFound: false,
      });
      assert.deepEqual(await store.settle(settle(`long-${i}`, T0 + 20_000, 3_600_000)), {
        applied: false,
        pendingFound: false,
      });
    }
  });

  it("the Budget's ids (packed) are markers as any other", async () => {
    const store = new MemoryStore();
    const ids = Array.from({ length: 300 }, () => reservationId());
    for (const id of ids) await store.settle(settle(id, T0, 60_000));
    assert.equal(store.settledMarkers, 300);
    for (const id of ids) {
      assert.equal((await store.settle(settle(id, T0 + 1000, 60_000))).applied, false);
      await assert.rejects(store.reserve(reserve(id, T0 + 1000)), /reservation id reused/);
    }
    // Swept a few tables a second: all of them within 32 s of their time.
    for (let s = 0; s <= 32; s++)
      await store.reserve(reserve(reservationId(), T0 + 61_000 + s * 1000));
    assert.equal(store.settledMarkers, 0);
    assert.equal((await store.settle(settle(ids[0]!, T0 + 80_000, 60_000))).applied, true);
  });

  it('settling an id again moves its marker to its new time', async () => {
    const store = new MemoryStore();
    await store.settle(settle('x', T0, 10_000));
    // Forgotten at T0 + 10 s, then settled again: kept until T0 + 70 s.
    await store.settle(settle('x', T0 + 10_000, 60_000));
    await store.settle(settle('y', T0 + 10_000, 10_000));
    await store.reserve(reserve('r-1', T0 + 30_000));
    assert.equal(store.settledMarkers, 1, 'y is due, x is not');
    assert.equal((await store.settle(settle('x', T0 + 30_000, 60_000))).applied, false);
  });
});
