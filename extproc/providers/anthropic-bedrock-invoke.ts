/**
 * Anthropic Messages callers to Claude on Bedrock through InvokeModel /
 * InvokeModelWithResponseStream (a Bedrock backend with `aws.anthropicInvoke`), for callers that
 * want native Anthropic features Converse does not carry (server tools, cache_control as written,
 * citations…).
 *
 * Request: the caller's body as it is, but `model` and `stream` (the path says both) and the
 * `anthropic_version` Bedrock requires (`bedrock-2023-05-31`); max_tokens held to the gateway's
 * cap. POST /model/{modelId}/invoke, or …/invoke-with-response-stream.
 *
 * Response: InvokeModel answers the Messages JSON itself. The stream is AWS's event stream whose
 * `chunk` events carry `{"bytes": base64(one Messages stream event)}`: each is re-sent as that
 * SSE event, as it arrives; exception frames become an Anthropic `error` event.
 */
import { SluiceError } from '../errors.js';
import {
  bedrockError,
  cappedMaxTokens,
  EventStreamResponse,
  exceptionStatus,
  runtimeHeaders,
  type ConverseEvent,
} from './bedrock-converse.js';
import { isObject, namedEvent, str, type Json } from './common.js';
import { anthropicErrorObject } from './error-body.js';
import type { ResolvedBackend } from '../config/runtime.js';
import type { ResponseTranslator, Translator } from './translator.js';

function invokePath(backend: ResolvedBackend, model: string, stream: boolean): string {
  const base = (backend.pathPrefix ?? '').replace(/\/+$/, '');
  const call = stream ? 'invoke-with-response-stream' : 'invoke';
  return `${base}/model/${encodeURIComponent(model)}/${call}`;
}

/** A Bedrock error body (`{"message"}`, `x-amzn-ErrorType`) as an Anthropic error object. */
export function bedrockAnthropicError(
  status: number,
  errorType: string | undefined,
  body: Buffer,
): Buffer {
  const e = bedrockError(status, errorType, body);
  return Buffer.from(JSON.stringify(anthropicErrorObject(status, e.message)), 'utf8');
}

export const BEDROCK_ANTHROPIC_VERSION = 'bedrock-2023-05-31';

export const anthropicBedrockInvoke: Pick<Translator, 'request' | 'response'> = {
  request(req, backend) {
    const stream = req.body.stream === true;
    const { model: _model, stream: _stream, ...rest } = req.body;
    const body: Json = { anthropic_version: BEDROCK_ANTHROPIC_VERSION, ...rest };
    const max = cappedMaxTokens(body.max_tokens, req.outputTokenCap);
    if (max !== undefined) body.max_tokens = max;
    return {
      path: invokePath(backend, backend.modelOverride ?? req.model, stream),
      headers: runtimeHeaders(stream),
      body: Buffer.from(JSON.stringify(body), 'utf8'),
    };
  },
  response(_req, _backend, ctx) {
    return new InvokeResponse(ctx.maxEventBytes);
  },
};

class InvokeResponse extends EventStreamResponse implements ResponseTranslator {
  /** InvokeModel's answer is already a Messages object. */
  json(body: Buffer): Buffer {
    return body;
  }

  error(status: number, body: Buffer): Buffer {
    return bedrockAnthropicError(status, this.errorType, body);
  }

  /** A `chunk` event carries one Messages stream event, base64: re-sent as that SSE event. */
  protected onEvent(e: ConverseEvent): string {
    if (e.kind === 'exception') {
      this.done = true;
      return namedEvent({
        type: 'error',
        error: {
          type: exceptionStatus(e.type) === 429 ? 'rate_limit_error' : 'api_error',
          message: e.message,
        },
      });
    }
    if (e.type !== 'chunk') return '';
    const bytes = str(e.payload.bytes);
    if (bytes === undefined) return '';
    let v: unknown;
    try {
      v = JSON.parse(Buffer.from(bytes, 'base64').toString('utf8'));
    } catch {
      throw new SluiceError('bad_upstream_response', 'The backend sent an unreadable event.');
    }
    if (!isObject(v) || typeof v.type !== 'string') return '';
    // Bedrock's own metrics ride on the last event: not part of the Messages API.
    const { 'amazon-bedrock-invocationMetrics': _metrics, ...event } = v;
    if (v.type === 'message_stop') this.done = true;
    return namedEvent(event as Json & { type: string });
  }

  protected failure(message: string): string {
    return namedEvent(anthropicErrorObject(502, message));
  }
}
