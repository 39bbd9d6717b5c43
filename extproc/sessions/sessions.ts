/**
 * Sessions: conversation state the gateway keeps for an authenticated caller, and the one place
 * that decides who owns it. A record is named by an HMAC of (owner, kind, id) under a key derived
 * from the vault key, so another identity asking for the same id computes another name and finds
 * nothing — it can never be handed someone else's record, and cannot tell that one exists. Values
 * are sealed (AES-256-GCM, masking/vault.ts's envelope) and bound to their name, in memory as in
 * Redis, and carry their own expiry, checked against the gateway's wall clock (so replicas and
 * tests agree on it) on top of the store's physical TTL.
 *
 * What a record holds is its user's business (sessions/responses.ts stores Responses turns); this
 * module knows owners, names, sealing, expiry, size bounds and store failures only.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { sealValue, unsealValue } from '../masking/vault.js';
import type { SessionStore } from './store.js';

/** The part of an authenticated caller (governance's Caller) state is bound to. */
export interface SessionOwner {
  method: string;
  consumer: string;
}

export type RecordKind = 'response' | 'conversation';

/** The store failed or did not answer in time: the request is refused (503), never served blind. */
export class SessionsUnavailable extends Error {
  constructor(options?: { cause?: unknown }) {
    super('The session store is unavailable.', options);
    this.name = 'SessionsUnavailable';
  }
}

export interface SessionsOptions {
  store: SessionStore;
  /** 32 bytes (the vault key); a random per-process key when absent (restarts forget everything). */
  key?: Buffer | undefined;
  /** Wall-clock ms: records expire against it. */
  wallNow: () => number;
  /** How long a store call may take. Default 500 ms (as the governance store). */
  timeoutMs?: number;
}

export interface WriteOptions {
  ttlMs: number;
  /** The largest serialized value accepted; a larger one is not stored. */
  maxBytes: number;
}

export type WriteResult = { stored: true; bytes: number } | { stored: false; bytes: number };

/** How often update() reads again after another writer got in first. */
export const UPDATE_ATTEMPTS = 8;

export type UpdateResult<T> =
  | { kind: 'stored'; value: T; bytes: number }
  | { kind: 'unchanged'; value: T | undefined }
  | { kind: 'too_large'; bytes: number }
  /** Another writer got in first every time. */
  | { kind: 'conflict' };

interface Envelope {
  /** owner key, kind, id: checked again after opening (the name already binds them). */
  o: string;
  k: RecordKind;
  i: string;
  /** Expiry, epoch ms. */
  x: number;
  d: unknown;
}

export function ownerKey(owner: SessionOwner): string {
  return `${owner.method}\0${owner.consumer}`;
}

/**
 * The masking vault's conversation id for a stored conversation: the same owner and conversation
 * key always give the same vault session, so placeholders stay the same across its turns.
 */
export function vaultSession(owner: SessionOwner, conversationKey: string): string {
  return createHash('sha256')
    .update('sluice-stored-conversation\0')
    .update(ownerKey(owner))
    .update('\0')
    .update(conversationKey)
    .digest('base64url');
}

export class Sessions {
  private readonly index: Buffer;
  private readonly seal: Buffer;
  private readonly timeoutMs: number;

  constructor(private readonly opts: SessionsOptions) {
    const key = opts.key ?? randomBytes(32);
    if (key.length !== 32) throw new Error('the sessions key must be 32 bytes');
    this.index = createHmac('sha256', key).update('sluice-sessions-index').digest();
    this.seal = createHmac('sha256', key).update('sluice-sessions-seal').digest();
    this.timeoutMs = opts.timeoutMs ?? 500;
  }

  get kind(): 'memory' | 'redis' {
    return this.opts.store.kind;
  }

  private name(owner: SessionOwner, kind: RecordKind, id: string): string {
    return createHmac('sha256', this.index)
      .update(ownerKey(owner))
      .update('\0')
      .update(kind)
      .update('\0')
      .update(id)
      .digest('base64url');
  }

