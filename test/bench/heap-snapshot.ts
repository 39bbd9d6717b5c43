/**
 * What a V8 heap snapshot (v8.writeHeapSnapshot) keeps alive, without DevTools: each object's
 * retained size (what a collection would free if it went), from the dominator tree, and the
 * tree itself pruned to the big owners. Used by test/bench/heap.ts on the extproc after warm-up.
 *
 * Dominators are computed with Cooper, Harvey and Kennedy's iterative algorithm ("A Simple, Fast
 * Dominance Algorithm") over the graph from the snapshot's synthetic root; weak edges hold
 * nothing and are skipped, as DevTools does.
 */
import { readFileSync } from 'node:fs';

interface RawSnapshot {
  snapshot: {
    meta: {
      node_fields: string[];
      node_types: [string[], ...unknown[]];
      edge_fields: string[];
      edge_types: [string[], ...unknown[]];
    };
  };
  nodes: number[];
  edges: number[];
  strings: string[];
}

export interface HeapGraph {
  count: number;
  /** Per node: its type (object, closure, string, array, ...), name, self size. */
  type: string[];
  name: string[];
  selfSize: Float64Array;
  /** Edges of node i: [firstEdge[i], firstEdge[i + 1]); target node, name, weak. */
  firstEdge: Uint32Array;
  edgeTo: Uint32Array;
  edgeName: string[];
  edgeWeak: Uint8Array;
}

/** Reads the snapshot's flat arrays into per-node and per-edge columns (node 0 is the root). */
export function parseSnapshot(json: string): HeapGraph {
  const raw = JSON.parse(json) as RawSnapshot;
  const m = raw.snapshot.meta;
  const nf = m.node_fields.length;
  const ef = m.edge_fields.length;
  const f = (fields: string[], name: string): number => {
    const i = fields.indexOf(name);
    if (i < 0) throw new Error(`heap snapshot: no ${name} field`);
    return i;
  };
  const [nType, nName, nSelf, nEdges] = ['type', 'name', 'self_size', 'edge_count'].map((x) =>
    f(m.node_fields, x),
  ) as [number, number, number, number];
  const [eType, eName, eTo] = ['type', 'name_or_index', 'to_node'].map((x) =>
    f(m.edge_fields, x),
  ) as [number, number, number];
  const nodeTypes = m.node_types[0];
  const edgeTypes = m.edge_types[0];
  const count = raw.nodes.length / nf;
  const edgeCount = raw.edges.length / ef;
  const g: HeapGraph = {
    count,
    type: new Array<string>(count),
    name: new Array<string>(count),
    selfSize: new Float64Array(count),
    firstEdge: new Uint32Array(count + 1),
    edgeTo: new Uint32Array(edgeCount),
    edgeName: new Array<string>(edgeCount),
    edgeWeak: new Uint8Array(edgeCount),
  };
  let e = 0;
  for (let i = 0; i < count; i++) {
    const o = i * nf;
    g.type[i] = nodeTypes[raw.nodes[o + nType]!] ?? '?';
    g.name[i] = raw.strings[raw.nodes[o + nName]!] ?? '';
    g.selfSize[i] = raw.nodes[o + nSelf]!;
    g.firstEdge[i] = e;
    e += raw.nodes[o + nEdges]!;
  }
  g.firstEdge[count] = e;
  for (let j = 0; j < edgeCount; j++) {
    const o = j * ef;
    const t = edgeTypes[raw.edges[o + eType]!] ?? '';
    const n = raw.edges[o + eName]!;
    // element and hidden edges name an index, the others a string.
    g.edgeName[j] = t === 'element' || t === 'hidden' ? `[${n}]` : (raw.strings[n] ?? '');
    g.edgeTo[j] = raw.edges[o + eTo]! / nf;
    g.edgeWeak[j] = t === 'weak' ? 1 : 0;
  }
  return g;
}

