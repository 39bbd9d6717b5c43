import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { reservationId } from '../governance/budget.js';
import { IdIssuer, PROCESS_IDS } from './issued-ids.js';
import { MAX_ISSUERS, MemoryStore } from './memory.js';
import { storeSuite } from './testing/store-suite.js';
import { emptyUsage, type SettleRequest } from './store.js';

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

  it("the Budget's ids (kept by number) are markers as any other", async () => {
    const store = new MemoryStore();
    const ids = Array.from({ length: 300 }, () => reservationId());
    for (const id of ids) await store.settle(settle(id, T0, 60_000));
    assert.equal(store.settledMarkers, 300);
    for (const id of ids) {
      assert.equal((await store.settle(settle(id, T0 + 1000, 60_000))).applied, false);
      await assert.rejects(store.reserve(reserve(id, T0 + 1000)), /reservation id reused/);
    }
    // Swept once a second: all of them within 16 s of their time.
    for (let s = 0; s <= 16; s++)
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

  it('the sweep drops a reservation due behind a longer-lived one (the TTL changed)', async () => {
    const store = new MemoryStore();
    const bucket = { key: 'k', limit: 1000, amount: 10, expireAtMs: T0 + 3_600_000 };
    const req = (id: string, nowMs: number, ttlMs: number) => ({
      scope: 'p',
      id,
      nowMs,
      ttlMs,
      buckets: [bucket],
    });
    await store.reserve(req('long', T0, 600_000));
    await store.reserve(req('short', T0, 10_000));
    assert.deepEqual(await store.levels('p', ['k'], T0 + 9_999), [20]);
    // Another scope's reserve runs the sweep; 'short' is due, behind 'long' that is not.
    await store.reserve({ ...reserve('r-1', T0 + 10_000), scope: 'q' });
    assert.deepEqual(await store.levels('p', ['k'], T0 + 10_000), [10]);
    await store.reserve({ ...reserve('r-2', T0 + 600_000), scope: 'q' });
    assert.deepEqual(await store.levels('p', ['k'], T0 + 600_000), [0]);
    // In order again: the next ones are dropped as they fall due.
    await store.reserve(req('a', T0 + 600_000, 10_000));
    await store.reserve(req('b', T0 + 600_000, 20_000));
    await store.reserve({ ...reserve('r-3', T0 + 610_000), scope: 'q' });
    assert.deepEqual(await store.levels('p', ['k'], T0 + 610_000), [10]);
  });

  it('a marker counts until its time, whether or not the sweep has run', async () => {
    for (const id of [reservationId(), 'foreign-id', randomUUID()]) {
      const store = new MemoryStore();
      await store.reserve(reserve('r-0', T0)); // the sweep has run at T0
      await store.settle(settle(id, T0 + 100, 10_000));
      await assert.rejects(store.reserve(reserve(id, T0 + 10_099)), /reservation id reused/);
      // Due at T0 + 10,100. The sweep ran at T0 + 10,099 and runs at most once a second, so the
      // marker is still held here: its time, not the sweep, decides.
      assert.equal((await store.reserve(reserve(id, T0 + 10_100))).admitted, true, id);
    }
  });

  it('answers as a map of (scope, id) to time would, over a long random run', async () => {
    const store = new MemoryStore();
    const ref = new Map<string, number>();
    let seed = 2024;
    const rand = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const scopes = Array.from({ length: 40 }, (_, i) => `policy-${i}`);
    const ttls = [20_000, 60_000, 1_800_000, 3 * 86_400_000 + 0.5, 30 * 86_400_000];
    let now = T0;
    const seen: [scope: string, id: string][] = [];
    const check = async (scope: string, id: string): Promise<void> => {
      const key = `${scope}\n${id}`;
      const live = (ref.get(key) ?? -Infinity) > now;
      const ttl = ttls[Math.floor(rand() * ttls.length)]!;
      const r = await store.settle({ ...settle(id, now, ttl), scope });
      assert.equal(r.applied, !live, `${key} at +${now - T0}`);
      if (r.applied) ref.set(key, now + ttl);
    };
    for (let step = 0; step < 300; step++) {
      now += 997 + (rand() < 0.1 ? 0.25 : 0);
      for (let k = 0; k < 200; k++) {
        const scope = scopes[Math.floor(rand() * (rand() < 0.8 ? 3 : scopes.length))]!;
        const r = rand();
        const id = r < 0.8 ? reservationId() : r < 0.9 ? randomUUID() : `id-${step}-${k}`;
        await check(scope, id);
        seen.push([scope, id]);
      }
      // Retries of earlier settlements, recent and old, in their own scope and in others.
      for (let k = 0; k < 60; k++) {
        const [scope, id] = seen[Math.floor(rand() * seen.length)]!;
        await check(rand() < 0.9 ? scope : scopes[Math.floor(rand() * scopes.length)]!, id);
      }
      // A reserve under a settled id is refused while its marker lasts.
      for (let k = 0; k < 20; k++) {
        const [scope, id] = seen[Math.floor(rand() * seen.length)]!;
        const live = (ref.get(`${scope}\n${id}`) ?? -Infinity) > now;
        const req = { ...reserve(id, now), scope };
        if (live) {
          await assert.rejects(store.reserve(req), /reservation id reused/);
        } else {
          assert.equal((await store.reserve(req)).admitted, true);
          await check(scope, id);
        }
      }
      if (step % 100 === 99) now += 1_900_000; // past the 30 min markers
    }
    assert.ok(PROCESS_IDS.issued > 40_000);
  });
});

