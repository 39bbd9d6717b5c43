/**
 * A route policy's failure mode, one rule for every step that applies the policy (masking of the
 * request and of the response, the prompt guard): a fault of ours (a detector, the vault, the
 * guard — never a SluiceError, which is a decision) refuses when the policy enforces and fails
 * closed; otherwise the request passes unprocessed and the access log says so (`fail_open`, or
 * `would_fail` in shadow mode, which never refuses).
 */
import { SluiceError } from '../errors.js';
import type { PolicyState } from '../policy/state.js';

/** Response header: `closed` on a refusal, `open` when a fault let the answer pass. */
export const POLICY_FAILURE_HEADER = 'x-sluice-policy-failure';

/**
 * Applies the failure mode to a fault: throws `policy_unavailable` with `refusal` as its message
 * when the policy fails closed, else marks the state failed open and returns.
 */
export function policyFault(state: PolicyState, refusal: string): void {
  const { policy } = state;
  if (policy.failureMode === 'closed' && policy.mode === 'enforce') {
    state.verdicts.add('fail_closed');
    throw new SluiceError('policy_unavailable', refusal, {
      headers: { [POLICY_FAILURE_HEADER]: 'closed' },
    });
  }
  state.failedOpen = true;
  state.verdicts.add(policy.mode === 'shadow' ? 'would_fail' : 'fail_open');
}
