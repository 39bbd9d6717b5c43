/**
 * Golden cases: `cases/<name>.in.yaml` (AIRoutes, AIPolicies, Secrets, Services, EndpointSlices,
 * read by the standalone YAML source exactly as `sluice render` reads them) and
 * `cases/<name>.out.yaml` (statuses, Envoy resources, extproc config, credentials redacted).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { stringify } from 'yaml';
import type { Problem } from '../../operator/source/yaml.js';
import { loadResources } from '../../operator/source/yaml.js';
import type { Resources } from '../../operator/api/types.js';
import type { Translation } from '../../operator/translate/index.js';
import { redacted } from '../../operator/translate/redact.js';

export { redacted };

export const CASES_DIR = fileURLToPath(new URL('./cases/', import.meta.url));

export function listCases(): string[] {
  return readdirSync(CASES_DIR)
    .filter((f) => f.endsWith('.in.yaml'))
    .map((f) => f.slice(0, -'.in.yaml'.length))
    .sort();
}

export async function loadCase(
  name: string,
): Promise<{ resources: Resources; problems: Problem[] }> {
  const { resources, problems } = await loadResources([join(CASES_DIR, `${name}.in.yaml`)]);
  // Paths differ between machines; the file name is enough to read a golden file.
  return {
    resources,
    problems: problems.map((p) => ({ ...p, source: p.source.replace(CASES_DIR, '') })),
  };
}

/**
 * The golden text, already in the repository's Prettier style so `prettier --check` and the
 * golden comparison agree on every byte.
 */
export async function renderGolden(t: Translation, problems: readonly Problem[]): Promise<string> {
  const doc: Record<string, unknown> = {};
  if (problems.length > 0) doc['problems'] = problems;
  doc['statuses'] = t.statuses;
  // Every merged section, including those the extproc route policy does not carry, so
  // precedence is golden-tested for all of them.
  const policies: Record<string, unknown> = {};
  for (const r of t.ir.routes) {
    if (Object.keys(r.policies).length > 0) policies[r.key] = r.policies;
  }
  if (Object.keys(policies).length > 0) doc['policies'] = policies;
  doc['envoy'] = t.envoy;
  doc['extproc'] = redacted(t);
  const text = stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
  const config = await resolveConfig(join(CASES_DIR, 'x.out.yaml'));
  return format(text, { ...config, parser: 'yaml' });
}
