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
  /**
   * Sets `value` only if the record still holds exactly `expected` (undefined: holds nothing),
   * atomically for every client of the store; whether it was set. Sealed values are unique (a
   * fresh nonce each), so equal bytes mean no one wrote in between.
   */
  compareAndSet(
    name: string,
    expected: Buffer | undefined,
    value: Buffer,
    ttlMs: number,
  ): Promise<boolean>;
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

  // One thread: nothing runs between the comparison and the set.
  async compareAndSet(
    name: string,
    expected: Buffer | undefined,
    value: Buffer,
    ttlMs: number,
  ): Promise<boolean> {
    const e = this.entries.get(name);
    const current = e !== undefined && e.expiresAt > this.opts.now() ? e.value : undefined;
    const same =
      current === undefined || expected === undefined
        ? current === expected
        : current.equals(expected);
    if (!same) return false;
    await this.set(name, value, ttlMs);
    return true;
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

/** ARGV[1] empty: the record must not exist (a sealed value is never empty). */
const COMPARE_AND_SET = `
local v = redis.call('GET', KEYS[1])
if (v == false and ARGV[1] == '') or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`;

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

  /** One script, so Redis runs the comparison and the set with nothing in between. */
  async compareAndSet(
    name: string,
    expected: Buffer | undefined,
    value: Buffer,
    ttlMs: number,
  ): Promise<boolean> {
    const set = await this.opts.client.eval(
      COMPARE_AND_SET,
      1,
      this.key(name),
      expected ?? '',
      value,
      Math.max(1, Math.round(ttlMs)),
    );
    return set === 1;
  }

  close(): void {
    // The client is the state store's; it closes it.
  }
}
