import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore } from '../state/memory.js';
import { emptyUsage, StoreUnavailable, type StateStore } from '../state/store.js';
import { KEYS, T0, clock, policy } from '../state/testing/store-suite.js';
import {
  AttemptLedger,
  Budget,
  chargesFor,
  formatReset,
  nextUtcMonth,
  reservationId,
  utcDay,
  utcMonth,
} from './budget.js';

/** A memory store that can be switched off, standing in for an unreachable Redis. */
function flaky(): StateStore & { down: boolean; settles: number } {
  const inner = new MemoryStore();
  const s = {
    kind: 'memory' as const,
    down: false,
    settles: 0,
    reserve: (r: Parameters<StateStore['reserve']>[0]) =>
      s.down ? Promise.reject(new StoreUnavailable()) : inner.reserve(r),
    settle: (r: Parameters<StateStore['settle']>[0]) => {
      if (s.down) return Promise.reject(new StoreUnavailable());
      s.settles++;
      return inner.settle(r);
    },
    levels: inner.levels.bind(inner),
    usage: inner.usage.bind(inner),
    close: inner.close.bind(inner),
  };
  return s;
}

describe('Budget', () => {
  it('sends OpenAI-style rate limit headers for the tightest bucket of each kind', async () => {
    const c = clock(T0 + 15_500);
    const b = new Budget({ store: new MemoryStore(), clock: c.fn });
    const p = policy([
      { name: 'team', per: ['team'], requestsPerMinute: 100, tokensPerMinute: 1000 },
      { name: 'me', per: ['consumer'], requestsPerMinute: 3 },
    ]);
    const r = await b.reserve(p, KEYS, { tokens: 250, costUsd: 0 });
    assert.ok(r.ok);
    assert.deepEqual(r.headers, {
      'x-ratelimit-limit-requests': '3',
      'x-ratelimit-remaining-requests': '2',
      'x-ratelimit-reset-requests': '44.5s',
      'x-ratelimit-limit-tokens': '1000',
      'x-ratelimit-remaining-tokens': '750',
      'x-ratelimit-reset-tokens': '44.5s',
    });
  });

  it('flags a request larger than the whole limit', async () => {
    const b = new Budget({ store: new MemoryStore(), clock: clock().fn });
    const r = await b.reserve(policy([{ name: 't', tokensPerMinute: 100, per: [] }]), KEYS, {
      tokens: 101,
      costUsd: 0,
    });
    assert.ok(!r.ok);
    assert.equal(r.neverFits, true);
  });

  it('fails closed with state_unavailable, or open with a count, when the store is away', async () => {
    const store = flaky();
    store.down = true;
    const opened: string[] = [];
    const b = new Budget({ store, clock: clock().fn, onFailOpen: (p) => opened.push(p) });
    const closed = policy([{ name: 't', tokensPerMinute: 100, per: [] }]);
    const r = await b.reserve(closed, KEYS, { tokens: 1, costUsd: 0 });
    assert.ok(!r.ok);
    assert.equal(r.refusal.code, 'state_unavailable');
    assert.equal(r.refusal.status, 503);
    const open = { ...closed, failureMode: 'open' as const };
    const o = await b.reserve(open, KEYS, { tokens: 1, costUsd: 0 });
    assert.ok(o.ok && o.failOpen);
    assert.deepEqual(opened, [open.name]);
  });

  it('queues settlements while the store is away and applies each once when it is back', async () => {
    const store = flaky();
    const c = clock();
    const b = new Budget({ store, clock: c.fn });
    const p = policy([{ name: 't', tokensPerMinute: 1000, per: [] }]);
    const r = await b.reserve(p, KEYS, { tokens: 100, costUsd: 0 });
    assert.ok(r.ok && r.reservation);
    store.down = true;
    assert.deepEqual(await b.reconcile(r.reservation, { tokens: 10, costUsd: 0 }), {
      status: 'queued',
    });
    assert.equal(b.pendingSettlements, 1);
    assert.equal(await b.flush(), 0, 'still down');
    store.down = false;
    assert.equal(await b.flush(), 1);
    assert.equal(b.pendingSettlements, 0);
    assert.deepEqual(await store.levels(p.name, ['t||tokens|' + String(T0)], c.now), [10]);
  });

  it('a free cache hit recorded while the store is away is queued and counted once', async () => {
    const store = flaky();
    const c = clock();
    const b = new Budget({ store, clock: c.fn, retryIntervalMs: 0 });
    const p = policy([{ name: 't', tokensPerMinute: 1000, per: [] }]);
    const hit = { tokens: 0, costUsd: 0, cached: { savedTokens: 21, savedMicros: 42 } };
    store.down = true;
    assert.deepEqual(await b.recordCached(p, KEYS, hit), { status: 'queued' });
    store.down = false;
    assert.equal(await b.flush(), 1);
    assert.equal(await b.flush(), 0);
    const rows = await store.usage('day', '2026-03-31');
    assert.equal(rows.length, 1);
    assert.deepEqual(rows[0]!.values, {
      ...emptyUsage(),
      cachedRequests: 1,
      savedTokens: 21,
      savedMicros: 42,
    });
    // Nothing was reserved, nothing charged: the bucket is untouched.
    assert.deepEqual(await store.levels(p.name, ['t||tokens|' + String(T0)], c.now), [0]);
  });
});

