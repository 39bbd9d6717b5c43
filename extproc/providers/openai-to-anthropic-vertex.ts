/**
 * OpenAI Chat Completions callers to Claude on Vertex AI: the OpenAI → Anthropic translation
 * (providers/openai-to-anthropic.ts) as it is, sent the Vertex way (providers/anthropic-vertex.ts):
 * no `model` in the body, `anthropic_version: vertex-2023-10-16`, the model's rawPredict or
 * streamRawPredict path. The answer is Anthropic's and is translated back as from Anthropic;
 * Google's front-door errors are read as Anthropic errors first.
 */
import {
  vertexAnthropicError,
  vertexAnthropicMethod,
  vertexMessagesBody,
} from './anthropic-vertex.js';
import { vertexModelPath } from './paths.js';
import { anthropicMessagesBody, openaiError, openaiToAnthropic } from './openai-to-anthropic.js';
import type { Translator } from './translator.js';

export const openaiToAnthropicVertex: Translator = {
  from: 'openai',
  to: 'anthropic-vertex',
  operations: ['chat'],
  request(req, backend) {
    // The cap is applied (and a thinking budget fitted under it) by the Anthropic translation.
    const body = vertexMessagesBody(anthropicMessagesBody(req, backend), undefined);
    const model = backend.modelOverride ?? req.model;
    return {
      path: vertexModelPath(backend, 'anthropic', model, vertexAnthropicMethod(body)),
      headers: [['content-type', 'application/json']],
      body: Buffer.from(JSON.stringify(body), 'utf8'),
    };
  },
  response(req, backend, ctx) {
    const rt = openaiToAnthropic.response(req, backend, ctx)!;
    return {
      headers: (status, headers) => rt.headers(status, headers),
      json: (body) => rt.json(body),
      stream: (chunk, end) => rt.stream(chunk, end),
      error: (status, body) =>
        openaiError(status, Buffer.from(JSON.stringify(vertexAnthropicError(status, body)))),
    };
  },
};
