// The state store on a real Redis Cluster (three masters): every script's keys share the
// scope's hash tag, so each call lands on one node, and the store behaves exactly as on one
// Redis (the shared suite), including a release that arrives before its reservation.
import { after, before } from 'node:test';
import { Cluster } from 'ioredis';
import { RedisStore, failFastOptions } from '../../extproc/state/redis.js';
import type { StateStore } from '../../extproc/state/store.js';
import { storeSuite } from '../../extproc/state/testing/store-suite.js';
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

storeSuite('redis cluster', {
  store: async (): Promise<StateStore> => {
    const client = new Cluster(cluster.nodes, {
      enableOfflineQueue: false,
      redisOptions: failFastOptions(2000),
    });
    clients.push(client);
    await new Promise<void>((resolve, reject) => {
      client.once('ready', resolve);
      client.once('error', reject);
    });
    const store = new RedisStore({ client });
    await store.ready();
    return store;
  },
});
