/**
 * The seam between the caller's API and the backend's API. Today only same-schema pairs exist
 * (OpenAI-shaped callers to OpenAI-shaped backends, Anthropic to Anthropic); cross-schema
 * translators (OpenAI↔Anthropic, Bedrock Converse, Gemini) plug in here without touching the
 * stream or the upstream phase.
 */
import type { ApiFormat, Operation } from '../api/endpoints.js';
import type { Provider } from '../config/contract.js';
import type { ResolvedBackend } from '../config/runtime.js';
import type { RequestState } from './request-store.js';

export type BackendSchema = 'openai' | 'anthropic' | 'bedrock-converse' | 'gemini';

export function backendSchema(provider: Provider): BackendSchema {
  switch (provider) {
    case 'openai':
    case 'azure-openai':
    case 'openai-compatible':
      return 'openai';
    case 'anthropic':
      return 'anthropic';
    case 'aws-bedrock':
      return 'bedrock-converse';
    case 'gcp-vertex':
      return 'gemini';
  }
}

export interface UpstreamRequest {
  /** The path (and query) on the backend. */
  path: string;
  /** A replacement body, or undefined when the client's bytes can go as they are. */
  body: Record<string, unknown> | undefined;
}

export interface Translator {
  request(req: RequestState, backend: ResolvedBackend): UpstreamRequest;
}

const OPENAI_PATHS: Record<Exclude<Operation, 'messages'>, string> = {
  chat: '/chat/completions',
  completions: '/completions',
  embeddings: '/embeddings',
  responses: '/responses',
};

/** OpenAI-shaped callers to OpenAI, Azure OpenAI and OpenAI-compatible servers. */
const openaiToOpenai: Translator = {
  request(req, backend) {
    if (req.operation === 'messages')
      throw new Error('unreachable: messages is an Anthropic operation');
    const suffix = OPENAI_PATHS[req.operation];
    let body: Record<string, unknown> | undefined;
    const edit = (): Record<string, unknown> => (body ??= { ...req.body });
    if (backend.modelOverride && backend.modelOverride !== req.model)
      edit().model = backend.modelOverride;
    if (req.forcedUsage) {
      const so = req.body.stream_options;
      edit().stream_options = {
        ...(typeof so === 'object' && so !== null ? so : {}),
        include_usage: true,
      };
    }
    if (backend.provider === 'azure-openai' && backend.azure) {
      const deployment = backend.azure.deployment ?? backend.modelOverride ?? req.model;
      const path = `/openai/deployments/${encodeURIComponent(deployment)}${suffix}?api-version=${encodeURIComponent(backend.azure.apiVersion)}`;
      return { path: (backend.pathPrefix ?? '') + path, body };
    }
    return { path: `${backend.pathPrefix ?? ''}/v1${suffix}`, body };
  },
};

const anthropicToAnthropic: Translator = {
  request(req, backend) {
    const body =
      backend.modelOverride && backend.modelOverride !== req.model
        ? { ...req.body, model: backend.modelOverride }
        : undefined;
    return { path: `${backend.pathPrefix ?? ''}/v1/messages`, body };
  },
};

export function translatorFor(api: ApiFormat, schema: BackendSchema): Translator | undefined {
  if (api === 'openai' && schema === 'openai') return openaiToOpenai;
  if (api === 'anthropic' && schema === 'anthropic') return anthropicToAnthropic;
  return undefined;
}