describe('AttemptLedger', () => {
  it('counts every attempt made, once, and nothing for attempts never made', () => {
    const l = new AttemptLedger();
    const first = l.begin();
    l.record(first, { tokens: 0, costUsd: 0 }); // upstream 503 before any body
    const second = l.begin();
    l.record(second, { tokens: 120, costUsd: 0.0012 });
    l.record(second, { tokens: 150, costUsd: 0.0015 }); // the final figure replaces the partial
    assert.equal(l.attempts, 2);
    assert.deepEqual(l.total(), { tokens: 150, costUsd: 0.0015, usage: undefined, attempts: 2 });
    assert.throws(() => l.record(3, { tokens: 1, costUsd: 0 }), RangeError);
  });

  it('charges requests per minute once per attempt made, tokens only for what was used', async () => {
    const store = new MemoryStore();
    const c = clock();
    const b = new Budget({ store, clock: c.fn });
    const p = policy([
      { name: 'm', per: ['consumer'], requestsPerMinute: 10, tokensPerMinute: 1000 },
    ]);
    const r = await b.reserve(p, KEYS, { tokens: 100, costUsd: 0 });
    assert.ok(r.ok && r.reservation);
    const ledger = new AttemptLedger();
    ledger.begin(); // the provider answered 503 and Envoy retried
    const last = ledger.begin();
    ledger.record(last, { tokens: 13, costUsd: 0 });
    assert.deepEqual(await b.reconcile(r.reservation, ledger.total()), {
      status: 'settled',
      expired: false,
    });
    const keys = [`m|consumer=alice|requests|${T0}`, `m|consumer=alice|tokens|${T0}`];
    assert.deepEqual(await store.levels(p.name, keys, c.now), [2, 13]);
    const [day] = await store.usage('day', '2026-03-31');
    assert.equal(day?.values.requests, 1, 'the usage report counts client requests');

    // A request released before any attempt gives its request back.
    const never = await b.reserve(p, KEYS, { tokens: 100, costUsd: 0 });
    assert.ok(never.ok && never.reservation);
    await b.release(never.reservation);
    assert.deepEqual(await store.levels(p.name, keys, c.now), [2, 13]);
  });
});

describe('formatReset', () => {
  it('writes durations the way OpenAI does', () => {
    assert.equal(formatReset(20), '20ms');
    assert.equal(formatReset(1000), '1s');
    assert.equal(formatReset(1500), '1.5s');
    assert.equal(formatReset(360_000), '6m0s');
    assert.equal(formatReset(3_723_000), '1h2m3s');
    assert.equal(formatReset(61_005), '1m1.005s');
    assert.equal(formatReset(1_050), '1.05s');
    assert.equal(formatReset(3_600_120), '1h0m0.12s');
  });

  it('writes the seconds of every millisecond as a three-place decimal without trailing zeros', () => {
    for (let ms = 1000; ms < 3_700_000; ms += 7) {
      const sMs = ms % 60_000;
      const s = sMs % 1000 === 0 ? String(sMs / 1000) : String(Number((sMs / 1000).toFixed(3)));
      assert.ok(formatReset(ms).endsWith(`m${s}s`) || formatReset(ms) === `${s}s`, `${ms}`);
    }
  });
});

