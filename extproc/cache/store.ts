/**
 * Where entries live: in process memory (bounded by bytes, least recently used dropped first) or
 * in Redis (shared by replicas, expiring there). An entry is stored as one string, the
 * serialized CacheEntry, under the request's key digest. Stores never throw on a read that finds
 * nothing; their failures (Redis away, a value that does not decrypt) are thrown and the cache
 * turns them into a miss.
 */
import { createHmac } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { sealValue, unsealValue } from '../masking/vault.js';

export interface CacheStore {
  readonly kind: 'memory' | 'redis';
  get(digest: string): Promise<string | undefined> | string | undefined;
  set(digest: string, value: string, ttlMs: number): Promise<void> | void;
  close(): void;
}

export interface MemoryCacheStoreOptions {
  /** The most bytes (UTF-16 length × 2 of the stored strings, plus the keys) kept at once. */
  maxBytes: number;
  /** Monotonic ms, for expiry. */
  now: () => number;
}

interface MemoryEntry {
  value: string;
  bytes: number;
  expiresAt: number;
}

/** A string's footprint in the heap, roughly: two bytes a code unit, and the key's. */
function footprint(digest: string, value: string): number {
  return 2 * (digest.length + value.length) + 64;
}

export class MemoryCacheStore implements CacheStore {
  readonly kind = 'memory' as const;
  /** Map order is recency: a read moves the entry to the end; eviction takes from the start. */
  private readonly entries = new Map<string, MemoryEntry>();
  private used = 0;

  constructor(private readonly opts: MemoryCacheStoreOptions) {}

  get(digest: string): string | undefined {
    const e = this.entries.get(digest);
    if (!e) return undefined;
    this.entries.delete(digest);
    if (e.expiresAt <= this.opts.now()) {
      this.used -= e.bytes;
      return undefined;
    }
    this.entries.set(digest, e);
    return e.value;
  }

  set(digest: string, value: string, ttlMs: number): void {
    const bytes = footprint(digest, value);
    const old = this.entries.get(digest);
    if (old) {
      this.entries.delete(digest);
      this.used -= old.bytes;
    }
    // One entry larger than the whole store is not kept (it would evict everything for nothing).
    if (bytes > this.opts.maxBytes) return;
    while (this.used + bytes > this.opts.maxBytes) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.used -= this.entries.get(oldest.value)!.bytes;
      this.entries.delete(oldest.value);
    }
    this.entries.set(digest, { value, bytes, expiresAt: this.opts.now() + ttlMs });
    this.used += bytes;
  }

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.used;
  }

  close(): void {
    this.entries.clear();
    this.used = 0;
  }
}

/** Keys derived from the vault key for the cache alone, so no other use can be confused with it. */
export interface CacheKeys {
  /** Names Redis keys: a keyed digest, so Redis never holds the plain key digest. */
  index: Buffer;
  /** Seals values (AES-256-GCM, masking/vault.ts's envelope). */
  seal: Buffer;
}

export function deriveCacheKeys(vaultKey: Buffer): CacheKeys {
  if (vaultKey.length !== 32) throw new Error('the vault key must be 32 bytes');
  return {
    index: createHmac('sha256', vaultKey).update('sluice-cache-index').digest(),
    seal: createHmac('sha256', vaultKey).update('sluice-cache-seal').digest(),
  };
}

export interface RedisCacheStoreOptions {
  client: Redis | Cluster;
  /** The vault key (--vault-key-file): values are sealed with a key derived from it. */
  vaultKey: Buffer;
  /** Default "sluice". */
  prefix?: string;
}

/**
 * Entries in Redis: `P:c:<hex HMAC of the key digest>` holds the entry sealed under the cache
 * seal key with the key digest as AAD, expiring with the entry's TTL (SET PX). A dump of Redis
 * shows neither prompts, nor answers, nor the digests a guessed prompt could be checked against;
 * a value moved to another key, or written under another vault key, does not open.
 */
export class RedisCacheStore implements CacheStore {
  readonly kind = 'redis' as const;
  private readonly keys: CacheKeys;
  private readonly prefix: string;

  constructor(private readonly opts: RedisCacheStoreOptions) {
    this.keys = deriveCacheKeys(opts.vaultKey);
    this.prefix = opts.prefix ?? 'sluice';
  }

  private redisKey(digest: string): string {
    return `${this.prefix}:c:${createHmac('sha256', this.keys.index).update(digest).digest('hex')}`;
  }

  async get(digest: string): Promise<string | undefined> {
    const blob = await this.opts.client.getBuffer(this.redisKey(digest));
    if (!blob) return undefined;
    // Throws on a value altered, sealed for another digest, or under another key.
    return unsealValue(this.keys.seal, digest, blob);
  }

  async set(digest: string, value: string, ttlMs: number): Promise<void> {
    const sealed = sealValue(this.keys.seal, digest, value);
    await this.opts.client.set(this.redisKey(digest), sealed, 'PX', Math.max(1, Math.round(ttlMs)));
  }

  close(): void {
    // The client is the state store's; it closes it.
  }
}
