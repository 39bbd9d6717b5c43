/**
 * Beyond what the apiserver checks (validate.ts): what the operator would refuse in a document
 * on its own, as compilation judges it, and what the extproc would refuse to compile. `sluice
 * validate` reports both; the YAML source does not need this, compilation itself does it there.
 */
import type { AIRoute, SecretData } from '../api/types.js';
import { compileProblems } from '../compile/policy.js';
import { DEFAULT_SECRET_KEY, toIR } from '../compile/to-ir.js';
import { fieldError, type DocumentResult, type FieldError } from './validate.js';

/**
 * What the operator would refuse in a document the apiserver accepts, judged on the document
 * alone: an AIPolicy's sections compiled by the extproc's own schemas (RE2 patterns, word lists,
 * templates, decorators, JWKS, access globs, limits, prices), exactly as compilation compiles
 * them (the operator marks such a policy InvalidPolicy and refuses the routes it targets); an
 * AIRoute's own faults as compilation finds them. Empty for anything else.
 */
export function compileErrors(result: DocumentResult): FieldError[] {
  if (result.outcome !== 'valid' || !result.object) return [];
  if (result.object.kind === 'AIRoute') return routeErrors(result.object);
  return compileProblems(result.object.spec).map((p) => fieldError(p.field, p.message));
}

// What an AIRoute's Accepted reason says about other resources; those verdicts are render's.
const REFERENCE_REASONS = new Set(['SecretNotFound', 'SecretKeyNotFound', 'ModelConflict']);

/**
 * What the operator refuses in an AIRoute on its own (rules naming models the route does not
 * serve or backends it does not have, weight-0 rules, provider blocks…): compilation run on the
 * route alone, with every Secret it references taken to exist, so only its own faults remain.
 */
function routeErrors(route: AIRoute): FieldError[] {
  const ns = route.metadata.namespace;
  const secrets = new Map<string, SecretData>();
  for (const b of route.spec.backends) {
    const ref = b.credential?.secretRef;
    if (!ref) continue;
    const s = secrets.get(ref.name) ?? { metadata: { name: ref.name, namespace: ns }, data: {} };
    s.data[ref.key ?? DEFAULT_SECRET_KEY] = 'assumed-to-exist';
    secrets.set(ref.name, s);
  }
  const ir = toIR({ routes: [route], policies: [], secrets: [...secrets.values()], endpoints: [] });
  const c = ir.statuses[0]?.conditions.find((x) => x.type === 'Accepted');
  if (!c || c.status === 'True' || REFERENCE_REASONS.has(c.reason)) return [];
  return [{ field: 'spec', message: c.message, detail: `${c.message} (${c.reason})` }];
}
