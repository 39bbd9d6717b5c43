/**
 * The one in-memory state of a multi-worker extproc, held by the primary and reached by every
 * worker over IPC: budgets and usage (a MemoryStore), the masking vault (a MemoryVault) and the
 * response cache (a MemoryCacheStore). Each worker gets the same interfaces it would use in one
 * process, so budgets, limits and placeholder numbering are exactly as correct with N workers as
 * with one: the primary runs every call to completion on its own event loop, which is what made
 * the single-process stores atomic in the first place. (With Redis, workers talk to Redis
 * directly and none of this is used.)
 *
 * Failure: the primary is the pod's parent process; if it is gone the worker is shutting down.
 * A call that cannot be sent is StoreUnavailable with maybeApplied false; one sent and not
 * answered in time may have been applied, exactly like a Redis call that timed out.
 */
import type { CacheStore, MemoryCacheStore } from '../cache/store.js';
import type { MemorySessionStore, SessionStore } from '../sessions/store.js';
import {
  deriveVaultKeys,
  EMPTY_LOOKUP,
  PolicyUnavailableError,
  unsealValue,
  type MemoryVault,
  type Vault,
  type VaultItem,
  type VaultSession,
} from '../masking/vault.js';
import {
  StoreUnavailable,
  type ReserveReply,
  type ReserveRequest,
  type SettleReply,
  type SettleRequest,
  type StateStore,
  type UsagePeriod,
  type UsageRow,
} from '../state/store.js';
import { IpcError, RemoteError, type IpcPeer } from './ipc.js';

// ---------------------------------------------------------------- state store (budgets, usage)

/**
 * A worker's StateStore: every call runs in the primary's MemoryStore. The worker's reservation
 * ids carry its own issuer prefix (state/issued-ids.ts); the store learns it from the reserves and
 * keeps their settled markers by number, as it does its own process's (state/memory.ts).
 */
export class IpcStateStore implements StateStore {
  readonly kind = 'memory' as const;
  constructor(
    private readonly peer: IpcPeer,
    private readonly timeoutMs = 5000,
  ) {}

  reserve(req: ReserveRequest): Promise<ReserveReply> {
    return this.call('store.reserve', req);
  }
  settle(req: SettleRequest): Promise<SettleReply> {
    return this.call('store.settle', req);
  }
  levels(scope: string, keys: readonly string[], nowMs: number): Promise<number[]> {
    return this.call('store.levels', { scope, keys, nowMs });
  }
  usage(period: UsagePeriod, periodKey: string): Promise<UsageRow[]> {
    return this.call('store.usage', { period, periodKey });
  }
  /** The primary owns the store: a worker closing leaves it alone. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  private async call<R>(op: string, args: unknown): Promise<R> {
    try {
      return await this.peer.call<R>(op, args, this.timeoutMs);
    } catch (err) {
      if (err instanceof IpcError) {
        throw new StoreUnavailable('The shared state is unavailable.', {
          cause: err,
          maybeApplied: err.sent,
        });
      }
      if (err instanceof RemoteError && err.name === 'StoreUnavailable') {
        throw new StoreUnavailable(err.message, { maybeApplied: err.data !== false });
      }
      throw err;
    }
  }
}

export function serveStateStore(peer: IpcPeer, store: StateStore): void {
  peer.handle('store.reserve', (req: ReserveRequest) => store.reserve(req));
  peer.handle('store.settle', (req: SettleRequest) => store.settle(req));
  peer.handle('store.levels', (a: { scope: string; keys: string[]; nowMs: number }) =>
    store.levels(a.scope, a.keys, a.nowMs),
  );
  peer.handle('store.usage', (a: { period: UsagePeriod; periodKey: string }) =>
    store.usage(a.period, a.periodKey),
  );
}

// ---------------------------------------------------------------- response cache

/** A worker's response cache store: entries live in the primary's bounded MemoryCacheStore. */
export class IpcCacheStore implements CacheStore {
  readonly kind = 'memory' as const;
  constructor(
    private readonly peer: IpcPeer,
    private readonly timeoutMs = 2000,
  ) {}

  // Failures are thrown: the cache turns them into a miss (cache/store.ts).
  get(digest: string): Promise<string | undefined> {
    return this.peer
      .call<string | null>('cache.get', digest, this.timeoutMs)
      .then((v) => (v === null ? undefined : v));
  }
  set(digest: string, value: string, ttlMs: number): Promise<void> {
    return this.peer.call<void>('cache.set', { digest, value, ttlMs }, this.timeoutMs);
  }
  close(): void {}
}

export function serveCacheStore(peer: IpcPeer, store: MemoryCacheStore): void {
  // null, not undefined: JSON drops undefined values, and the reply must say "none".
  peer.handle('cache.get', (digest: string) => store.get(digest) ?? null);
  peer.handle('cache.set', (a: { digest: string; value: string; ttlMs: number }) => {
    store.set(a.digest, a.value, a.ttlMs);
    return null;
  });
}

// ---------------------------------------------------------------- stored conversations

/**
 * A worker's SessionStore: records (sealed by the worker with the shared vault key) kept in the
 * primary's MemorySessionStore, so a response stored through one worker is found through any.
 */
export class IpcSessionStore implements SessionStore {
  readonly kind = 'memory' as const;
  constructor(
    private readonly peer: IpcPeer,
    private readonly timeoutMs = 2000,
  ) {}

