// The Budget while the state store is away or stalled: compensating releases, the fail-open
// journal, its bound and its metrics. A FaultyStore over the memory store stands in for Redis;
// test/redis/outage.test.ts repeats the outages with a real redis-server.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { MemoryStore } from '../state/memory.js';
import type {
  ReserveReply,
  ReserveRequest,
  SettleReply,
  SettleRequest,
  StateStore,
} from '../state/store.js';
import { FaultyStore } from '../state/testing/faulty-store.js';
import { KEYS, T0, clock, policy } from '../state/testing/store-suite.js';
import {
  Budget,
  chargesFor,
  type BudgetPolicy,
  type RequestKeys,
  type Reservation,
} from './budget.js';
import { journalMetrics, SettlementJournal, type LossReason } from './settlement-journal.js';

const level = async (
  store: FaultyStore,
  p: BudgetPolicy,
  now: number,
  keys: RequestKeys = KEYS,
): Promise<number[]> =>
  store.levels(
    p.name,
    chargesFor(p.limits.rules, keys, { tokens: 0, costUsd: 0 }, now, 60_000).map((c) => c.key),
    now,
  );

/**
 * A store that applies every call at once, in the order it is made (as one Redis connection
 * applies pipelined commands in the order they were written), and hands each answer back only
 * when the test releases it: answers of pipelined calls reach their callers in an order the store
 * does not decide (through ioredis, a reserve's answer takes fewer await hops to reach the Budget
 * than a settle's, so a reserve written after a settle is often seen first).
 */
class HeldAnswers implements StateStore {
  readonly kind = 'memory' as const;
  hold = false;
  private readonly held: { call: 'reserve' | 'settle'; answer: () => void }[] = [];

  constructor(readonly inner = new MemoryStore()) {}

  private keep<T>(call: 'reserve' | 'settle', applied: Promise<T>): Promise<T> {
    if (!this.hold) return applied;
    return new Promise<T>((resolve) => this.held.push({ call, answer: () => resolve(applied) }));
  }

  reserve(req: ReserveRequest): Promise<ReserveReply> {
    return this.keep('reserve', this.inner.reserve(req));
  }

  settle(req: SettleRequest): Promise<SettleReply> {
    return this.keep('settle', this.inner.settle(req));
  }

  /** Answers the held calls in `order` (indexes in the order they were made), one at a time. */
  async answer(order: readonly number[]): Promise<void> {
    const held = this.held.splice(0);
    assert.equal(order.length, held.length);
    for (const i of order) {
      held[i]!.answer();
      // Its caller runs to its next store call (or its end) before the next answer arrives.
      await new Promise((res) => setImmediate(res));
    }
  }

  levels(scope: string, keys: readonly string[], nowMs: number): Promise<number[]> {
    return this.inner.levels(scope, keys, nowMs);
  }

