/**
 * Which store sessions use, decided once at start: Redis when the state store is Redis and a
 * vault key seals the records (replicas then share conversations), process memory otherwise.
 */
import type { Logger } from 'pino';
import { isRedisStore } from '../state/is-redis.js';
import type { StateStore } from '../state/store.js';
import { Sessions } from './sessions.js';
import { MemorySessionStore, RedisSessionStore, type SessionStore } from './store.js';

export const DEFAULT_SESSIONS_MEMORY_BYTES = 64 * 1024 * 1024;

export function sessionsFor(
  opts: { wallNow: () => number; memoryBytes?: number | undefined },
  stateStore: StateStore,
  vaultKey: Buffer | undefined,
  log: Logger,
  /** A store and key shared with other processes (the workers' primary); wins over the rest. */
  shared?: { store: SessionStore; key: Buffer },
): Sessions {
  if (shared) {
    log.info({ event: 'sessions', kind: shared.store.kind }, 'session store ready');
    return new Sessions({ store: shared.store, key: shared.key, wallNow: opts.wallNow });
  }
  let store: SessionStore;
  if (isRedisStore(stateStore) && vaultKey) {
    store = new RedisSessionStore({ client: stateStore.client });
  } else {
    if (isRedisStore(stateStore)) {
      // Conversations must not sit in Redis unsealed by a shared key: each replica keeps its own.
      log.warn(
        { event: 'sessions_key_missing' },
        'no vault key (--vault-key-file): stored conversations stay in each replica',
      );
    }
    store = new MemorySessionStore({
      maxBytes: opts.memoryBytes ?? DEFAULT_SESSIONS_MEMORY_BYTES,
      now: opts.wallNow,
    });
  }
  log.info({ event: 'sessions', kind: store.kind }, 'session store ready');
  return new Sessions({ store, key: vaultKey, wallNow: opts.wallNow });
}
