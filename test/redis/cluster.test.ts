// The state store on a real Redis Cluster (three masters): every script's keys share the
// scope's hash tag, so each call lands on one node, and the store behaves exactly as on one
// Redis (the shared suite), including a release that arrives before its reservation.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { Cluster } from 'ioredis';
import { RedisStore, failFastOptions } from '../../extproc/state/redis.js';
import type { StateStore } from '../../extproc/state/store.js';
import { Budget, chargesFor } from '../../extproc/governance/budget.js';
import { KEYS, clock, policy, storeSuite } from '../../extproc/state/testing/store-suite.js';
import { startRedisCluster, type RedisClusterHandle } from './server.js';

let cluster: RedisClusterHandle;
const clients: Cluster[] = [];

before(async () => {
  cluster = await startRedisCluster(3);
});

after(async () => {
  for (const c of clients) c.disconnect();
  await cluster.stop();
});

async function clusterStore(commandTimeoutMs = 2000): Promise<RedisStore> {
  const client = new Cluster(cluster.nodes, {
    enableOfflineQueue: false,
    redisOptions: failFastOptions(commandTimeoutMs),
  });
  clients.push(client);
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve);
    client.once('error', reject);
  });
  const store = new RedisStore({ client });
  await store.ready();
  return store;
}

storeSuite('redis cluster', { store: (): Promise<StateStore> => clusterStore() });

it('a cluster-wide stall mid-burst leaves nothing reserved once it resumes', async () => {
  const c = clock();
  const store = await clusterStore(300);
  const b = new Budget({ store, clock: c.fn, retryIntervalMs: 0 });
  const p = policy([{ name: 'day', per: ['consumer'], spendPerDayUsd: 0.5 }]);
  cluster.pause();
  let refused;
  try {
    refused = await Promise.all(
      Array.from({ length: 50 }, () => b.reserve(p, KEYS, { tokens: 1, costUsd: 0.01 })),
    );
  } finally {
    cluster.resume();
  }
  assert.ok(refused.every((r) => !r.ok && r.refusal.code === 'state_unavailable'));
  await b.flush();
  assert.equal(b.journal.size, 0);
  const keys = chargesFor(p.limits.rules, KEYS, { tokens: 0, costUsd: 0 }, c.now, 60_000).map(
    (x) => x.key,
  );
  assert.deepEqual(await store.levels(p.name, keys, c.now), [0]);
  // The whole budget is there: 50 × $0.01.
  const again = await Promise.all(
    Array.from({ length: 51 }, () => b.reserve(p, KEYS, { tokens: 1, costUsd: 0.01 })),
  );
  assert.equal(again.filter((r) => r.ok).length, 50);
});
