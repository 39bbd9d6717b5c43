/**
 * Backend credentials, one handler per kind; the only place that knows how a provider wants its
 * key. Runs after the request translation, so a kind that signs (AWS SigV4) can cover the final
 * path and body.
 */
import type { ResolvedBackend } from '../config/runtime.js';
import type { Provider } from './provider.js';
import type { UpstreamRequest } from './translator.js';

type CredentialKind = 'bearer' | 'api-key' | 'x-api-key' | 'none';

const KIND: Record<Provider, CredentialKind> = {
  openai: 'bearer',
  'openai-compatible': 'bearer',
  'azure-openai': 'api-key',
  anthropic: 'x-api-key',
  // Not served yet (no translator): refused before a credential is ever needed.
  'aws-bedrock': 'none',
  'gcp-vertex': 'none',
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
    case 'none':
      return [];
  }
}
