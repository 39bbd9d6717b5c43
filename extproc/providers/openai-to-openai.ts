/**
 * OpenAI-shaped callers to OpenAI, Azure OpenAI and OpenAI-compatible servers (vLLM, Ollama, TGI):
 * the body goes as it is but for the model override, the usage the gateway needs in a stream,
 * and the gateway's output cap. The answer is already in the caller's format.
 */
import type { Operation } from './endpoints.js';
import { azurePath, versionedPath } from './paths.js';
import { withOutputTokenCap } from './output-cap.js';
import { keepsResponsesState, responsesVia } from './responses-via-chat.js';
import type { Translator } from './translator.js';

/**
 * The Responses API to an OpenAI-compatible server (vLLM, Ollama…), which keeps no Responses
 * state: carried over its Chat Completions (responses-via-chat.ts), the state kept by the gateway.
 */
let overChat: Translator | undefined;
const responsesOverChat = (): Translator => (overChat ??= responsesVia(openaiToOpenai));

const CALLS: Record<Exclude<Operation, 'messages'>, string> = {
  chat: '/chat/completions',
  completions: '/completions',
  embeddings: '/embeddings',
  responses: '/responses',
};

export const openaiToOpenai: Translator = {
  from: 'openai',
  to: 'openai',
  operations: ['chat', 'completions', 'embeddings', 'responses'],
  request(req, backend) {
    if (req.operation === 'responses' && !keepsResponsesState(backend.provider))
      return responsesOverChat().request(req, backend);
    if (req.operation === 'messages')
      throw new Error('unreachable: messages is an Anthropic operation');
    const call = CALLS[req.operation];
    let body: Record<string, unknown> | undefined;
    const edit = (): Record<string, unknown> => (body ??= { ...req.body });
    if (backend.modelOverride && backend.modelOverride !== req.model)
      edit().model = backend.modelOverride;
    if (req.operation === 'responses' && req.responseId !== undefined) {
      // The gateway keeps this conversation: the rebuilt input goes, and the provider keeps none.
      const b = edit();
      delete b.previous_response_id;
      delete b.conversation;
      b.store = false;
    }
    if (req.forcedUsage) {
      const so = req.body.stream_options;
      edit().stream_options = {
        ...(typeof so === 'object' && so !== null ? so : {}),
        include_usage: true,
      };
    }
    if (req.outputTokenCap !== undefined) {
      const capped = withOutputTokenCap(
        req.operation,
        backend.provider,
        body ?? req.body,
        req.outputTokenCap,
      );
      if (capped) body = capped;
    }
    const path =
      backend.provider === 'azure-openai' && backend.azure
        ? azurePath(backend, backend.azure.deployment ?? backend.modelOverride ?? req.model, call)
        : versionedPath(backend, call);
    return {
      path,
      headers: [],
      body: body === undefined ? undefined : Buffer.from(JSON.stringify(body), 'utf8'),
    };
  },
  response: (req, backend, ctx) =>
    req.operation === 'responses' && !keepsResponsesState(backend.provider)
      ? responsesOverChat().response(req, backend, ctx)
      : undefined,
};
