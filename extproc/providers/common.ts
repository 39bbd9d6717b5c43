/** Plumbing every cross-API translator shares: refusals, reading JSON, writing SSE. */
import { isUtf8 } from 'node:buffer';
import { SluiceError } from '../errors.js';
import { SseParser, type SseEvent } from '../usage/sse.js';
import type { ResponseStart } from './translator.js';

export type Json = Record<string, unknown>;

/** A field the backend's API cannot express: a 400 naming it, never a silent drop. */
export function unsupportedField(param: string, why: string): SluiceError {
  return new SluiceError('unsupported_field', `${param}: ${why}`, { param });
}

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A backend's whole body as a JSON object; a body that is not one is the backend's fault. */
export function backendJson(body: Buffer): Json {
  if (!isUtf8(body))
    throw new SluiceError('bad_upstream_response', 'The backend sent an answer that is not UTF-8.');
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    // The parser's message may quote the body: never passed on.
    throw new SluiceError('bad_upstream_response', 'The backend sent an answer that is not JSON.');
  }
  if (!isObject(v))
    throw new SluiceError('bad_upstream_response', 'The backend sent an unexpected answer.');
  return v;
}

/** The data of one SSE event as JSON, or undefined when it is not an object (skipped). */
export function eventJson(data: string): Json | undefined {
  try {
    const v: unknown = JSON.parse(data);
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** An OpenAI-style event: data only. */
export function dataEvent(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}

/** An Anthropic-style event: the SSE event name is the data's `type` (the SDK dispatches on it). */
export function namedEvent(value: Json & { type: string }): string {
  return `event: ${value.type}\ndata: ${JSON.stringify(value)}\n\n`;
}

/**
 * An error in OpenAI's format for a backend's failure: the type from the status, the backend's
 * own error name (AWS's exception, Google's status) as the `code`.
 */
export function openaiErrorObject(
  status: number,
  message: string,
  code: string | null | undefined,
): Json {
  const type =
    status === 429
      ? 'rate_limit_error'
      : status === 401 || status === 403
        ? 'authentication_error'
        : status === 404
          ? 'not_found_error'
          : status >= 500
            ? 'server_error'
            : 'invalid_request_error';
  return { error: { message, type, param: null, code: code ?? null } };
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/**
 * `data:<media type>;base64,<data>` → its parts; undefined for anything else (a URL). Only base64
 * data URLs carry images the backends take inline.
 */
export function dataUrl(url: string): { mediaType: string; data: string } | undefined {
  if (!url.startsWith('data:')) return undefined;
  const comma = url.indexOf(',');
  if (comma < 0) return undefined;
  const meta = url.slice(5, comma);
  if (!meta.endsWith(';base64')) return undefined;
  return { mediaType: meta.slice(0, -';base64'.length), data: url.slice(comma + 1) };
}

/**
 * How a translator whose backend streams SSE starts a response: a 2xx event stream is translated
 * chunk by chunk (with the parser returned), anything else is read whole; an error body is
 * answered as JSON in the caller's format.
 */
export function sseResponseStart(
  status: number,
  headers: ReadonlyMap<string, string>,
  maxEventBytes: number,
): { start: ResponseStart; parser: SseParser | undefined } {
  const sse = (headers.get('content-type') ?? '').toLowerCase().startsWith('text/event-stream');
  const ok = status >= 200 && status < 300;
  return {
    start: {
      body: ok && sse ? 'stream' : 'whole',
      setHeaders: ok ? [] : [['content-type', 'application/json']],
      removeHeaders: [],
    },
    parser: ok && sse ? new SseParser({ maxEventBytes }) : undefined,
  };
}

/**
 * The complete events of one chunk of a 2xx event stream; on the last chunk (`end`) also the
 * event the backend did not close with a blank line.
 */
export function sseEvents(
  parser: SseParser,
  chunk: Buffer,
  end: boolean,
  maxEventBytes: number,
): SseEvent[] {
  const events = parser.push(chunk);
  if (end) {
    const rest = parser.end();
    if (rest.length > 0)
      events.push(
        ...new SseParser({ maxEventBytes }).push(Buffer.concat([rest, Buffer.from('\n\n')])),
      );
  }
  return events;
}

// ---- the callers' answers, built the same way by every translator to them ----------------------

/** What every chunk of one OpenAI chat stream says about where it comes from. */
export interface ChunkHead {
  id: string;
  created: number;
  model: string;
}

/** One chat.completion.chunk event carrying one choice's delta. */
export function chatChunk(head: ChunkHead, delta: Json, finish: string | null = null): string {
  return dataEvent({
    id: head.id,
    object: 'chat.completion.chunk',
    created: head.created,
    model: head.model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  });
}

/** The usage-only chunk (no choices) that comes last when the caller asked for usage. */
export function usageOnlyChunk(head: ChunkHead, usage: Json | undefined): string {
  return dataEvent({
    id: head.id,
    object: 'chat.completion.chunk',
    created: head.created,
    model: head.model,
    choices: [],
    usage,
  });
}

/** An OpenAI assistant message: content is null only when the answer is tool calls alone. */
export function assistantMessage(text: string, reasoning: string, calls: Json[]): Json {
  const message: Json = {
    role: 'assistant',
    content: text.length > 0 || calls.length === 0 ? text : null,
  };
  if (calls.length > 0) message.tool_calls = calls;
  if (reasoning.length > 0) message.reasoning_content = reasoning;
  return message;
}

/**
 * An Anthropic stream's message_start. The backends state usage only at the end, so it starts at
 * zero and message_delta carries the counts.
 */
export function messageStart(id: string, model: string): string {
  return namedEvent({
    type: 'message_start',
    message: {
      id,
      type: 'message',
      role: 'assistant',
      model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 0, output_tokens: 0 },
    },
  });
}

/** An Anthropic stream's end: message_delta with the stop reason (and usage, when known). */
export function messageEnd(stopReason: string, usage: Json | undefined): string {
  const delta: Json & { type: string } = {
    type: 'message_delta',
    delta: { stop_reason: stopReason, stop_sequence: null },
  };
  if (usage !== undefined) delta.usage = usage;
  return namedEvent(delta) + namedEvent({ type: 'message_stop' });
}
