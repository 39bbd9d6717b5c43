import type { ApiFormat } from './endpoints.js';
import type { SluiceError } from '../errors.js';
import type { Json } from './common.js';

/**
 * Error bodies in the caller's own API format, so the official SDKs raise their usual typed errors
 * (the SDKs pick the error class from the HTTP status and read `error.message`).
 */
export function errorBody(api: ApiFormat, err: SluiceError): string {
  if (api === 'anthropic') {
    return JSON.stringify({
      type: 'error',
      error: { type: anthropicErrorType(err.status), message: err.message, code: err.code },
    });
  }
  return JSON.stringify({
    error: {
      message: err.message,
      type: openaiType(err.status),
      param: err.param ?? null,
      code: err.code,
    },
  });
}

function openaiType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** An error object in Anthropic's format (a backend's failure, told to an Anthropic caller). */
export function anthropicErrorObject(status: number, message: string): Json & { type: string } {
  return { type: 'error', error: { type: anthropicErrorType(status), message } };
}

/** Anthropic's error type for an HTTP status, as its API and SDKs name them. */
export function anthropicErrorType(status: number): string {
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