describe("memory store: other processes' ids (the workers of --workers N)", () => {
  const T0 = 1_800_000_000_000;
  const reserve = (scope: string, id: string, nowMs: number) => ({
    scope,
    id,
    nowMs,
    ttlMs: 60_000,
    buckets: [],
  });
  const settle = (scope: string, id: string, nowMs: number, markerTtlMs: number) => ({
    scope,
    id,
    nowMs,
    markerTtlMs,
    buckets: [],
    usage: [],
  });

  it('keeps the markers of ids two other issuers made by number, as its own', async () => {
    const store = new MemoryStore();
    const workers = [new IdIssuer(), new IdIssuer()];
    const ids: string[] = [];
    for (let i = 0; i < 6000; i++) {
      const id = workers[i % 2]!.issue();
      ids.push(id);
      await store.reserve(reserve('p', id, T0));
      assert.equal((await store.settle(settle('p', id, T0 + 1, 1_800_000))).applied, true);
    }
    const uuid = randomUUID();
    await store.reserve(reserve('p', uuid, T0));
    await store.settle(settle('p', uuid, T0 + 1, 1_800_000));
    assert.equal(store.settledMarkers, 6001);
    assert.equal(store.markersByNumber, 6000, 'every worker id by number, the UUID by id');
    // 3,000 numbers of each issuer: 3 blocks of 1,024 each (~4 bytes a marker).
    assert.equal(store.markerBlocks, 6);
    assert.equal(store.issuersKnown, 3, 'this process and the two workers');
    for (const id of [ids[0]!, ids[5999]!, uuid]) {
      await assert.rejects(store.reserve(reserve('p', id, T0 + 2)), /reservation id reused/);
      assert.equal((await store.settle(settle('p', id, T0 + 2, 1000))).applied, false);
      // Another scope has no marker of it.
      assert.equal((await store.settle(settle('q', id, T0 + 2, 1000))).applied, true);
    }
    // Past their time every marker is gone, and the blocks with them.
    await store.reserve(reserve('p', workers[0]!.issue(), T0 + 1_800_002));
    for (let t = 1; t <= 30; t++)
      await store.reserve(reserve('r', `x-${t}`, T0 + 1_800_002 + t * 1000));
    assert.equal(store.markersByNumber, 0);
  });

  it('learns at most MAX_ISSUERS issuers; the others by id, and a spent one makes room', async () => {
    const store = new MemoryStore();
    const many = Array.from({ length: MAX_ISSUERS + 4 }, () => new IdIssuer());
    const ids = many.map((w) => w.issue());
    for (const id of ids) {
      await store.reserve(reserve('p', id, T0));
      await store.settle(settle('p', id, T0, 60_000));
    }
    assert.equal(store.issuersKnown, MAX_ISSUERS);
    assert.equal(store.markersByNumber, MAX_ISSUERS - 1);
    assert.equal(store.settledMarkers, ids.length);
    for (const id of ids) {
      await assert.rejects(store.reserve(reserve('p', id, T0 + 59_999)), /reservation id reused/);
    }
    // All due: the sweep clears them (a block is dropped once expired), then a new issuer is kept.
    for (let t = 0; t < 40; t++)
      await store.reserve(reserve('r', `x-${t}`, T0 + 60_000 + t * 1000));
    assert.equal(store.settledMarkers, 0);
    const late = new IdIssuer().issue();
    await store.reserve(reserve('p', late, T0 + 100_000));
    await store.settle(settle('p', late, T0 + 100_000, 60_000));
    assert.equal(store.markersByNumber, 1);
    assert.equal(store.issuersKnown, MAX_ISSUERS);
    // An id of a forgotten issuer is answered as before (by id, or learned again).
    const old = ids[0]!;
    assert.equal((await store.reserve(reserve('p', old, T0 + 100_000))).admitted, true);
    assert.equal((await store.settle(settle('p', old, T0 + 100_001, 60_000))).applied, true);
    assert.equal((await store.settle(settle('p', old, T0 + 100_002, 60_000))).applied, false);
  });

  it('answers as a map of (scope, id) to time would, with workers coming and going', async () => {
    const store = new MemoryStore();
    const ref = new Map<string, number>();
    let seed = 77;
    const rand = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const scopes = ['a', 'b', 'c', 'd', 'e'];
    const ttls = [20_000, 60_000, 1_800_000, 3 * 86_400_000 + 0.5, 30 * 86_400_000];
    // Four workers at a time; a worker now and then restarts under a new prefix.
    const workers = Array.from({ length: 4 }, () => new IdIssuer());
    let restarts = 0;
    let now = T0;
    const seen: [scope: string, id: string][] = [];
    const check = async (scope: string, id: string): Promise<void> => {
      const key = `${scope}\n${id}`;
      const live = (ref.get(key) ?? -Infinity) > now;
      const ttl = pick(ttls);
      const r = await store.settle(settle(scope, id, now, ttl));
      assert.equal(r.applied, !live, `${key} at +${now - T0}`);
      if (r.applied) ref.set(key, now + ttl);
    };
    const tryReserve = async (scope: string, id: string): Promise<boolean> => {
      const live = (ref.get(`${scope}\n${id}`) ?? -Infinity) > now;
      if (live) await assert.rejects(store.reserve(reserve(scope, id, now)), /reused/);
      else assert.equal((await store.reserve(reserve(scope, id, now))).admitted, true);
      return !live;
    };
    for (let step = 0; step < 300; step++) {
      now += 997 + (rand() < 0.1 ? 0.25 : 0);
      if (rand() < 0.15) {
        workers[Math.floor(rand() * workers.length)] = new IdIssuer();
        restarts++;
      }
      // A batch of each worker's ids, reserved out of order; some never, some only settled.
      const batch: string[] = [];
      for (const w of workers) for (let k = 0; k < 40; k++) batch.push(w.issue());
      batch.push(reservationId(), randomUUID(), `id-${step}`);
      for (let k = batch.length - 1; k > 0; k--) {
        const j = Math.floor(rand() * (k + 1));
        [batch[k], batch[j]] = [batch[j]!, batch[k]!];
      }
      for (const id of batch) {
        const scope = pick(scopes);
        const r = rand();
        if (r < 0.05) continue;
        if (r < 0.9) await tryReserve(scope, id);
        await check(scope, id);
        seen.push([scope, id]);
      }
      for (let k = 0; k < 60; k++) {
        const [scope, id] = pick(seen);
        await check(rand() < 0.9 ? scope : pick(scopes), id);
      }
      // A reserve under a settled id is refused while its marker lasts.
      for (let k = 0; k < 20; k++) {
        const [scope, id] = pick(seen);
        if (await tryReserve(scope, id)) await check(scope, id);
      }
      if (step % 100 === 99) now += 1_900_000; // past the 30 min markers
    }
    assert.ok(restarts > MAX_ISSUERS, 'more issuers than the store learns');
    assert.ok(store.issuersKnown <= MAX_ISSUERS);
    assert.ok(store.markersByNumber > 0);
  });
});

