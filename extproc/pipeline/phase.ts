import type { Outcome } from '../wire/mutation.js';
import type { WireHeader } from '../wire/headers.js';

export interface HeadersMessage {
  headers?: { headers?: WireHeader[] };
  end_of_stream?: boolean;
}
export interface BodyMessage {
  body?: Buffer;
  end_of_stream?: boolean;
}
/**
 * Attributes as decoded from `map<string, google.protobuf.Struct>`. protobufjs's built-in
 * well-known types name Value's fields in camelCase even with keepCase (the wire is the same).
 */
export type Attributes = Record<string, { fields?: Record<string, StructValue> }>;
export interface StructValue {
  stringValue?: string;
  numberValue?: number;
  boolValue?: boolean;
  structValue?: { fields?: Record<string, StructValue> };
}

/** The body modes in force, sent by Envoy on a stream's first message (protocol_config). */
export interface ProtocolConfig {
  request_body_mode?: string;
  response_body_mode?: string;
}

/** How a stream ended, as the state machine saw it. */
export type EndReason = 'complete' | 'aborted' | 'rejected' | 'error';

/**
 * One filter's view of one HTTP request. The stream state machine calls these in Envoy's order and
 * turns each Outcome into exactly one answer; handlers never see protobuf responses.
 */
export interface PhaseHandler {
  /** Called once, before the first message is handled, when Envoy says which body modes apply. */
  protocol?(cfg: ProtocolConfig): void;
  requestHeaders(
    msg: HeadersMessage,
    attributes: Attributes | undefined,
  ): Outcome | Promise<Outcome>;
  requestBody(msg: BodyMessage): Outcome | Promise<Outcome>;
  requestTrailers(): Outcome;
  /** `attributes`: the response direction's, which Envoy sends with its first message. */
  responseHeaders(
    msg: HeadersMessage,
    attributes: Attributes | undefined,
  ): Outcome | Promise<Outcome>;
  responseBody(msg: BodyMessage): Outcome | Promise<Outcome>;
  responseTrailers(): Outcome;
  /** Maps an error thrown by a handler to the answer the caller gets. */
  fail(err: unknown): Outcome;
  /** Called exactly once when the stream is over, whatever the reason. */
  finish(reason: EndReason): void;
}

export function attribute(attrs: Attributes | undefined, name: string): string | undefined {
  const fields = attrs?.['envoy.filters.http.ext_proc']?.fields;
  const v = fields?.[name];
  return v?.stringValue;
}
