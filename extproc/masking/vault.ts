/**
 * The reversible-masking vault: which placeholder stands for which value, per conversation.
 *
 * The interface is async-capable (every method may return a promise) so that a Redis vault can
 * replace the in-memory one without touching callers; the in-memory one answers synchronously so
 * the common path pays no promise. Values are never kept in clear: the index from value to
 * placeholder holds a keyed digest, and the way back holds AES-256-GCM ciphertext bound (AAD) to
 * its placeholder, so a heap dump or a stray log of the vault reveals nothing usable.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

export type MaybePromise<T> = T | Promise<T>;

export interface VaultItem {
  type: string;
  value: string;
}

/** Restores placeholders: `get('[EMAIL_1]')` is the value it stands for in this conversation. */
export interface PlaceholderLookup {
  get(placeholder: string): string | undefined;
  readonly size: number;
}

export interface Vault {
  /**
   * Placeholders for `items`, in order. A value already in the session keeps its placeholder;
   * a new one gets the next number of its type (`[EMAIL_3]`).
   */
  put(session: string, items: readonly VaultItem[]): MaybePromise<string[]>;
  /** The session's placeholders, for restoring a response. */
  get(session: string): MaybePromise<PlaceholderLookup>;
  close(): void;
}

export interface MemoryVaultOptions {
  /** 32 bytes; a random per-process key when absent (restarts then forget every session). */
  key?: Buffer;
  /** A session is forgotten this long after its last use. */
  ttlMs?: number;
  /** The least recently used session is dropped beyond this. */
  maxSessions?: number;
  /** The oldest placeholder of a session is dropped beyond this; numbering never restarts. */
  maxEntriesPerSession?: number;
  now?: () => number;
}

/** Numbers above this would make placeholders longer than the streaming hold-back allows. */
export const MAX_PLACEHOLDER_NUMBER = 999_999;

interface Sealed {
  iv: Buffer;
  data: Buffer;
  tag: Buffer;
  digest: string;
}

class Session {
  readonly counters = new Map<string, number>();
  readonly byDigest = new Map<string, string>();
  readonly byPlaceholder = new Map<string, Sealed>();
  constructor(public expiresAt: number) {}
}

export function placeholderFor(type: string, n: number): string {
  return `[${type}_${n}]`;
}

function nextNumber(counters: Map<string, number>, type: string): number {
  const n = (counters.get(type) ?? 0) + 1;
  // Wrapping would reuse a number that may still be in the model's context; refusing is safer.
  if (n > MAX_PLACEHOLDER_NUMBER) throw new Error('placeholder numbers exhausted for this session');
  counters.set(type, n);
  return n;
}

export class MemoryVault implements Vault {
  private readonly indexKey: Buffer;
  private readonly sealKey: Buffer;
  private readonly sessions = new Map<string, Session>();
  private readonly ttlMs: number;
  private readonly maxSessions: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(opts: MemoryVaultOptions = {}) {
    const key = opts.key ?? randomBytes(32);
    if (key.length !== 32) throw new Error('the vault key must be 32 bytes');
    // Separate keys per use, so the index digest can never be confused with a cipher key.
    this.indexKey = createHmac('sha256', key).update('sluice-vault-index').digest();
    this.sealKey = createHmac('sha256', key).update('sluice-vault-seal').digest();
    this.ttlMs = opts.ttlMs ?? 60 * 60 * 1000;
    this.maxSessions = opts.maxSessions ?? 10_000;
    this.maxEntries = opts.maxEntriesPerSession ?? 1000;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.sessions.size;
  }

  put(session: string, items: readonly VaultItem[]): string[] {
    const s = this.open(session, true)!;
    const out: string[] = [];
    for (const { type, value } of items) {
      const digest = createHmac('sha256', this.indexKey)
        .update(type)
        .update('\0')
        .update(value)
        .digest('base64');
      const known = s.byDigest.get(digest);
      if (known !== undefined) {
        out.push(known);
        continue;
      }
      const placeholder = placeholderFor(type, nextNumber(s.counters, type));
      s.byDigest.set(digest, placeholder);
      s.byPlaceholder.set(placeholder, this.seal(placeholder, value, digest));
      if (s.byPlaceholder.size > this.maxEntries) {
        const [oldest, sealed] = s.byPlaceholder.entries().next().value as [string, Sealed];
        s.byPlaceholder.delete(oldest);
        s.byDigest.delete(sealed.digest);
      }
      out.push(placeholder);
    }
    return out;
  }

  get(session: string): PlaceholderLookup {
    const s = this.open(session, false);
    if (!s) return EMPTY_LOOKUP;
    return {
      get: (p) => {
        const sealed = s.byPlaceholder.get(p);
        return sealed === undefined ? undefined : this.unseal(p, sealed);
      },
      get size() {
        return s.byPlaceholder.size;
      },
    };
  }

  close(): void {
    this.sessions.clear();
  }

  private open(session: string, create: boolean): Session | undefined {
    const now = this.now();
    this.expire(now);
    const id = createHmac('sha256', this.indexKey).update(session).digest('base64');
    let s = this.sessions.get(id);
    if (s) {
      // Re-insert so the Map's order stays least-recently-used first.
      this.sessions.delete(id);
      this.sessions.set(id, s);
      s.expiresAt = now + this.ttlMs;
      return s;
    }
    if (!create) return undefined;
    s = new Session(now + this.ttlMs);
    this.sessions.set(id, s);
    if (this.sessions.size > this.maxSessions) {
      this.sessions.delete(this.sessions.keys().next().value as string);
    }
    return s;
  }

  /** Sessions are in last-use order, so expired ones are all at the front: amortized O(1). */
  private expire(now: number): void {
    for (const [id, s] of this.sessions) {
      if (s.expiresAt > now) return;
      this.sessions.delete(id);
    }
  }

  private seal(placeholder: string, value: string, digest: string): Sealed {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.sealKey, iv);
    c.setAAD(Buffer.from(placeholder));
    const data = Buffer.concat([c.update(value, 'utf8'), c.final()]);
    return { iv, data, tag: c.getAuthTag(), digest };
  }

  private unseal(placeholder: string, s: Sealed): string {
    const d = createDecipheriv('aes-256-gcm', this.sealKey, s.iv);
    d.setAAD(Buffer.from(placeholder));
    d.setAuthTag(s.tag);
    return Buffer.concat([d.update(s.data), d.final()]).toString('utf8');
  }
}

export const EMPTY_LOOKUP: PlaceholderLookup = { get: () => undefined, size: 0 };

/**
 * The vault of a request without a session, or of a non-reversible policy: numbering is stable
 * within the request and nothing outlives it, so nothing needs sealing.
 */
export class RequestVault implements PlaceholderLookup {
  private readonly counters = new Map<string, number>();
  private readonly byValue = new Map<string, string>();
  private readonly values = new Map<string, string>();

  put(items: readonly VaultItem[]): string[] {
    return items.map(({ type, value }) => {
      const k = `${type}\0${value}`;
      let p = this.byValue.get(k);
      if (p === undefined) {
        p = placeholderFor(type, nextNumber(this.counters, type));
        this.byValue.set(k, p);
        this.values.set(p, value);
      }
      return p;
    });
  }

  get(placeholder: string): string | undefined {
    return this.values.get(placeholder);
  }

  get size(): number {
    return this.values.size;
  }
}
