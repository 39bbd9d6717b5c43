/** Reads a V8 .cpuprofile (node --cpu-prof) and lists the functions with the most self time. */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { table } from './stats.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface HotSpot {
  where: string;
  fn: string;
  selfMs: number;
  /** Of the busy time (idle, program and GC included in the whole, idle excluded). */
  share: number;
}

/**
 * Self time per function, skipping the first `skipMs` of the profile (start-up and module
 * loading would otherwise dominate a short run). Line numbers are of the code V8 ran: for
 * tsx-transformed sources they are not the .ts lines, for tsc output (dist/) nearly so.
 */
export function hotSpots(path: string, root: string, top = 20, skipMs = 0): HotSpot[] {
  const p = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const nodes = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let t = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    t += dt;
    if (t < skipMs * 1000) continue;
    const id = p.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  }
  const byFrame = new Map<string, HotSpot>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = nodes.get(id)!.callFrame;
    if (functionName === '(idle)') continue;
    busyUs += us;
    const file = url.startsWith('file://') ? relative(root, fileURLToPath(url)) : url || '(native)';
    const where = `${file}:${lineNumber + 1}`;
    const key = `${where} ${functionName}`;
    const h = byFrame.get(key) ?? { where, fn: functionName || '(anonymous)', selfMs: 0, share: 0 };
    h.selfMs += us / 1000;
    byFrame.set(key, h);
  }
  const all = [...byFrame.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, top);
  for (const h of all) h.share = busyUs > 0 ? (h.selfMs * 1000) / busyUs : 0;
  return all;
}

/** hotSpots as a table. */
export function hotSpotTable(path: string, root: string, top = 30, skipMs = 0): string {
  return table(
    ['where', 'function', 'self ms', 'share'],
    hotSpots(path, root, top, skipMs).map((h) => [
      h.where,
      h.fn,
      h.selfMs.toFixed(0),
      `${(h.share * 100).toFixed(1)}%`,
    ]),
    'llrr',
  );
}
