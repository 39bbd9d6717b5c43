/**
 * The providers a backend may name, and the API each one speaks. The one declaration: the CRD
 * schema, the operator's types and the extproc contract all import it from here.
 */
import { z } from 'zod';

export const PROVIDERS = [
  'openai',
  'azure-openai',
  'anthropic',
  'openai-compatible',
  'aws-bedrock',
  'gcp-vertex',
  'gemini',
] as const;

export const Provider = z.enum(PROVIDERS);
export type Provider = z.infer<typeof Provider>;

/**
 * Providers that keep Responses state themselves (`store`, `previous_response_id`, GET/DELETE
 * `/v1/responses/{id}`): requests to them pass through, and a response they keep is reached only
 * at the backend that created it.
 */
export function keepsResponsesState(provider: Provider): boolean {
  return provider === 'openai' || provider === 'azure-openai';
}

/**
 * The wire API a backend speaks. Several providers share one (Azure OpenAI and every
 * OpenAI-compatible server speak OpenAI's), so translators are per (caller API × backend API).
 */
export type BackendApi =
  'openai' | 'anthropic' | 'bedrock-converse' | 'gemini' | 'anthropic-vertex';

/** What of a backend decides its API: the provider, and on Vertex AI the model's publisher. */
export interface BackendKind {
  provider: Provider;
  gcp?: { publisher?: 'google' | 'anthropic' | undefined } | undefined;
}

export function backendApi(backend: BackendKind): BackendApi {
  switch (backend.provider) {
    case 'openai':
    case 'azure-openai':
    case 'openai-compatible':
      return 'openai';
    case 'anthropic':
      return 'anthropic';
    case 'aws-bedrock':
      return 'bedrock-converse';
    // Vertex AI takes the Gemini API's body, at a project/location path with OAuth tokens;
    // Claude there (publisher anthropic) takes Anthropic's Messages body.
    case 'gcp-vertex':
      return backend.gcp?.publisher === 'anthropic' ? 'anthropic-vertex' : 'gemini';
    case 'gemini':
      return 'gemini';
  }
}
