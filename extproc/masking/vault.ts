/**
 * The reversible-masking vault: which placeholder stands for which value, per conversation.
 *
 * The interface is async-capable (it may return a promise) so that the Redis vault
 * (vault-redis.ts) can replace the in-memory one without touching callers; the in-memory one
 * answers synchronously so the common path pays no promise. Values are never kept in clear: the
 * index from value to placeholder holds a keyed digest, and the way back holds AES-256-GCM
 * ciphertext bound (AAD) to where it belongs (its placeholder here, its session in Redis), so a
 * heap dump, a Redis dump or a stray log of the vault reveals nothing usable.
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

export interface VaultSession {
  /** Placeholders for the items, in order. */
  placeholders: string[];
  /** The conversation's placeholders, this request's included, for restoring the response. */
  lookup: PlaceholderLookup;
}

export interface Vault {
  /**
   * Placeholders for `items` and the session's lookup, in one step (one round trip when the
   * vault is remote). A value already in the session keeps its placeholder; a new one gets the
   * next number of its type (`[EMAIL_3]`). `timeoutMs` is the policy's budget for the call.
   */
  open(session: string, items: readonly VaultItem[], timeoutMs: number): MaybePromise<VaultSession>;
  close(): void;
}

/** The vault did not answer, or not within the policy's time; the failure mode decides. */
export class PolicyUnavailableError extends Error {
  override readonly name = 'PolicyUnavailableError';
}

/** Keys derived from the vault key, one per use, so a digest can never serve as a cipher key. */
export interface VaultKeys {
  index: Buffer;
  seal: Buffer;
}

export function deriveVaultKeys(key: Buffer): VaultKeys {
  if (key.length !== 32) throw new Error('the vault key must be 32 bytes');
  return {
    index: createHmac('sha256', key).update('sluice-vault-index').digest(),
    seal: createHmac('sha256', key).update('sluice-vault-seal').digest(),
  };
}

/** AES-256-GCM: 12-byte IV, 16-byte tag, then the ciphertext, in one buffer. */
export function sealValue(key: Buffer, aad: string, value: string): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(aad));
  const data = Buffer.concat([c.update(value, 'utf8'), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), data]);
}

/** Throws when the blob was altered, sealed under another key, or bound to another AAD. */
export function unsealValue(key: Buffer, aad: string, blob: Buffer): string {
  if (blob.length < 28) throw new Error('vault record too short');
  const d = createDecipheriv('aes-256-gcm', key, blob.subarray(0, 12));
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(blob.subarray(12, 28));
  return Buffer.concat([d.update(blob.subarray(28)), d.final()]).toString('utf8');
}

/** The type of a placeholder: `US_SSN` for `[US_SSN_12]`. */
export function placeholderType(placeholder: string): string {
  return placeholder.slice(1, placeholder.lastIndexOf('_'));
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
  blob: Buffer;
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
  private readonly keys: VaultKeys;
  private readonly sessions = new Map<string, Session>();
  private readonly ttlMs: number;
  private readonly maxSessions: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(opts: MemoryVaultOptions = {}) {
    this.keys = deriveVaultKeys(opts.key ?? randomBytes(32));
    this.ttlMs = opts.ttlMs ?? 60 * 60 * 1000;
    this.maxSessions = opts.maxSessions ?? 10_000;
    this.maxEntries = opts.maxEntriesPerSession ?? 1000;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.sessions.size;
  }

  open(session: string, items: readonly VaultItem[]): VaultSession {
    return {
      placeholders: items.length > 0 ? this.put(session, items) : [],
      lookup: this.get(session),
    };
  }

  put(session: string, items: readonly VaultItem[]): string[] {
    const s = this.session(session, true)!;
    const out: string[] = [];
    for (const { type, value } of items) {
      const digest = createHmac('sha256', this.keys.index)
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
    const s = this.session(session, false);
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

  /**
   * A session's entries as they are kept, sealed (bound to their placeholder): what a cluster
   * worker receives (workers/shared-state.ts) and unseals with the same key. Does not refresh
   * the session: the open() before it did.
   */
  sealedEntries(session: string): [placeholder: string, blob: Buffer][] {
    const id = createHmac('sha256', this.keys.index).update(session).digest('base64');
    const s = this.sessions.get(id);
    if (!s) return [];
    return [...s.byPlaceholder].map(([p, sealed]) => [p, sealed.blob]);
  }

  close(): void {
    this.sessions.clear();
  }

  private session(session: string, create: boolean): Session | undefined {
    const now = this.now();
    this.expire(now);
    const id = createHmac('sha256', this.keys.index).update(session).digest('base64');
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
    return { blob: sealValue(this.keys.seal, placeholder, value), digest };
  }

  private unseal(placeholder: string, s: Sealed): string {
    return unsealValue(this.keys.seal, placeholder, s.blob);
  }
}

export const EMPTY_LOOKUP: PlaceholderLookup = { get: () => undefined, size: 0 };

/**
 * The vault of a request without a session, or of a non-reversible policy: numbering is stable
 * within the request and nothing outlives it, so nothing needs sealing.
 */
export class RequestVault implements PlaceholderLookup {
  private readonly counters = new Map<string, number>();

  /** `taken`: per type, numbers already written in the request; they are skipped. */
  constructor(private readonly taken?: ReadonlyMap<string, ReadonlySet<number>>) {}

  private readonly byValue = new Map<string, string>();
  private readonly values = new Map<string, string>();

  put(items: readonly VaultItem[]): string[] {
    // A loop rather than map() with a destructuring closure: nothing made per call but the list.
    const out = new Array<string>(items.length);
    for (let i = 0; i < items.length; i++) {
      const { type, value } = items[i]!;
      const k = `${type}\0${value}`;
      let p = this.byValue.get(k);
      if (p === undefined) {
        const skip = this.taken?.get(type);
        let n = nextNumber(this.counters, type);
        while (skip?.has(n)) n = nextNumber(this.counters, type);
        p = placeholderFor(type, n);
        this.byValue.set(k, p);
        this.values.set(p, value);
      }
      out[i] = p;
    }
    return out;
  }

  get(placeholder: string): string | undefined {
    return this.values.get(placeholder);
  }

  get size(): number {
    return this.values.size;
  }
}

const WRITTEN_PLACEHOLDER = /\[([A-Z][A-Z0-9_]*)_(\d{1,6})\]/g;

/** Nothing written: most requests (no Map per request for them). */
const NONE_USED: ReadonlyMap<string, ReadonlySet<number>> = new Map();

/** Per type, the placeholder numbers written in `texts` (placeholders of earlier turns). */
export function usedPlaceholderNumbers(
  texts: readonly string[],
): ReadonlyMap<string, ReadonlySet<number>> {
  let out: Map<string, Set<number>> | undefined;
  for (const t of texts) {
    if (!t.includes('[')) continue;
    WRITTEN_PLACEHOLDER.lastIndex = 0;
    for (let m = WRITTEN_PLACEHOLDER.exec(t); m !== null; m = WRITTEN_PLACEHOLDER.exec(t)) {
      out ??= new Map();
      let set = out.get(m[1]!);
      if (!set) out.set(m[1]!, (set = new Set()));
      set.add(Number(m[2]));
    }
  }
  return out ?? NONE_USED;
}
