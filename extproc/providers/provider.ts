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
 * The wire API a backend speaks. Several providers share one (Azure OpenAI and every
 * OpenAI-compatible server speak OpenAI's), so translators are per (caller API × backend API).
 */
export type BackendApi = 'openai' | 'anthropic' | 'bedrock-converse' | 'gemini';

export function backendApi(provider: Provider): BackendApi {
  switch (provider) {
    case 'openai':
    case 'azure-openai':
    case 'openai-compatible':
      return 'openai';
    case 'anthropic':
      return 'anthropic';
    case 'aws-bedrock':
      return 'bedrock-converse';
    // Vertex AI takes the Gemini API's body, at a project/location path with OAuth tokens.
    case 'gcp-vertex':
    case 'gemini':
      return 'gemini';
  }
}
