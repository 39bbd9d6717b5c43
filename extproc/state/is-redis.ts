/**
 * Whether a state store is the Redis one, known without importing state/redis.ts: that module
 * loads ioredis (~2.2 MiB of V8 heap, issue 16), which the composition root (run.ts) imports only
 * when a Redis URL is configured, and which code that merely asks must not load.
 */
import type { RedisStore } from './redis.js';
import type { StateStore } from './store.js';

export function isRedisStore(store: StateStore): store is RedisStore {
  // `client` too: a wrapper that reports the kind of the store inside (tests' FaultyStore) is not
  // the Redis store itself, exactly as `instanceof RedisStore` said before.
  return store.kind === 'redis' && 'client' in store;
}