  /** The record, or undefined when there is none for this owner (or it expired). */
  async read<T>(owner: SessionOwner, kind: RecordKind, id: string): Promise<T | undefined> {
    const name = this.name(owner, kind, id);
    const blob = await this.call(() => this.opts.store.get(name));
    return this.open<T>(owner, kind, id, name, blob);
  }

  /**
   * Changes a record without losing a concurrent change: reads it, asks `change` for the new value
   * (undefined: leave it), and writes only if no one wrote in between (the store's
   * compareAndSet), else reads again — at most `attempts` times, then `conflict`. `change` may be
   * called more than once and must only compute.
   */
  async update<T>(
    owner: SessionOwner,
    kind: RecordKind,
    id: string,
    change: (current: T | undefined) => T | undefined,
    opts: WriteOptions,
    attempts = UPDATE_ATTEMPTS,
  ): Promise<UpdateResult<T>> {
    const name = this.name(owner, kind, id);
    for (let i = 0; i < attempts; i++) {
      const blob = await this.call(() => this.opts.store.get(name));
      const current = this.open<T>(owner, kind, id, name, blob);
      const next = change(current);
      if (next === undefined) return { kind: 'unchanged', value: current };
      const data = JSON.stringify(next);
      const bytes = Buffer.byteLength(data);
      if (bytes > opts.maxBytes) return { kind: 'too_large', bytes };
      const sealed = this.sealed(owner, kind, id, name, next, opts.ttlMs);
      const set = await this.call(() =>
        this.opts.store.compareAndSet(name, blob, sealed, opts.ttlMs),
      );
      if (set) return { kind: 'stored', value: next, bytes };
    }
    return { kind: 'conflict' };
  }

  private open<T>(
    owner: SessionOwner,
    kind: RecordKind,
    id: string,
    name: string,
    blob: Buffer | undefined,
  ): T | undefined {
    if (!blob) return undefined;
    let env: Envelope;
    try {
      env = JSON.parse(unsealValue(this.seal, name, blob)) as Envelope;
    } catch (err) {
      // Altered, moved from another name, or sealed under another key: not this owner's record.
      throw new SessionsUnavailable({ cause: err });
    }
    if (env.o !== ownerKey(owner) || env.k !== kind || env.i !== id) return undefined;
    if (env.x <= this.opts.wallNow()) return undefined;
    return env.d as T;
  }

  async write(
    owner: SessionOwner,
    kind: RecordKind,
    id: string,
    value: unknown,
    opts: WriteOptions,
  ): Promise<WriteResult> {
    const data = JSON.stringify(value);
    const bytes = Buffer.byteLength(data);
    if (bytes > opts.maxBytes) return { stored: false, bytes };
    const name = this.name(owner, kind, id);
    const sealed = this.sealed(owner, kind, id, name, value, opts.ttlMs);
    await this.call(() => this.opts.store.set(name, sealed, opts.ttlMs));
    return { stored: true, bytes };
  }

  private sealed(
    owner: SessionOwner,
    kind: RecordKind,
    id: string,
    name: string,
    value: unknown,
    ttlMs: number,
  ): Buffer {
    const env: Envelope = {
      o: ownerKey(owner),
      k: kind,
      i: id,
      x: this.opts.wallNow() + ttlMs,
      d: value,
    };
    return sealValue(this.seal, name, JSON.stringify(env));
  }

  /** Whether the owner had such a record. */
  async remove(owner: SessionOwner, kind: RecordKind, id: string): Promise<boolean> {
    // Read first: an expired record the store still holds is gone for the caller already.
    const had = (await this.read(owner, kind, id)) !== undefined;
    const name = this.name(owner, kind, id);
    await this.call(() => this.opts.store.delete(name));
    return had;
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new SessionsUnavailable()), this.timeoutMs);
    });
    try {
      return await Promise.race([fn(), timeout]);
    } catch (err) {
      if (err instanceof SessionsUnavailable) throw err;
      throw new SessionsUnavailable({ cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.opts.store.close();
  }
}
