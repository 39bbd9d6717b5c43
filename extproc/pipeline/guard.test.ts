import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Policy } from '../config/contract.js';
import { SluiceError } from '../errors.js';
import { PromptGuardPolicy } from '../guard/schema.js';
import { MAX_REQUEST_DEPTH } from '../masking/fields.js';
import { compilePolicy } from '../policy/policy.js';
import { newPolicyState } from '../policy/state.js';
import { applyGuard, type GuardFinding } from './guard.js';

function deep(depth: number, leaf: unknown): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? { k: v } : [v];
  return v;
}

describe('applyGuard: a body nested past what the guard reads', () => {
  const guard = PromptGuardPolicy.parse({ denyPatterns: [{ name: 'c', pattern: 'bluebird' }] });
  const body = () => ({
    model: 'm',
    messages: [{ role: 'user', content: [deep(MAX_REQUEST_DEPTH + 2, 'bluebird')] }],
  });

  it('is refused with nesting_too_deep (400), whatever the failure mode', () => {
    for (const failureMode of ['closed', 'open'] as const) {
      const state = newPolicyState(compilePolicy(Policy.parse({ name: 'p', failureMode })));
      const findings: GuardFinding[] = [];
      assert.throws(
        () => applyGuard({ state, guard, operation: 'chat', body: body(), findings }),
        (e) => e instanceof SluiceError && e.code === 'nesting_too_deep' && e.status === 400,
        failureMode,
      );
      assert.equal(state.failedOpen, false);
    }
  });

  it('in shadow mode is recorded as would_nesting_too_deep and passes', () => {
    const state = newPolicyState(compilePolicy(Policy.parse({ name: 'p', mode: 'shadow' })));
    const r = applyGuard({ state, guard, operation: 'chat', body: body(), findings: [] });
    assert.equal(r, undefined);
    assert.deepEqual([...state.verdicts], ['would_nesting_too_deep']);
  });
});
