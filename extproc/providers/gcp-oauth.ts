/**
 * OAuth access tokens for Vertex AI backends, kept fresh off the request path
 * (providers/refreshing.ts): a request reads the cached token; a timer refreshes it five minutes
 * before it expires.
 *
 * Where tokens come from, per backend:
 * - a Secret (the backend's `credential`) holding a service-account key (the JSON file Google
 *   issues): a JWT assertion signed RS256 with its private key (`jose`) is exchanged at the key's
 *   `token_uri` for an access token (RFC 7523 jwt-bearer grant), scope cloud-platform;
 * - without one, the pod's workload identity: the GKE metadata server's token endpoint
 *   (`GCE_METADATA_HOST` overrides metadata.google.internal).
 */
import type * as Jose from 'jose';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { isObject, str } from './common.js';
import { BearerTokens, type Expiring, type Timing } from './refreshing.js';

let jose: Promise<typeof Jose> | undefined;

/**
 * Loads jose (~1 MiB of V8 heap, issue 16): once a config names a Vertex AI backend
 * (loadBackendPackages, before the config is applied), not with this module, which every extproc
 * imports (providers/auth.ts). Once per process; a failed load is tried again next call.
 */
export function loadJose(): Promise<typeof Jose> {
  jose ??= import('jose').catch((err: unknown) => {
    jose = undefined;
    throw err;
  });
  return jose;
}

export const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
const DEFAULT_TOKEN_URI = 'https://oauth2.googleapis.com/token';
/** Google accepts assertions valid for at most an hour. */
const ASSERTION_SECONDS = 3600;
/** A token endpoint that hangs must not hold the first request (or a refresh) forever. */
const TOKEN_TIMEOUT_MS = 10_000;

export interface AccessToken extends Expiring {
  token: string;
  expiration: Date;
}

export interface ServiceAccount {
  clientEmail: string;
  privateKey: string;
  tokenUri: string;
}

function misconfigured(): SluiceError {
  // Never quote the key: it names nothing but that it is unusable.
  return new SluiceError(
    'gateway_error',
    'The gateway has no usable Google credentials for this backend.',
  );
}

export function parseServiceAccount(text: string): ServiceAccount {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw misconfigured();
  }
  if (!isObject(v)) throw misconfigured();
  const clientEmail = str(v.client_email);
  const privateKey = str(v.private_key);
  if (!clientEmail || !privateKey) throw misconfigured();
  return { clientEmail, privateKey, tokenUri: str(v.token_uri) ?? DEFAULT_TOKEN_URI };
}

async function tokenAnswer(res: Response, now: number): Promise<AccessToken> {
  if (!res.ok) throw new Error(`token endpoint answered ${res.status}`);
  const v: unknown = await res.json();
  if (!isObject(v)) throw new Error('token endpoint answer is not an object');
  const token = str(v.access_token);
  const expiresIn = typeof v.expires_in === 'number' ? v.expires_in : undefined;
  if (!token || expiresIn === undefined) throw new Error('token endpoint answer lacks a token');
  return { token, expiration: new Date(now + expiresIn * 1000) };
}

/** The jwt-bearer exchange for a service account's key. */
export function serviceAccountFetch(
  sa: ServiceAccount,
  now: () => number = Date.now,
  timeoutMs = TOKEN_TIMEOUT_MS,
): () => Promise<AccessToken> {
  let key: ReturnType<typeof Jose.importPKCS8> | undefined;
  return async () => {
    const { importPKCS8, SignJWT } = await loadJose();
    key ??= importPKCS8(sa.privateKey, 'RS256');
    const iat = Math.floor(now() / 1000);
    const assertion = await new SignJWT({ scope: CLOUD_PLATFORM_SCOPE })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
      .setIssuer(sa.clientEmail)
      .setAudience(sa.tokenUri)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ASSERTION_SECONDS)
      .sign(await key);
    const res = await fetch(sa.tokenUri, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
        assertion,
      }).toString(),
      signal: AbortSignal.timeout(timeoutMs),
    });
    return tokenAnswer(res, now());
  };
}

export interface MetadataEnv {
  GCE_METADATA_HOST?: string | undefined;
}

/** The GKE metadata server's token for the pod's (workload identity) service account. */
export function metadataFetch(
  env: MetadataEnv,
  now: () => number = Date.now,
  timeoutMs = TOKEN_TIMEOUT_MS,
): () => Promise<AccessToken> {
  const host = env.GCE_METADATA_HOST ?? 'metadata.google.internal';
  const url = `http://${host}/computeMetadata/v1/instance/service-accounts/default/token`;
  return async () => {
    const res = await fetch(url, {
      headers: { 'metadata-flavor': 'Google' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    return tokenAnswer(res, now());
  };
}

/** Token sources per backend (and one for workload identity), built once per credential. */
export class GcpTokens {
  private readonly tokens: BearerTokens<AccessToken>;

  constructor(
    private readonly env: MetadataEnv = process.env,
    private readonly timing: Timing = {},
  ) {
    this.tokens = new BearerTokens(timing, misconfigured);
  }

  headers(backend: ResolvedBackend): Promise<[string, string][]> {
    const key = backend.credential;
    if (key === undefined)
      return this.tokens.headers('workload', '', () =>
        metadataFetch(this.env, Date.now, this.timing.timeoutMs),
      );
    return this.tokens.headers(`sa|${backend.name}`, key, () =>
      serviceAccountFetch(parseServiceAccount(key), Date.now, this.timing.timeoutMs),
    );
  }

  close(): void {
    this.tokens.close();
  }
}