  // Failures are thrown: sessions.ts turns them into SessionsUnavailable (503, fail closed).
  get(name: string): Promise<Buffer | undefined> {
    return this.peer
      .call<string | null>('sessions.get', name, this.timeoutMs)
      .then((v) => (v === null ? undefined : Buffer.from(v, 'base64')));
  }
  set(name: string, value: Buffer, ttlMs: number): Promise<void> {
    const v = value.toString('base64');
    return this.peer.call<void>('sessions.set', { name, value: v, ttlMs }, this.timeoutMs);
  }
  delete(name: string): Promise<boolean> {
    return this.peer.call<boolean>('sessions.delete', name, this.timeoutMs);
  }
  /** Atomic in the primary, whose one thread holds the store. */
  compareAndSet(
    name: string,
    expected: Buffer | undefined,
    value: Buffer,
    ttlMs: number,
  ): Promise<boolean> {
    const a = {
      name,
      expected: expected?.toString('base64') ?? null,
      value: value.toString('base64'),
      ttlMs,
    };
    return this.peer.call<boolean>('sessions.cas', a, this.timeoutMs);
  }
  close(): void {}
}

export function serveSessionStore(peer: IpcPeer, store: MemorySessionStore): void {
  peer.handle('sessions.get', async (name: string) => {
    const v = await store.get(name);
    return v === undefined ? null : v.toString('base64');
  });
  peer.handle('sessions.set', async (a: { name: string; value: string; ttlMs: number }) => {
    await store.set(a.name, Buffer.from(a.value, 'base64'), a.ttlMs);
    return null;
  });
  peer.handle('sessions.delete', (name: string) => store.delete(name));
  peer.handle(
    'sessions.cas',
    (a: { name: string; expected: string | null; value: string; ttlMs: number }) =>
      store.compareAndSet(
        a.name,
        a.expected === null ? undefined : Buffer.from(a.expected, 'base64'),
        Buffer.from(a.value, 'base64'),
        a.ttlMs,
      ),
  );
}

// ---------------------------------------------------------------- masking vault

interface VaultReply {
  placeholders: string[];
  /** The session's entries, still sealed (AES-GCM, bound to their placeholder), base64. */
  entries: [string, string][];
}

/**
 * A worker's vault: placeholders are numbered by the primary's one MemoryVault (so two workers
 * never give one value two placeholders, or two values one), and the session's entries come
 * back sealed; this worker holds the same vault key and unseals only what a response names.
 */
export class IpcVault implements Vault {
  private readonly seal: Buffer;

  constructor(
    private readonly peer: IpcPeer,
    key: Buffer,
  ) {
    this.seal = deriveVaultKeys(key).seal;
  }

  async open(
    session: string,
    items: readonly VaultItem[],
    timeoutMs: number,
  ): Promise<VaultSession> {
    let r: VaultReply;
    try {
      r = await this.peer.call<VaultReply>('vault.open', { session, items }, timeoutMs);
    } catch (err) {
      // The policy's failure mode decides, as for a Redis vault that does not answer.
      if (err instanceof IpcError) throw new PolicyUnavailableError('The vault did not answer.');
      throw err;
    }
    if (r.entries.length === 0) return { placeholders: r.placeholders, lookup: EMPTY_LOOKUP };
    const sealed = new Map(r.entries);
    const seal = this.seal;
    return {
      placeholders: r.placeholders,
      lookup: {
        get(p) {
          const blob = sealed.get(p);
          return blob === undefined ? undefined : unsealValue(seal, p, Buffer.from(blob, 'base64'));
        },
        size: sealed.size,
      },
    };
  }

  close(): void {}
}

export function serveVault(peer: IpcPeer, vault: MemoryVault): void {
  peer.handle('vault.open', (a: { session: string; items: VaultItem[] }): VaultReply => {
    // open() numbers new values and refreshes the session's lifetime, as in one process.
    const { placeholders } = vault.open(a.session, a.items);
    const entries: [string, string][] = [];
    for (const [p, blob] of vault.sealedEntries(a.session))
      entries.push([p, blob.toString('base64')]);
    return { placeholders, entries };
  });
}
