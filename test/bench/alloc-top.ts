/**
 * Reads a V8 sampling heap profile (probe.ts /alloc/stop, collected objects included) and lists
 * the functions that allocated the most, by self size: where the bytes per request come from.
 *
 *   node --import tsx test/bench/alloc-top.ts file.heapprofile [top=30]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { relative } from 'node:path';
import { table } from './stats.js';

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

export interface AllocSite {
  where: string;
  fn: string;
  bytes: number;
  share: number;
}

export function allocSites(path: string, root: string, top = 30): AllocSite[] {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as { head: HeapNode };
  const by = new Map<string, AllocSite>();
  let total = 0;
  const walk = (n: HeapNode): void => {
    const { functionName, url } = n.callFrame;
    if (n.selfSize > 0) {
      total += n.selfSize;
      const file = url.startsWith('file://')
        ? relative(root, fileURLToPath(url))
        : url || '(native)';
      const key = `${file} ${functionName}`;
      const s = by.get(key) ?? {
        where: file,
        fn: functionName || '(anonymous)',
        bytes: 0,
        share: 0,
      };
      s.bytes += n.selfSize;
      by.set(key, s);
    }
    for (const c of n.children) walk(c);
  };
  walk(profile.head);
  const all = [...by.values()].sort((a, b) => b.bytes - a.bytes).slice(0, top);
  for (const s of all) s.share = total > 0 ? s.bytes / total : 0;
  return all;
}

export function allocTable(path: string, root: string, top = 30): string {
  return table(
    ['where', 'function', 'sampled MiB', 'share'],
    allocSites(path, root, top).map((s) => [
      s.where,
      s.fn,
      (s.bytes / 1024 / 1024).toFixed(1),
      `${(s.share * 100).toFixed(1)}%`,
    ]),
    'llrr',
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [file, top] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: alloc-top.ts file.heapprofile [top]\n');
    process.exit(2);
  }
  const root = fileURLToPath(new URL('../..', import.meta.url));
  process.stdout.write(`${allocTable(file, root, Number(top) || 30)}\n`);
}