  usage(...args: Parameters<StateStore['usage']>) {
    return this.inner.usage(...args);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function setup(capacity?: number) {
  const store = new FaultyStore(new MemoryStore());
  const c = clock(T0 - 3_600_000);
  const lost: LossReason[] = [];
  const b = new Budget({
    store,
    clock: c.fn,
    retryIntervalMs: 0,
    onSettlementLost: (n, reason) => lost.push(...Array<LossReason>(n).fill(reason)),
    ...(capacity === undefined ? {} : { journalCapacity: capacity }),
  });
  return { store, c, b, lost };
}

describe('a reservation the gateway gave up on', () => {
  for (const order of ['arrival', 'reversed'] as const) {
    it(`is released when the stalled store resumes (held calls run in ${order} order)`, async () => {
      const { store, c, b } = setup();
      const p = policy([
        { name: 'day', per: ['consumer'], spendPerDayUsd: 0.5 },
        { name: 'conc', per: ['consumer'], concurrent: 5 },
      ]);
      store.fault = 'stalled';
      const refused = await Promise.all(
        Array.from({ length: 200 }, () => b.reserve(p, KEYS, { tokens: 10, costUsd: 0.0025 })),
      );
      assert.ok(refused.every((r) => !r.ok && r.refusal.code === 'state_unavailable'));
      // Each reserve was followed by its release; both are held by the stall.
      assert.equal(store.heldCalls, 400);
      await store.resume(order);
      assert.equal(store.calls.reserve, 200);
      // Whatever ran first, nothing stays reserved.
      assert.deepEqual(await level(store, p, c.now), [0, 0]);
      // The journal's retries of the releases find them applied: nothing changes, nothing lost.
      assert.equal(await b.flush(), 200);
      assert.equal(b.journal.size, 0);
      assert.deepEqual(await level(store, p, c.now), [0, 0]);
      // The whole budget is there: 200 × $0.0025 = $0.50 fits exactly.
      const after = await Promise.all(
        Array.from({ length: 201 }, (_, i) =>
          b.reserve(p, { ...KEYS }, { tokens: 10, costUsd: i < 5 ? 0.1 : 0.0001 }),
        ),
      );
      assert.equal(after.filter((r) => r.ok).length, 5);
    });
  }

  it('does not refuse a request for reservations whose releases are still in the journal', async () => {
    const { store, c, b } = setup();
    const p = policy([{ name: 'day', per: [], spendPerDayUsd: 1 }]);
    const held = [];
    for (let i = 0; i < 4; i++) {
      const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.25 });
      assert.ok(r.ok);
      held.push(r.reservation);
    }
    store.fault = 'down';
    for (const r of held) await b.release(r);
    store.fault = 'up';
    assert.deepEqual(await level(store, p, c.now), [1_000_000], 'still reserved in the store');
    const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.5 });
    assert.equal(r.ok, true);
    assert.equal(b.journal.size, 0);
    assert.deepEqual(await level(store, p, c.now), [500_000]);
  });

  it('after delivering the journal, asks again counting only what is still owed', async () => {
    const { store, c, b } = setup();
    const p = policy([{ name: 'day', per: [], spendPerDayUsd: 1 }], { failureMode: 'open' });
    const held = [];
    for (let i = 0; i < 2; i++) {
      const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.25 });
      assert.ok(r.ok && !r.failOpen);
      held.push(r.reservation);
    }
    store.fault = 'down';
    for (const r of held) await b.release(r);
    const served = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.3 });
    assert.ok(served.ok && served.failOpen);
    await b.reconcile(served.reservation, { tokens: 1, costUsd: 0.3 });
    store.fault = 'up';
    // The store holds $0.50 reserved; $0.30 is owed: $0.60 more does not fit until delivered.
    const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.6 });
    assert.ok(r.ok && !r.failOpen, '$0.30 used + $0.60 fits once the journal is delivered');
    assert.deepEqual(await level(store, p, c.now), [900_000]);
  });

  it('is not released when the reserve certainly never left (store down)', async () => {
    const { store, b } = setup();
    store.fault = 'down';
    const p = policy([{ name: 'day', per: [], spendPerDayUsd: 1 }]);
    const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.1 });
    assert.equal(!r.ok && r.refusal.code, 'state_unavailable');
    assert.equal(b.journal.size, 0);
  });
});

