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