describe('memory store: usage rows', () => {
  it('counts each settlement in its own period and row, whatever was settled before', async () => {
    const store = new MemoryStore();
    const T0 = Date.UTC(2026, 2, 31, 12);
    const dims = [
      { consumer: 'a', team: 't', model: 'm', route: 'r' },
      { consumer: 'b', team: 't', model: 'm', route: 'r' },
      { consumer: 'a', team: 't', model: 'm', route: 'r', session: 's1' },
      { consumer: 'a', team: 't', model: 'm', route: 'r2' },
      { consumer: 'a', team: 'u', model: 'm', route: 'r' },
      { consumer: 'a', team: 't', model: 'n', route: 'r' },
    ];
    const days = ['2026-03-30', '2026-03-31'];
    const want = new Map<string, number>();
    let n = 0;
    for (let round = 0; round < 3; round++) {
      for (const day of days) {
        for (let i = 0; i < dims.length; i++) {
          const d = dims[(i * (round + 1)) % dims.length]!;
          const month = { ...d };
          delete month.session;
          const tokens = ++n;
          await store.settle({
            scope: 'p',
            id: `id-${n}`,
            nowMs: T0,
            markerTtlMs: 60_000,
            buckets: [],
            usage: [
              {
                period: 'day',
                periodKey: day,
                dims: d,
                values: { ...usageOf(tokens) },
                expireAtMs: T0 + 1e9,
              },
              {
                period: 'month',
                periodKey: '2026-03',
                dims: month,
                values: usageOf(tokens),
                expireAtMs: T0 + 1e9,
              },
            ],
          });
          const k = `${day}|${JSON.stringify(d)}`;
          want.set(k, (want.get(k) ?? 0) + tokens);
        }
      }
    }
    const got = new Map<string, number>();
    for (const day of days) {
      for (const r of await store.usage('day', day)) {
        const d = { ...r.dims };
        if (d.session === undefined) delete d.session;
        const match = dims.find(
          (x) =>
            JSON.stringify(x) === JSON.stringify({ ...x, ...d }) &&
            Object.keys(x).length === Object.keys(d).length,
        );
        assert.ok(match, JSON.stringify(r.dims));
        got.set(`${day}|${JSON.stringify(match)}`, r.values.totalTokens);
      }
    }
    assert.deepEqual(new Map([...got].sort()), new Map([...want].sort()));
    const month = await store.usage('month', '2026-03');
    assert.equal(
      month.reduce((s, r) => s + r.values.totalTokens, 0),
      (n * (n + 1)) / 2,
    );
    assert.ok(month.every((r) => r.dims.session === undefined));
  });
});

function usageOf(tokens: number) {
  return { ...emptyUsage(), requests: 1, totalTokens: tokens };
}
