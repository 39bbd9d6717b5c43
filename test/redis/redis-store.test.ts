import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Budget } from '../../extproc/governance/budget.js';
import { RedisStore } from '../../extproc/state/redis.js';
import { StoreUnavailable, type StateStore } from '../../extproc/state/store.js';
import { KEYS, clock, policy, storeSuite } from '../../extproc/state/testing/store-suite.js';
import { startRedis, type RedisHandle } from './server.js';

let redis: RedisHandle;
const stores: RedisStore[] = [];

function newStore(): RedisStore {
  const s = new RedisStore({ url: redis.url, commandTimeoutMs: 2000 });
  stores.push(s);
  return s;
}

before(async () => {
  redis = await startRedis();
});

after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await redis.stop();
});

storeSuite('redis', {
  store: async (): Promise<StateStore> => {
    const s = newStore();
    await s.ready();
    return s;
  },
});

describe('redis store failures', () => {
  it('surfaces StoreUnavailable while Redis is down and recovers without double counting', async () => {
    const c = clock();
    const store = newStore();
    await store.ready();
    const lost: number[] = [];
    const b = new Budget({ store, clock: c.fn, onSettlementLost: (n) => lost.push(n) });
    const closed = policy([{ name: 'tpm', per: [], tokensPerMinute: 10_000 }]);
    const open = { ...closed, failureMode: 'open' as const };

    const before = await Promise.all(
      Array.from({ length: 5 }, () => b.reserve(closed, KEYS, { tokens: 100, costUsd: 0 })),
    );
    assert.ok(before.every((r) => r.ok && !r.failOpen));

    await redis.kill();
    await assert.rejects(
      store.reserve({ scope: closed.name, id: 'x', nowMs: c.now, ttlMs: 1000, buckets: [] }),
      StoreUnavailable,
    );
    const refused = await b.reserve(closed, KEYS, { tokens: 100, costUsd: 0 });
    assert.equal(!refused.ok && refused.refusal.code, 'state_unavailable');
    assert.equal(!refused.ok && refused.refusal.status, 503);
    const failOpen = await b.reserve(open, KEYS, { tokens: 100, costUsd: 0 });
    assert.ok(failOpen.ok && failOpen.failOpen);

    // Requests admitted before the outage end during it: their settlements are queued.
    for (const r of before) {
      assert.ok(r.ok && r.reservation);
      assert.deepEqual(await b.reconcile(r.reservation, { tokens: 40, costUsd: 0 }), {
        status: 'queued',
      });
    }
    assert.equal(b.pendingSettlements, 5);

    await redis.restart();
    await store.ready(10_000);
    assert.equal(await b.flush(), 5);
    assert.equal(await b.flush(), 0);
    // Redis restarted empty (no persistence): exactly the five settlements are counted.
    assert.deepEqual(await b.currentHeaders(closed, KEYS), {
      'x-ratelimit-limit-tokens': '10000',
      'x-ratelimit-remaining-tokens': String(10_000 - 5 * 40),
      'x-ratelimit-reset-tokens': '1m0s',
    });
    // Settling again (a retry whose first answer was lost) changes nothing.
    for (const r of before) {
      assert.deepEqual(await b.reconcile(r.reservation, { tokens: 40, costUsd: 0 }), {
        status: 'duplicate',
      });
    }
    assert.deepEqual(lost, []);
  });

  it('tells a call that never left (Redis down) from one that may still run (Redis stalled)', async () => {
    const c = clock();
    const store = new RedisStore({ url: redis.url, commandTimeoutMs: 300 });
    stores.push(store);
    await store.ready();
    const req = () => ({
      scope: 'classify',
      id: randomUUID(),
      nowMs: c.now,
      ttlMs: 60_000,
      buckets: [{ key: 'b', limit: 10, amount: 1, expireAtMs: c.now + 60_000 }],
    });
    redis.pause();
    try {
      const err = await store.reserve(req()).catch((e: unknown) => e);
      assert.ok(err instanceof StoreUnavailable);
      assert.equal(err.maybeApplied, true);
    } finally {
      redis.resume();
    }
    await redis.kill();
    try {
      await new Promise((r) => setTimeout(r, 100));
      const err = await store.reserve(req()).catch((e: unknown) => e);
      assert.ok(err instanceof StoreUnavailable);
      assert.equal(err.maybeApplied, false);
    } finally {
      await redis.restart();
      await store.ready(10_000);
    }
  });

  it('a settlement that timed out in a stall and ran on resume is counted once when retried', async () => {
    const c = clock();
    const store = new RedisStore({ url: redis.url, commandTimeoutMs: 300 });
    stores.push(store);
    await store.ready();
    const lost: string[] = [];
    const b = new Budget({
      store,
      clock: c.fn,
      retryIntervalMs: 0,
      onSettlementLost: (_n, reason) => lost.push(reason),
    });
    const p = policy([{ name: 'tpm', per: [], tokensPerMinute: 10_000 }]);
    const rs = await Promise.all(
      Array.from({ length: 5 }, () => b.reserve(p, KEYS, { tokens: 100, costUsd: 0 })),
    );
    redis.pause();
    try {
      for (const r of rs) {
        assert.ok(r.ok);
        assert.deepEqual(await b.reconcile(r.reservation, { tokens: 30, costUsd: 0 }), {
          status: 'queued',
        });
      }
    } finally {
      redis.resume();
    }
    // Redis ran the five settlements it had read; the journal's retries find them done.
    assert.equal(await b.flush(), 5);
    assert.equal(b.pendingSettlements, 0);
    assert.deepEqual(await b.currentHeaders(p, KEYS), {
      'x-ratelimit-limit-tokens': '10000',
      'x-ratelimit-remaining-tokens': String(10_000 - 5 * 30),
      'x-ratelimit-reset-tokens': '1m0s',
    });
    assert.deepEqual(lost, []);
  });

  it('reloads its scripts after a restart (NOSCRIPT is transparent)', async () => {
    const c = clock();
    const store = newStore();
    await store.ready();
    const b = new Budget({ store, clock: c.fn });
    const p = policy([{ name: 'rpm', per: [], requestsPerMinute: 5 }]);
    assert.equal((await b.reserve(p, KEYS, { tokens: 1, costUsd: 0 })).ok, true);
    await redis.restart();
    await store.ready(10_000);
    assert.equal((await b.reserve(p, KEYS, { tokens: 1, costUsd: 0 })).ok, true);
  });
});

