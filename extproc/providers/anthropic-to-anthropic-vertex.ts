/**
 * Anthropic Messages callers to Claude on Vertex AI (providers/anthropic-vertex.ts): the caller's
 * body without `model`, with `anthropic_version: vertex-2023-10-16`, at the model's rawPredict or
 * streamRawPredict path. A 2xx answer is already the caller's format and passes unread; only an
 * error body is read, to answer Google's error shape as an Anthropic error.
 */
import {
  vertexAnthropicError,
  vertexAnthropicMethod,
  vertexMessagesBody,
} from './anthropic-vertex.js';
import { vertexModelPath } from './paths.js';
import type { ResponseStart, ResponseTranslator, Translator } from './translator.js';

export const anthropicToAnthropicVertex: Translator = {
  from: 'anthropic',
  to: 'anthropic-vertex',
  operations: ['messages'],
  request(req, backend) {
    const body = vertexMessagesBody(req.body, req.outputTokenCap);
    const model = backend.modelOverride ?? req.model;
    return {
      path: vertexModelPath(backend, 'anthropic', model, vertexAnthropicMethod(body)),
      headers: [['content-type', 'application/json']],
      body: Buffer.from(JSON.stringify(body), 'utf8'),
    };
  },
  response() {
    return new VertexErrorsOnly();
  },
};

/** Passes a 2xx answer through unread (`none`); reads only an error body. */
class VertexErrorsOnly implements ResponseTranslator {
  headers(status: number): ResponseStart {
    const ok = status >= 200 && status < 300;
    return {
      body: ok ? 'none' : 'whole',
      setHeaders: ok ? [] : [['content-type', 'application/json']],
      removeHeaders: [],
    };
  }
  json(body: Buffer): Buffer {
    return body;
  }
  error(status: number, body: Buffer): Buffer {
    return Buffer.from(JSON.stringify(vertexAnthropicError(status, body)), 'utf8');
  }
  stream(chunk: Buffer): Buffer {
    return chunk;
  }
}
