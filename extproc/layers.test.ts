/**
 * The extproc's layers, and a check that every import points down them. A module may import its
 * own layer and any layer below; an import of a layer above is what makes a newcomer read the
 * whole tree to change one part, so it fails here. Tests are not checked: they may drive a layer
 * from above (a flag test runs the command's main).
 *
 * A new folder (or top-level file) under extproc/ must be placed in LAYERS first.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** Lowest first. Names are folders under extproc/, or top-level files without `.ts`. */
const LAYERS: readonly (readonly string[])[] = [
  // What every sluice command stands on (the operator too): flags, admin, protos, gRPC, backoff.
  ['shared'],
  // The ext_proc protocol: decoding requests, building responses, what processors return.
  ['wire'],
  // The one error type: every code and the status it answers with.
  ['errors'],
  // What one request needs, each concern in its folder; peers may use each other.
  [
    'config',
    'providers',
    'masking',
    'policy',
    'guard',
    'usage',
    'state',
    'governance',
    'cache',
    'telemetry',
    'sessions',
    'context',
  ],
  // The phases: router, upstream and response processors that combine the concerns.
  ['pipeline'],
  // The stream state machine, then the gRPC servers that feed it streams.
  ['stream'],
  ['server', 'grpc'],
  // Wiring a process (and its workers) together, then the command's main.
  ['run', 'workers'],
  ['main'],
];

const root = dirname(fileURLToPath(import.meta.url));

const rank = new Map<string, number>();
LAYERS.forEach((names, i) => names.forEach((n) => rank.set(n, i)));

/** The layer name of a path under extproc/: its first folder, or the file's own name. */
function unitOf(rel: string): string {
  const parts = rel.split(sep);
  return parts.length > 1 ? parts[0]! : parts[0]!.replace(/\.(ts|js)$/, '');
}

function sources(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) sources(p, out);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

interface Edge {
  from: string;
  to: string;
}

/** Every relative import, re-export and dynamic import of extproc's non-test modules. */
function importGraph(): Edge[] {
  const edges: Edge[] = [];
  for (const file of sources(root)) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const ref of info.importedFiles) {
      if (!ref.fileName.startsWith('.')) continue;
      edges.push({
        from: relative(root, file),
        to: relative(root, resolve(dirname(file), ref.fileName)),
      });
    }
  }
  return edges;
}

/** The imports that point up, as `from → to (layer a above b)`. */
function upwardImports(edges: readonly Edge[]): string[] {
  const bad: string[] = [];
  for (const { from, to } of edges) {
    if (to.startsWith('..')) continue; // outside extproc/: not this test's to judge
    const a = unitOf(from);
    const b = unitOf(to);
    const ra = rank.get(a);
    const rb = rank.get(b);
    if (ra === undefined || rb === undefined) {
      bad.push(`${from} → ${to}: place "${ra === undefined ? a : b}" in LAYERS`);
    } else if (rb > ra) {
      bad.push(`${from} → ${to} (${b} is above ${a})`);
    }
  }
  return bad;
}

/**
 * Import cycles among modules (Tarjan's strongly connected components), type-only imports
 * included: a cycle of types still ties two modules so neither can be read, moved or tested alone.
 */
function importCycles(edges: readonly Edge[]): string[][] {
  const graph = new Map<string, string[]>();
  for (const { from, to } of edges) {
    if (to.startsWith('..')) continue;
    const target = to.replace(/\.js$/, '.ts');
    graph.set(from, [...(graph.get(from) ?? []), target]);
    if (!graph.has(target)) graph.set(target, []);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) cycles.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

describe('extproc layers', () => {
  const edges = importGraph();

  it('reads the import graph (a parse that finds nothing would pass anything)', () => {
    assert.ok(edges.length > 200, `only ${edges.length} imports found`);
    assert.ok(edges.some((e) => e.from === join('pipeline', 'router.ts')));
  });

  it('has every import pointing down (or within a layer)', () => {
    assert.deepEqual(upwardImports(edges), []);
  });

  it('has no import cycle between modules, type-only imports included', () => {
    assert.deepEqual(importCycles(edges), []);
  });

  it('finds a cycle, also one made of type-only imports', () => {
    const b = join('governance', 'budget.ts');
    const j = join('governance', 'settlement-journal.ts');
    assert.deepEqual(
      importCycles([
        { from: b, to: join('governance', 'settlement-journal.js') },
        { from: j, to: join('governance', 'budget.js') },
        { from: b, to: join('governance', 'pricing.js') },
      ]),
      [[b, j]],
    );
  });

  it('keeps shared/ a floor: it imports nothing else of the repository', () => {
    const out = edges.filter((e) => unitOf(e.from) === 'shared' && unitOf(e.to) !== 'shared');
    assert.deepEqual(
      out.map((e) => `${e.from} → ${e.to}`),
      [],
    );
  });

  it('catches an upward import and an unplaced folder', () => {
    assert.deepEqual(
      upwardImports([
        { from: join('wire', 'messages.ts'), to: join('pipeline', 'phase.js') },
        { from: join('masking', 'engine.ts'), to: join('pipeline', 'masking.js') },
        { from: join('pipeline', 'router.ts'), to: join('wire', 'mutation.js') },
        { from: 'stream.ts', to: join('nowhere', 'x.js') },
      ]),
      [
        `${join('wire', 'messages.ts')} → ${join('pipeline', 'phase.js')} (pipeline is above wire)`,
        `${join('masking', 'engine.ts')} → ${join('pipeline', 'masking.js')} (pipeline is above masking)`,
        `stream.ts → ${join('nowhere', 'x.js')}: place "nowhere" in LAYERS`,
      ],
    );
  });
});
