/**
 * Golden cases, one file per stage so a diff shows which stage moved (as Envoy Gateway keeps
 * gatewayapi → IR and IR → xDS goldens apart, the xDS ones per resource type):
 *
 *   cases/<name>.in.yaml      the input: AIRoutes, AIPolicies, Secrets, Services, EndpointSlices,
 *                             read by the standalone YAML source exactly as `sluice render` reads them
 *   ir/<name>.yaml            Resources → IR: the source's problems, then the IR (routes with their
 *                             merged policy sections, statuses, governance), credentials redacted
 *   envoy/<name>.<type>.yaml  IR → Envoy: listeners, routes, clusters, endpoints, one file each
 *   extproc/<name>.yaml       IR → the extproc contract document, credentials redacted
 *
 * `npm run golden:update` rewrites them all (UPDATE_GOLDEN=1 on golden.test.ts).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { stringify } from 'yaml';
import type { Problem } from '../../operator/source/yaml.js';
import { loadResources } from '../../operator/source/yaml.js';
import type { Resources } from '../../operator/api/types.js';
import type { EnvoyResources, Compilation } from '../../operator/compile/index.js';
import { redacted, redactedIR } from '../../operator/compile/redact.js';

export { redacted };

export const GOLDEN_DIR = fileURLToPath(new URL('./', import.meta.url));
export const CASES_DIR = join(GOLDEN_DIR, 'cases/');

/** The folders the golden outputs live in, below GOLDEN_DIR. */
export const OUTPUT_DIRS = ['ir', 'envoy', 'extproc'] as const;

/** Envoy resource types, one golden file each, in the order compilation emits them. */
export const ENVOY_TYPES = [
  'listeners',
  'routes',
  'clusters',
  'endpoints',
] as const satisfies readonly (keyof EnvoyResources)[];

/** The golden file of a case's Envoy resources of one type, relative to GOLDEN_DIR. */
export function envoyFile(name: string, type: (typeof ENVOY_TYPES)[number]): string {
  return `envoy/${name}.${type}.yaml`;
}

/** Every golden file of a case, relative to GOLDEN_DIR, in the order renderGoldens makes them. */
export function goldenPaths(name: string): string[] {
  return [
    `ir/${name}.yaml`,
    ...ENVOY_TYPES.map((type) => envoyFile(name, type)),
    `extproc/${name}.yaml`,
  ];
}

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
 * A case's golden files by path relative to GOLDEN_DIR, each already in the repository's Prettier
 * style so `prettier --check` and the golden comparison agree on every byte.
 */
export async function renderGoldens(
  name: string,
  t: Compilation,
  problems: readonly Problem[],
): Promise<Map<string, string>> {
  const ir: Record<string, unknown> = {};
  if (problems.length > 0) ir['problems'] = problems;
  Object.assign(ir, redactedIR(t.ir));
  const values = [ir, ...ENVOY_TYPES.map((type) => t.envoy[type]), redacted(t)];
  const paths = goldenPaths(name);
  const files = new Map<string, string>();
  for (let i = 0; i < paths.length; i++) files.set(paths[i]!, await yaml(values[i]));
  return files;
}

async function yaml(value: unknown): Promise<string> {
  const text = stringify(value, { lineWidth: 0, aliasDuplicateObjects: false });
  const config = await resolveConfig(join(CASES_DIR, 'x.yaml'));
  return format(text, { ...config, parser: 'yaml' });
}
