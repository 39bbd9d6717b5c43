/**
 * Backend credentials, one handler per kind; the only place that knows how a provider wants its
 * key. Runs after the request translation, so a kind that signs (AWS SigV4) can cover the final
 * path and body.
 */
import type { ResolvedBackend } from '../config/runtime.js';
import { AwsSigning } from './aws-sigv4.js';
import { GcpTokens } from './gcp-oauth.js';
import type { Provider } from './provider.js';
import type { UpstreamRequest } from './translator.js';

type CredentialKind =
  'bearer' | 'api-key' | 'x-api-key' | 'x-goog-api-key' | 'aws-sigv4' | 'gcp-oauth' | 'none';

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

/** The headers that carry `backend`'s credential on this request; none without a credential. */
export function credentialHeaders(
  backend: ResolvedBackend,
  _request: UpstreamRequest,
): [string, string][] {
  const secret = backend.credential;
  if (secret === undefined) return [];
  switch (KIND[backend.provider]) {
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
    case 'none':
      return [];
  }
}

/** One per process: caches signers and the pod's web identity credentials across requests. */
const awsSigning = new AwsSigning();
/** One per process: caches OAuth tokens per service account and for workload identity. */
const gcpTokens = new GcpTokens();

/**
 * The headers that sign this attempt, for a backend whose kind signs the final request (AWS
 * SigV4 over the translated path and body); undefined for every other kind, which costs nothing.
 * `authority` is the host Envoy sends (after its host rewrite), which the signature covers.
 */
export function signingHeaders(
  backend: ResolvedBackend,
  request: UpstreamRequest,
  incoming: { method: string; authority: string },
  now: number,
): Promise<[string, string][]> | undefined {
  if (KIND[backend.provider] === 'gcp-oauth') return gcpTokens.headers(backend);
  if (KIND[backend.provider] !== 'aws-sigv4') return undefined;
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
