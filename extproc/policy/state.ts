/**
 * What a route policy records about one request, from the router phase to the response: the
 * findings, how model output is restored, the decisions for the access log, and whether a fault
 * let the request pass under the policy's failure mode (pipeline/policy-failure.ts).
 */
import { Tally, type FindingCount, type OutputTransform } from '../masking/engine.js';
import type { CompiledPolicy } from '../policy/policy.js';

/** Verdict: the shared vault failed and the request was masked with a vault of its own. */
export const VAULT_DEGRADED = 'vault_degraded';

export interface PolicyState {
  policy: CompiledPolicy;
  /** Findings of both directions, by type and action; never values. */
  tally: Tally;
  /** Set when the policy masks: how model output is scanned and restored. */
  output?: OutputTransform;
  /** The policy could not be applied and its failure mode let the request pass. */
  failedOpen: boolean;
  /** Decisions for the access log (`mask`, `would_block`, `fail_open`…). */
  verdicts: Set<string>;
}

export function newPolicyState(policy: CompiledPolicy): PolicyState {
  return { policy, tally: new Tally(), failedOpen: false, verdicts: new Set() };
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
