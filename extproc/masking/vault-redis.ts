/**
 * The conversation vault shared by every extproc replica, kept in Redis (state/redis-vault.ts).
 *
 * What Redis holds of a conversation is useless without the vault key: the session id is an
 * HMAC of the (already scoped) conversation id, a value's identity is an HMAC of session, type
 * and value, and the value itself is AES-256-GCM ciphertext bound (AAD) to the session. Every
 * replica must therefore run with the same key (a Secret): digests and ciphertext are only
 * comparable and readable under it.
 *
 * A request costs one script call, whatever it carries: values are sealed before the call
 * unless this process knows the session holds them already, and the reply brings the
 * placeholders plus the session's entries this process has not seen yet. (Only when Redis lost
 * an entry that the process took as known does a second call carry its record.) The entries
 * seen are kept here, still sealed, so a long conversation does not re-read its whole history
 * on every turn; a generation number, new whenever Redis creates the session again (after a TTL
 * expiry or a flush), keeps that copy from ever answering for another one.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { Counter, type Registry } from 'prom-client';
import {
  PlaceholdersExhausted,
  type VaultExchangeItem,
  type VaultExchangeReply,
  type VaultStore,
} from '../state/redis-vault.js';
import { StoreUnavailable } from '../state/store.js';
import {
  deriveVaultKeys,
  EMPTY_LOOKUP,
  MAX_PLACEHOLDER_NUMBER,
  placeholderType,
  PolicyUnavailableError,
  sealValue,
  unsealValue,
  type PlaceholderLookup,
  type Vault,
  type VaultItem,
  type VaultKeys,
  type VaultSession,
} from './vault.js';

export const VAULT_FAILURE_REASONS = ['timeout', 'unavailable', 'exhausted', 'unreadable'] as const;
export type VaultFailure = (typeof VAULT_FAILURE_REASONS)[number];

export interface RedisVaultOptions {
  store: VaultStore;
  /** 32 bytes, the same on every replica. */
  key: Buffer;
  /** A conversation is forgotten this long after its last use (refreshed on every request). */
  ttlMs?: number;
  /** The oldest placeholder of a conversation is dropped beyond this; numbers never restart. */
  maxEntriesPerSession?: number;
  /** Sealed entries this process keeps across all conversations; least recently used go first. */
  maxCachedEntries?: number;
  /** Each failed call, for a metric; the request's policy decides what the failure does. */
  onFailure?: (reason: VaultFailure) => void;
}

interface Entry {
  seq: number;
  /** "<digest> <base64 sealed value>", as stored. */
  record: string;
}

interface Cached {
  generation: string;
  /** Entries up to this sequence number are held (those after `first`). */
  seq: number;
  first: number;
  entries: Map<string, Entry>;
  /** Digests of the entries' values, so known values need not be sealed again. */
  digests: Set<string>;
}

const TIMEOUT = Symbol('timeout');

export class RedisVault implements Vault {
  private readonly store: VaultStore;
  private readonly keys: VaultKeys;
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly maxCached: number;
  private readonly onFailure: (reason: VaultFailure) => void;
  /** By keyed session id, least recently used first. */
  private readonly cache = new Map<string, Cached>();
  private cachedEntries = 0;

