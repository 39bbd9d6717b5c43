/**
 * The seam between the caller's API and the backend's: one Translator per (caller API × backend
 * API) pair, in a file named after the pair. A translator covers the whole exchange of one
 * upstream attempt — the request (path, headers, body) and, when the backend answers in another
 * format than the caller's, the response (headers, a whole JSON body, an error body, or an event
 * stream chunk by chunk with its own carry-over).
 *
 * Where it runs: in the `sluice.upstream` filter, once per attempt, because only that filter knows
 * which backend Envoy picked (a retry to another backend is translated again, from the request
 * as the router phase left it). On the way back the upstream filter sees the provider's bytes
 * first and hands the router filter the caller's format, so usage, masking and the guard only ever
 * read the two caller formats.
 *
 * Translators are pure and synchronous: no I/O, no clock, no credentials (providers/auth.ts adds
 * those after the body is final, so a signature can cover it).
 */
import type { ApiFormat, Operation } from './endpoints.js';
import type { ResolvedBackend } from '../config/runtime.js';
import type { BackendApi } from './provider.js';

/** What a translator reads of a request: the router phase's state satisfies it. */
export interface ExchangeRequest {
  readonly api: ApiFormat;
  readonly operation: Operation;
  /** The model the caller named (routing is on it); a backend's modelOverride replaces it. */
  readonly model: string;
  /** The caller's request as it should leave (after guard and masking), parsed once. */
  readonly body: Readonly<Record<string, unknown>>;
  readonly stream: boolean;
  /** include_usage was added by the gateway: the router drops the usage-only chunk again. */
  readonly forcedUsage: boolean;
  /** An upper bound on output tokens the gateway imposes (budgets), in the backend's own field. */
  readonly outputTokenCap?: number | undefined;
  /**
   * A Responses request whose state the gateway keeps (sessions/responses.ts): the id its answer
   * carries; the conversation is already rebuilt into `input`, and `store`,
   * `previous_response_id` and `conversation` are only echoed.
   */
  readonly responseId?: string | undefined;
}

export interface UpstreamRequest {
  /** The path (and query) on the backend: the backend owns its whole path (providers/paths.ts). */
  path: string;
  /** Headers the backend's API needs (versions, betas); credentials are added by auth.ts. */
  headers: [string, string][];
  /** Headers set only when the caller did not send its own (an Anthropic caller's version). */
  defaultHeaders?: [string, string][];
  /** The body to send, or undefined when the caller's bytes go as they are. */
  body: Buffer | undefined;
}

/** How the upstream filter must read the backend's answer. */
export interface ResponseStart {
  /**
   * `stream`: chunk by chunk (STREAMED); `whole`: the body at once (BUFFERED); `none`: the body
   * passes unread (already in the caller's format; only an error body needed reading).
   */
  body: 'stream' | 'whole' | 'none';
  setHeaders: [string, string][];
  removeHeaders: string[];
}

/**
 * The response side of one attempt, created per attempt (it holds the stream's carry-over).
 * Methods never see a body cut mid-way except `stream`, whose chunks are cut anywhere: mid-event,
 * mid-JSON, mid-UTF-8.
 */
export interface ResponseTranslator {
  /** The backend's status and headers; called once, first. */
  headers(status: number, headers: ReadonlyMap<string, string>): ResponseStart;
  /** A whole 2xx body in the backend's format → the caller's. */
  json(body: Buffer): Buffer;
  /** A whole non-2xx body (any content type) → an error in the caller's format. */
  error(status: number, body: Buffer): Buffer;
  /**
   * One chunk of a 2xx event stream → the caller's events that are complete so far (possibly
   * none). `end` is set on the last chunk: everything held back must come out then.
   */
  stream(chunk: Buffer, end: boolean): Buffer;
}

export interface Translator {
  readonly from: ApiFormat;
  readonly to: BackendApi;
  /** The caller's operations the pair can carry; others are refused as no capable backend. */
  readonly operations: readonly Operation[];
  /**
   * The request for this backend. Throws a SluiceError (400 `unsupported_field`, naming the
   * field) for what the backend's API cannot express: never a silent drop.
   */
  request(req: ExchangeRequest, backend: ResolvedBackend): UpstreamRequest;
  /**
   * The response side of an attempt, or undefined when the backend already answers in the
   * caller's format.
   */
  response(
    req: ExchangeRequest,
    backend: ResolvedBackend,
    ctx: ResponseContext,
  ): ResponseTranslator | undefined;
}

export interface ResponseContext {
  /** Unix seconds, for `created` fields the backend's API does not have. */
  created: number;
  /** The largest stream event the translator holds while it waits for the rest of it. */
  maxEventBytes: number;
}
