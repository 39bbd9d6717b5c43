/**
 * One-line summaries written into status for `kubectl get`: the apiserver prints only the first
 * value a printer column's JSONPath finds, so a column over `.spec.models[*]` would show one model
 * of many. Long lists are cut, with how many are left out.
 */
import type { AIPolicy, AIRoute } from '../api/types.js';

/** The CRD allows 1024 characters; a table column wants far fewer. */
const MAX = 120;

export function oneLine(items: readonly string[], none = ''): string {
  if (items.length === 0) return none;
  let out = '';
  for (let i = 0; i < items.length; i++) {
    const next = out === '' ? items[i]! : `${out}, ${items[i]}`;
    const left = items.length - i - 1;
    if (next.length > MAX && out !== '') return `${out} (+${left + 1} more)`;
    out = next;
  }
  return out;
}

export function routeSummary(route: AIRoute): { models: string; backends: string } {
  const models = (route.spec.models ?? []).map((m) =>
    'exact' in m && m.exact !== undefined ? m.exact : `${(m as { prefix: string }).prefix}*`,
  );
  const backends = (route.spec.backends ?? []).map((b) => `${b.name} (${b.provider})`);
  return { models: oneLine(models), backends: oneLine(backends) };
}

/**
 * `targets`: the AIRoutes the policy selects right now (names, in its namespace); undefined when
 * translation could not tell, and then what the spec asks for is shown instead.
 */
export function policySummary(
  policy: AIPolicy,
  targets: readonly string[] | undefined,
): {
  targets: string;
} {
  if (targets !== undefined) return { targets: oneLine([...targets].sort(), '<none>') };
  const refs = (policy.spec.targetRefs ?? []).map((t) => t.name);
  const labels = Object.entries(policy.spec.selector?.matchLabels ?? {}).map(
    ([k, v]) => `${k}=${v}`,
  );
  if (policy.spec.selector) refs.push(labels.length > 0 ? labels.join(',') : '<all>');
  return { targets: oneLine(refs, '<none>') };
}
