/**
 * A conversation as the router phase sees it: which one a request belongs to (the session header,
 * bound to the authenticated caller), the key Envoy hashes to keep it on one backend endpoint,
 * and how far into it the request is.
 *
 * Two names for one conversation, for two readers:
 * - the affinity key, a header only Envoy reads (route hash_policy → ring hash over the backend's
 *   endpoints): a plain SHA-256 of (route, caller, session), so every gateway replica sends the
 *   conversation to the same endpoint; it never leaves Envoy (the upstream phase strips every
 *   x-sluice- header) and is never logged;
 * - the session id in access logs, metrics and usage reports: an HMAC under the gateway's key
 *   (the vault key, shared by replicas; else one per process), so a session header that happens
 *   to be personal (an email) cannot be recovered from logs by guessing.
 * A caller who reuses another caller's session header gets another key and another id: both are
 * bound to the authenticated identity. Without an identity the session header alone names the
 * conversation for affinity (a routing preference, not a privilege); it is then not reported.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { Operation } from '../providers/endpoints.js';
import { startsTurn } from './window.js';

/** The default session header, the one masking's conversations use too. */
export const DEFAULT_SESSION_HEADER = 'x-sluice-session';

/** Longer session header values are not a session (an id does not need more). */
export const MAX_SESSION_CHARS = 256;

export interface Caller {
  method: string;
  consumer: string;
}

export function sessionValue(
  headers: ReadonlyMap<string, string>,
  name: string,
): string | undefined {
  const v = headers.get(name);
  return v !== undefined && v !== '' && v.length <= MAX_SESSION_CHARS ? v : undefined;
}

/**
 * What Envoy hashes: the session within the caller and route, else the caller (one consumer's
 * requests share an endpoint, and with it the prefix cache of their common system prompt), else
 * nothing (Envoy then picks at random).
 */
export function affinityKey(
  route: string,
  caller: Caller | undefined,
  session: string | undefined,
): string | undefined {
  if (caller === undefined && session === undefined) return undefined;
  return createHash('sha256')
    .update(route)
    .update('\0')
    .update(caller?.method ?? '')
    .update('\0')
    .update(caller?.consumer ?? '')
    .update('\0')
    .update(session ?? '')
    .digest('base64url');
}

/** Session ids for logs, metrics and usage: HMAC-SHA256 under `key`, 16 bytes in hex. */
export class SessionIds {
  private readonly key: Buffer;
  constructor(key?: Buffer) {
    this.key = key ?? randomBytes(32);
  }

  /**
   * Ids under a key derived from the vault key (shared by replicas, so their ids agree), never
   * the vault key itself; a per-process key without one.
   */
  static fromVaultKey(vaultKey: Buffer | undefined): SessionIds {
    if (!vaultKey) return new SessionIds();
    return new SessionIds(createHmac('sha256', vaultKey).update('sluice-session-ids').digest());
  }

  id(route: string, caller: Caller, session: string): string {
    return createHmac('sha256', this.key)
      .update('sluice-session-id\0')
      .update(route)
      .update('\0')
      .update(caller.method)
      .update('\0')
      .update(caller.consumer)
      .update('\0')
      .update(session)
      .digest('hex')
      .slice(0, 32);
  }
}

/**
 * Which turn of its conversation a request is: the user messages that start a turn (window.ts
 * startsTurn: an Anthropic user message carrying tool results continues the turn before it),
 * counting the one being asked. A stateless count from the request itself: linear, no store. 0
 * for a request without messages.
 */
export function turnOf(op: Operation, body: Record<string, unknown>): number {
  const items =
    op === 'chat' || op === 'messages'
      ? body.messages
      : op === 'responses'
        ? typeof body.input === 'string'
          ? [{ role: 'user' }]
          : body.input
        : undefined;
  if (!Array.isArray(items)) return 0;
  let n = 0;
  for (const it of items) if (startsTurn(op, it)) n++;
  return n;
}
