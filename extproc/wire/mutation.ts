/**
 * What processors return. Plain data, never protobuf objects: extproc/wire/messages.ts is the only
 * place that knows the wire shape.
 */
export type BodyMode = 'NONE' | 'STREAMED' | 'BUFFERED' | 'BUFFERED_PARTIAL';
export type HeaderMode = 'SEND' | 'SKIP';

export interface Mutation {
  /** Applied by Envoy in this order: remove, then set (replace). */
  removeHeaders?: string[];
  setHeaders?: [string, string][];
  /** Replaces the buffered body, or the current chunk when streaming. */
  body?: Buffer;
  /** CONTINUE_AND_REPLACE: only in a headers answer; the body (if any) is created from `body`. */
  replace?: boolean;
  /** Re-match the route after this answer (request direction, before the router saw headers). */
  clearRouteCache?: boolean;
  /**
   * Modes for the rest of the stream; honoured only in a headers answer, and in a request headers
   * answer for both directions. Body modes are copied whole (unset would mean NONE); a header
   * mode left out keeps the configured one (Envoy 1.34+ reads DEFAULT so).
   */
  modeOverride?: {
    requestBody: BodyMode;
    responseBody: BodyMode;
    requestHeader?: HeaderMode;
    responseHeader?: HeaderMode;
  };
}

export interface Verdict {
  status: number;
  headers: [string, string][];
  body: string;
  /** Shows in Envoy's access log (%RESPONSE_CODE_DETAILS%); a stable code, never content. */
  details: string;
}

export type Outcome =
  { kind: 'continue'; mutation?: Mutation } | { kind: 'respond'; verdict: Verdict };

export const CONTINUE: Outcome = { kind: 'continue' };

export function proceed(mutation: Mutation): Outcome {
  return { kind: 'continue', mutation };
}
