/**
 * One behavioural suite for every StateStore, driven through Budget: the memory store runs it in
 * the unit tier, the Redis store in the redis tier. Time is a controlled clock throughout.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  Budget,
  chargesFor,
  type BudgetPolicy,
  type RequestKeys,
} from '../../governance/budget.js';
import { buildUsageReport } from '../../governance/usage-report.js';
import { LimitsPolicy, type Limit } from '../../governance/schema.js';
import type { StateStore } from '../store.js';

export interface SuiteContext {
  store: () => StateStore | Promise<StateStore>;
}

/** 2026-03-31T23:59:00Z: one minute before a day and a month roll over. */
export const T0 = Date.UTC(2026, 2, 31, 23, 59, 0);

export function clock(start = T0) {
  const c = { now: start, tick: (ms: number) => (c.now += ms), fn: () => c.now };
  return c;
}

export function policy(rules: Limit[], over: Partial<BudgetPolicy> = {}): BudgetPolicy {
  return {
    name: `p-${randomUUID().slice(0, 8)}`,
    mode: 'enforce',
    failureMode: 'closed',
    limits: LimitsPolicy.parse({ rules, reservationTtlSeconds: 60 }),
    ...over,
  };
}

export const KEYS: RequestKeys = { consumer: 'alice', team: 'red', model: 'm', route: 'r' };

async function levels(store: StateStore, p: BudgetPolicy, keys: RequestKeys, now: number) {
  const charges = chargesFor(p.limits.rules, keys, { tokens: 0, costUsd: 0 }, now, 60_000);
  return store.levels(
    p.name,
    charges.map((c) => c.key),
    now,
  );
}

