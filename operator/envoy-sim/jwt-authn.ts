// envoy.filters.http.jwt_authn as Envoy runs it, for the fields the allowlist admits. The rules
// follow Envoy's filter (source/extensions/filters/http/jwt_authn: extractor, verifier tree,
// authenticator, JWKS cache) and google/jwt_verify_lib (token parsing, time checks, audience
// normalisation, which JWK is tried for which token, JWKS parsing). The cryptography is Node's:
// JWK import, RSA PKCS#1 v1.5 and PSS, ECDSA, Ed25519 and HMAC all come from node:crypto, so what
// is written here is only that framing. A JOSE library was not used because its own choices
// (claim checks, key selection, clock tolerance) are not Envoy's and would have to be undone.
import {
  constants,
  createHmac,
  createPublicKey,
  timingSafeEqual,
  verify as verifySignature,
  type KeyObject,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { getHeader, type HeaderList } from './ext-proc/index.js';
import { arr, ConfigError, durationMs, obj, str } from './json.js';
import type { HeaderMatch } from './model.js';
import type { Json } from './protos.js';

/** jwt_verify_lib's statuses the emulator can produce, with its texts (the local reply body). */
const STATUS_TEXT = {
  Ok: 'OK',
  JwtMissed: 'Jwt is missing',
  JwtNotYetValid: 'Jwt not yet valid',
  JwtExpired: 'Jwt is expired',
  JwtBadFormat: 'Jwt is not in the form of Header.Payload.Signature',
  JwtHeaderParseError: 'Jwt header is an invalid Base64url input or an invalid JSON',
  JwtHeaderBadAlg: 'Jwt header [alg] field is not a string',
  JwtHeaderNotImplementedAlg: 'Jwt header [alg] field value is invalid',
  JwtHeaderBadKid: 'Jwt header [kid] field is not a string',
  JwtPayloadParseError: 'Jwt payload is an invalid Base64 or an invalid JSON',
  JwtSignatureParseError: 'Jwt signature is an invalid Base64',
  JwtUnknownIssuer: 'Jwt issuer is not configured',
  JwtAudienceNotAllowed: 'Audiences in Jwt are not allowed',
  JwtVerificationFail: 'Jwt verification fails',
  JwksNoValidKeys: "Jwks doesn't have any valid public key",
  JwksKidAlgMismatch: "Jwks doesn't have key to match kid or alg from Jwt",
  JwksFetchFail: 'Jwks remote fetch is failed',
} as const;
export type JwtStatus = keyof typeof STATUS_TEXT;

const IMPLEMENTED_ALGS = new Set([
  'ES256',
  'ES384',
  'ES512',
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'EdDSA',
]);

/** jwt_verify_lib's default clock skew; clock_skew_seconds is not admitted by the allowlist. */
const CLOCK_SKEW_SECONDS = 60;
/** RemoteJwks.cache_duration when unset. */
const DEFAULT_CACHE_MS = 600_000;

type Jwk = { kid: string; alg: string } & (
  { kty: 'RSA' | 'EC' | 'OKP'; key: KeyObject } | { kty: 'oct'; secret: Buffer }
);

type JwksSource =
  | { kind: 'local'; keys: Jwk[] | undefined }
  | { kind: 'remote'; uri: string; cluster: string; timeoutMs: number; cacheMs: number };

export interface JwtProviderSpec {
  name: string;
  issuer: string;
  /** Normalised as jwt_verify_lib's CheckAudience does; empty: any audience. */
  audiences: Set<string>;
  jwks: JwksSource;
  forward: boolean;
  fromHeaders: { name: string; prefix: string }[];
  payloadHeader: string | undefined;
}

export type Requirement =
  | { kind: 'provider'; provider: string }
  | { kind: 'any'; children: Requirement[] }
  /** allow_missing_or_failed / allow_missing: tokens of the parent's providers, any issuer's keys. */
  | { kind: 'bypass'; allowFailed: boolean; providers: string[] };

export interface JwtRuleSpec {
  prefix: string;
  headers: HeaderMatch[];
  /** undefined: the rule matches and nothing is required. */
  requires: Requirement | undefined;
}

/** A remote JWKS as cached: per filter config, so a new listener config starts empty, as in Envoy. */
interface JwksCacheEntry {
  keys: Jwk[];
  expiresAtMs: number;
}

export interface JwtAuthnSpec {
  filterName: string;
  /** In declaration order, which is also the order issuers are looked up in. */
  providers: Map<string, JwtProviderSpec>;
  rules: JwtRuleSpec[];
  cache: Map<string, JwksCacheEntry>;
}

export interface JwtEnv {
  /** Wall-clock seconds, for exp and nbf. */
  nowSeconds(): number;
  /** A monotonic clock in milliseconds, for the JWKS cache. */
  monotonicMs(): number;
  /** GET `uri` through `cluster`; rejects on any failure to get a response. */
  fetch(cluster: string, uri: string, timeoutMs: number): Promise<{ status: number; body: string }>;
}

export type JwtOutcome =
  { ok: true } | { ok: false; status: number; body: string; headers: HeaderList; details: string };

// ---------------------------------------------------------------- config

function sanitizeAudience(aud: string): string {
  if (aud === '') return aud;
  let begin = 0;
  let end = aud.length;
  if (aud.startsWith('http://')) begin = 'http://'.length;
  else if (aud.startsWith('https://')) begin = 'https://'.length;
  if (aud.endsWith('/')) end--;
  return aud.slice(begin, end);
}

function compileProvider(name: string, p: Json, where: string): JwtProviderSpec {
  const at = `${where}: provider ${name}`;
  let jwks: JwksSource;
  if (p['remote_jwks']) {
    const remote = obj(p['remote_jwks']);
    const uri = obj(remote['http_uri']);
    if (!str(uri['uri']) || !str(uri['cluster']) || uri['timeout'] === undefined) {
      throw new ConfigError(`${at}: remote_jwks.http_uri needs uri, cluster and timeout`);
    }
    const cacheMs = durationMs(remote['cache_duration'], DEFAULT_CACHE_MS);
    if (remote['cache_duration'] !== undefined && cacheMs < 1) {
      throw new ConfigError(`${at}: remote_jwks.cache_duration must be at least 1ms`);
    }
    jwks = {
      kind: 'remote',
      uri: str(uri['uri']),
      cluster: str(uri['cluster']),
      timeoutMs: durationMs(uri['timeout'], 0),
      cacheMs,
    };
  } else if (p['local_jwks']) {
    const ds = obj(p['local_jwks']);
    const text =
      typeof ds['inline_string'] === 'string'
        ? ds['inline_string']
        : typeof ds['filename'] === 'string'
          ? readLocalJwks(ds['filename'], at)
          : undefined;
    if (text === undefined)
      throw new ConfigError(`${at}: local_jwks needs inline_string or filename`);
    // Envoy only logs an invalid inline JWKS; every token of the issuer then fails to verify.
    const parsed = parseJwks(text);
    jwks = { kind: 'local', keys: 'keys' in parsed ? parsed.keys : undefined };
  } else {
    throw new ConfigError(`${at}: one of remote_jwks or local_jwks is required`);
  }
  const fromHeaders = arr(p['from_headers']).map((h) => ({
    name: str(h['name']).toLowerCase(),
    prefix: str(h['value_prefix']),
  }));
  if (fromHeaders.length === 0) {
    throw new ConfigError(
      `${at}: Envoy's default token locations (which include the access_token query parameter) are not implemented; set from_headers`,
    );
  }
  if (fromHeaders.some((h) => !h.name)) throw new ConfigError(`${at}: from_headers needs a name`);
  const payloadHeader = str(p['forward_payload_header']).toLowerCase() || undefined;
  return {
    name,
    issuer: str(p['issuer']),
    audiences: new Set((arr(p['audiences']) as unknown as string[]).map(sanitizeAudience)),
    jwks,
    forward: p['forward'] === true,
    fromHeaders,
    payloadHeader,
  };
}

function readLocalJwks(file: string, at: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${at}: local_jwks ${file}: ${(err as Error).message}`);
  }
}

function compileRequirement(
  r: Json,
  providers: ReadonlyMap<string, JwtProviderSpec>,
  parentProviders: string[],
  at: string,
): Requirement {
  const known = (name: string): string => {
    if (!providers.has(name)) {
      throw new ConfigError(`${at}: Required provider ['${name}'] is not configured.`);
    }
    return name;
  };
  if (typeof r['provider_name'] === 'string') {
    return { kind: 'provider', provider: known(r['provider_name']) };
  }
  if (r['allow_missing_or_failed'] !== undefined || r['allow_missing'] !== undefined) {
    return {
      kind: 'bypass',
      allowFailed: r['allow_missing_or_failed'] !== undefined,
      providers: parentProviders.map(known),
    };
  }
  if (r['requires_any'] !== undefined) {
    const list = arr(obj(r['requires_any'])['requirements']);
    if (list.length < 2) throw new ConfigError(`${at}: requires_any needs at least 2 requirements`);
    // Envoy keeps one bypass child, last, over the providers named beside it; allow_missing_or_failed
    // wins over allow_missing when both are listed.
    const used = list
      .filter((x) => typeof x['provider_name'] === 'string')
      .map((x) => x['provider_name'] as string);
    const regular = list.filter(
      (x) => x['allow_missing_or_failed'] === undefined && x['allow_missing'] === undefined,
    );
    const bypass =
      list.find((x) => x['allow_missing_or_failed'] !== undefined) ??
      list.find((x) => x['allow_missing'] !== undefined);
    const children = regular.map((x) => compileRequirement(x, providers, [], at));
    if (bypass) children.push(compileRequirement(bypass, providers, used, at));
    return { kind: 'any', children };
  }
  throw new ConfigError(`${at}: an empty requirement is not implemented`);
}

export function compileJwtAuthn(filterName: string, cfg: Json): JwtAuthnSpec {
  const where = `jwt_authn ${filterName}`;
  const providers = new Map<string, JwtProviderSpec>();
  for (const [name, p] of Object.entries(obj(cfg['providers']))) {
    providers.set(name, compileProvider(name, obj(p), where));
  }
  const rules = arr(cfg['rules']).map((rule, i): JwtRuleSpec => {
    const at = `${where}: rules[${i}]`;
    const match = obj(rule['match']);
    if (typeof match['prefix'] !== 'string') {
      throw new ConfigError(`${at}: only prefix path matching is implemented`);
    }
    const headers = arr(match['headers']).map((h): HeaderMatch => {
      const sm = obj(h['string_match']);
      if (typeof sm['exact'] === 'string') return { name: str(h['name']), exact: sm['exact'] };
      if (typeof sm['prefix'] === 'string') return { name: str(h['name']), prefix: sm['prefix'] };
      throw new ConfigError(`${at}: header ${str(h['name'])} needs string_match exact or prefix`);
    });
    const requires =
      rule['requires'] === undefined
        ? undefined
        : compileRequirement(obj(rule['requires']), providers, [], at);
    return { prefix: match['prefix'], headers, requires };
  });
  return { filterName, providers, rules, cache: new Map() };
}

// ---------------------------------------------------------------- JWKS

const B64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** absl::WebSafeBase64Unescape: padding optional, any other character refused. */
function b64url(s: string): Buffer | undefined {
  if (!B64URL.test(s)) return undefined;
  const bare = s.replace(/=+$/, '');
  if (bare.length % 4 === 1) return undefined;
  return Buffer.from(bare, 'base64url');
}

function jsonObject(text: string): Json | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined;
  } catch {
    return undefined;
  }
}

/** jwt_verify_lib's Jwks::createFrom(JWKS): the first bad key makes the whole set invalid. */
export function parseJwks(text: string): { keys: Jwk[] } | { error: string } {
  const doc = jsonObject(text);
  if (!doc) return { error: 'Jwks is an invalid JSON' };
  if (!('keys' in doc)) return { error: 'Jwks does not have [keys] field' };
  if (!Array.isArray(doc['keys'])) return { error: '[keys] in Jwks is not an array' };
  const keys: Jwk[] = [];
  for (const k of doc['keys'] as unknown[]) {
    if (typeof k !== 'object' || k === null || Array.isArray(k)) continue;
    const parsed = parseJwk(k as Json);
    if (typeof parsed === 'string') return { error: parsed };
    keys.push(parsed);
  }
  if (keys.length === 0) return { error: STATUS_TEXT.JwksNoValidKeys };
  return { keys };
}

function parseJwk(k: Json): Jwk | string {
  if (!('kty' in k)) return '[kty] is missing in [keys]';
  if (typeof k['kty'] !== 'string') return '[kty] is bad in [keys]';
  const kid = typeof k['kid'] === 'string' ? k['kid'] : '';
  const algSpecified = typeof k['alg'] === 'string';
  const alg = algSpecified ? (k['alg'] as string) : '';
  const field = (name: string, what: string): string | { error: string } => {
    if (!(name in k)) return { error: `[${name}] field is missing for ${what}` };
    if (typeof k[name] !== 'string') return { error: `[${name}] field is not string for ${what}` };
    return k[name];
  };
  const publicKey = (jwk: Json): KeyObject | undefined => {
    try {
      return createPublicKey({ key: jwk as never, format: 'jwk' });
    } catch {
      return undefined;
    }
  };
  switch (k['kty']) {
    case 'RSA': {
      if (algSpecified && !/^(RS|PS)/.test(alg))
        return '[alg] is not started with [RS] for a RSA key';
      const n = field('n', 'a RSA key');
      const e = field('e', 'a RSA key');
      if (typeof n !== 'string') return n.error;
      if (typeof e !== 'string') return e.error;
      const eBytes = b64url(e);
      const exponent = eBytes && eBytes.length > 0 ? BigInt(`0x${eBytes.toString('hex')}`) : 0n;
      // jwt_verify_lib refuses non-standard exponents early.
      if (exponent !== 3n && exponent !== 65537n) {
        return 'Jwks RSA [n] or [e] field is missing or has a parse error';
      }
      const key = publicKey({ kty: 'RSA', n, e });
      if (!key) return 'Jwks RSA [n] or [e] field is missing or has a parse error';
      return { kty: 'RSA', kid, alg, key };
    }
    case 'EC': {
      if (algSpecified && !alg.startsWith('ES'))
        return '[alg] is not started with [ES] for an EC key';
      if ('crv' in k && typeof k['crv'] !== 'string')
        return '[crv] field is not string for an EC key';
      let crv = typeof k['crv'] === 'string' ? k['crv'] : '';
      const pairs: Record<string, string> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };
      if (algSpecified && crv && pairs[alg] !== crv) {
        return '[crv] field specified is not compatible with [alg] for an EC key';
      }
      if (!algSpecified && !crv) crv = 'P-256';
      crv = pairs[alg] ?? crv;
      if (!['P-256', 'P-384', 'P-521'].includes(crv)) {
        return '[crv] or [alg] field is not supported for an EC key';
      }
      const x = field('x', 'an EC key');
      const y = field('y', 'an EC key');
      if (typeof x !== 'string') return x.error;
      if (typeof y !== 'string') return y.error;
      const key = publicKey({ kty: 'EC', crv, x, y });
      if (!key) return 'Jwks EC [x] and [y] fields have a parse error.';
      return { kty: 'EC', kid, alg, key };
    }
    case 'oct': {
      if (algSpecified && !['HS256', 'HS384', 'HS512'].includes(alg)) {
        return '[alg] does not start with [HS] for an HMAC key';
      }
      const kk = field('k', 'an HMAC key');
      if (typeof kk !== 'string') return kk.error;
      const secret = b64url(kk);
      if (!secret || secret.length === 0) return 'Jwks Oct key is an invalid Base64';
      return { kty: 'oct', kid, alg, secret };
    }
    case 'OKP': {
      if (algSpecified && alg !== 'EdDSA') return '[alg] is not [EdDSA] for an OKP key';
      const crv = field('crv', 'an OKP key');
      if (typeof crv !== 'string') return crv.error;
      if (crv !== 'Ed25519') return '[crv] field is not supported for an OKP key';
      const x = field('x', 'an OKP key');
      if (typeof x !== 'string') return x.error;
      if (b64url(x)?.length !== 32) return '[x] field is not a 32-byte Ed25519 key for an OKP key';
      const key = publicKey({ kty: 'OKP', crv, x });
      if (!key) return '[x] field is not a valid Ed25519 key for an OKP key';
      return { kty: 'OKP', kid, alg, key };
    }
    default:
      return '[kty] is not supported in [keys]';
  }
}

// ---------------------------------------------------------------- tokens

interface Jwt {
  headerB64: string;
  payloadB64: string;
  alg: string;
  kid: string;
  iss: string;
  audiences: string[];
  nbf: number;
  exp: number;
  signature: Buffer;
}

/** jwt_verify_lib's Jwt::parseFromString. */
function parseJwt(token: string): Jwt | JwtStatus {
  if ((token.match(/\./g) ?? []).length !== 2) return 'JwtBadFormat';
  const parts = token.split('.').filter((p) => p !== '');
  if (parts.length !== 3) return 'JwtBadFormat';
  const [headerB64, payloadB64, signatureB64] = parts as [string, string, string];
  const headerBytes = b64url(headerB64);
  const header = headerBytes ? jsonObject(headerBytes.toString('utf8')) : undefined;
  if (!header) return 'JwtHeaderParseError';
  if (typeof header['alg'] !== 'string') return 'JwtHeaderBadAlg';
  const alg = header['alg'];
  if (!IMPLEMENTED_ALGS.has(alg)) return 'JwtHeaderNotImplementedAlg';
  if ('kid' in header && typeof header['kid'] !== 'string') return 'JwtHeaderBadKid';
  const payloadBytes = b64url(payloadB64);
  const payload = payloadBytes ? jsonObject(payloadBytes.toString('utf8')) : undefined;
  if (!payload) return 'JwtPayloadParseError';
  for (const claim of ['iss', 'sub', 'jti']) {
    if (claim in payload && typeof payload[claim] !== 'string') return 'JwtPayloadParseError';
  }
  const int = (claim: string): number | undefined => {
    if (!(claim in payload)) return 0;
    const v = payload[claim];
    return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined;
  };
  const [iat, nbf, exp] = [int('iat'), int('nbf'), int('exp')];
  if (iat === undefined || nbf === undefined || exp === undefined) return 'JwtPayloadParseError';
  let audiences: string[] = [];
  const aud = payload['aud'];
  if (typeof aud === 'string') audiences = [aud];
  else if (Array.isArray(aud) && aud.every((a) => typeof a === 'string')) audiences = aud;
  else if (aud !== undefined) return 'JwtPayloadParseError';
  const signature = b64url(signatureB64);
  if (!signature) return 'JwtSignatureParseError';
  return {
    headerB64,
    payloadB64,
    alg,
    kid: typeof header['kid'] === 'string' ? header['kid'] : '',
    iss: typeof payload['iss'] === 'string' ? payload['iss'] : '',
    audiences,
    nbf,
    exp,
    signature,
  };
}

function hashOf(alg: string): string {
  if (alg.endsWith('384')) return 'sha384';
  if (alg.endsWith('512')) return 'sha512';
  return 'sha256';
}

function tryVerify(fn: () => boolean): boolean {
  try {
    return fn();
  } catch {
    return false;
  }
}

/** jwt_verify_lib's verifyJwtWithoutTimeChecking: which key is tried, and how. */
function verifyWithKeys(jwt: Jwt, keys: readonly Jwk[]): JwtStatus {
  const data = Buffer.from(`${jwt.headerB64}.${jwt.payloadB64}`, 'latin1');
  const sig = jwt.signature;
  let kidAlgMatched = false;
  for (const jwk of keys) {
    if (jwt.kid && jwk.kid && jwk.kid !== jwt.kid) continue;
    if (jwk.alg && jwk.alg !== jwt.alg) continue;
    kidAlgMatched = true;
    const md = hashOf(jwt.alg);
    if (jwk.kty === 'oct') {
      const mac = createHmac(md, jwk.secret).update(data).digest();
      if (mac.length === sig.length && timingSafeEqual(mac, sig)) return 'Ok';
      continue;
    }
    const key = jwk.key;
    if (jwk.kty === 'EC') {
      if (tryVerify(() => verifySignature(md, data, { key, dsaEncoding: 'ieee-p1363' }, sig))) {
        return 'Ok';
      }
    } else if (jwk.kty === 'RSA') {
      if (jwt.alg.startsWith('RS') && tryVerify(() => verifySignature(md, data, key, sig))) {
        return 'Ok';
      }
      // BoringSSL's default for PSS verification recovers the salt length from the signature.
      const pss = {
        key,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: constants.RSA_PSS_SALTLEN_AUTO,
      };
      if (jwt.alg.startsWith('PS') && tryVerify(() => verifySignature(md, data, pss, sig))) {
        return 'Ok';
      }
    } else {
      // Ed25519: a signature of the wrong length ends the search; a mismatch tries the next key.
      if (sig.length !== 64) return 'JwtVerificationFail';
      if (tryVerify(() => verifySignature(null, data, key, sig))) return 'Ok';
    }
  }
  return kidAlgMatched ? 'JwtVerificationFail' : 'JwksKidAlgMismatch';
}

// ---------------------------------------------------------------- extraction

interface Location {
  header: string;
  prefix: string;
  issuers: Set<string>;
  anyIssuer: boolean;
}

interface Token {
  token: string;
  location: Location;
}

/** Envoy's Extractor over some providers: one location per header and prefix, sorted by both. */
function locationsOf(providers: readonly JwtProviderSpec[]): Location[] {
  const byKey = new Map<string, Location>();
  for (const p of providers) {
    for (const h of p.fromHeaders) {
      const key = h.name + h.prefix;
      let loc = byKey.get(key);
      if (!loc) {
        loc = { header: h.name, prefix: h.prefix, issuers: new Set(), anyIssuer: false };
        byKey.set(key, loc);
      }
      if (p.issuer === '') loc.anyIssuer = true;
      else loc.issuers.add(p.issuer);
    }
  }
  return [...byKey.keys()].sort().map((k) => byKey.get(k)!);
}

const JWT_CHARS = /[A-Za-z0-9\-_.]/;

function extract(headers: HeaderList, locations: readonly Location[]): Token[] {
  const tokens: Token[] = [];
  for (const location of locations) {
    for (const [k, v] of headers) {
      if (k !== location.header) continue;
      let value = v;
      if (location.prefix) {
        const at = value.indexOf(location.prefix);
        if (at < 0) continue;
        // From the first character a JWT may hold after the prefix; the whole value if none.
        const rest = value.slice(at + location.prefix.length);
        const start = rest.search(JWT_CHARS);
        if (start >= 0) value = rest.slice(start);
      }
      tokens.push({ token: value, location });
    }
  }
  return tokens;
}

// ---------------------------------------------------------------- verification

interface Run {
  spec: JwtAuthnSpec;
  headers: HeaderList;
  env: JwtEnv;
}

function findByIssuer(spec: JwtAuthnSpec, iss: string): JwtProviderSpec | undefined {
  const all = [...spec.providers.values()];
  return (
    all.find((p) => p.issuer === iss) ?? (iss !== '' ? all.find((p) => p.issuer === '') : undefined)
  );
}

async function keysOf(run: Run, p: JwtProviderSpec): Promise<Jwk[] | JwtStatus> {
  if (p.jwks.kind === 'local') return p.jwks.keys ?? 'JwksNoValidKeys';
  const cached = run.spec.cache.get(p.name);
  if (cached && run.env.monotonicMs() < cached.expiresAtMs) return cached.keys;
  let fetched: { status: number; body: string };
  try {
    fetched = await run.env.fetch(p.jwks.cluster, p.jwks.uri, p.jwks.timeoutMs);
  } catch {
    return 'JwksFetchFail';
  }
  if (fetched.status !== 200) return 'JwksFetchFail';
  const parsed = parseJwks(fetched.body);
  if (!('keys' in parsed)) return 'JwksFetchFail';
  run.spec.cache.set(p.name, {
    keys: parsed.keys,
    expiresAtMs: run.env.monotonicMs() + p.jwks.cacheMs,
  });
  return parsed.keys;
}

/** One token, as Envoy's authenticator checks it: format, issuer, time, audience, signature. */
async function verifyToken(
  run: Run,
  t: Token,
  provider: JwtProviderSpec | undefined,
): Promise<JwtStatus> {
  const jwt = parseJwt(t.token);
  if (typeof jwt === 'string') return jwt;
  if (!t.location.anyIssuer && !t.location.issuers.has(jwt.iss)) return 'JwtUnknownIssuer';
  const p = provider ?? findByIssuer(run.spec, jwt.iss);
  if (!p) return 'JwtUnknownIssuer';
  const now = Math.floor(run.env.nowSeconds());
  if (now + CLOCK_SKEW_SECONDS < jwt.nbf) return 'JwtNotYetValid';
  if (jwt.exp && now > jwt.exp + CLOCK_SKEW_SECONDS) return 'JwtExpired';
  if (p.audiences.size > 0 && !jwt.audiences.some((a) => p.audiences.has(sanitizeAudience(a)))) {
    return 'JwtAudienceNotAllowed';
  }
  const keys = await keysOf(run, p);
  if (typeof keys === 'string') return keys;
  const status = verifyWithKeys(jwt, keys);
  if (status !== 'Ok') return status;
  // The verified token's payload segment, verbatim (pad_forward_payload_header is not admitted).
  if (p.payloadHeader) run.headers.push([p.payloadHeader, jwt.payloadB64]);
  if (!p.forward) removeAll(run.headers, t.location.header);
  return 'Ok';
}

/** Envoy's authenticator over the extracted tokens, last first; every token must pass. */
async function authenticate(
  run: Run,
  tokens: Token[],
  provider: JwtProviderSpec | undefined,
  allowFailed: boolean,
  allowMissing: boolean,
): Promise<JwtStatus> {
  let status: JwtStatus = 'JwtMissed';
  const pending = [...tokens];
  while (pending.length > 0) {
    status = await verifyToken(run, pending.pop()!, provider);
    if (status !== 'Ok' && !allowFailed && !allowMissing) break;
  }
  if (allowFailed) return 'Ok';
  if (allowMissing && status === 'JwtMissed') return 'Ok';
  return status;
}

async function evaluate(run: Run, r: Requirement): Promise<JwtStatus> {
  switch (r.kind) {
    case 'provider': {
      const p = run.spec.providers.get(r.provider)!;
      return authenticate(run, extract(run.headers, locationsOf([p])), p, false, false);
    }
    case 'bypass': {
      const ps = r.providers.map((n) => run.spec.providers.get(n)!);
      return authenticate(
        run,
        extract(run.headers, locationsOf(ps)),
        undefined,
        r.allowFailed,
        true,
      );
    }
    case 'any': {
      // Envoy starts the children in order and completes on the first success (or the last
      // failure); run one after another here, which gives the same outcome.
      let status: JwtStatus = 'JwtMissed';
      for (const child of r.children) {
        status = await evaluate(run, child);
        if (status === 'Ok') return 'Ok';
      }
      return status;
    }
  }
}

function removeAll(headers: HeaderList, name: string): void {
  for (let i = headers.length - 1; i >= 0; i--) if (headers[i]![0] === name) headers.splice(i, 1);
}

function ruleMatches(rule: JwtRuleSpec, headers: HeaderList): boolean {
  const path = getHeader(headers, ':path') ?? '/';
  if (!path.startsWith(rule.prefix)) return false;
  return rule.headers.every((m) => {
    const values = headers.filter(([k]) => k === m.name).map(([, v]) => v);
    if (values.length === 0) return false;
    const v = values.join(',');
    return m.exact !== undefined ? v === m.exact : v.startsWith(m.prefix!);
  });
}

/** The providers whose verifiers a requirement runs (their extractors, their payload headers). */
function providersOf(r: Requirement, out: Set<string>): void {
  if (r.kind === 'provider') out.add(r.provider);
  else if (r.kind === 'bypass') for (const p of r.providers) out.add(p);
  else for (const c of r.children) providersOf(c, out);
}

/**
 * Runs the filter on a request's headers, changing them in place (payload headers added, verified
 * tokens removed). A failed requirement is Envoy's local reply: 403 for a disallowed audience,
 * 401 otherwise, the status text as the body.
 */
export async function runJwtAuthn(
  spec: JwtAuthnSpec,
  headers: HeaderList,
  env: JwtEnv,
): Promise<JwtOutcome> {
  const rule = spec.rules.find((r) => ruleMatches(r, headers));
  if (!rule?.requires) return { ok: true };
  // Only the verifiers that run sanitize: each removes its own providers' forward_payload_header
  // before verifying (ProviderVerifierImpl / AllowFailedVerifierImpl::verify call
  // ExtractorImpl::sanitizeHeaders, source/extensions/filters/http/jwt_authn/verifier.cc and
  // extractor.cc). A request no rule matches keeps a client's header: the operator's
  // header_mutation before jwt_authn is what removes it then.
  const running = new Set<string>();
  providersOf(rule.requires, running);
  for (const name of running) {
    const header = spec.providers.get(name)?.payloadHeader;
    if (header) removeAll(headers, header);
  }
  const uri = `${getHeader(headers, ':scheme') ?? 'http'}://${getHeader(headers, ':authority') ?? ''}${(
    getHeader(headers, ':path') ?? '/'
  ).slice(0, 256)}`;
  const status = await evaluate({ spec, headers, env }, rule.requires);
  if (status === 'Ok') return { ok: true };
  const text = STATUS_TEXT[status];
  const realm = `Bearer realm="${uri}"${status === 'JwtMissed' ? '' : ', error="invalid_token"'}`;
  return {
    ok: false,
    status: status === 'JwtAudienceNotAllowed' ? 403 : 401,
    body: text,
    headers: [['www-authenticate', realm]],
    details: `jwt_authn_access_denied{${text.replace(/\s/g, '_')}}`,
  };
}
