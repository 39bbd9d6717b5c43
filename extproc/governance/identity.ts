/**
 * Who is calling: a virtual key, the claims of a JWT Envoy already verified, or a mesh identity.
 * Only sha256 digests of keys are known here; a presented key is hashed and looked up, and a
 * credential that is present but not accepted is refused rather than ignored.
 */
import { hash, timingSafeEqual } from 'node:crypto';
import type { Consumer, IdentityPolicy } from './schema.js';
import { refusal, type Refusal } from './refusal.js';

export interface Caller {
  consumer: string;
  team: string | undefined;
  method: 'key' | 'jwt' | 'mesh';
}

export type IdentityResult =
  | {
      ok: true;
      /** undefined: anonymous, allowed because the policy does not require identity. */
      caller: Caller | undefined;
      /** Headers that carried a virtual key: they must not travel upstream. */
      stripHeaders: string[];
    }
  | { ok: false; refusal: Refusal };

interface Known {
  consumer: Consumer;
  digest: Buffer;
  expiresAtMs: number;
}

/** The consumers of one config snapshot, indexed once when the snapshot is applied. */
export class ConsumerDirectory {
  private readonly byDigest = new Map<string, Known>();
  private readonly byName = new Map<string, { consumer: Consumer; expiresAtMs: number }>();

  constructor(consumers: readonly Consumer[]) {
    for (const c of consumers) {
      const expiresAtMs = c.expiresAt ? Date.parse(c.expiresAt) : Number.POSITIVE_INFINITY;
      this.byName.set(c.name, { consumer: c, expiresAtMs });
      for (const h of c.keyHashes) {
        this.byDigest.set(h, { consumer: c, digest: Buffer.from(h, 'hex'), expiresAtMs });
      }
    }
  }

  /**
   * The Map lookup is keyed by the digest, which an attacker cannot steer without a preimage;
   * the final comparison is constant-time anyway so no byte-by-byte timing is exposed.
   */
  byKey(key: string): Known | undefined {
    // One-shot hash (UTF-8 of the key): no Hash object and no digest Buffer per request.
    const hex = hash('sha256', key, 'hex');
    const known = this.byDigest.get(hex);
    if (!known || !timingSafeEqual(known.digest, Buffer.from(hex, 'hex'))) return undefined;
    return known;
  }

  byConsumerName(name: string): { consumer: Consumer; expiresAtMs: number } | undefined {
    return this.byName.get(name);
  }
}

export type Headers = ReadonlyMap<string, string>;

const UNAUTHENTICATED = 'A valid API key or identity is required.';

function deny(message: string = UNAUTHENTICATED): IdentityResult {
  return { ok: false, refusal: refusal('unauthenticated', message) };
}

const UNVERIFIED_TOKEN = 'The bearer token could not be verified.';

/** Three base64url segments: what Envoy's jwt_authn would have tried to verify. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Envoy forwards the verified token's payload segment verbatim (`forward_payload_header`, not
 * padded), so the token it verified is the one whose middle segment is that value.
 */
function isVerifiedToken(token: string, payload: string): boolean {
  return JWT_SHAPE.test(token) && token.split('.')[1] === payload.trim();
}

function presentedKey(header: string, value: string): string | undefined {
  if (header !== 'authorization') return value.trim() || undefined;
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(value);
  return m?.[1];
}