describe('failing open', () => {
  const open = (rules: Parameters<typeof policy>[0]) => policy(rules, { failureMode: 'open' });

  it('journals what it served and charges it, once, when the store is back', async () => {
    const { store, c, b, lost } = setup();
    const p = open([{ name: 'day', per: ['consumer'], spendPerDayUsd: 1 }]);
    const first = await b.reserve(p, KEYS, { tokens: 10, costUsd: 0.1 });
    assert.ok(first.ok && !first.failOpen);
    await b.reconcile(first.reservation, { tokens: 10, costUsd: 0.05 });
    store.fault = 'down';
    const served = await Promise.all(
      Array.from({ length: 8 }, () => b.reserve(p, KEYS, { tokens: 10, costUsd: 0.1 })),
    );
    assert.ok(served.every((r) => r.ok && r.failOpen));
    for (const r of served) {
      assert.ok(r.ok);
      assert.deepEqual(await b.reconcile(r.reservation, { tokens: 10, costUsd: 0.07 }), {
        status: 'queued',
      });
    }
    assert.equal(b.journal.queued, 8);
    assert.equal(b.journal.unsettledMicros().get(p.name), 560_000);
    store.fault = 'up';
    assert.equal(await b.flush(), 8);
    assert.deepEqual(await level(store, p, c.now), [50_000 + 560_000]);
    const [row] = await store.usage('day', '2026-03-31');
    assert.equal(row?.values.requests, 9);
    assert.equal(row?.values.costMicros, 610_000);
    // Delivered again (a retry whose answer was lost): nothing changes.
    for (const r of served) {
      assert.ok(r.ok);
      assert.deepEqual(await b.reconcile(r.reservation, { tokens: 10, costUsd: 0.07 }), {
        status: 'duplicate',
      });
    }
    assert.deepEqual(await level(store, p, c.now), [610_000]);
    assert.deepEqual(lost, []);
  });

  it('settles a fail-open request whose reserve did run late, replacing the reservation', async () => {
    const { store, c, b } = setup();
    const p = open([{ name: 'day', per: [], spendPerDayUsd: 1 }]);
    store.fault = 'stalled';
    const r = await b.reserve(p, KEYS, { tokens: 10, costUsd: 0.4 });
    assert.ok(r.ok && r.failOpen);
    await store.resume();
    assert.deepEqual(await level(store, p, c.now), [400_000], 'the late reserve ran');
    assert.deepEqual(await b.reconcile(r.reservation, { tokens: 10, costUsd: 0.1 }), {
      status: 'settled',
      expired: false,
    });
    assert.deepEqual(await level(store, p, c.now), [100_000]);
  });

  it('a settlement that ran before its late reserve makes the reserve a no-op', async () => {
    const { store, c, b } = setup();
    const p = open([{ name: 'day', per: [], spendPerDayUsd: 1 }]);
    store.fault = 'stalled';
    const r = await b.reserve(p, KEYS, { tokens: 10, costUsd: 0.4 });
    assert.ok(r.ok && r.failOpen);
    await b.reconcile(r.reservation, { tokens: 10, costUsd: 0.1 });
    await store.resume('reversed');
    assert.deepEqual(await level(store, p, c.now), [100_000]);
    assert.equal(await b.flush(), 1, 'the journalled retry is a duplicate');
    assert.deepEqual(await level(store, p, c.now), [100_000]);
  });

  it('holds each limit against what this replica admitted while the store is away', async () => {
    const { store, b } = setup();
    const p = open([
      { name: 'day', per: ['consumer'], spendPerDayUsd: 0.5 },
      { name: 'rpm', per: [], requestsPerMinute: 100 },
    ]);
    store.fault = 'down';
    const rs = await Promise.all(
      Array.from({ length: 20 }, () => b.reserve(p, KEYS, { tokens: 10, costUsd: 0.1 })),
    );
    const admitted = rs.filter((r) => r.ok);
    assert.equal(admitted.length, 5);
    const refused = rs.find((r) => !r.ok);
    assert.ok(refused && !refused.ok);
    assert.equal(refused.refusal.code, 'budget_exceeded');
    assert.equal(refused.limit, 'day');
    // Another consumer has its own bucket.
    assert.ok((await b.reserve(p, { ...KEYS, consumer: 'bob' }, { tokens: 1, costUsd: 0.1 })).ok);
    // A request that used less than its estimate frees the difference locally.
    const first = admitted[0]!;
    assert.ok(first.ok);
    await b.reconcile(first.reservation, { tokens: 1, costUsd: 0.02 });
    assert.ok((await b.reserve(p, KEYS, { tokens: 10, costUsd: 0.08 })).ok);
    assert.equal((await b.reserve(p, KEYS, { tokens: 10, costUsd: 0.01 })).ok, false);
  });

  it('holds a limit it has seen in the store: one replica does not overshoot, even when the store flaps', async () => {
    const { store, b } = setup();
    const p = open([{ name: 'day', per: ['consumer'], spendPerDayUsd: 1 }]);
    for (let i = 0; i < 7; i++) {
      const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.1 });
      assert.ok(r.ok && !r.failOpen);
      await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.1 });
    }
    // The last reply showed $0.70 in the bucket.
    store.fault = 'down';
    const rs = await Promise.all(
      Array.from({ length: 10 }, () => b.reserve(p, KEYS, { tokens: 1, costUsd: 0.1 })),
    );
    assert.equal(rs.filter((r) => r.ok).length, 3);
    for (const r of rs) if (r.ok) await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.1 });
    // Back for long enough to deliver the journal but not to answer a reserve, then away again.
    store.fault = 'up';
    assert.equal(await b.flush(), 3);
    store.fault = 'down';
    const again = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.01 });
    assert.equal(!again.ok && again.refusal.code, 'budget_exceeded');
    store.fault = 'up';
    const [row] = await store.usage('day', '2026-03-31');
    assert.equal(row?.values.costMicros, 1_000_000);
  });

  it('uses what settlements freed before the outage: the known level follows them', async () => {
    const { store, b } = setup();
    const p = open([{ name: 'day', per: ['consumer'], spendPerDayUsd: 1 }]);
    // Eight in flight at once: the store last reported $0.80 reserved.
    const rs = await Promise.all(
      Array.from({ length: 8 }, () => b.reserve(p, KEYS, { tokens: 1, costUsd: 0.1 })),
    );
    for (const r of rs) {
      assert.ok(r.ok);
      await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.01 });
    }
    store.fault = 'down';
    const during = await Promise.all(
      Array.from({ length: 12 }, () => b.reserve(p, KEYS, { tokens: 1, costUsd: 0.1 })),
    );
    assert.equal(during.filter((r) => r.ok).length, 9, '$0.08 used + 9 × $0.10 fits in $1');
  });

  // Four requests end ($0.10 reserved, $0.05 used: settles S1-S4) and four more are reserved
  // behind them (R5-R8), pipelined: the store applies S1-S4 then R5-R8, and holds $0.60. In
  // whatever order their answers arrive, what this replica knows of the bucket must not fall
  // below that: answered after R8 (whose level has them), S1-S4 must not take $0.05 off again.
  const orders = {
    'as applied': [0, 1, 2, 3, 4, 5, 6, 7],
    'reserves first (as through ioredis)': [4, 5, 6, 7, 0, 1, 2, 3],
    interleaved: [4, 0, 5, 1, 6, 2, 7, 3],
    reversed: [7, 6, 5, 4, 3, 2, 1, 0],
  };
  for (const [name, order] of Object.entries(orders)) {
    it(`holds a limit it has seen whatever order pipelined answers arrive in: ${name}`, async () => {
      const held = new HeldAnswers();
      const store = new FaultyStore(held);
      const c = clock(T0 - 3_600_000);
      const b = new Budget({ store, clock: c.fn, retryIntervalMs: 0 });
      const p = open([{ name: 'day', per: ['consumer'], spendPerDayUsd: 1 }]);
      const estimate = { tokens: 1, costUsd: 0.1 };
      const actual = { tokens: 1, costUsd: 0.05 };
      const [key] = chargesFor(p.limits.rules, KEYS, estimate, c.now, 60_000).map((x) => x.key);
      const first = await Promise.all(
        Array.from({ length: 4 }, () => b.reserve(p, KEYS, estimate)),
      );
      held.hold = true;
      const settled = first.map((r) => {
        assert.ok(r.ok && !r.failOpen);
        return b.reconcile(r.reservation, actual);
      });
      const next = Array.from({ length: 4 }, () => b.reserve(p, KEYS, estimate));
      await held.answer(order);
      held.hold = false;
      await Promise.all(settled);
      assert.deepEqual(await level(store, p, c.now), [600_000]);
      const known = b.journal.levels(p.name, [key!])[0]!;
      assert.ok(known >= 600_000, `knows $${known / 1e6} of the $0.60 the store holds`);
      // The four end too ($0.40 used in all); then the store goes away. Each request admitted
      // meanwhile is checked at its $0.10 estimate and uses $0.05.
      for (const r of await Promise.all(next)) {
        assert.ok(r.ok && !r.failOpen);
        await b.reconcile(r.reservation, actual);
      }
      store.fault = 'down';
      let served = 8;
      for (;;) {
        const r = await b.reserve(p, KEYS, estimate);
        if (!r.ok) break;
        assert.ok(r.failOpen);
        served++;
        await b.reconcile(r.reservation, actual);
      }
      store.fault = 'up';
      await b.flush();
      const [charged] = await level(store, p, c.now);
      assert.equal(charged, served * 50_000);
      assert.ok(charged <= 1_000_000, `served ${served}: $${charged / 1e6} of a $1 limit`);
    });
  }

  it('a release of a reserve that never ran does not lower the level it knows (the store flaps)', async () => {
    const { store, c, b } = setup();
    const p = open([{ name: 'day', per: ['consumer'], spendPerDayUsd: 1 }]);
    for (let i = 0; i < 7; i++) {
      const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.1 });
      assert.ok(r.ok && !r.failOpen);
      await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.1 });
    }
    // Its answer lost, a reserve is refused on the $0.70 known, and released in case it runs
    // late; it never does (the stalled store is restarted without it).
    store.fault = 'stalled';
    const big = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.5 });
    assert.equal(!big.ok && big.refusal.code, 'budget_exceeded');
    await new Promise((res) => setImmediate(res));
    assert.equal(b.journal.queued, 1);
    store.fault = 'up';
    assert.equal(await b.flush(), 1);
    store.fault = 'down';
    let served = 7;
    for (;;) {
      const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.1 });
      if (!r.ok) break;
      served++;
      await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.1 });
    }
    store.fault = 'up';
    await b.flush();
    assert.equal(served, 10);
    assert.deepEqual(await level(store, p, c.now), [1_000_000]);
  });

  it('a retried settlement the store had already applied does not lower the level it knows', async () => {
    const { store, c, b } = setup();
    const p = open([{ name: 'day', per: ['consumer'], spendPerDayUsd: 1 }]);
    for (let i = 0; i < 5; i++) {
      const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.1 });
      assert.ok(r.ok && !r.failOpen);
      await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.1 });
    }
    const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.4 });
    assert.ok(r.ok && !r.failOpen);
    // Its settlement's answer is lost; the store runs it when it resumes ($0.60), and the next
    // reserve reports that.
    store.fault = 'stalled';
    assert.deepEqual(await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.1 }), {
      status: 'queued',
    });
    await store.resume();
    const next = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.05 });
    assert.ok(next.ok && !next.failOpen);
    await b.reconcile(next.reservation, { tokens: 1, costUsd: 0.05 });
    // The journal's retry (sent once the store answered again) is a duplicate: the $0.30 it
    // gave back is in the level already.
    await b.flush();
    assert.equal(b.journal.size, 0);
    assert.deepEqual(await level(store, p, c.now), [650_000]);
    store.fault = 'down';
    let spent = 650_000;
    for (;;) {
      const o = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.1 });
      if (!o.ok) break;
      spent += 100_000;
      await b.reconcile(o.reservation, { tokens: 1, costUsd: 0.1 });
    }
    assert.ok(spent <= 1_000_000, `$${spent / 1e6} of a $1 limit`);
  });

  it('a store that is back admits nothing past a limit before the journal is delivered', async () => {
    const { store, c, b } = setup();
    const p = open([{ name: 'day', per: ['consumer'], spendPerDayUsd: 1 }]);
    for (let i = 0; i < 5; i++) {
      const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.1 });
      assert.ok(r.ok && !r.failOpen);
      await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.1 });
    }
    store.fault = 'down';
    for (let i = 0; i < 5; i++) {
      const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.1 });
      assert.ok(r.ok && r.failOpen);
      await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.1 });
    }
    store.fault = 'up';
    // The store holds $0.50; this replica owes it $0.50 more.
    assert.deepEqual(await level(store, p, c.now), [500_000]);
    const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.1 });
    assert.equal(!r.ok && r.refusal.code, 'budget_exceeded');
    assert.deepEqual(await level(store, p, c.now), [1_000_000]);
  });

  it('refuses with 503 when the journal is full (fail safe), and admits again once it drains', async () => {
    const { store, b } = setup(3);
    const p = open([{ name: 'day', per: [], spendPerDayUsd: 100 }]);
    store.fault = 'down';
    const rs = await Promise.all(
      Array.from({ length: 5 }, () => b.reserve(p, KEYS, { tokens: 1, costUsd: 0.01 })),
    );
    assert.equal(rs.filter((r) => r.ok).length, 3);
    for (const r of rs.filter((x) => !x.ok)) {
      assert.ok(!r.ok);
      assert.equal(r.refusal.code, 'state_unavailable');
      assert.equal(r.refusal.status, 503);
    }
    for (const r of rs) if (r.ok) await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.01 });
    assert.equal(b.journal.size, 3);
    assert.equal((await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.01 })).ok, false);
    store.fault = 'up';
    assert.equal(await b.flush(), 3);
    store.fault = 'down';
    assert.ok((await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.01 })).ok);
  });

  it('when full, a settlement to keep evicts a release first, then the oldest settlement', async () => {
    const { store, b, lost } = setup(2);
    const p = policy([{ name: 'day', per: [], spendPerDayUsd: 100 }]);
    const rs = [];
    for (let i = 0; i < 4; i++) {
      const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.01 });
      assert.ok(r.ok);
      rs.push(r.reservation);
    }
    store.fault = 'down';
    await b.release(rs[0]!);
    await b.reconcile(rs[1]!, { tokens: 1, costUsd: 0.01 });
    await b.reconcile(rs[2]!, { tokens: 1, costUsd: 0.02 });
    assert.deepEqual(lost, ['full'], 'the release went');
    await b.release(rs[3]!);
    assert.deepEqual(lost, ['full', 'full'], 'a release does not evict a settlement');
    // A fail-open admission takes a release's place, not a settlement's.
    const o = policy([{ name: 'day', per: [], spendPerDayUsd: 100 }], { failureMode: 'open' });
    assert.equal((await b.reserve(o, KEYS, { tokens: 1, costUsd: 0.01 })).ok, false);
    assert.deepEqual(
      b.journal.pending().map((e) => e.reservation.id),
      [rs[1]!.id, rs[2]!.id],
    );
  });
});

