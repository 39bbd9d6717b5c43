/**
 * Backend credentials, one handler per kind; the only place that knows how a provider wants its
 * key. Runs after the request translation, so a kind that signs (AWS SigV4) can cover the final
 * path and body.
 */
import type { ResolvedBackend } from '../config/runtime.js';
import { AwsSigning } from './aws-sigv4.js';
import { AzureTokens } from './azure-entra.js';
import { GcpTokens } from './gcp-oauth.js';
import type { Provider } from './provider.js';
import type { UpstreamRequest } from './translator.js';

type CredentialKind =
  | 'bearer'
  | 'api-key'
  | 'x-api-key'
  | 'x-goog-api-key'
  | 'aws-sigv4'
  | 'gcp-oauth'
  | 'azure-entra'
  | 'none';

const KIND: Record<Provider, CredentialKind> = {
  openai: 'bearer',
  'openai-compatible': 'bearer',
  'azure-openai': 'api-key',
  anthropic: 'x-api-key',
  // Signed per attempt by signingHeaders(): no static header.
  'aws-bedrock': 'aws-sigv4',
  // An OAuth access token per request, from a service-account key or workload identity.
  'gcp-vertex': 'gcp-oauth',
  gemini: 'x-goog-api-key',
};

/**
 * Headers a caller may use to send its own credentials; they never reach a provider (the gateway
 * authenticates callers itself and sends the backend's credential instead).
 */
export const CALLER_CREDENTIAL_HEADERS = [
  'authorization',
  'x-api-key',
  'api-key',
  'x-goog-api-key',
  'proxy-authorization',
] as const;

/**
 * The backend's kind: its provider's, except Azure OpenAI with `azure.entra`, whose credential (a
 * client secret, or none for workload identity) buys Entra ID tokens and is never sent itself.
 */
function kindOf(backend: ResolvedBackend): CredentialKind {
  if (backend.provider === 'azure-openai' && backend.azure?.entra) return 'azure-entra';
  return KIND[backend.provider];
}

/** The headers that carry `backend`'s credential on this request; none without a credential. */
export function credentialHeaders(
  backend: ResolvedBackend,
  _request: UpstreamRequest,
): [string, string][] {
  const secret = backend.credential;
  if (secret === undefined) return [];
  switch (kindOf(backend)) {
    case 'bearer':
      return [['authorization', `Bearer ${secret}`]];
    case 'api-key':
      return [['api-key', secret]];
    case 'x-api-key':
      return [['x-api-key', secret]];
    case 'x-goog-api-key':
      return [['x-goog-api-key', secret]];
    case 'aws-sigv4':
    case 'gcp-oauth':
    case 'azure-entra':
    case 'none':
      return [];
  }
}

/** One per process: caches signers and the pod's web identity credentials across requests. */
const awsSigning = new AwsSigning();
/** One per process: caches OAuth tokens per service account and for workload identity. */
const gcpTokens = new GcpTokens();
/** One per process: Entra ID tokens per client secret and for the pod's workload identity. */
const azureTokens = new AzureTokens();

/**
 * The credential headers an attempt waits for: an AWS SigV4 signature over the translated path
 * and body, or a Google OAuth / Microsoft Entra ID access token (cached, refreshed off the request
 * path); undefined for every other kind, which costs nothing.
 * `authority` is the host Envoy sends (after its host rewrite), which the signature covers.
 */
export function signingHeaders(
  backend: ResolvedBackend,
  request: UpstreamRequest,
  incoming: { method: string; authority: string },
  now: number,
): Promise<[string, string][]> | undefined {
  const kind = kindOf(backend);
  if (kind === 'gcp-oauth') return gcpTokens.headers(backend);
  if (kind === 'azure-entra') return azureTokens.headers(backend);
  if (kind !== 'aws-sigv4') return undefined;
  return awsSigning.headers(
    backend,
    {
      method: incoming.method,
      authority: incoming.authority,
      path: request.path,
      // Every signing translator writes the body it sends.
      body: request.body,
    },
    now,
  );
}