export function resolveIdentity(
  policy: IdentityPolicy | undefined,
  headers: Headers,
  directory: ConsumerDirectory,
  nowMs: number,
): IdentityResult {
  if (!policy) return { ok: true, caller: undefined, stripHeaders: [] };

  const payload = policy.jwt ? headers.get(policy.jwt.header) : undefined;

  if (policy.keys) {
    // Made to size (nearly always one header): an array grown by push holds room for 16 or more.
    let strip: string[] | undefined;
    let key: string | undefined;
    for (const h of policy.keys.headers) {
      const v = headers.get(h);
      if (v === undefined) continue;
      const k = presentedKey(h, v);
      if (k === undefined) continue;
      strip = strip === undefined ? [h] : [...strip, h];
      // The bearer token Envoy verified is the JWT credential, not a virtual key (Envoy removes
      // it after verifying, but a gateway configured to forward it must not turn it into a 401).
      if (payload !== undefined && isVerifiedToken(k, payload)) continue;
      key ??= k;
    }
    if (key !== undefined) {
      const known = directory.byKey(key);
      if (!known) {
        return deny(
          policy.jwt && JWT_SHAPE.test(key) ? UNVERIFIED_TOKEN : 'The API key is not valid.',
        );
      }
      if (nowMs >= known.expiresAtMs) return deny('The API key has expired.');
      return {
        ok: true,
        caller: { consumer: known.consumer.name, team: known.consumer.team, method: 'key' },
        stripHeaders: strip ?? [],
      };
    }
  }

  if (policy.jwt) {
    if (payload !== undefined) return fromJwt(policy.jwt, payload, directory, nowMs);
    // Envoy lets a token it could not verify through without a payload (so that the refusal is
    // in the caller's format): a bearer token that is present but unverified is refused here,
    // never ignored, even when identity is optional.
    const auth = headers.get('authorization');
    if (auth !== undefined && presentedKey('authorization', auth) !== undefined) {
      return deny(UNVERIFIED_TOKEN);
    }
  }

  if (policy.mesh) {
    const raw = headers.get(policy.mesh.header);
    if (raw !== undefined) {
      const id = spiffeId(raw);
      const name = id === undefined ? undefined : policy.mesh.consumers[id];
      const known = name === undefined ? undefined : directory.byConsumerName(name);
      if (!known) return deny('The workload identity is not a known consumer.');
      if (nowMs >= known.expiresAtMs) return deny('The consumer has expired.');
      return {
        ok: true,
        caller: { consumer: known.consumer.name, team: known.consumer.team, method: 'mesh' },
        stripHeaders: [],
      };
    }
  }

  return policy.required ? deny() : { ok: true, caller: undefined, stripHeaders: [] };
}

type JwtPolicy = NonNullable<IdentityPolicy['jwt']>;

function fromJwt(
  jwt: JwtPolicy,
  raw: string,
  directory: ConsumerDirectory,
  nowMs: number,
): IdentityResult {
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(raw.trim(), 'base64url').toString('utf8'));
  } catch {
    return deny('The token claims could not be read.');
  }
  if (jwt.issuers) {
    const iss = claimString(claims, 'iss');
    if (iss === undefined || !jwt.issuers.includes(iss)) {
      return deny('The token was not issued for this route.');
    }
  }
  const subject = claimString(claims, jwt.consumerClaim);
  if (subject === undefined) return deny('The token names no consumer.');
  if (jwt.consumers) {
    const name = jwt.consumers[subject];
    const known = name === undefined ? undefined : directory.byConsumerName(name);
    if (!known) return deny('The token does not name a known consumer.');
    if (nowMs >= known.expiresAtMs) return deny('The consumer has expired.');
    const team =
      known.consumer.team ?? (jwt.teamClaim ? claimString(claims, jwt.teamClaim) : undefined);
    return {
      ok: true,
      caller: { consumer: known.consumer.name, team, method: 'jwt' },
      stripHeaders: [],
    };
  }
  // Unmapped claim values become bucket and report keys: keep them to what a name may hold.
  if (subject.length > 253) return deny('The token names no consumer.');
  const team = jwt.teamClaim ? claimString(claims, jwt.teamClaim) : undefined;
  return {
    ok: true,
    caller: {
      consumer: subject,
      team: team && team.length <= 253 ? team : undefined,
      method: 'jwt',
    },
    stripHeaders: [],
  };
}

function claimString(claims: unknown, path: string): string | undefined {
  let v: unknown = claims;
  for (const part of path.split('.')) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  if (Array.isArray(v)) v = v.find((x) => typeof x === 'string');
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** A bare SPIFFE ID, or the first spiffe:// URI of the last element of an XFCC header. */
export function spiffeId(value: string): string | undefined {
  const v = value.trim();
  if (v.startsWith('spiffe://')) return /^spiffe:\/\/[^\s,;]+$/.test(v) ? v : undefined;
  const elements = splitQuoted(v, ',');
  // Each proxy appends its own element; the last is the one the trusted proxy added.
  const last = elements[elements.length - 1];
  if (last === undefined) return undefined;
  for (const pair of splitQuoted(last, ';')) {
    const eq = pair.indexOf('=');
    if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== 'uri') continue;
    let uri = pair.slice(eq + 1).trim();
    if (uri.startsWith('"') && uri.endsWith('"') && uri.length >= 2) uri = uri.slice(1, -1);
    if (/^spiffe:\/\/[^\s,;"]+$/.test(uri)) return uri;
  }
  return undefined;
}

function splitQuoted(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && quoted && i + 1 < s.length) {
      cur += c + s[i + 1];
      i++;
    } else if (c === '"') {
      quoted = !quoted;
      cur += c;
    } else if (c === sep && !quoted) {
      out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  out.push(cur);
  return out;
}
