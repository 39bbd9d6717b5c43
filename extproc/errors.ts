/**
 * The one error type of the extproc. A SluiceError carries a stable code; user-facing codes become
 * immediate responses in the caller's API format. Messages are written by us and must never embed
 * request content (a JSON.parse message can quote the body, so it is never passed on).
 */
/** The codes governance refuses a request with (a Refusal, governance/refusal.ts). */
export type GovernanceCode =
  | 'unauthenticated'
  | 'access_denied'
  | 'rate_limit_exceeded'
  | 'budget_exceeded'
  | 'state_unavailable';

export type ErrorCode =
  | 'invalid_json'
  | 'invalid_encoding'
  | 'invalid_request'
  | 'duplicate_key'
  | 'nesting_too_deep'
  | 'missing_model'
  | 'missing_body'
  | 'unsupported_media_type'
  | 'unknown_path'
  | 'method_not_allowed'
  | 'model_not_found'
  | 'request_too_large'
  | 'response_too_large'
  | 'unsupported_backend'
  | 'unsupported_field'
  | 'bad_upstream_response'
  | 'config_unavailable'
  | 'policy_blocked'
  | 'prompt_blocked'
  | 'policy_unavailable'
  | 'policy_invalid'
  | 'no_matching_rule'
  | 'context_length_exceeded'
  | 'upstream_unavailable'
  | 'upstream_timeout'
  | 'response_not_found'
  | 'conversation_not_found'
  | 'response_unreachable'
  | 'item_not_found'
  | 'conversation_locked'
  | 'identity_required'
  | GovernanceCode
  | 'gateway_error';

const STATUS: Record<ErrorCode, number> = {
  invalid_json: 400,
  invalid_encoding: 400,
  invalid_request: 400,
  duplicate_key: 400,
  nesting_too_deep: 400,
  missing_model: 400,
  missing_body: 400,
  unsupported_media_type: 415,
  unknown_path: 404,
  method_not_allowed: 405,
  model_not_found: 404,
  request_too_large: 413,
  response_too_large: 502,
  unsupported_backend: 501,
  /** A field the chosen backend's API cannot express (translation never drops one silently). */
  unsupported_field: 400,
  /** A backend's answer the gateway could not read or translate. */
  bad_upstream_response: 502,
  config_unavailable: 503,
  policy_blocked: 403,
  prompt_blocked: 403,
  policy_unavailable: 503,
  policy_invalid: 503,
  no_matching_rule: 404,
  /** The request cannot fit its model's context window (extproc/context/). */
  context_length_exceeded: 400,
  upstream_unavailable: 503,
  upstream_timeout: 504,
  /** A stored response or conversation the caller does not own, or that is gone (sessions/). */
  response_not_found: 404,
  conversation_not_found: 404,
  /**
   * A response its provider keeps, at a backend this gateway no longer routes to (or did not
   * reach): it exists for the caller, but cannot be reached through the gateway as configured.
   */
  response_unreachable: 409,
  /** An item id that is not in the caller's conversation. */
  item_not_found: 404,
  /** Other writers kept changing the conversation while this change was applied (sessions/). */
  conversation_locked: 409,
  /** Stored state needs an authenticated caller to own it. */
  identity_required: 400,
  unauthenticated: 401,
  access_denied: 403,
  rate_limit_exceeded: 429,
  budget_exceeded: 429,
  state_unavailable: 503,
  gateway_error: 500,
};

/** The HTTP status a code answers with (unless an error names another, see SluiceError). */
export function errorStatus(code: ErrorCode): number {
  return STATUS[code];
}

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Names the request field at fault (OpenAI's `param`), never its value. */
  readonly param: string | undefined;
  readonly headers: Readonly<Record<string, string>>;

  /**
   * `status` replaces the code's own status where another one says more: an error the data plane
   * generated keeps the status Envoy chose (a 502 stays a 502 under upstream_unavailable).
   */
  constructor(
    code: ErrorCode,
    message: string,
    opts: { param?: string; headers?: Record<string, string>; status?: number } = {},
  ) {
    super(message);
    if (
      opts.status !== undefined &&
      !(Number.isInteger(opts.status) && opts.status >= 400 && opts.status <= 599)
    ) {
      throw new RangeError(
        `an error status must be an integer from 400 to 599, not ${opts.status}`,
      );
    }
    this.name = 'SluiceError';
    this.code = code;
    this.status = opts.status ?? STATUS[code];
    this.param = opts.param;
    this.headers = opts.headers ?? {};
  }
}

/** Anything that is not a SluiceError is an internal fault: its message is never shown or logged. */
export function toSluiceError(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  return new SluiceError('gateway_error', 'The gateway failed to process this request.');
}

/** A log-safe description of any error: our own code and message, or only the class of a foreign one. */
export function describeError(err: unknown): { code: string; message?: string; kind?: string } {
  if (err instanceof SluiceError) return { code: err.code, message: err.message };
  const kind = err instanceof Error ? err.constructor.name : typeof err;
  return { code: 'internal', kind };
}
