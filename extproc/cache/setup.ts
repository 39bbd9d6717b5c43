/**
 * Which store the response cache uses, decided once at start: Redis when the state store is Redis
 * and a vault key seals the values (replicas then share entries), process memory otherwise.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { StateStore } from '../state/store.js';
import { isRedisStore } from '../state/is-redis.js';
import { ResponseCache } from './cache.js';
import { MemoryCacheStore, RedisCacheStore, type CacheStore } from './store.js';

export const DEFAULT_CACHE_MEMORY_BYTES = 64 * 1024 * 1024;

export function responseCache(
  opts: { registry: Registry; now: () => number; cacheMemoryBytes?: number | undefined },
  stateStore: StateStore,
  vaultKey: Buffer | undefined,
  wallNow: () => number,
  log: Logger,
  /** A store of the caller's (a cluster worker's: the primary's, over IPC). */
  given?: CacheStore,
): ResponseCache {
  let store: CacheStore;
  if (given) {
    store = given;
  } else if (isRedisStore(stateStore) && vaultKey) {
    store = new RedisCacheStore({ client: stateStore.client, vaultKey });
  } else {
    if (isRedisStore(stateStore)) {
      // Unsealed answers must not sit in Redis: without the key each replica caches for itself.
      log.warn(
        { event: 'cache_key_missing' },
        'no vault key (--vault-key-file): the response cache stays in each replica',
      );
    }
    store = new MemoryCacheStore({
      maxBytes: opts.cacheMemoryBytes ?? DEFAULT_CACHE_MEMORY_BYTES,
      now: opts.now,
    });
  }
  log.info({ event: 'response_cache', kind: store.kind }, 'response cache ready');
  return new ResponseCache({
    store,
    registry: opts.registry,
    wallNow,
    // The error's name only: a parser's message can quote what it read.
    onError: (op, err) =>
      log.warn(
        { event: 'cache_error', op, reason: err instanceof Error ? err.name : 'unknown' },
        'response cache failed; served as a miss',
      ),
  });
}
