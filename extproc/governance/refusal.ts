/**
 * What governance answers when it stops a request. The pipeline maps a Refusal to an error in the
 * caller's API format (errors.ts); messages are ours and never name other consumers or echo
 * credentials.
 */
export type GovernanceCode =
  | 'unauthenticated'
  | 'access_denied'
  | 'rate_limit_exceeded'
  | 'budget_exceeded'
  | 'state_unavailable';

export const GOVERNANCE_STATUS: Readonly<Record<GovernanceCode, number>> = {
  unauthenticated: 401,
  access_denied: 403,
  rate_limit_exceeded: 429,
  budget_exceeded: 429,
  state_unavailable: 503,
};

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
    status: GOVERNANCE_STATUS[code],
    message,
    headers: opts.headers ?? {},
  };
  if (opts.rule !== undefined) r.rule = opts.rule;
  return r;
}
