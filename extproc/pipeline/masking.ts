/**
 * The router phase's masking of a request under the route's policy: evaluate, then enforce
 * (rewrite or refuse) unless the policy is in shadow mode; a fault takes the policy's failure
 * mode (policy-failure.ts). Runs after the guard (guard.ts) and governance (governance.ts).
 */
import { createHash } from 'node:crypto';
import type { Operation } from '../providers/endpoints.js';
import { SluiceError } from '../errors.js';
import { maskRequestNow, OutputTransform, type RequestMasking } from '../masking/engine.js';
import { MAX_REQUEST_DEPTH, NestingTooDeep } from '../masking/fields.js';
import { VAULT_DEGRADED, type PolicyState } from '../policy/state.js';
import type { MaybePromise, Vault } from '../masking/vault.js';
import { policyFault } from './policy-failure.js';

/** Verdict: a session header came without an authenticated caller, so it was not used. */
export const SESSION_UNBOUND = 'session_unbound';

export interface RequestPolicyInput {
  /** From newPolicyState (policy/state.ts); kept by the caller, so counts survive a refusal. */
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
  /**
   * The vault session of a conversation the gateway stores (pipeline/sessions.ts), already bound
   * to its owner: it replaces the session header, so a stored conversation keeps its placeholders.
   */
  session?: string | undefined;
  /**
   * The JSON text `body` was parsed from, if the caller has it: a masked body is then written by
   * splicing the masked values into it (checked to hold `body`), not re-serialized.
   */
  source?: Buffer | undefined;
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
  // A promise whatever happens, a throw included, for callers that await it anyway.
  return await applyRequestPolicyNow(input);
}

/** Nothing to change (never written to). */
const UNCHANGED: RequestPolicyResult = Object.freeze({});

/**
 * applyRequestPolicy, answered synchronously unless the shared vault answers later
 * (engine.ts maskRequestNow): no promise per request on the common path (issue 16). Throws what
 * applyRequestPolicy rejects with.
 */
export function applyRequestPolicyNow(
  input: RequestPolicyInput,
): MaybePromise<RequestPolicyResult> {
  const { state } = input;
  const policy = state.policy;
  const m = policy.masking;
  if (!m) return UNCHANGED;
  const shadow = policy.mode === 'shadow';
  let r: MaybePromise<RequestMasking>;
  try {
    const session = m.reversible
      ? (input.session ?? sessionScope(input.headers, m.sessionHeader, input.route, input.caller))
      : undefined;
    if (m.reversible && session === undefined && (input.headers.get(m.sessionHeader) ?? '') !== '')
      state.verdicts.add(SESSION_UNBOUND);
    r = maskRequestNow({
      masking: m,
      shadow,
      operation: input.operation,
      body: input.body,
      tally: state.tally,
      vault: input.vault,
      session,
      // Open mode never lets a vault outage send values unmasked: the request keeps its own vault.
      degradeOnVaultFailure: policy.failureMode === 'open',
      source: input.source,
    });
  } catch (err) {
    return policyFailed(input, shadow, err);
  }
  if (!(r instanceof Promise)) return masked(input, shadow, r);
  return r.then(
    (done) => masked(input, shadow, done),
    (err: unknown) => policyFailed(input, shadow, err),
  );
}

/** The request's masking done: refused, or what leaves. */
function masked(
  input: RequestPolicyInput,
  shadow: boolean,
  r: RequestMasking,
): RequestPolicyResult {
  const { state } = input;
  const policy = state.policy;
  try {
    if (r.degraded) state.verdicts.add(VAULT_DEGRADED);
    if (r.blocked.length > 0) {
      state.verdicts.add('block');
      const what = r.blocked.map((b) => `${b.type} (${b.count})`).join(', ');
      throw new SluiceError(
        'policy_blocked',
        `The request was blocked by the gateway's data-protection policy "${policy.name}": it contains ${what}.`,
      );
    }
    state.output = new OutputTransform(policy.masking!, shadow, r.lookup, state.tally);
    if (!r.changed) return UNCHANGED;
    return { body: r.bytes ?? Buffer.from(JSON.stringify(input.body), 'utf8') };
  } catch (err) {
    return policyFailed(input, shadow, err);
  }
}

/** A refusal is the caller's; any other fault takes the policy's failure mode. */
function policyFailed(
  input: RequestPolicyInput,
  shadow: boolean,
  err: unknown,
): RequestPolicyResult {
  const { state } = input;
  if (err instanceof SluiceError) throw err;
  if (err instanceof NestingTooDeep) {
    // Deeper JSON would leave unscanned: refused as a bad request, whatever the failure mode.
    if (!shadow) throw nestingTooDeep();
    state.verdicts.add('would_nesting_too_deep');
    return UNCHANGED;
  }
  // A detector or the vault failed.
  policyFault(
    state,
    'The gateway could not apply its data-protection policy, so the request was not sent. Retry shortly.',
  );
  return UNCHANGED;
}

/** The 400 for a body nested deeper than masking and the prompt guard read. */
export function nestingTooDeep(): SluiceError {
  return new SluiceError(
    'nesting_too_deep',
    `The request body nests JSON more than ${MAX_REQUEST_DEPTH} levels deep (JSON inside strings included); the data-protection policy cannot check it.`,
  );
}
