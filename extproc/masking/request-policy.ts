/**
 * The router phase's use of a route policy on a request: evaluate, then enforce (rewrite or
 * refuse) unless the policy is in shadow mode, and decide what a failure does.
 */
import { createHash } from 'node:crypto';
import type { Operation } from '../providers/endpoints.js';
import { SluiceError } from '../errors.js';
import type { PolicyState } from '../pipeline/request-store.js';
import { maskRequest, OutputTransform, Tally, type FindingCount } from './engine.js';
import { MAX_REQUEST_DEPTH, NestingTooDeep } from './fields.js';
import type { CompiledPolicy } from './policy.js';
import type { Vault } from './vault.js';

export const POLICY_FAILURE_HEADER = 'x-sluice-policy-failure';
/** Verdict: a session header came without an authenticated caller, so it was not used. */
export const SESSION_UNBOUND = 'session_unbound';
/** Verdict: the shared vault failed and the request was masked with a vault of its own. */
export const VAULT_DEGRADED = 'vault_degraded';

export interface RequestPolicyInput {
  /** From newPolicyState; kept by the caller, so counts survive a refusal. */
  state: PolicyState;
  operation: Operation;
  /** Parsed body; rewritten in place when masking changes it. */
  body: Record<string, unknown>;
  headers: ReadonlyMap<string, string>;
  route: string;
  vault: Vault;
  /**
   * Who the gateway authenticated (a virtual key, a verified JWT's subject, a mesh identity), if
   * anyone: a conversation's vault belongs to it. Without one the session header is ignored.
   */
  caller?: SessionOwner | undefined;
}

/** The part of an authenticated caller (governance's Caller) a conversation is bound to. */
export interface SessionOwner {
  method: string;
  consumer: string;
}

export interface RequestPolicyResult {
  /** The body as it must leave, when it changed. */
  body?: Buffer;
}

export function newPolicyState(policy: CompiledPolicy): PolicyState {
  return { policy, tally: new Tally(), failedOpen: false, verdicts: new Set() };
}

/**
 * A conversation belongs to the route and to the caller the gateway authenticated, as well as to
 * the session id: a caller who guesses or reuses another caller's session id opens another
 * conversation, so it can never have that caller's values restored into its own answers. A
 * header alone proves nothing (anyone can send any bearer token to a route that checks none), so
 * without an authenticated caller there is no conversation: placeholders live for one request.
 */
function sessionScope(
  headers: ReadonlyMap<string, string>,
  name: string,
  route: string,
  caller: SessionOwner | undefined,
): string | undefined {
  const session = headers.get(name);
  if (session === undefined || session === '' || caller === undefined) return undefined;
  return createHash('sha256')
    .update(route)
    .update('\0')
    .update(caller.method)
    .update('\0')
    .update(caller.consumer)
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
    const session = m.reversible
      ? sessionScope(input.headers, m.sessionHeader, input.route, input.caller)
      : undefined;
    if (m.reversible && session === undefined && (input.headers.get(m.sessionHeader) ?? '') !== '')
      state.verdicts.add(SESSION_UNBOUND);
    const r = await maskRequest({
      masking: m,
      shadow,
      operation: input.operation,
      body: input.body,
      tally: state.tally,
      vault: input.vault,
      session,
      // Open mode never lets a vault outage send values unmasked: the request keeps its own vault.
      degradeOnVaultFailure: policy.failureMode === 'open',
    });
    if (r.degraded) state.verdicts.add(VAULT_DEGRADED);
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
    if (err instanceof NestingTooDeep) {
      // Deeper JSON would leave unscanned: refused as a bad request, whatever the failure mode.
      if (!shadow) throw nestingTooDeep();
      state.verdicts.add('would_nesting_too_deep');
      return {};
    }
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

function nestingTooDeep(): SluiceError {
  return new SluiceError(
    'nesting_too_deep',
    `The request body nests JSON more than ${MAX_REQUEST_DEPTH} levels deep (JSON inside strings included); the data-protection policy cannot check it.`,
  );
}