export interface Dominators {
  /** Immediate dominator of each node (the root's is itself); -1 when unreachable. */
  idom: Int32Array;
  retained: Float64Array;
  /** The name of the edge a depth-first walk from the root first reached each node by. */
  via: string[];
}

/** The dominator tree and retained sizes, from node 0 over strong edges. */
export function dominators(g: HeapGraph): Dominators {
  const n = g.count;
  const post = new Int32Array(n).fill(-1); // node -> postorder number
  const order = new Int32Array(n); // postorder number -> node
  const via = new Array<string>(n).fill('');
  // Iterative depth-first walk: a stack of nodes and the next edge to follow from each.
  const seen = new Uint8Array(n);
  const stack = new Int32Array(n);
  const nextEdge = new Uint32Array(n);
  let sp = 0;
  let reached = 0;
  stack[sp++] = 0;
  seen[0] = 1;
  nextEdge[0] = g.firstEdge[0]!;
  while (sp > 0) {
    const v = stack[sp - 1]!;
    const end = g.firstEdge[v + 1]!;
    let pushed = false;
    while (nextEdge[v]! < end) {
      const e = nextEdge[v]!++;
      if (g.edgeWeak[e]) continue;
      const w = g.edgeTo[e]!;
      if (seen[w]) continue;
      seen[w] = 1;
      via[w] = g.edgeName[e]!;
      nextEdge[w] = g.firstEdge[w]!;
      stack[sp++] = w;
      pushed = true;
      break;
    }
    if (!pushed) {
      sp--;
      post[v] = reached;
      order[reached++] = v;
    }
  }
  // Predecessors of every reached node, in postorder numbers (CSR).
  const predStart = new Uint32Array(reached + 1);
  for (let v = 0; v < n; v++) {
    if (post[v]! < 0) continue;
    for (let e = g.firstEdge[v]!; e < g.firstEdge[v + 1]!; e++) {
      if (!g.edgeWeak[e] && post[g.edgeTo[e]!]! >= 0) predStart[post[g.edgeTo[e]!]! + 1]!++;
    }
  }
  for (let i = 0; i < reached; i++) predStart[i + 1]! += predStart[i]!;
  const preds = new Int32Array(predStart[reached]!);
  const fill = predStart.slice(0, reached);
  for (let v = 0; v < n; v++) {
    const pv = post[v]!;
    if (pv < 0) continue;
    for (let e = g.firstEdge[v]!; e < g.firstEdge[v + 1]!; e++) {
      const pw = post[g.edgeTo[e]!]!;
      if (!g.edgeWeak[e] && pw >= 0) preds[fill[pw]!++] = pv;
    }
  }
  const root = reached - 1;
  const dom = new Int32Array(reached).fill(-1);
  dom[root] = root;
  for (let changed = true; changed;) {
    changed = false;
    for (let b = root - 1; b >= 0; b--) {
      let d = -1;
      for (let k = predStart[b]!; k < predStart[b + 1]!; k++) {
        const p = preds[k]!;
        if (dom[p]! < 0) continue;
        if (d < 0) {
          d = p;
          continue;
        }
        let x = p;
        let y = d;
        while (x !== y) {
          while (x < y) x = dom[x]!;
          while (y < x) y = dom[y]!;
        }
        d = x;
      }
      if (d >= 0 && dom[b] !== d) {
        dom[b] = d;
        changed = true;
      }
    }
  }
  const idom = new Int32Array(n).fill(-1);
  const retained = new Float64Array(n);
  const acc = new Float64Array(reached);
  for (let i = 0; i < reached; i++) acc[i] = g.selfSize[order[i]!]!;
  // A node's dominator comes later in postorder: children are summed before their parent.
  for (let i = 0; i < root; i++) if (dom[i]! >= 0) acc[dom[i]!]! += acc[i]!;
  for (let i = 0; i < reached; i++) {
    idom[order[i]!] = order[dom[i]!]!;
    retained[order[i]!] = acc[i]!;
  }
  return { idom, retained, via };
}

