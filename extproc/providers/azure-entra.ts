/**
 * Microsoft Entra ID access tokens for Azure OpenAI backends (`azure.entra`), sent as
 * `Authorization: Bearer` instead of an `api-key`. Kept fresh off the request path
 * (providers/refreshing.ts): a request reads the cached token; a timer refreshes it five minutes
 * before it expires.
 *
 * Both ways are one form post to the tenant's OAuth 2.0 v2 token endpoint,
 * `{authority}/{tenant}/oauth2/v2.0/token`, for the scope
 * `https://cognitiveservices.azure.com/.default` (grant `client_credentials`):
 * - with a Secret (the backend's `credential`, the app registration's client secret):
 *   `client_id` + `client_secret`;
 * - without one, workload identity (AKS): the federated service-account token that the kubelet
 *   writes to `AZURE_FEDERATED_TOKEN_FILE` (read anew each time: it is rotated) as a
 *   `client_assertion` of type jwt-bearer.
 * The tenant and client id come from the backend's `azure.entra` block, else from
 * `AZURE_TENANT_ID` / `AZURE_CLIENT_ID` (what the workload identity webhook injects);
 * `AZURE_AUTHORITY_HOST` names another cloud's authority (default login.microsoftonline.com).
 *
 * A request in flight never sees why a token could not be had: the endpoint's answer may name the
 * tenant, the app or the assertion.
 */
import { readFile } from 'node:fs/promises';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { isObject, str } from './common.js';
import { BearerTokens, type Expiring, type Timing } from './refreshing.js';

export const COGNITIVE_SERVICES_SCOPE = 'https://cognitiveservices.azure.com/.default';
const DEFAULT_AUTHORITY = 'https://login.microsoftonline.com/';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export interface EntraToken extends Expiring {
  token: string;
  expiration: Date;
}

export interface EntraEnv {
  AZURE_AUTHORITY_HOST?: string | undefined;
  AZURE_TENANT_ID?: string | undefined;
  AZURE_CLIENT_ID?: string | undefined;
  AZURE_FEDERATED_TOKEN_FILE?: string | undefined;
}

function misconfigured(): SluiceError {
  return new SluiceError(
    'gateway_error',
    'The gateway has no usable Microsoft Entra credentials for this backend.',
  );
}

/** `{authority}/{tenant}/oauth2/v2.0/token`; the authority host as AZURE_AUTHORITY_HOST says. */
export function entraTokenUrl(env: EntraEnv, tenant: string): string {
  const authority = (env.AZURE_AUTHORITY_HOST || DEFAULT_AUTHORITY).replace(/\/*$/, '/');
  return `${authority}${encodeURIComponent(tenant)}/oauth2/v2.0/token`;
}

async function tokenAnswer(res: Response, now: number): Promise<EntraToken> {
  if (!res.ok) throw new Error(`token endpoint answered ${res.status}`);
  const v: unknown = await res.json();
  if (!isObject(v)) throw new Error('token endpoint answer is not an object');
  const token = str(v.access_token);
  // Entra's v2 endpoint sends a number; older answers (and some proxies) a numeric string.
  const raw = v.expires_in;
  const seconds =
    typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? +raw : NaN;
  if (!token || !Number.isFinite(seconds) || seconds <= 0)
    throw new Error('token endpoint answer lacks a token');
  return { token, expiration: new Date(now + seconds * 1000) };
}

export interface EntraApp {
  tenantId: string;
  clientId: string;
}

/** A token endpoint that hangs must not hold the first request (or a refresh) forever. */
const TOKEN_TIMEOUT_MS = 10_000;

function post(url: string, form: Record<string, string>, timeoutMs: number): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
    signal: AbortSignal.timeout(timeoutMs),
  });
}

/** Client credentials with the app's client secret. */
export function clientSecretFetch(
  app: EntraApp,
  clientSecret: string,
  env: EntraEnv,
  now: () => number = Date.now,
  timeoutMs = TOKEN_TIMEOUT_MS,
): () => Promise<EntraToken> {
  const url = entraTokenUrl(env, app.tenantId);
  return async () =>
    tokenAnswer(
      await post(
        url,
        {
          grant_type: 'client_credentials',
          client_id: app.clientId,
          client_secret: clientSecret,
          scope: COGNITIVE_SERVICES_SCOPE,
        },
        timeoutMs,
      ),
      now(),
    );
}

/** Client credentials with the pod's federated token as the client assertion. */
export function workloadIdentityFetch(
  app: EntraApp,
  tokenFile: string,
  env: EntraEnv,
  now: () => number = Date.now,
  timeoutMs = TOKEN_TIMEOUT_MS,
): () => Promise<EntraToken> {
  const url = entraTokenUrl(env, app.tenantId);
  return async () => {
    const assertion = (await readFile(tokenFile, 'utf8')).trim();
    if (!assertion) throw new Error('the federated token file is empty');
    return tokenAnswer(
      await post(
        url,
        {
          grant_type: 'client_credentials',
          client_id: app.clientId,
          client_assertion_type: JWT_BEARER,
          client_assertion: assertion,
          scope: COGNITIVE_SERVICES_SCOPE,
        },
        timeoutMs,
      ),
      now(),
    );
  };
}

/** Token sources per backend (a client secret) and per app (workload identity). */
export class AzureTokens {
  private readonly tokens: BearerTokens<EntraToken>;

  constructor(
    private readonly env: EntraEnv = process.env,
    private readonly timing: Timing = {},
  ) {
    this.tokens = new BearerTokens(timing, misconfigured);
  }

  async headers(backend: ResolvedBackend): Promise<[string, string][]> {
    const entra = backend.azure?.entra;
    const tenantId = entra?.tenantId ?? this.env.AZURE_TENANT_ID;
    const clientId = entra?.clientId ?? this.env.AZURE_CLIENT_ID;
    if (!entra || !tenantId || !clientId) throw misconfigured();
    const app = { tenantId, clientId };
    const secret = backend.credential;
    const tokenFile = this.env.AZURE_FEDERATED_TOKEN_FILE;
    if (secret === undefined && !tokenFile) throw misconfigured();
    // Workload identity is the pod's: one source per app, whichever backends use it.
    const name = secret === undefined ? `wi|${tenantId}|${clientId}` : `cs|${backend.name}`;
    const timeout = this.timing.timeoutMs ?? TOKEN_TIMEOUT_MS;
    return this.tokens.headers(name, `${tenantId}|${clientId}|${secret ?? ''}`, () =>
      secret === undefined
        ? workloadIdentityFetch(app, tokenFile!, this.env, Date.now, timeout)
        : clientSecretFetch(app, secret, this.env, Date.now, timeout),
    );
  }

  close(): void {
    this.tokens.close();
  }
}
