import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Policy } from '../config/contract.js';
import { SluiceError } from '../errors.js';
import { compilePolicy } from '../policy/policy.js';
import { newPolicyState } from '../policy/state.js';
import { POLICY_FAILURE_HEADER, policyFault } from './policy-failure.js';

function state(mode: 'enforce' | 'shadow', failureMode: 'open' | 'closed') {
  return newPolicyState(compilePolicy(Policy.parse({ name: 'p', mode, failureMode })));
}

describe('policyFault: one failure mode for masking (both directions) and the guard', () => {
  it('refuses with policy_unavailable when the policy enforces and fails closed', () => {
    const s = state('enforce', 'closed');
    assert.throws(
      () => policyFault(s, 'could not apply it'),
      (e) =>
        e instanceof SluiceError &&
        e.code === 'policy_unavailable' &&
        e.status === 503 &&
        e.message === 'could not apply it' &&
        e.headers[POLICY_FAILURE_HEADER] === 'closed',
    );
    assert.deepEqual([...s.verdicts], ['fail_closed']);
    assert.equal(s.failedOpen, false);
  });

  it('lets the request pass, marked failed open, when the policy fails open', () => {
    const s = state('enforce', 'open');
    policyFault(s, 'unused');
    assert.deepEqual([...s.verdicts], ['fail_open']);
    assert.equal(s.failedOpen, true);
  });

  it('never refuses in shadow mode, whatever the failure mode: would_fail', () => {
    for (const failureMode of ['closed', 'open'] as const) {
      const s = state('shadow', failureMode);
      policyFault(s, 'unused');
      assert.deepEqual([...s.verdicts], ['would_fail'], failureMode);
      assert.equal(s.failedOpen, true);
    }
  });
});
