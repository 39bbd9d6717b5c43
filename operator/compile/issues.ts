/**
 * What the extproc's own schemas refuse in an AIPolicy, as apiserver-style field errors. Shared by
 * the masking/guard checks (policy.ts) and the governance checks (governance.ts).
 */
import type { z } from 'zod';

/** One thing the extproc would refuse in a policy, at an apiserver-style field path. */
export interface CompileProblem {
  /** e.g. `spec.masking.customPatterns`, `spec.promptGuard.denyPatterns[0].pattern` */
  field: string;
  message: string;
}

/** Appends a zod result's issues under `spec.<section>`. */
export function collectIssues(
  result: z.ZodSafeParseResult<unknown>,
  section: string,
  out: CompileProblem[],
): void {
  if (result.success) return;
  for (const i of result.error.issues) {
    // zod says only "Invalid key in record" of a bad map key; the key's own issues say why.
    const message =
      i.code === 'invalid_key'
        ? `invalid key: ${i.issues.map((k) => k.message).join('; ')}`
        : i.message;
    out.push({ field: fieldPath(['spec', section, ...i.path]), message });
  }
}

/** `spec.a[0].b`, as the apiserver writes field paths. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}
