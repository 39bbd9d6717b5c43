/**
 * What governance answers when it stops a request: a Refusal is a decision, returned as data (a
 * shadow policy only logs it); refusalError turns it into the error the caller gets, in their API
 * format. Messages are ours and never name other consumers or echo credentials. (A model's own
 * refusal, the `refusal` field of OpenAI's API, is the providers' business and not this.)
 */
import { errorStatus, SluiceError, type GovernanceCode } from '../errors.js';

export interface Refusal {
  code: GovernanceCode;
  status: number;
  message: string;
  /** Names what refused (an access rule, a limit); safe to show the caller. */
  rule?: string;
  headers: Record<string, string>;
}

export function refusal(
  code: GovernanceCode,
  message: string,
  opts: { rule?: string; headers?: Record<string, string> } = {},
): Refusal {
  const r: Refusal = {
    code,
    status: errorStatus(code),
    message,
    headers: opts.headers ?? {},
  };
  if (opts.rule !== undefined) r.rule = opts.rule;
  return r;
}

/** A refusal as the caller sees it: status, our message, and its headers (retry-after). */
export function refusalError(r: Refusal): SluiceError {
  return new SluiceError(r.code, r.message, { headers: r.headers });
}
