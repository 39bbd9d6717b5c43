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
  ConverseStreamDecoder,
  exceptionStatus,
} from './bedrock-converse.js';
import { isObject, namedEvent, str, type Json } from './common.js';
import type { ResolvedBackend } from '../config/runtime.js';
import type { ResponseTranslator, Translator } from './translator.js';

function invokePath(backend: ResolvedBackend, model: string, stream: boolean): string {
  const base = (backend.pathPrefix ?? '').replace(/\/+$/, '');
  const call = stream ? 'invoke-with-response-stream' : 'invoke';
  return `${base}/model/${encodeURIComponent(model)}/${call}`;
}

function anthropicErrorType(status: number): string {
  switch (status) {
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 503:
    case 529:
      return 'overloaded_error';
    default:
      return status >= 500 ? 'api_error' : 'invalid_request_error';
  }
}

export function anthropicErrorObject(status: number, message: string): Json & { type: string } {
  return { type: 'error', error: { type: anthropicErrorType(status), message } };
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
      headers: [
        ['content-type', 'application/json'],
        ['accept', stream ? 'application/vnd.amazon.eventstream' : 'application/json'],
      ],
      body: Buffer.from(JSON.stringify(body), 'utf8'),
    };
  },
  response(_req, _backend, ctx) {
    return new InvokeResponse(ctx.maxEventBytes);
  },
};

class InvokeResponse implements ResponseTranslator {
  private decoder: ConverseStreamDecoder | undefined;
  private errorType: string | undefined;
  private done = false;

  constructor(private readonly maxEventBytes: number) {}

  headers(status: number, headers: ReadonlyMap<string, string>) {
    const ok = status >= 200 && status < 300;
    const stream =
      ok &&
      (headers.get('content-type') ?? '')
        .toLowerCase()
        .startsWith('application/vnd.amazon.eventstream');
    if (stream) this.decoder = new ConverseStreamDecoder(this.maxEventBytes);
    this.errorType = headers.get('x-amzn-errortype');
    return {
      body: stream ? ('stream' as const) : ('whole' as const),
      setHeaders: [['content-type', stream ? 'text/event-stream' : 'application/json']] as [
        string,
        string,
      ][],
      removeHeaders: ['x-amzn-errortype'],
    };
  }

  /** InvokeModel's answer is already a Messages object. */
  json(body: Buffer): Buffer {
    return body;
  }

  error(status: number, body: Buffer): Buffer {
    return bedrockAnthropicError(status, this.errorType, body);
  }

  stream(chunk: Buffer, end: boolean): Buffer {
    let out = '';
    try {
      for (const e of this.decoder!.push(chunk)) {
        if (this.done) break;
        if (e.kind === 'exception') {
          this.done = true;
          out += namedEvent({
            type: 'error',
            error: {
              type: exceptionStatus(e.type) === 429 ? 'rate_limit_error' : 'api_error',
              message: e.message,
            },
          });
          continue;
        }
        if (e.type !== 'chunk') continue;
        const bytes = str(e.payload.bytes);
        if (bytes === undefined) continue;
        let v: unknown;
        try {
          v = JSON.parse(Buffer.from(bytes, 'base64').toString('utf8'));
        } catch {
          throw new SluiceError('bad_upstream_response', 'The backend sent an unreadable event.');
        }
        if (!isObject(v) || typeof v.type !== 'string') continue;
        // Bedrock's own metrics ride on the last event: not part of the Messages API.
        const { 'amazon-bedrock-invocationMetrics': _metrics, ...event } = v;
        out += namedEvent(event as Json & { type: string });
        if (v.type === 'message_stop') this.done = true;
      }
      if (end) this.decoder!.end();
    } catch (err) {
      if (!this.done) {
        this.done = true;
        const message = err instanceof SluiceError ? err.message : 'The backend stream broke.';
        out += namedEvent({ type: 'error', error: { type: 'api_error', message } });
      }
      return Buffer.from(out, 'utf8');
    }
    if (end && !this.done) {
      this.done = true;
      out += namedEvent({
        type: 'error',
        error: { type: 'api_error', message: 'The backend stream ended early.' },
      });
    }
    return Buffer.from(out, 'utf8');
  }
}
