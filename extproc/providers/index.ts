/**
 * The providers seam: which translator serves a (caller API × backend API) pair, and the refusal
 * when none does. Everything provider-specific lives in this folder.
 */
import type { ApiFormat, Operation } from './endpoints.js';
import { SluiceError } from '../errors.js';
import { anthropicToAnthropic } from './anthropic-to-anthropic.js';
import { anthropicToAnthropicVertex } from './anthropic-to-anthropic-vertex.js';
import { anthropicToBedrock } from './anthropic-to-bedrock.js';
import { anthropicToGemini } from './anthropic-to-gemini.js';
import { anthropicToOpenai } from './anthropic-to-openai.js';
import { openaiToAnthropic } from './openai-to-anthropic.js';
import { openaiToAnthropicVertex } from './openai-to-anthropic-vertex.js';
import { openaiToBedrockEmbeddings } from './openai-to-bedrock-embeddings.js';
import { openaiToGeminiEmbeddings } from './openai-to-gemini-embeddings.js';
import { openaiToBedrock } from './openai-to-bedrock.js';
import { openaiToGemini } from './openai-to-gemini.js';
import { openaiToOpenai } from './openai-to-openai.js';
import { responsesVia } from './responses-via-chat.js';
import { backendApi, type BackendApi, type BackendKind, type Provider } from './provider.js';
import type { Translator } from './translator.js';

export { backendApi, type BackendApi, type BackendKind, type Provider } from './provider.js';
export type {
  ExchangeRequest,
  ResponseContext,
  ResponseStart,
  ResponseTranslator,
  Translator,
  UpstreamRequest,
} from './translator.js';
export { credentialHeaders, signingHeaders, CALLER_CREDENTIAL_HEADERS } from './auth.js';

const TRANSLATORS: readonly Translator[] = [
  openaiToOpenai,
  anthropicToAnthropic,
  openaiToAnthropic,
  anthropicToOpenai,
  openaiToBedrock,
  anthropicToBedrock,
  openaiToGemini,
  anthropicToGemini,
  openaiToAnthropicVertex,
  anthropicToAnthropicVertex,
  openaiToBedrockEmbeddings,
  openaiToGeminiEmbeddings,
  // The Responses API to backends that keep no state, over their Chat Completions translators.
  responsesVia(openaiToAnthropic),
  responsesVia(openaiToBedrock),
  responsesVia(openaiToGemini),
  responsesVia(openaiToAnthropicVertex),
];

/** The translator for a caller's operation to a backend's API; undefined when none carries it. */
export function translatorFor(
  api: ApiFormat,
  operation: Operation,
  backend: BackendApi,
): Translator | undefined {
  return TRANSLATORS.find(
    (t) => t.from === api && t.to === backend && t.operations.includes(operation),
  );
}

/** Whether any operation of the caller's API reaches this backend. */
export function servesApi(api: ApiFormat, backend: BackendKind): boolean {
  const to = backendApi(backend);
  return TRANSLATORS.some((t) => t.from === api && t.to === to);
}

/**
 * Whether a backend can take a caller's request at all: the same question for the router phase
 * (before routing, for every backend of the route) and the upstream phase (for the one Envoy
 * picked), so both refuse with the same words.
 */
export function canServe(api: ApiFormat, operation: Operation, backend: BackendKind): boolean {
  return translatorFor(api, operation, backendApi(backend)) !== undefined;
}

const OPERATION_NAME: Readonly<Record<Operation, string>> = {
  chat: 'chat completion',
  completions: 'completion',
  embeddings: 'embeddings',
  responses: 'Responses API',
  messages: 'Messages',
};

/** `providers`: the backends' providers, each named once, in the route's order. */
export function unsupportedBackend(
  api: ApiFormat,
  operation: Operation,
  providers: readonly Provider[],
): SluiceError {
  const names = [...new Set(providers)];
  const kind =
    names.length === 1
      ? `${/^[aeiou]/.test(names[0]!) ? 'an' : 'a'} ${names[0]} backend`
      : `${names.join(' or ')} backends`;
  const format = api === 'anthropic' ? 'Anthropic' : 'OpenAI';
  return new SluiceError(
    'unsupported_backend',
    `This gateway cannot send ${format} ${OPERATION_NAME[operation]} requests to ${kind}.`,
  );
}