  constructor(opts: RedisVaultOptions) {
    this.store = opts.store;
    this.keys = deriveVaultKeys(opts.key);
    this.ttlMs = opts.ttlMs ?? 60 * 60 * 1000;
    this.maxEntries = opts.maxEntriesPerSession ?? 1000;
    // The script hands a whole session to one HMGET; Redis's Lua caps arguments near 8,000.
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1 || this.maxEntries > 5000) {
      throw new Error('maxEntriesPerSession must be an integer from 1 to 5000');
    }
    this.maxCached = opts.maxCachedEntries ?? 200_000;
    this.onFailure = opts.onFailure ?? (() => undefined);
  }

  /** The id Redis knows the conversation by (tests look its keys up with it). */
  sessionId(session: string): string {
    return createHmac('sha256', this.keys.index).update(session).digest('base64url');
  }

  async open(
    session: string,
    items: readonly VaultItem[],
    timeoutMs: number,
  ): Promise<VaultSession> {
    const sid = this.sessionId(session);
    const known = this.cache.get(sid);
    // One entry per distinct value: a value repeated in the request is handled once. A value
    // this process has seen in the session is sent without its record (sealing is most of the
    // CPU a request costs here, and a conversation resends its history every turn); Redis asks
    // for the record in the rare case it no longer holds the entry.
    const distinct = new Map<string, number>();
    const values: string[] = [];
    const sent: VaultExchangeItem[] = [];
    const slot: number[] = [];
    for (const { type, value } of items) {
      const k = `${type}\0${value}`;
      let i = distinct.get(k);
      if (i === undefined) {
        i = sent.length;
        distinct.set(k, i);
        const digest = this.digest(sid, type, value);
        values.push(value);
        sent.push({
          type,
          digest,
          record: known?.digests.has(digest) ? '' : this.seal(sid, value),
        });
      }
      slot.push(i);
    }
    const exchange = (): Promise<VaultExchangeReply> =>
      this.store.exchange({
        session: sid,
        ttlMs: this.ttlMs,
        maxEntries: this.maxEntries,
        maxNumber: MAX_PLACEHOLDER_NUMBER,
        newGeneration: randomBytes(12).toString('base64url'),
        knownGeneration: known?.generation ?? '',
        knownSeq: known?.seq ?? 0,
        items: sent,
      });
    const call = exchange()
      .then((reply) => {
        if (reply.missing.length === 0) return reply;
        for (const i of reply.missing) sent[i]!.record = this.seal(sid, values[i]!);
        return exchange();
      })
      // Absorbed even when it arrives after the deadline: the next request then has less to read.
      .then((reply) => this.absorb(sid, reply));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<typeof TIMEOUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMEOUT), timeoutMs);
    });
    let r: Awaited<typeof call> | typeof TIMEOUT;
    try {
      r = await Promise.race([call, deadline]);
    } catch (err) {
      const reason = err instanceof PlaceholdersExhausted ? 'exhausted' : 'unavailable';
      this.onFailure(reason);
      throw new PolicyUnavailableError(
        err instanceof StoreUnavailable || err instanceof PlaceholdersExhausted
          ? err.message
          : 'the vault failed',
        { cause: err },
      );
    } finally {
      clearTimeout(timer);
    }
    if (r === TIMEOUT) {
      // A late failure of `call` is not unhandled: the race holds its handlers.
      this.onFailure('timeout');
      throw new PolicyUnavailableError('vault timed out');
    }
    const { placeholders, lookup } = r;
    return { placeholders: slot.map((i) => placeholders[i]!), lookup };
  }

  close(): void {
    this.cache.clear();
    this.cachedEntries = 0;
  }

  /** Sealed entries held for all conversations (bounded by maxCachedEntries). */
  get cachedSize(): number {
    return this.cachedEntries;
  }

  private seal(sid: string, value: string): string {
    return sealValue(this.keys.seal, sid, value).toString('base64');
  }

  private digest(sid: string, type: string, value: string): string {
    return createHmac('sha256', this.keys.index)
      .update(sid)
      .update('\0')
      .update(type)
      .update('\0')
      .update(value)
      .digest('base64url');
  }

  private absorb(
    sid: string,
    r: VaultExchangeReply,
  ): { placeholders: string[]; lookup: PlaceholderLookup } {
    let c = this.cache.get(sid);
    if (c) {
      this.cache.delete(sid);
      this.cachedEntries -= c.entries.size;
    }
    if (r.generation === '') return { placeholders: r.placeholders, lookup: EMPTY_LOOKUP };
    if (!c || c.generation !== r.generation) {
      c = { generation: r.generation, seq: 0, first: 0, entries: new Map(), digests: new Set() };
    }
    let seq = r.from;
    for (const [p, record] of r.entries) {
      c.entries.set(p, { seq: ++seq, record });
      c.digests.add(record.slice(0, record.indexOf(' ')));
    }
    if (r.seq > c.seq) c.seq = r.seq;
    if (r.first > c.first) {
      c.first = r.first;
      for (const [p, e] of c.entries) {
        if (e.seq > c.first) continue;
        c.entries.delete(p);
        c.digests.delete(e.record.slice(0, e.record.indexOf(' ')));
      }
    }
    this.cache.set(sid, c);
    this.cachedEntries += c.entries.size;
    for (const [id, old] of this.cache) {
      if (this.cachedEntries <= this.maxCached || id === sid) break;
      this.cache.delete(id);
      this.cachedEntries -= old.entries.size;
    }
    return { placeholders: r.placeholders, lookup: this.lookup(sid, c.entries) };
  }

  private lookup(sid: string, entries: ReadonlyMap<string, Entry>): PlaceholderLookup {
    // A response names the same placeholder many times; each is opened once per request.
    const opened = new Map<string, string | undefined>();
    return {
      get: (p) => {
        if (opened.has(p)) return opened.get(p);
        const e = entries.get(p);
        const v = e === undefined ? undefined : this.unseal(sid, p, e.record);
        opened.set(p, v);
        return v;
      },
      get size() {
        return entries.size;
      },
    };
  }

  /**
   * A record that does not decrypt under this key, or whose value does not hash back to its
   * digest under the placeholder's type (moved from another session or type), is not restored:
   * the client then sees the placeholder. It is counted, as it means replicas with different keys
   * or a tampered store. What a writer of Redis can still do is swap two values of one type
   * within one conversation; it can neither read a value nor move one anywhere else.
   */
  private unseal(sid: string, placeholder: string, record: string): string | undefined {
    const sp = record.indexOf(' ');
    try {
      if (sp <= 0) throw new Error('malformed record');
      const value = unsealValue(this.keys.seal, sid, Buffer.from(record.slice(sp + 1), 'base64'));
      if (this.digest(sid, placeholderType(placeholder), value) !== record.slice(0, sp)) {
        throw new Error('record does not match its placeholder');
      }
      return value;
    } catch {
      this.onFailure('unreadable');
      return undefined;
    }
  }
}

/** `sluice_vault_failures_total{reason}` on `registry`; returns what RedisVault's onFailure needs. */
export function vaultFailureMetric(registry: Registry): (reason: VaultFailure) => void {
  const c = new Counter({
    name: 'sluice_vault_failures_total',
    help:
      'Shared masking vault calls that failed, by reason (timeout: slower than the policy allows; ' +
      'unavailable: Redis unreachable; exhausted: a conversation ran out of placeholder numbers; ' +
      'unreadable: a stored record did not decrypt or verify). The policy failure mode decides.',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const reason of VAULT_FAILURE_REASONS) c.inc({ reason }, 0);
  return (reason) => c.inc({ reason });
}