const MIB = 1024 * 1024;
const mib = (b: number): string => (b / MIB).toFixed(1);

function label(g: HeapGraph, d: Dominators, v: number): string {
  const name = g.name[v]!.replace(/\s+/g, ' ').slice(0, 60);
  const edge = d.via[v] ? `${d.via[v].slice(0, 40)}: ` : '';
  return `${edge}${g.type[v]} ${name}`.trim();
}

/**
 * The dominator tree from the root, only nodes retaining at least `minBytes`; a chain where one
 * child holds nearly all of its parent is printed on one line (a › b › c), so each line is an
 * owner whose memory is its own or spread over its children.
 */
export function retainerTree(g: HeapGraph, d: Dominators, minBytes = MIB, maxDepth = 12): string {
  const children = new Map<number, number[]>();
  for (let v = 1; v < g.count; v++) {
    const p = d.idom[v]!;
    if (p < 0 || d.retained[v]! < minBytes) continue;
    let list = children.get(p);
    if (!list) children.set(p, (list = []));
    list.push(v);
  }
  for (const list of children.values()) list.sort((a, b) => d.retained[b]! - d.retained[a]!);
  const lines: string[] = [];
  const walk = (v: number, depth: number): void => {
    const chain = [label(g, d, v)];
    let at = v;
    for (;;) {
      const kids = children.get(at) ?? [];
      if (kids.length !== 1 || d.retained[kids[0]!]! < 0.9 * d.retained[at]!) break;
      at = kids[0]!;
      chain.push(label(g, d, at));
    }
    const shown = chain.length > 4 ? [...chain.slice(0, 2), '…', ...chain.slice(-2)] : chain;
    lines.push(`${mib(d.retained[v]!).padStart(7)} MiB  ${'  '.repeat(depth)}${shown.join(' › ')}`);
    if (depth >= maxDepth) return;
    for (const k of children.get(at) ?? []) walk(k, depth + 1);
  };
  for (const k of children.get(0) ?? []) walk(k, 0);
  return lines.join('\n');
}

/** Self sizes summed per node type and name (DevTools' "Summary"), the biggest first. */
export function byConstructor(g: HeapGraph, d: Dominators, top = 20): [string, number, number][] {
  const sums = new Map<string, [number, number]>();
  for (let v = 0; v < g.count; v++) {
    if (d.idom[v]! < 0) continue;
    const t = g.type[v]!;
    const key = t === 'object' || t === 'closure' ? `${t} ${g.name[v]!.slice(0, 50)}` : `(${t})`;
    const s = sums.get(key) ?? [0, 0];
    s[0] += g.selfSize[v]!;
    s[1]++;
    sums.set(key, s);
  }
  return [...sums.entries()]
    .map(([k, [bytes, n]]): [string, number, number] => [k, bytes, n])
    .sort((a, b) => b[1] - a[1])
    .slice(0, top);
}

/** Reads a .heapsnapshot file and prints its total, the retainer tree and the summary. */
export function heapReport(file: string, minBytes = MIB): string {
  const g = parseSnapshot(readFileSync(file, 'utf8'));
  const d = dominators(g);
  const out = [
    `heap snapshot ${file}: ${g.count} nodes, ${mib(d.retained[0]!)} MiB reachable`,
    '',
    `dominator tree, owners retaining ≥ ${mib(minBytes)} MiB (edge: type name; a › b: b holds ≥ 90% of a)`,
    retainerTree(g, d, minBytes),
    '',
    'self size by type (DevTools "Summary")',
    ...byConstructor(g, d).map(
      ([k, bytes, n]) => `${mib(bytes).padStart(7)} MiB  ${String(n).padStart(8)}  ${k}`,
    ),
  ];
  return out.join('\n');
}