describe('journal bound', () => {
  it('a fail-open admission evicts a pending release when the journal is full', async () => {
    const { store, b, lost } = setup(2);
    const closed = policy([{ name: 'day', per: [], spendPerDayUsd: 100 }]);
    const open = policy([{ name: 'day', per: [], spendPerDayUsd: 100 }], { failureMode: 'open' });
    const r = await b.reserve(closed, KEYS, { tokens: 1, costUsd: 0.01 });
    assert.ok(r.ok);
    store.fault = 'stalled';
    // Two refusals, each leaving a compensating release in the journal.
    for (let i = 0; i < 2; i++) {
      assert.equal((await b.reserve(closed, KEYS, { tokens: 1, costUsd: 0.01 })).ok, false);
    }
    await new Promise((res) => setImmediate(res));
    assert.equal(b.journal.queued, 2);
    const o = await b.reserve(open, KEYS, { tokens: 1, costUsd: 0.01 });
    assert.ok(o.ok && o.failOpen);
    assert.deepEqual(lost, ['full']);
  });
});

describe('journal retries', () => {
  it('keeps a settlement that never reached the store however long the outage', async () => {
    const { store, c, b, lost } = setup();
    const p = policy([{ name: 'day', per: [], spendPerDayUsd: 1 }]);
    const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.5 });
    assert.ok(r.ok);
    store.fault = 'down';
    await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.3 });
    c.tick(3 * 3_600_000);
    assert.equal(await b.flush(), 0);
    store.fault = 'up';
    assert.equal(await b.flush(), 1);
    assert.deepEqual(lost, []);
    const [row] = await store.usage('day', '2026-03-31');
    assert.equal(row?.values.costMicros, 300_000);
  });

  it('gives a settlement up rather than risk counting it twice once the store may have forgotten it', async () => {
    const { store, c, b, lost } = setup();
    const p = policy([{ name: 'day', per: [], spendPerDayUsd: 1 }]);
    const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.5 });
    assert.ok(r.ok);
    store.fault = 'stalled';
    await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.3 });
    // The store took it but its answer was lost; it now remembers the id for 2 × TTL (120 s).
    store.fault = 'down';
    c.tick(119_000);
    assert.equal(await b.flush(), 0);
    c.tick(1_000);
    assert.equal(await b.flush(), 0);
    assert.deepEqual(lost, ['ambiguous']);
    assert.equal(b.journal.size, 0);
  });

  it('retries on its own every retryIntervalMs until the store answers', async () => {
    const store = new FaultyStore(new MemoryStore());
    const b = new Budget({ store, retryIntervalMs: 20 });
    const p = policy([{ name: 'day', per: [], spendPerDayUsd: 1 }]);
    const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.5 });
    assert.ok(r.ok);
    store.fault = 'down';
    await b.reconcile(r.reservation, { tokens: 1, costUsd: 0.3 });
    await new Promise((res) => setTimeout(res, 60));
    assert.equal(b.pendingSettlements, 1);
    store.fault = 'up';
    for (let i = 0; i < 100 && b.pendingSettlements > 0; i++) {
      await new Promise((res) => setTimeout(res, 10));
    }
    assert.equal(b.pendingSettlements, 0);
    b.close();
  });

  it('forgets a fail-open request whose end never came after its TTL, and still settles it late', async () => {
    const { store, c, b } = setup();
    const p = policy([{ name: 'day', per: [], spendPerDayUsd: 1 }], { failureMode: 'open' });
    store.fault = 'down';
    const lost = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.9 });
    assert.ok(lost.ok && lost.failOpen);
    assert.equal((await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.2 })).ok, false);
    c.tick(60_000);
    await b.flush();
    assert.equal(b.journal.size, 0);
    assert.ok((await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.2 })).ok);
    store.fault = 'up';
    assert.deepEqual(await b.reconcile(lost.reservation, { tokens: 1, costUsd: 0.5 }), {
      status: 'settled',
      expired: true,
    });
    assert.deepEqual(await level(store, p, c.now), [500_000]);
  });

  it('exports entries, unsettled spend per policy and losses as metrics', async () => {
    const registry = new Registry();
    const { store, b } = setup();
    const lostMetric = journalMetrics(registry, () => b.journal);
    const p = policy([{ name: 'day', per: [], spendPerDayUsd: 1 }], { failureMode: 'open' });
    store.fault = 'down';
    const served = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.2 });
    const inFlight = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.2 });
    assert.ok(served.ok && inFlight.ok);
    await b.reconcile(served.reservation, { tokens: 1, costUsd: 0.125 });
    lostMetric(1, 'ambiguous');
    const text = await registry.metrics();
    assert.match(text, /^sluice_usage_journal_entries 2$/m);
    assert.match(
      text,
      new RegExp(`^sluice_unsettled_spend_usd\\{sluice_policy="${p.name}"\\} 0.125$`, 'm'),
    );
    assert.match(text, /^sluice_usage_journal_dropped_total\{reason="ambiguous"\} 1$/m);
    assert.match(text, /^sluice_usage_journal_dropped_total\{reason="full"\} 0$/m);
  });
});

