/**
 * The operator's layers, lowest first, and the rule that imports point down: a file may import
 * its own layer or a lower one, never a higher one. The design this writes down (DESIGN §1,
 * README "Repository"): sources read Kubernetes or YAML into an immutable Resources bundle;
 * compilation turns Resources into IR and Envoy resources, purely; the xDS layer serves
 * snapshots; status judges and writes conditions back; the controller orchestrates all of them;
 * the commands wire components together. Types two layers share live in the lower one (a
 * Footprint is status's, the controller computes it; backoff is extproc/shared's).
 *
 * Test files are not held to it: a source's test may check what compilation makes of its output.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Lowest first. A path ending in `/` is a folder; the longest match places a file. */
export const LAYERS: readonly { name: string; job: string; paths: readonly string[] }[] = [
  {
    name: 'api',
    job: 'CRD types and zod schemas, the consumer Secret format',
    paths: ['operator/api/'],
  },
  { name: 'crdgen', job: 'CRD manifests from the schemas', paths: ['operator/crdgen/'] },
  {
    name: 'admission',
    job: "the apiserver's checks (schema, CEL) run offline",
    paths: ['operator/validate/validate.ts', 'operator/validate/cel.ts'],
  },
  {
    name: 'source',
    job: 'the only code that reads Kubernetes or YAML into Resources',
    paths: ['operator/source/'],
  },
  {
    name: 'compile',
    job: 'pure Resources → IR → Envoy resources and the extproc contract',
    paths: ['operator/compile/'],
  },
  {
    name: 'envoy-api',
    job: "the targeted Envoy release's descriptors, rules, an ADS client",
    paths: ['operator/envoy-api/'],
  },
  { name: 'xds', job: 'snapshot cache, encoder, ADS server, ACK/NACK', paths: ['operator/xds/'] },
  {
    name: 'status',
    job: 'conditions, fleet-wide Programmed, Events, leases, status writes',
    paths: ['operator/status/'],
  },
  { name: 'controller', job: 'reconcile loop and snapshots', paths: ['operator/controller/'] },
  {
    name: 'commands',
    job: 'the sluice subcommands and what only they use',
    paths: [
      'operator/cli.ts',
      'operator/main.ts',
      'operator/run.ts',
      'operator/crdgen/main.ts',
      'operator/validate/main.ts',
      'operator/validate/compile.ts',
      'operator/render/',
      'operator/standalone/',
      'operator/keys/',
      'operator/usage/',
      'operator/mask/',
      'operator/envoy-sim/',
      'operator/mock-provider/',
    ],
  },
];

/** The layer index of a repository path, or undefined when no layer claims it. */
export function layerOf(path: string): number | undefined {
  let best: { index: number; length: number } | undefined;
  LAYERS.forEach((layer, index) => {
    for (const p of layer.paths) {
      const hit = p.endsWith('/') ? path.startsWith(p) : path === p;
      if (hit && (best === undefined || p.length > best.length)) best = { index, length: p.length };
    }
  });
  return best?.index;
}

/** Every relative import of a file, as a repository path (.js specifiers name .ts files). */
export function importsOf(file: string, text: string): string[] {
  const info = ts.preProcessFile(text, true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => relative(ROOT, resolve(ROOT, dirname(file), spec)).replace(/\.js$/, '.ts'));
}

/** `from → to` for each import that points up, with both layers named. */
export function upwardImports(files: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const [file, text] of files) {
    const from = layerOf(file);
    if (from === undefined) continue;
    for (const target of importsOf(file, text)) {
      const to = layerOf(target);
      if (to !== undefined && to > from) {
        out.push(`${file} (${LAYERS[from]!.name}) → ${target} (${LAYERS[to]!.name})`);
      }
    }
  }
  return out;
}

function operatorSources(): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(path);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) {
        files.set(path, readFileSync(join(ROOT, path), 'utf8'));
      }
    }
  };
  walk('operator');
  return files;
}

void describe('operator layers', () => {
  const files = operatorSources();

  it('places every operator source file in exactly one layer', () => {
    const unplaced = [...files.keys()].filter((f) => layerOf(f) === undefined);
    assert.deepEqual(unplaced, [], 'add the file or its folder to LAYERS');
  });

  it('has no import that points up', () => {
    assert.deepEqual(upwardImports(files), []);
  });

  it('lets only the source, status and the commands talk to Kubernetes', () => {
    const allowed = new Set(['source', 'status', 'commands']);
    const talkers = [...files]
      .filter(([, text]) => text.includes("'@kubernetes/client-node'"))
      .map(([f]) => f)
      .filter((f) => !allowed.has(LAYERS[layerOf(f)!]!.name));
    assert.deepEqual(talkers, []);
  });

  it('finds an upward import, a dynamic one, and places by the longest path', () => {
    const probe = new Map([
      ['operator/source/x.ts', "import { toIR } from '../compile/to-ir.js';"],
      ['operator/status/y.ts', "const m = await import('../controller/snapshot.js');"],
      ['operator/controller/z.ts', "import type { Footprint } from '../status/footprint.js';"],
      ['operator/validate/validate.ts', "import { toIR } from '../compile/to-ir.js';"],
    ]);
    assert.deepEqual(upwardImports(probe), [
      'operator/source/x.ts (source) → operator/compile/to-ir.ts (compile)',
      'operator/status/y.ts (status) → operator/controller/snapshot.ts (controller)',
      'operator/validate/validate.ts (admission) → operator/compile/to-ir.ts (compile)',
    ]);
    assert.equal(LAYERS[layerOf('operator/crdgen/main.ts')!]!.name, 'commands');
    assert.equal(LAYERS[layerOf('operator/crdgen/crds.ts')!]!.name, 'crdgen');
    assert.equal(layerOf('operator/new-folder/a.ts'), undefined);
  });
});
