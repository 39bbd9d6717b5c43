/**
 * The cache key: a SHA-256 digest of a canonical form of everything that changes the answer.
 *
 * Taken after the guard and masking, so the material holds placeholders (`[EMAIL_1]`) where the
 * caller wrote personal data: no key, and no entry, is derived from a value masking protects, and
 * two conversations that differ only in such values share an answer that each gets back with its
 * own values (the vault restores them per request, as for a live answer). The material itself
 * is never stored; only its digest is.
 *
 * Canonical: object keys sorted, numbers as JSON writes them (`1.0` and `1` are one number,
 * `-0` is `0`), strings as JSON escapes them; `stream` and `stream_options` are left out because
 * they change how the answer is delivered, not what it says (a cached answer is replayed either
 * way). Every other field of the request counts, unknown ones included: a field that does not
 * change the answer only costs hits, while one left out could serve a wrong answer.
 */
import { createHash } from 'node:crypto';
import type { ApiFormat, Operation } from '../providers/endpoints.js';
import type { RuntimeConfig } from '../config/runtime.js';
import type { CacheScope } from './schema.js';

/** Bumped when the key material or the entry format changes: old entries are then never read. */
export const KEY_FORMAT = 1;

/** Request fields that say how the answer is delivered, not what it is. */
const DELIVERY_FIELDS = new Set(['stream', 'stream_options']);

export interface KeyInput {
  route: string;
  /** The route's configuration digest (routeConfigDigest): a policy or route change invalidates. */
  config: string;
  /** The model the caller named, which routing resolved (the route's backends may rename it). */
  model: string;
  api: ApiFormat;
  operation: Operation;
  path: string;
  scope: { kind: CacheScope; id: string };
  /** The request as it leaves the gateway: after the guard and masking. */
  body: Readonly<Record<string, unknown>>;
}

/** Deep nesting is legal JSON but no request needs it; the cache bypasses such a request. */
const MAX_DEPTH = 64;

export class KeyTooDeepError extends Error {
  override readonly name = 'KeyTooDeepError';
}

/** The canonical text of a JSON value (the request body, already parsed and bounded in size). */
export function canonicalJson(value: unknown, depth = 0): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number') return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    // undefined never comes from JSON.parse; written as null so the text stays JSON.
    return value === undefined ? 'null' : JSON.stringify(value);
  }
  if (depth >= MAX_DEPTH) throw new KeyTooDeepError('request nested too deeply to cache');
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      out += canonicalJson(value[i], depth + 1);
    }
    return out + ']';
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    if (obj[k] === undefined) continue;
    if (!first) out += ',';
    first = false;
    out += JSON.stringify(k) + ':' + canonicalJson(obj[k], depth + 1);
  }
  return out + '}';
}

/** The hex SHA-256 of the canonical key material. */
export function cacheKey(input: KeyInput): string {
  const body: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(input.body)) if (!DELIVERY_FIELDS.has(k)) body[k] = v;
  const h = createHash('sha256');
  // Each part is canonical JSON, so the joined text cannot be read two ways.
  h.update(
    canonicalJson([
      KEY_FORMAT,
      input.route,
      input.config,
      input.model,
      input.api,
      input.operation,
      input.path,
      input.scope.kind,
      input.scope.id,
    ]),
  );
  h.update('\n');
  h.update(canonicalJson(body));
  return h.digest('hex');
}

const digests = new WeakMap<RuntimeConfig, Map<string, string>>();

/**
 * A digest of what configures one route: the route (its models, backends and policy with every
 * section), the governance policy it names and its backends without their credentials. Any
 * change to them changes every key of the route, so entries from before the change are never
 * served; other routes keep theirs. Computed once per config version and route; the same on
 * every replica given the same config, so replicas share entries.
 */
export function routeConfigDigest(cfg: RuntimeConfig, routeName: string): string {
  let byRoute = digests.get(cfg);
  if (!byRoute) {
    byRoute = new Map();
    digests.set(cfg, byRoute);
  }
  const known = byRoute.get(routeName);
  if (known !== undefined) return known;
  const route = cfg.routes.find((r) => r.name === routeName);
  const backends = (route?.backends ?? []).map((b) => {
    const resolved = cfg.backend(b.name);
    if (!resolved) return null;
    const { credential: _secret, ...rest } = resolved;
    void _secret;
    return rest;
  });
  const governance = cfg.governanceFor(routeName)?.policy;
  const digest = createHash('sha256')
    .update(canonicalJson({ route: route ?? null, governance: governance ?? null, backends }))
    .digest('hex');
  byRoute.set(routeName, digest);
  return digest;
}