describe('SettlementJournal: levels seen', () => {
  const reservation = (amount: number): Reservation => ({
    id: `r${amount}-${Math.random()}`,
    scope: 'p',
    createdAtMs: T0,
    ttlMs: 60_000,
    keys: KEYS,
    estimate: { tokens: 0, costUsd: 0 },
    charges: [
      {
        key: 'k',
        limitName: 'day',
        metric: 'spendDay',
        limit: 1_000_000,
        amount,
        resetAtMs: 0,
        expireAtMs: 0,
      },
    ],
    levels: [amount],
  });

  it('orders store calls by when they were made, across the wrap of their numbers', () => {
    const j = new SettlementJournal(10, undefined, 8, 2 ** 30 - 3);
    const settle = j.stamp();
    const reserve = j.stamp();
    const later = j.stamp();
    const lastSettle = j.stamp();
    assert.deepEqual([settle, reserve, later, lastSettle], [2 ** 30 - 2, 2 ** 30 - 1, 0, 1]);
    j.saw('p', ['k'], [600], later);
    // Overtaken: the level `later` reported has all this one has.
    j.saw('p', ['k'], [500], reserve);
    assert.deepEqual(j.levels('p', ['k']), [600]);
    // Made before `later`: in its level already.
    j.delivered(reservation(100), [50], settle, true);
    assert.deepEqual(j.levels('p', ['k']), [600]);
    j.delivered(reservation(100), [50], lastSettle, true);
    assert.deepEqual(j.levels('p', ['k']), [550]);
  });

  it('ages a level known from long ago, so calls made much later still count as later', () => {
    const mask = 2 ** 30 - 1;
    const j = new SettlementJournal(10, undefined, 8, 2 ** 26 - 1);
    // Reported more than half the range of call numbers ago: without ageing, it would compare
    // as made after the calls that follow.
    j.saw('p', ['k'], [700], (2 ** 26 - 2 ** 29 - 100) & mask);
    const now = j.stamp();
    j.saw('p', ['k'], [100], now);
    assert.deepEqual(j.levels('p', ['k']), [100]);
  });

  it('past its capacity, forgets the levels reported longest ago, however they were added', () => {
    const j = new SettlementJournal(10, undefined, 8);
    for (let i = 0; i < 8; i++) j.saw('p', [`k${i}`], [100 + i], j.stamp());
    // k0 reported again: now the most recent, though the first added.
    j.saw('p', ['k0'], [500], j.stamp());
    j.saw('p', ['k8'], [108], j.stamp());
    // 9 held, past 8: down to 7, without k1 and k2, the two reported longest ago.
    const keys = Array.from({ length: 9 }, (_, i) => `k${i}`);
    assert.deepEqual(j.levels('p', keys), [500, 0, 0, 103, 104, 105, 106, 107, 108]);
  });

  it('keeps each scope and bucket apart, past as many names as it keeps', () => {
    const j = new SettlementJournal(10, undefined, 8);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 20; i++) {
        j.saw('p', [`k${i}`, `k${i + 1}`], [i, i + 1], j.stamp());
        j.saw('q', [`k${i}`], [100 + i], j.stamp());
        assert.deepEqual(j.levels('p', [`k${i}`, `k${i + 1}`]), [i, i + 1]);
        assert.deepEqual(j.levels('q', [`k${i}`, `k${i + 1}`]), [100 + i, 0]);
      }
    }
  });
});
