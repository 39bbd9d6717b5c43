// Stored conversations over a real Redis (test/redis/server.ts): compare-and-set is atomic across
// replicas, so two turns of one conversation through two gateways both land.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { RedisStore } from '../../extproc/state/redis.js';
import { Sessions } from '../../extproc/sessions/sessions.js';
import { RedisSessionStore } from '../../extproc/sessions/store.js';
import { startRedis, type RedisHandle } from './server.js';

let redis: RedisHandle;
const stores: RedisStore[] = [];
const KEY = randomBytes(32);
const W = { ttlMs: 60_000, maxBytes: 1 << 20 };
const alice = { method: 'key', consumer: 'alice' };

/** One gateway's view: its own connection, the shared key and key space. */
async function replica(
  prefix = 'sessions-test',
): Promise<{ store: RedisSessionStore; sessions: Sessions }> {
  const s = new RedisStore({ url: redis.url, commandTimeoutMs: 2000 });
  stores.push(s);
  await s.ready();
  const store = new RedisSessionStore({ client: s.client, prefix });
  return { store, sessions: new Sessions({ store, key: KEY, wallNow: Date.now }) };
}

before(async () => {
  redis = await startRedis();
});

after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await redis.stop();
});

describe('redis session store', () => {
  it('sets only over exactly the expected bytes, or over nothing', async () => {
    const { store } = await replica('cas-test');
    const [a, b] = [Buffer.from('a\u0000\u00ff'), Buffer.from('b')];
    assert.equal(await store.compareAndSet('n', a, b, 1000), false);
    assert.equal(await store.compareAndSet('n', undefined, a, 1000), true);
    assert.equal(await store.compareAndSet('n', undefined, b, 1000), false);
    assert.equal(await store.compareAndSet('n', Buffer.from('a\u0000\u00ff'), b, 1000), true);
    assert.deepEqual(await store.get('n'), b);
  });

  it('keeps every one of many concurrent updates from two replicas', async () => {
    const one = (await replica()).sessions;
    const two = (await replica()).sessions;
    await one.write(alice, 'conversation', 'c', { items: [] as number[] }, W);
    const append = (s: Sessions, n: number) =>
      s.update<{ items: number[] }>(
        alice,
        'conversation',
        'c',
        (c) => (c ? { items: [...c.items, n] } : undefined),
        W,
        50,
      );
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, n) => append(n % 2 === 0 ? one : two, n)),
    );
    assert.deepEqual(
      results.map((r) => r.kind),
      results.map(() => 'stored'),
    );
    const got = await one.read<{ items: number[] }>(alice, 'conversation', 'c');
    assert.deepEqual(
      [...got!.items].sort((x, y) => x - y),
      Array.from({ length: 20 }, (_, n) => n),
    );
  });
});
