import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
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
