/**
 * Operator figures for `npm run bench` (DESIGN §7): 2,000 AIRoutes with policies translate in
 * < 1 s; a changed resource reaches an ACKing data plane in < 1 s p99; operator memory with 2,000
 * routes. Run as its own process so its peak RSS is the operator's work alone:
 * `tsx test/bench/operator.ts` prints one JSON line.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { compile } from '../../operator/compile/index.js';
import { measurePropagation } from '../../operator/xds/testing/propagation.js';
import { syntheticResources } from '../golden/synthetic.js';

export interface OperatorFigures {
  routes: number;
  translateMs: number[];
  rssBeforeMiB: number;
  peakRssMiB: number;
  propagation: { changes: number; clusters: number; p50: number; p99: number; max: number };
}

function vmHwmMiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / 1024 / 1024;
}

export async function measureOperator(routes = 2000): Promise<OperatorFigures> {
  const rssBeforeMiB = process.memoryUsage().rss / 1024 / 1024;
  const resources = syntheticResources(routes);
  const translateMs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const t = compile(resources, { version: `bench-${i}` });
    translateMs.push(performance.now() - t0);
    if (t.statuses.length === 0) throw new Error('compilation produced no statuses');
  }
  const p = await measurePropagation({ changes: 200, clusters: routes });
  return {
    routes,
    translateMs,
    rssBeforeMiB,
    peakRssMiB: vmHwmMiB(),
    propagation: { changes: p.changes, clusters: p.clusters, p50: p.p50, p99: p.p99, max: p.max },
  };
}

if (process.argv[1]?.endsWith('operator.ts')) {
  const figures = await measureOperator(Number(process.env.BENCH_ROUTES ?? 2000));
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}
