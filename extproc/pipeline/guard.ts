/**
 * The router phase's use of a route's prompt guard: evaluate, turn the verdict into an error or a
 * new body, and decide what a failure does. Runs after governance (a caller who may not use the
 * route costs no guard work) and before masking (masking must see the rendered template and the
 * decorators, so PII inside a template variable is masked before it leaves).
 */
import type { Operation } from '../providers/endpoints.js';
import { SluiceError } from '../errors.js';
import { evaluateGuard, guardBlockMessage, type GuardReason } from '../guard/guard.js';
import { TEMPLATE_FIELD, type PromptGuardPolicy } from '../guard/schema.js';
import { NestingTooDeep } from '../masking/fields.js';
import type { PolicyState } from '../policy/state.js';
import { nestingTooDeep } from './masking.js';
import { policyFault } from './policy-failure.js';

type Obj = Record<string, unknown>;

/** One guard rule that fired, as logged and counted: never what matched. */
export interface GuardFinding {
  rule: string;
  kind: GuardReason['kind'];
  /** `block`, `strip`, `alert`, or `would_*` in shadow mode. */
  action: string;
  count?: number;
}

export interface GuardInput {
  /** The route policy's state (verdicts, failure); absent when the route has no policy. */
  state: PolicyState | undefined;
  guard: PromptGuardPolicy | undefined;
  operation: Operation;
  body: Obj;
  /** Receives the rules that fired, also when the request is then refused. */
  findings: GuardFinding[];
}

/**
 * Returns the body as it must leave when the guard changed it (template rendered, invisibles
 * stripped, decorators added); throws the caller's error otherwise.
 */
export function applyGuard(input: GuardInput): Obj | undefined {
  const { state, guard, body } = input;
  if (!guard || !state) {
    // Forwarded as is, the field would reach the provider, which rejects unknown fields or,
    // worse, ignores it and answers a prompt the client did not mean to send.
    if (TEMPLATE_FIELD in body) {
      throw new SluiceError('invalid_request', 'This route has no templates.', {
        param: TEMPLATE_FIELD,
      });
    }
    return undefined;
  }
  const policy = state.policy;
  const shadow = policy.mode === 'shadow';
  let result;
  try {
    result = evaluateGuard(guard, input.operation, body, { shadow });
  } catch (err) {
    if (err instanceof NestingTooDeep) {
      // Deeper JSON would pass unread: refused as masking refuses it, whatever the failure mode.
      if (!shadow) throw nestingTooDeep();
      state.verdicts.add('would_nesting_too_deep');
      return undefined;
    }
    // A guard fault is a policy fault: the same failure mode as masking, and no message (it
    // could quote the prompt).
    policyFault(
      state,
      'The gateway could not apply its prompt guard, so the request was not sent. Retry shortly.',
    );
    return undefined;
  }
  for (const r of result.reasons) {
    const action = shadow ? `would_${r.action}` : r.action;
    state.verdicts.add(shadow ? `would_guard_${r.action}` : `guard_${r.action}`);
    input.findings.push({
      rule: r.rule,
      kind: r.kind,
      action,
      ...(r.count !== undefined && { count: r.count }),
    });
  }
  if (result.template) state.verdicts.add('guard_template');
  if (result.verdict === 'invalid') {
    const inv = result.invalid!;
    state.verdicts.add('guard_invalid');
    throw new SluiceError('invalid_request', inv.message, { param: inv.param });
  }
  if (result.verdict === 'block') {
    throw new SluiceError('prompt_blocked', guardBlockMessage(policy.name, result));
  }
  return result.body;
}
