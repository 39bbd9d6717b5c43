/**
 * The data-protection sections of AIPolicies (masking, promptGuard) → the extproc contract's
 * route Policy, and the check of every section of a policy (governance.ts compiles the other
 * four). The checks the apiserver cannot make (RE2 compilation, template variables, actions
 * naming enabled detectors) are the extproc's own schemas run here, so a policy the extproc would
 * refuse is refused on its own status instead of the whole extproc document being refused.
 */
import { MaskingPolicy, type ExtprocConfigInput } from '../../extproc/config/contract.js';
import { PromptGuardPolicy } from '../../extproc/guard/schema.js';
import { CachePolicy } from '../../extproc/cache/schema.js';
import { ContextPolicy } from '../../extproc/context/schema.js';
import { SessionsPolicy } from '../../extproc/sessions/schema.js';
import type { AIPolicySpec, MaskingSection, SecretData } from '../api/types.js';
import { checkGovernanceSections, combinedName } from './governance.js';
import { collectIssues, type CompileProblem } from './issues.js';
import type { CredentialRef, IRPolicySection } from './ir.js';
import { routeKey } from './names.js';

export type ContractPolicy = NonNullable<ExtprocConfigInput['routes'][number]['policy']>;
type ContractMasking = NonNullable<ContractPolicy['masking']>;

/** The contract's minimum hash key length; a shorter key would make the extproc refuse the document. */
export const MIN_HASH_KEY_LENGTH = 16;

// Stands in for the Secret's value while the section is checked, so a missing Secret is reported
// as SecretNotFound rather than as a schema error, and no secret value reaches a message.
const PLACEHOLDER_KEY = 'x'.repeat(MIN_HASH_KEY_LENGTH);

/**
 * Compiles every section of a policy with the extproc's own schemas (RE2 patterns, word lists,
 * templates, decorators, identity, JWKS, access globs, limits, prices): what they refuse, the
 * extproc would refuse. Empty: the policy compiles. Used by translation and by `sluice validate`,
 * so both refuse exactly what the extproc would.
 */
export function compileProblems(spec: AIPolicySpec): CompileProblem[] {
  const problems: CompileProblem[] = [];
  if (spec.masking) {
    const hashKey = spec.masking.hashKeySecretRef ? { value: PLACEHOLDER_KEY } : undefined;
    collectIssues(
      MaskingPolicy.safeParse(toContractMasking(spec.masking, hashKey)),
      'masking',
      problems,
    );
  }
  if (spec.promptGuard) {
    collectIssues(PromptGuardPolicy.safeParse(spec.promptGuard), 'promptGuard', problems);
  }
  if (spec.cache) collectIssues(CachePolicy.safeParse(spec.cache), 'cache', problems);
  if (spec.context) collectIssues(ContextPolicy.safeParse(spec.context), 'context', problems);
  if (spec.sessions) collectIssues(SessionsPolicy.safeParse(spec.sessions), 'sessions', problems);
  problems.push(...checkGovernanceSections(spec));
  return problems;
}

/** Why the sections cannot be compiled, in the form of a condition message; undefined: fine. */
export function checkSections(spec: AIPolicySpec): string | undefined {
  const problems = compileProblems(spec);
  if (problems.length === 0) return undefined;
  return problems
    .slice(0, 3)
    .map((p) => `${p.field}: ${p.message}`)
    .join('; ');
}

export interface HashKey {
  ref: CredentialRef;
  value: string;
}

export type HashKeyResult =
  | { ok: true; key: HashKey }
  | {
      ok: false;
      reason: 'SecretNotFound' | 'SecretKeyNotFound' | 'InvalidPolicy';
      message: string;
    };

/** Reads masking.hashKeySecretRef from the policy's namespace; messages never hold the value. */
export function resolveHashKey(
  ns: string,
  ref: NonNullable<MaskingSection['hashKeySecretRef']>,
  secrets: ReadonlyMap<string, SecretData>,
): HashKeyResult {
  const at = 'spec.masking.hashKeySecretRef';
  const secret = secrets.get(routeKey(ns, ref.name));
  if (!secret) {
    return {
      ok: false,
      reason: 'SecretNotFound',
      message: `${at}: Secret ${ns}/${ref.name} not found`,
    };
  }
  const value = secret.data[ref.key];
  if (value === undefined) {
    return {
      ok: false,
      reason: 'SecretKeyNotFound',
      message: `${at}: Secret ${ns}/${ref.name} has no key "${ref.key}"`,
    };
  }
  // Trimmed like API keys: a trailing newline from `echo` would silently change every hash.
  const trimmed = value.trim();
  if (trimmed.length < MIN_HASH_KEY_LENGTH) {
    return {
      ok: false,
      reason: 'InvalidPolicy',
      message: `${at}: key "${ref.key}" of Secret ${ns}/${ref.name} is shorter than ${MIN_HASH_KEY_LENGTH} characters`,
    };
  }
  return {
    ok: true,
    key: { ref: { namespace: ns, secret: ref.name, key: ref.key }, value: trimmed },
  };
}

/** The section with the Secret reference swapped for the resolved key; field names are shared. */
export function toContractMasking(
  section: MaskingSection,
  hashKey: { value: string } | undefined,
): ContractMasking {
  const { hashKeySecretRef: _ref, ...rest } = section;
  void _ref;
  return hashKey ? { ...rest, hashKey } : { ...rest };
}

/**
 * One route's contract Policy from its merged sections (masking, promptGuard, cache, context). The
 * contract has one mode and failure mode per route while the sections may come from different
 * policies: the stricter of each
 * wins (enforce over shadow, closed over open), because a data-protection setting that is
 * quietly weaker than one of its policies asked for is the failure that goes unnoticed.
 */
export function routePolicy(
  masking: IRPolicySection | undefined,
  guard: IRPolicySection | undefined,
  hashKey: HashKey | undefined,
  cache?: IRPolicySection,
  context?: IRPolicySection,
  sessions?: IRPolicySection,
): ContractPolicy | undefined {
  const parts = [masking, guard, cache, context, sessions].filter(
    (s): s is IRPolicySection => s !== undefined,
  );
  if (parts.length === 0) return undefined;
  const out: ContractPolicy = {
    name: combinedName(parts.map((s) => s.policy)),
    mode: parts.some((s) => s.mode === 'enforce') ? 'enforce' : 'shadow',
    failureMode: parts.some((s) => s.failureMode === 'closed') ? 'closed' : 'open',
  };
  if (masking) {
    out.masking = toContractMasking(
      masking.value as MaskingSection,
      hashKey ? { value: hashKey.value } : undefined,
    );
  }
  if (guard) out.guard = guard.value as NonNullable<ContractPolicy['guard']>;
  if (cache) out.cache = cache.value as NonNullable<ContractPolicy['cache']>;
  if (context) out.context = context.value as NonNullable<ContractPolicy['context']>;
  if (sessions) out.sessions = sessions.value as NonNullable<ContractPolicy['sessions']>;
  return out;
}