export function storeSuite(name: string, ctx: SuiteContext): void {
  describe(`${name} store through Budget`, () => {
    it('admits within the limit and refuses the reservation that does not fit', async () => {
      const c = clock();
      const b = new Budget({ store: await ctx.store(), clock: c.fn });
      const p = policy([{ name: 'tpm', per: ['consumer'], tokensPerMinute: 100 }]);
      const a = await b.reserve(p, KEYS, { tokens: 60, costUsd: 0 });
      assert.equal(a.ok, true);
      const r = await b.reserve(p, KEYS, { tokens: 60, costUsd: 0 });
      assert.equal(r.ok, false);
      if (r.ok) return;
      assert.equal(r.refusal.code, 'rate_limit_exceeded');
      assert.equal(r.limit, 'tpm');
      assert.equal(r.remaining, 40);
      assert.equal(r.retryAfterSeconds, 60);
      assert.equal(r.refusal.headers['retry-after'], '60');
      // Another consumer has its own bucket.
      const other = await b.reserve(p, { ...KEYS, consumer: 'bob' }, { tokens: 60, costUsd: 0 });
      assert.equal(other.ok, true);
    });

    it('is all or nothing across buckets', async () => {
      const c = clock();
      const store = await ctx.store();
      const b = new Budget({ store, clock: c.fn });
      const p = policy([
        { name: 'wide', per: [], tokensPerMinute: 1000 },
        { name: 'narrow', per: ['consumer'], tokensPerMinute: 50 },
      ]);
      assert.equal((await b.reserve(p, KEYS, { tokens: 40, costUsd: 0 })).ok, true);
      const r = await b.reserve(p, KEYS, { tokens: 40, costUsd: 0 });
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.limit, 'narrow');
      // The refused reservation left nothing in the bucket it did fit.
      assert.deepEqual(await levels(store, p, KEYS, c.now), [40, 40]);
    });

    it('never admits past a limit under hundreds of parallel reservations', async () => {
      const c = clock();
      const store = await ctx.store();
      const b = new Budget({ store, clock: c.fn });
      const p = policy([
        { name: 'tokens', per: ['team'], tokensPerMinute: 1000 },
        { name: 'spend', per: ['team'], spendPerDayUsd: 0.05 },
        { name: 'conc', per: ['consumer'], concurrent: 50 },
      ]);
      // 300 callers each wanting 180 tokens and $0.012: tokens fit 5, spend fits 4.
      const results = await Promise.all(
        Array.from({ length: 300 }, (_, i) =>
          b.reserve(p, { ...KEYS, consumer: `c${i % 7}` }, { tokens: 180, costUsd: 0.012 }),
        ),
      );
      const admitted = results.filter((r) => r.ok);
      assert.equal(admitted.length, 4);
      const refused = results.filter((r) => !r.ok);
      assert.ok(refused.every((r) => !r.ok && (r.limit === 'spend' || r.limit === 'tokens')));
      const [tokens, spend] = await levels(store, p, KEYS, c.now);
      assert.equal(tokens, 720);
      assert.equal(spend, 48_000);
    });

    it('with reconcile at or below the estimate, usage never exceeds the budget', async () => {
      const c = clock(T0 - 30 * 60_000);
      const store = await ctx.store();
      const b = new Budget({ store, clock: c.fn });
      const p = policy([{ name: 'day', per: ['team'], spendPerDayUsd: 1 }]);
      let spentMicros = 0;
      let seed = 7;
      const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      // 400 overlapping requests: each reserves $0.05 and then settles for a random share of it.
      await Promise.all(
        Array.from({ length: 400 }, async (_, i) => {
          const r = await b.reserve(
            p,
            { ...KEYS, consumer: `c${i}` },
            { tokens: 10, costUsd: 0.05 },
          );
          if (!r.ok) return;
          await new Promise((res) => setImmediate(res));
          const actual = Math.round(rand() * 50_000);
          spentMicros += actual;
          await b.reconcile(r.reservation, { tokens: 10, costUsd: actual / 1e6 });
        }),
      );
      const [level] = await levels(store, p, KEYS, c.now);
      assert.equal(level, spentMicros);
      assert.ok(spentMicros <= 1_000_000, `spent ${spentMicros} µ$ of 1,000,000`);
      assert.ok(spentMicros > 500_000, 'freed budget was reused');
    });

    it('bounds an overrun by the one request that exceeded its estimate', async () => {
      const c = clock();
      const store = await ctx.store();
      const b = new Budget({ store, clock: c.fn });
      const p = policy([{ name: 'tpm', per: [], tokensPerMinute: 1000 }]);
      const rs = await Promise.all(
        Array.from({ length: 20 }, () => b.reserve(p, KEYS, { tokens: 100, costUsd: 0 })),
      );
      const ok = rs.filter((r) => r.ok);
      assert.equal(ok.length, 10);
      // Nine settle exactly, one used 30 tokens more than it reserved.
      await Promise.all(
        ok.map((r, i) => b.reconcile(r.reservation, { tokens: i === 0 ? 130 : 100, costUsd: 0 })),
      );
      const [level] = await levels(store, p, KEYS, c.now);
      assert.equal(level, 1030);
      // Over the limit: even a zero-token request is refused until the window rolls.
      assert.equal((await b.reserve(p, KEYS, { tokens: 0, costUsd: 0 })).ok, false);
    });

    it('settles once per reservation however often reconcile is retried', async () => {
      const c = clock();
      const store = await ctx.store();
      const b = new Budget({ store, clock: c.fn });
      const p = policy([{ name: 'tpm', per: [], tokensPerMinute: 1000 }]);
      const r = await b.reserve(p, KEYS, { tokens: 500, costUsd: 0 });
      assert.ok(r.ok && !r.failOpen);
      assert.deepEqual(await b.reconcile(r.reservation, { tokens: 200, costUsd: 0 }), {
        status: 'settled',
        expired: false,
      });
      assert.deepEqual(await b.reconcile(r.reservation, { tokens: 200, costUsd: 0 }), {
        status: 'duplicate',
      });
      assert.deepEqual(await b.release(r.reservation), { status: 'duplicate' });
      assert.deepEqual(await levels(store, p, KEYS, c.now), [200]);
    });

    it('a release that runs before its reservation (a late, timed-out call) makes it a no-op', async () => {
      const c = clock();
      const store = await ctx.store();
      const p = policy([{ name: 'tpm', per: [], tokensPerMinute: 1000 }]);
      const buckets = chargesFor(p.limits.rules, KEYS, { tokens: 400, costUsd: 0 }, c.now, 60_000);
      const id = randomUUID();
      const release = {
        scope: p.name,
        id,
        nowMs: c.now,
        markerTtlMs: 120_000,
        buckets: buckets.map((b) => ({ key: b.key, actual: 0, expireAtMs: b.expireAtMs })),
        usage: [],
      };
      assert.deepEqual(await store.settle(release), { applied: true, pendingFound: false });
      const late = { scope: p.name, id, nowMs: c.now, ttlMs: 60_000, buckets };
      await assert.rejects(store.reserve(late), /reservation id reused/);
      assert.deepEqual(await levels(store, p, KEYS, c.now), [0]);
      // In the usual order the release frees what the reservation took.
      const id2 = randomUUID();
      assert.equal((await store.reserve({ ...late, id: id2 })).admitted, true);
      assert.deepEqual(await levels(store, p, KEYS, c.now), [400]);
      assert.deepEqual(await store.settle({ ...release, id: id2 }), {
        applied: true,
        pendingFound: true,
      });
      assert.deepEqual(await levels(store, p, KEYS, c.now), [0]);
    });

    it('counts what the caller still owes a bucket in the check, without adding it', async () => {
      const c = clock();
      const store = await ctx.store();
      const p = policy([{ name: 'tpm', per: [], tokensPerMinute: 1000 }]);
      const charge = (tokens: number, unsettled: number) =>
        chargesFor(p.limits.rules, KEYS, { tokens, costUsd: 0 }, c.now, 60_000).map((b) => ({
          ...b,
          unsettled,
        }));
      const req = (tokens: number, unsettled: number) => ({
        scope: p.name,
        id: randomUUID(),
        nowMs: c.now,
        ttlMs: 60_000,
        buckets: charge(tokens, unsettled),
      });
      const a = await store.reserve(req(400, 500));
      assert.deepEqual(a, { admitted: true, over: -1, levels: [400] });
      const b = await store.reserve(req(200, 500));
      assert.deepEqual(b, { admitted: false, over: 0, levels: [400] });
      assert.equal((await store.reserve(req(100, 500))).admitted, true, '400 + 500 + 100 fits');
      assert.deepEqual(await levels(store, p, KEYS, c.now), [500]);
    });

    it('reconciles an aborted request to its partial usage and releases unsent ones', async () => {
      const c = clock();
      const store = await ctx.store();
      const b = new Budget({ store, clock: c.fn });
      const p = policy([
        { name: 'rpm', per: [], requestsPerMinute: 10 },
        { name: 'tpm', per: [], tokensPerMinute: 10_000 },
        { name: 'conc', per: [], concurrent: 2 },
      ]);
      const a = await b.reserve(p, KEYS, { tokens: 4000, costUsd: 0 });
      const u = await b.reserve(p, KEYS, { tokens: 4000, costUsd: 0 });
      assert.ok(a.ok && !a.failOpen && u.ok && !u.failOpen);
      assert.deepEqual(await levels(store, p, KEYS, c.now), [2, 8000, 2]);
      assert.equal((await b.reserve(p, KEYS, { tokens: 1, costUsd: 0 })).ok, false, 'conc');
      // The client went away after 700 tokens had streamed.
      await b.reconcile(a.reservation, { tokens: 700, costUsd: 0 });
      // This one was refused by a later phase before reaching upstream.
      await b.release(u.reservation);
      assert.deepEqual(await levels(store, p, KEYS, c.now), [1, 700, 0]);
    });

    it('stops counting a reservation that is never settled after its TTL', async () => {
      const c = clock(T0 - 10 * 60_000);
      const store = await ctx.store();
      const b = new Budget({ store, clock: c.fn });
      const p = policy([
        { name: 'conc', per: ['consumer'], concurrent: 1 },
        { name: 'day', per: ['consumer'], spendPerDayUsd: 1 },
      ]);
      const crashed = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.9 });
      assert.ok(crashed.ok && !crashed.failOpen);
      assert.equal((await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.01 })).ok, false);
      c.tick(59_000);
      assert.equal((await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.01 })).ok, false);
      c.tick(1_000);
      const after = await b.reserve(p, KEYS, { tokens: 1, costUsd: 0.01 });
      assert.equal(after.ok, true);
      assert.deepEqual(await levels(store, p, KEYS, c.now), [1, 10_000]);
      // The crashed request turns up late after all: its actual usage still counts, once.
      assert.deepEqual(await b.reconcile(crashed.reservation, { tokens: 1, costUsd: 0.2 }), {
        status: 'settled',
        expired: true,
      });
      assert.deepEqual(await levels(store, p, KEYS, c.now), [1, 210_000]);
    });

    it('rolls minute, day and month windows over on the UTC boundaries', async () => {
      const c = clock(T0 + 30_000);
      const store = await ctx.store();
      const b = new Budget({ store, clock: c.fn });
      const p = policy([
        { name: 'rpm', per: ['consumer'], requestsPerMinute: 2 },
        { name: 'day', per: ['consumer'], spendPerDayUsd: 0.1 },
        { name: 'month', per: ['consumer'], spendPerMonthUsd: 0.25 },
      ]);
      const take = async (usd: number) => {
        const r = await b.reserve(p, KEYS, { tokens: 1, costUsd: usd });
        if (r.ok && r.reservation) await b.reconcile(r.reservation, { tokens: 1, costUsd: usd });
        return r;
      };
      assert.equal((await take(0.01)).ok, true);
      assert.equal((await take(0.01)).ok, true);
      const rpm = await take(0.01);
      assert.equal(!rpm.ok && rpm.limit, 'rpm');
      assert.equal(!rpm.ok && rpm.retryAfterSeconds, 30);
      c.tick(29_999);
      assert.equal((await take(0.01)).ok, false, 'still 23:59 UTC');
      c.tick(1); // 2026-04-01T00:00:00Z: new minute, day and month
      assert.equal((await take(0.09)).ok, true);
      const day = await take(0.02);
      assert.equal(!day.ok && day.limit, 'day');
      assert.equal(!day.ok && day.refusal.code, 'budget_exceeded');
      assert.equal(!day.ok && day.retryAfterSeconds, 86_400);
      assert.ok(!day.ok && Math.abs(day.remaining! - 0.01) < 1e-9);
      c.tick(86_400_000);
      assert.equal((await take(0.09)).ok, true);
      c.tick(86_400_000);
      assert.equal((await take(0.09)).ok, false, 'month: 0.27 > 0.25');
      const m = await take(0.07);
      assert.equal(m.ok, true, 'month: 0.25 fits exactly');
    });

    it('in shadow mode admits and counts, reporting the limit that would refuse', async () => {
      const c = clock();
      const store = await ctx.store();
      const b = new Budget({ store, clock: c.fn });
      const p = policy([{ name: 'tpm', per: [], tokensPerMinute: 100 }], { mode: 'shadow' });
      await b.reserve(p, KEYS, { tokens: 80, costUsd: 0 });
      const r = await b.reserve(p, KEYS, { tokens: 80, costUsd: 0 });
      assert.ok(r.ok && !r.failOpen);
      assert.equal(r.wouldRefuse?.limit, 'tpm');
      assert.deepEqual(await levels(store, p, KEYS, c.now), [160]);
    });

    it('keeps usage counters per consumer, team, model and route', async () => {
      const c = clock(T0 - 3_600_000);
      const store = await ctx.store();
      const b = new Budget({ store, clock: c.fn });
      const p = policy([{ name: 'tpm', per: [], tokensPerMinute: 1_000_000 }]);
      const usage = (input: number, cached: number, output: number) => ({
        inputTokens: input,
        outputTokens: output,
        totalTokens: input + output,
        cachedInputTokens: cached,
        cacheCreationInputTokens: 0,
        reasoningTokens: 0,
        estimated: false,
      });
      const calls: [RequestKeys, number, number, number, number][] = [
        [KEYS, 100, 20, 50, 0.001],
        [{ ...KEYS, model: 'n' }, 10, 0, 5, 0.0005],
        [{ ...KEYS, consumer: 'bob', team: undefined }, 1, 0, 1, 0.000001],
      ];
      for (const [k, i, cached, o, usd] of calls) {
        const r = await b.reserve(p, k, { tokens: i + o, costUsd: usd });
        assert.ok(r.ok && r.reservation);
        await b.reconcile(r.reservation, {
          tokens: i + o,
          costUsd: usd,
          usage: usage(i, cached, o),
        });
      }
      const released = await b.reserve(p, KEYS, { tokens: 5, costUsd: 1 });
      assert.ok(released.ok && released.reservation);
      await b.release(released.reservation);
      const rows = (await store.usage('day', '2026-03-31')).filter((r) => r.scope === p.name);
      const byTeam = buildUsageReport(rows, { period: 'day', periodKey: '2026-03-31', by: 'team' });
      assert.deepEqual(
        byTeam.rows.map((r) => [r.key, r.requests, r.inputTokens, r.costMicros]),
        [
          ['red', 2, 110, 1500],
          ['', 1, 1, 1],
        ],
      );
      assert.equal(byTeam.total.cachedInputTokens, 20);
      const month = (await store.usage('month', '2026-03')).filter((r) => r.scope === p.name);
      const byModel = buildUsageReport(month, {
        period: 'month',
        periodKey: '2026-03',
        by: 'model',
      });
      assert.deepEqual(
        byModel.rows.map((r) => [r.key, r.requests, r.totalTokens]),
        [
          ['m', 2, 152],
          ['n', 1, 15],
        ],
      );
    });

    it('keeps usage per session on day rows only, beside rows without one', async () => {
      const c = clock(T0 - 3_600_000);
      const store = await ctx.store();
      const b = new Budget({ store, clock: c.fn });
      const p = policy([{ name: 'tpm', per: [], tokensPerMinute: 1_000_000 }]);
      const calls: [RequestKeys, number][] = [
        [{ ...KEYS, session: 'a1' }, 10],
        [{ ...KEYS, session: 'a1' }, 20],
        [{ ...KEYS, session: 'b2' }, 5],
        [KEYS, 7],
      ];
      for (const [k, tokens] of calls) {
        const r = await b.reserve(p, k, { tokens, costUsd: 0 });
        assert.ok(r.ok && r.reservation);
        await b.reconcile(r.reservation, { tokens, costUsd: 0 });
      }
      const rows = (await store.usage('day', '2026-03-31')).filter((r) => r.scope === p.name);
      const bySession = buildUsageReport(rows, {
        period: 'day',
        periodKey: '2026-03-31',
        by: 'session',
      });
      assert.deepEqual(
        bySession.rows.map((r) => [r.key, r.requests, r.totalTokens]),
        [
          ['a1', 2, 30],
          ['', 1, 7],
          ['b2', 1, 5],
        ],
      );
      // The other dimensions add the session rows up as before.
      const byConsumer = buildUsageReport(rows, {
        period: 'day',
        periodKey: '2026-03-31',
        by: 'consumer',
      });
      assert.deepEqual(
        byConsumer.rows.map((r) => [r.key, r.requests, r.totalTokens]),
        [['alice', 4, 42]],
      );
      const month = (await store.usage('month', '2026-03')).filter((r) => r.scope === p.name);
      assert.ok(month.every((r) => r.dims.session === undefined));
      assert.equal(
        month.reduce((n, r) => n + r.values.requests, 0),
        4,
      );
    });

    it('counts cache hits as cached, apart from served requests, once per id', async () => {
      const c = clock(T0 - 3_600_000);
      const store = await ctx.store();
      const b = new Budget({ store, clock: c.fn });
      const p = policy([{ name: 'tpm', per: [], tokensPerMinute: 1_000 }]);
      const free = { savedTokens: 120, savedMicros: 900 };
      // A free hit reserved nothing: written on its own, no bucket touched.
      assert.equal(
        (await b.recordCached(p, KEYS, { tokens: 0, costUsd: 0, cached: free })).status,
        'settled',
      );
      assert.equal(
        (await b.recordCached(p, KEYS, { tokens: 0, costUsd: 0, cached: free })).status,
        'settled',
      );
      // A charged hit (a quarter) reserved and is reconciled with what it was charged.
      const r = await b.reserve(p, KEYS, { tokens: 50, costUsd: 0.001 });
      assert.ok(r.ok && r.reservation);
      const charged = {
        tokens: 30,
        costUsd: 0.0003,
        attempts: 1,
        cached: { savedTokens: 90, savedMicros: 600 },
      };
      await b.reconcile(r.reservation, charged);
      // Retried: counted once.
      await b.reconcile(r.reservation, charged);
      const rows = (await store.usage('day', '2026-03-31')).filter((x) => x.scope === p.name);
      const day = buildUsageReport(rows, { period: 'day', periodKey: '2026-03-31', by: 'route' });
      const t = day.total;
      assert.deepEqual(
        [t.requests, t.cachedRequests, t.savedTokens, t.savedMicros, t.totalTokens, t.costMicros],
        [0, 3, 330, 2400, 30, 300],
      );
      const month = (await store.usage('month', '2026-03')).filter((x) => x.scope === p.name);
      assert.equal(
        buildUsageReport(month, { period: 'month', periodKey: '2026-03', by: 'route' }).total
          .cachedRequests,
        3,
      );
      // Only the charged hit's 30 tokens are in the minute's bucket.
      assert.deepEqual(await levels(store, p, KEYS, c.now), [30]);
    });
  });
}