describe('redis store: what a reserve costs inside Redis, and key lifetimes', () => {
  /** Commands Redis ran (scripts' inner calls included), by name, since the last reset. */
  async function commandCalls(store: RedisStore): Promise<Map<string, number>> {
    const info = await store.client.info('commandstats');
    const out = new Map<string, number>();
    for (const m of info.matchAll(/^cmdstat_([\w|]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
    return out;
  }

  it('a steady-state reserve makes two calls per bucket plus six, and nothing it need not', async () => {
    const store = newStore();
    await store.ready();
    const now = Date.parse('2026-03-01T10:00:30Z');
    const buckets = ['rpm', 'tpm', 'concurrent', 'day', 'month'].map((key) => ({
      key,
      limit: 1e9,
      amount: 3,
      expireAtMs: key === 'concurrent' ? now + 120_000 : now + 90_000,
    }));
    const reserve = () =>
      store.reserve({ scope: 'cost', id: randomUUID(), nowMs: now, ttlMs: 60_000, buckets });
    for (let i = 0; i < 5; i++) assert.equal((await reserve()).admitted, true);
    await store.client.config('RESETSTAT');
    const n = 20;
    for (let i = 0; i < n; i++) assert.equal((await reserve()).admitted, true);
    const calls = await commandCalls(store);
    assert.equal(calls.get('evalsha'), n, 'one round trip per reserve');
    let inner = 0;
    for (const [name, count] of calls)
      if (name !== 'evalsha' && !name.startsWith('config')) inner += count;
    // purge's ZRANGE, one EXISTS for both ids, HMGET and HINCRBY per bucket, the record's HSET
    // and PEXPIRE, ZADD and the pending set's PTTL: 16 for 5 buckets (it was 27 before lifetimes
    // were kept per window and the record written at once).
    assert.ok(
      inner / n <= 2 * buckets.length + 6,
      `${inner / n} calls per reserve: ${JSON.stringify([...calls])}`,
    );
  });

  it('one request at a time: a settle that empties the pending set leaves it with its lifetime', async () => {
    const store = newStore();
    await store.ready();
    const now = Date.parse('2026-03-01T10:00:30Z');
    const buckets = [{ key: 'one', limit: 1e9, amount: 1, expireAtMs: now + 90_000 }];
    const request = async () => {
      const id = randomUUID();
      await store.reserve({ scope: 'serial', id, nowMs: now, ttlMs: 60_000, buckets });
      await store.settle({
        scope: 'serial',
        id,
        nowMs: now,
        markerTtlMs: 120_000,
        buckets: [{ key: 'one', actual: 1, expireAtMs: now + 90_000 }],
        usage: [],
      });
    };
    await request();
    assert.ok((await store.client.pttl('sluice:{serial}:p')) > 110_000);
    await store.client.config('RESETSTAT');
    for (let i = 0; i < 5; i++) await request();
    const calls = await commandCalls(store);
    // The record's PEXPIRE only: the pending set was not deleted and made again each time.
    assert.equal(calls.get('pexpire'), 5, JSON.stringify([...calls]));
    // The pending set's PTTL in each reserve; a settle does not ask again for the lifetime of a
    // bucket its reservation held (the reserve gave it that lifetime).
    assert.equal(calls.get('pttl'), 5, JSON.stringify([...calls]));
    assert.deepEqual(await store.levels('serial', ['one'], now), [6]);
    // A reservation never settled still expires and is purged; the set's filler is not.
    await store.reserve({ scope: 'serial', id: 'lost', nowMs: now, ttlMs: 60_000, buckets });
    assert.deepEqual(await store.levels('serial', ['one'], now), [7]);
    assert.deepEqual(await store.levels('serial', ['one'], now + 61_000), [6]);
    assert.deepEqual(await store.client.zrange('sluice:{serial}:p', '0', '-1'), ['']);
  });

  it('settles and purges reservations the previous scripts wrote (numbers formatted by Lua)', async () => {
    // What a replica running the scripts before they took strings left in Redis: the record's
    // amounts and a bucket's x were Lua numbers written with %.17g.
    const store = newStore();
    await store.ready();
    const now = Date.parse('2026-03-01T10:00:30Z');
    const b = (k: string) => `sluice:{old}:b:${k}`;
    const c = store.client;
    for (const [id, amount] of [
      ['settled', 1200],
      ['expired', 300],
    ] as const) {
      await c.hincrby(b('tpm'), 'r', amount);
      await c.hset(`sluice:{old}:r:${id}`, b('tpm'), String(amount));
      await c.zadd('sluice:{old}:p', String(now + 60_000), id);
    }
    await c.hset(b('tpm'), 'x', String(now + 90_000));
    await c.pexpire(b('tpm'), 90_000);
    assert.deepEqual(await store.levels('old', ['tpm'], now), [1500]);
    const settled = await store.settle({
      scope: 'old',
      id: 'settled',
      nowMs: now,
      markerTtlMs: 120_000,
      buckets: [{ key: 'tpm', actual: 1000, expireAtMs: now + 90_000 }],
      usage: [],
    });
    assert.deepEqual(settled, { applied: true, pendingFound: true });
    assert.deepEqual(await store.levels('old', ['tpm'], now), [1300]);
    // The other one expires and is purged by the next reserve, which finds x as it was written.
    const r = await store.reserve({
      scope: 'old',
      id: 'new',
      nowMs: now + 61_000,
      ttlMs: 60_000,
      buckets: [{ key: 'tpm', limit: 5000, amount: 7, expireAtMs: now + 90_000 }],
    });
    assert.deepEqual(r, { admitted: true, over: -1, levels: [1007] });
    assert.deepEqual(await c.hgetall(b('tpm')), { u: '1000', r: '7', x: String(now + 90_000) });
  });

  it('refuses a client that would prefix keys itself (script calls are encoded past it)', () => {
    const client = new Redis(redis.url, { keyPrefix: 'app:', lazyConnect: true });
    assert.throws(() => new RedisStore({ client }), /keyPrefix/);
    client.disconnect();
  });

  it('reloads a script Redis forgot (SCRIPT FLUSH): NOSCRIPT is answered by sending its body', async () => {
    const store = newStore();
    await store.ready();
    const now = Date.parse('2026-03-01T10:00:30Z');
    const bucket = { key: 'flush', limit: 10, amount: 4, expireAtMs: now + 90_000 };
    const reserve = () =>
      store.reserve({
        scope: 'flush',
        id: randomUUID(),
        nowMs: now,
        ttlMs: 60_000,
        buckets: [bucket],
      });
    assert.deepEqual(await reserve(), { admitted: true, over: -1, levels: [4] });
    await store.client.script('FLUSH');
    assert.deepEqual(await reserve(), { admitted: true, over: -1, levels: [8] });
    assert.deepEqual(await reserve(), { admitted: false, over: 0, levels: [8] });
    await store.client.script('FLUSH');
    assert.deepEqual(await store.levels('flush', ['flush'], now), [8]);
  });

  it('a bucket reserved 0 that does not exist is not created; one that exists keeps its lifetime', async () => {
    const store = newStore();
    await store.ready();
    const now = Date.parse('2026-03-01T10:00:30Z');
    const key = (k: string) => `sluice:{zero}:b:${k}`;
    const id = randomUUID();
    const reply = await store.reserve({
      scope: 'zero',
      id,
      nowMs: now,
      ttlMs: 60_000,
      buckets: [
        { key: 'spend', limit: 100, amount: 0, expireAtMs: now + 90_000 },
        { key: 'rpm', limit: 100, amount: 1, expireAtMs: now + 90_000 },
      ],
    });
    assert.deepEqual(reply, { admitted: true, over: -1, levels: [0, 1] });
    assert.equal(await store.client.exists(key('spend')), 0);
    assert.ok((await store.client.pttl(key('rpm'))) > 85_000);
    // Settling it charges the actual amount into a new bucket, with its lifetime.
    await store.settle({
      scope: 'zero',
      id,
      nowMs: now,
      markerTtlMs: 120_000,
      buckets: [
        { key: 'spend', actual: 7, expireAtMs: now + 90_000 },
        { key: 'rpm', actual: 1, expireAtMs: now + 90_000 },
      ],
      usage: [],
    });
    assert.deepEqual(await store.levels('zero', ['spend', 'rpm'], now), [7, 1]);
    // A 0 reserve into the bucket that now exists counts it as it is and asks for its lifetime.
    const again = await store.reserve({
      scope: 'zero',
      id: randomUUID(),
      nowMs: now + 1_000,
      ttlMs: 60_000,
      buckets: [{ key: 'spend', limit: 100, amount: 0, expireAtMs: now + 150_000 }],
    });
    assert.deepEqual(again, { admitted: true, over: -1, levels: [7] });
    assert.equal(await store.client.hget(key('spend'), 'x'), String(now + 150_000));
    assert.ok((await store.client.pttl(key('spend'))) > 140_000);
  });

  it('keeps bucket lifetimes: never shortened, lengthened when a later reserve asks for more', async () => {
    const store = newStore();
    await store.ready();
    const now = Date.parse('2026-03-01T10:00:30Z');
    const key = (k: string) => `sluice:{life}:b:${k}`;
    const reserve = (nowMs: number, k: string, expireAtMs: number) =>
      store.reserve({
        scope: 'life',
        id: randomUUID(),
        nowMs,
        ttlMs: 60_000,
        buckets: [{ key: k, limit: 100, amount: 1, expireAtMs }],
      });
    // A window: every reserve asks for the same end; a shorter ask does not shorten it.
    await reserve(now, 'window', now + 90_000);
    await reserve(now + 1_000, 'window', now + 30_000);
    let ttl = await store.client.pttl(key('window'));
    assert.ok(ttl > 85_000 && ttl <= 90_000, `window ttl ${ttl}`);
    // Concurrency: now + 2 TTL moves with every reserve. An existing bucket asked for more gets
    // half as long again as asked (149 s + 74.5 s from its now), so the reserves that follow
    // within that half change nothing; one asking past it lengthens it again.
    await reserve(now, 'sliding', now + 60_000);
    await reserve(now + 1_000, 'sliding', now + 150_000);
    ttl = await store.client.pttl(key('sliding'));
    assert.ok(ttl > 218_000 && ttl <= 223_500, `sliding ttl ${ttl}`);
    assert.equal(await store.client.hget(key('sliding'), 'x'), String(now + 224_500));
    await reserve(now + 2_000, 'sliding', now + 152_000);
    assert.equal(await store.client.hget(key('sliding'), 'x'), String(now + 224_500));
    assert.ok((await store.client.pttl(key('sliding'))) <= 223_500);
    await reserve(now + 80_000, 'sliding', now + 230_000);
    ttl = await store.client.pttl(key('sliding'));
    assert.ok(ttl > 215_000 && ttl <= 225_000, `sliding ttl after a later ask ${ttl}`);
    assert.equal(await store.client.hget(key('sliding'), 'x'), String(now + 305_000));
    // A bucket settle recreated after it expired (no lifetime hint) gets its lifetime back.
    await store.client.del(key('window'));
    await store.settle({
      scope: 'life',
      id: randomUUID(),
      nowMs: now,
      markerTtlMs: 120_000,
      buckets: [{ key: 'window', actual: 2, expireAtMs: now + 20_000 }],
      usage: [],
    });
    await reserve(now, 'window', now + 90_000);
    ttl = await store.client.pttl(key('window'));
    assert.ok(ttl > 85_000 && ttl <= 90_000, `recreated window ttl ${ttl}`);
    assert.deepEqual(await store.levels('life', ['window'], now), [3]);
    // A reserve into a window long over (a late caller) is not admitted into a key that lives
    // on without an expiry.
    await reserve(now, 'past', now + 10);
    assert.ok((await store.client.pttl(key('past'))) <= 10);
  });
});