describe('chargesFor', () => {
  const rules = [
    { name: 'tpm', per: ['consumer' as const], tokensPerMinute: 100 },
    { name: 'team-day', per: ['team' as const, 'model' as const], spendPerDayUsd: 5 },
  ];
  const keysOf = (k: Parameters<typeof chargesFor>[1], now: number) =>
    chargesFor(rules, k, { tokens: 1, costUsd: 0 }, now, 60_000).map((c) => c.key);

  it('names each caller, window and day in its keys, whoever asked before', () => {
    const a = { consumer: 'a', team: 't1', model: 'm', route: 'r' };
    const b = { consumer: 'b/x', team: undefined, model: 'm', route: 'r' };
    const day = Date.UTC(2026, 0, 31, 23, 59, 30);
    const want = (k: typeof a | typeof b, now: number, minute: number, d: string) => [
      `tpm|consumer=${encodeURIComponent(k.consumer)}|tokens|${minute}`,
      `team-day|team=${k.team ?? '-'},model=m|spendDay|${d}`,
    ];
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(keysOf(a, day), want(a, day, day - 30_000, '2026-01-31'));
      assert.deepEqual(keysOf(b, day), want(b, day, day - 30_000, '2026-01-31'));
      assert.deepEqual(keysOf(a, day), want(a, day, day - 30_000, '2026-01-31'));
      // The next minute, and the next day.
      assert.deepEqual(keysOf(a, day + 30_000), want(a, day, day + 30_000, '2026-02-01'));
      assert.deepEqual(keysOf({ ...a, team: 't2' }, day), [
        want(a, day, day - 30_000, '')[0],
        'team-day|team=t2,model=m|spendDay|2026-01-31',
      ]);
    }
  });
});

describe('reservationId', () => {
  it('gives distinct ids of 22 base64url characters', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const id = reservationId();
      assert.match(id, /^[A-Za-z0-9_-]{22}$/);
      ids.add(id);
    }
    assert.equal(ids.size, 2000);
  });

  it('is what a Budget names its reservations by default', async () => {
    const b = new Budget({ store: new MemoryStore(), clock: () => T0 });
    const r = await b.reserve(policy([{ name: 'rpm', per: [], requestsPerMinute: 10 }]), KEYS, {
      tokens: 1,
      costUsd: 0,
    });
    assert.ok(r.ok);
    assert.match(r.reservation.id, /^[A-Za-z0-9_-]{22}$/);
  });
});

describe('day and month names and the month end (kept for the last day asked)', () => {
  it('matches a fresh Date computation at every hour around month and year ends, in any order', () => {
    const at = (y: number, m: number, d: number, h: number): number => Date.UTC(y, m, d, h);
    const times: number[] = [];
    for (const [y, m] of [
      [2024, 0],
      [2024, 1],
      [2024, 11],
      [2025, 1],
      [2025, 5],
    ] as const) {
      for (let d = -2; d <= 2; d++) for (let h = 0; h < 24; h += 5) times.push(at(y, m + 1, d, h));
    }
    times.push(Date.UTC(2024, 2, 1) - 1, Date.UTC(2024, 2, 1), Date.UTC(2025, 0, 1) - 1);
    // Forward, backward and alternating: the kept day changes on every call in the last pass.
    const alternating = times.flatMap((t, i) => [t, times[times.length - 1 - i]!]);
    for (const t of [...times, ...[...times].reverse(), ...alternating]) {
      const d = new Date(t);
      const iso = d.toISOString();
      assert.equal(nextUtcMonth(t), Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1), iso);
      assert.equal(utcDay(t), iso.slice(0, 10), iso);
      assert.equal(utcMonth(t), iso.slice(0, 7), iso);
    }
  });
});
