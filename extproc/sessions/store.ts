/**
 * Where session records live: process memory (bounded by bytes, least recently used dropped
 * first) or Redis (shared by replicas, expiring there). A store keeps opaque sealed bytes under
 * opaque names; sealing, owner binding and logical expiry are sessions.ts's. Reads that find
 * nothing return undefined; failures (Redis away) are thrown.
 */
import type { Cluster, Redis } from 'ioredis';

export interface SessionStore {
  readonly kind: 'memory' | 'redis';
  get(name: string): Promise<Buffer | undefined>;
  set(name: string, value: Buffer, ttlMs: number): Promise<void>;
  /** Whether something was there. */
  delete(name: string): Promise<boolean>;
  close(): void;
}

export interface MemorySessionStoreOptions {
  /** The most bytes (values plus names) kept at once. */
  maxBytes: number;
  /** Clock for physical expiry (ms); sessions.ts also checks expiry with its own wall clock. */
  now: () => number;
}

interface Entry {
  value: Buffer;
  bytes: number;
  expiresAt: number;
}

export class MemorySessionStore implements SessionStore {
  readonly kind = 'memory' as const;
  /** Map order is recency: a read moves the entry to the end; eviction takes from the start. */
  private readonly entries = new Map<string, Entry>();
  private used = 0;

  constructor(private readonly opts: MemorySessionStoreOptions) {}

  get(name: string): Promise<Buffer | undefined> {
    const e = this.entries.get(name);
    if (!e) return Promise.resolve(undefined);
    this.entries.delete(name);
    if (e.expiresAt <= this.opts.now()) {
      this.used -= e.bytes;
      return Promise.resolve(undefined);
    }
    this.entries.set(name, e);
    return Promise.resolve(e.value);
  }

  set(name: string, value: Buffer, ttlMs: number): Promise<void> {
    this.remove(name);
    const bytes = value.length + 2 * name.length + 64;
    // One record larger than the whole store is not kept (it would evict everything for nothing).
    if (bytes <= this.opts.maxBytes) {
      while (this.used + bytes > this.opts.maxBytes) {
        const oldest = this.entries.keys().next();
        if (oldest.done) break;
        this.remove(oldest.value);
      }
      this.entries.set(name, { value, bytes, expiresAt: this.opts.now() + ttlMs });
      this.used += bytes;
    }
    return Promise.resolve();
  }

  delete(name: string): Promise<boolean> {
    const e = this.entries.get(name);
    const live = e !== undefined && e.expiresAt > this.opts.now();
    this.remove(name);
    return Promise.resolve(live);
  }

  private remove(name: string): void {
    const e = this.entries.get(name);
    if (!e) return;
    this.entries.delete(name);
    this.used -= e.bytes;
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

export interface RedisSessionStoreOptions {
  client: Redis | Cluster;
  /** Default "sluice". */
  prefix?: string;
}

/** `P:s:<name>` per record, SET PX with the record's TTL; names are already keyed digests. */
export class RedisSessionStore implements SessionStore {
  readonly kind = 'redis' as const;
  private readonly prefix: string;

  constructor(private readonly opts: RedisSessionStoreOptions) {
    this.prefix = opts.prefix ?? 'sluice';
  }

  private key(name: string): string {
    return `${this.prefix}:s:${name}`;
  }

  async get(name: string): Promise<Buffer | undefined> {
    return (await this.opts.client.getBuffer(this.key(name))) ?? undefined;
  }

  async set(name: string, value: Buffer, ttlMs: number): Promise<void> {
    await this.opts.client.set(this.key(name), value, 'PX', Math.max(1, Math.round(ttlMs)));
  }

  async delete(name: string): Promise<boolean> {
    return (await this.opts.client.del(this.key(name))) > 0;
  }

  close(): void {
    // The client is the state store's; it closes it.
  }
}
