import type { ApiFormat } from '../providers/endpoints.js';
import { WIRE } from '../config/contract.js';
import { errorBody } from '../providers/error-body.js';
import type { SluiceError } from '../errors.js';
import type { Verdict } from '../wire/mutation.js';

export const REQUEST_ID_HEADER = WIRE.requestIdHeader;

/** An error as the caller's SDK expects it, with our stable code in a header for proxies and logs. */
export function errorVerdict(api: ApiFormat, err: SluiceError, requestId?: string): Verdict {
  const headers: [string, string][] = [
    ['content-type', 'application/json'],
    ['x-sluice-error-code', err.code],
    ...Object.entries(err.headers),
  ];
  if (requestId) headers.push([REQUEST_ID_HEADER, requestId]);
  return { status: err.status, headers, body: errorBody(api, err), details: `sluice_${err.code}` };
}

export function jsonVerdict(status: number, value: unknown, details: string): Verdict {
  return {
    status,
    headers: [['content-type', 'application/json']],
    body: JSON.stringify(value),
    details,
  };
}
