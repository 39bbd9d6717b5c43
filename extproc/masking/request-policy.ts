/**
 * The router phase's use of a route policy on a request: evaluate, then enforce (rewrite or
 * refuse) unless the policy is in shadow mode, and decide what a failure does.
 */
import { createHash } from 'node:crypto';
import type { Operation } from '../api/endpoints.js';
import { SluiceError } from '../errors.js';
import type { PolicyState } from '../pipeline/request-store.js';
import { maskRequest, OutputTransform, Tally, type FindingCount } from './engine.js';
import type { CompiledPolicy } from './policy.js';
import type { Vault } from './vault.js';

export const POLICY_FAILURE_HEADER = 'x-sluice-policy-failure';

export interface RequestPolicyInput {
  /** From newPolicyState; kept by the caller, so counts survive a refusal. */
  state: PolicyState;
  operation: Operation;
  /** Parsed body; rewritten in place when masking changes it. */
  body: Record<string, unknown>;
  headers: ReadonlyMap<string, string>;
  route: string;
  vault: Vault;
}

export interface RequestPolicyResult {
  /** The body as it must leave, when it changed. */
  body?: Buffer;
}

export function newPolicyState(policy: CompiledPolicy): PolicyState {
  return { policy, tally: new Tally(), failedOpen: false, verdicts: new Set() };
}

/**
 * A conversation is scoped to the route and the caller's credential as well as the session id,
 * so a caller who guesses or reuses another caller's session id cannot have that caller's values
 * restored into its own answers.
 */
function sessionScope(
  headers: ReadonlyMap<string, string>,
  name: string,
  route: string,
): string | undefined {
  const session = headers.get(name);
  if (session === undefined || session === '') return undefined;
  const principal =
    headers.get('authorization') ?? headers.get('x-api-key') ?? headers.get('api-key') ?? '';
  return createHash('sha256')
    .update(route)
    .update('\0')
    .update(principal)
    .update('\0')
    .update(session)
    .digest('base64');
}

export async function applyRequestPolicy(input: RequestPolicyInput): Promise<RequestPolicyResult> {
  const { state } = input;
  const policy = state.policy;
  const m = policy.masking;
  if (!m) return {};
  const shadow = policy.mode === 'shadow';
  try {
    const r = await maskRequest({
      masking: m,
      shadow,
      operation: input.operation,
      body: input.body,
      tally: state.tally,
      vault: input.vault,
      session: m.reversible ? sessionScope(input.headers, m.sessionHeader, input.route) : undefined,
    });
    if (r.blocked.length > 0) {
      state.verdicts.add('block');
      const what = r.blocked.map((b) => `${b.type} (${b.count})`).join(', ');
      throw new SluiceError(
        'policy_blocked',
        `The request was blocked by the gateway's data-protection policy "${policy.name}": it contains ${what}.`,
      );
    }
    state.output = new OutputTransform(m, shadow, r.lookup, state.tally);
    return r.changed ? { body: Buffer.from(JSON.stringify(input.body), 'utf8') } : {};
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    // A detector or the vault failed. Shadow mode never refuses; otherwise the policy decides.
    if (policy.failureMode === 'closed' && !shadow) {
      state.verdicts.add('fail_closed');
      throw new SluiceError(
        'policy_unavailable',
        'The gateway could not apply its data-protection policy, so the request was not sent. Retry shortly.',
        { headers: { [POLICY_FAILURE_HEADER]: 'closed' } },
      );
    }
    state.failedOpen = true;
    state.verdicts.add(shadow ? 'would_fail' : 'fail_open');
    return {};
  }
}

/** The access log's verdicts: the actions taken (or that would be, in shadow mode) and failures. */
export function verdictsOf(state: PolicyState): string[] {
  const out = new Set(state.verdicts);
  for (const f of state.tally.list())
    out.add(f.direction === 'response' ? `response_${f.action}` : f.action);
  return [...out].sort();
}

export function findingsOf(state: PolicyState): FindingCount[] {
  return state.tally.list();
}
