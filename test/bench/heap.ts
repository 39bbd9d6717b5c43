/**
 * Issue 16's long-lived heap: which objects the extproc keeps alive with every feature on
 * (masking with every built-in detector, the prompt guard, budgets, the tokenizer), after
 * warm-up. Starts the extproc on the bench config, drives the plain, the masking + budget and
 * the every-feature routes for a few seconds, then asks its probe for a full collection
 * (process.memoryUsage after it, and VmRSS / VmHWM from /proc) and a heap snapshot, and prints
 * the snapshot's dominator tree (heap-snapshot.ts).
 *
 *   node --import tsx test/bench/heap.ts
 *   HEAP_SECONDS      warm-up per route (default 3)
 *   HEAP_MIN_MIB      smallest owner printed (default 1)
 *   HEAP_KEEP         keep the snapshot (its path is printed); removed otherwise
 *   BENCH_EXTPROC     the extproc entry (default operator/cli.ts; dist/operator/cli.js after build)
 *   BENCH_EXTPROC_FLAGS  node flags for the extproc besides the shipped ones, space-separated
 *
 * Per route it also measures what reaches the old generation at steady state: a window of
 * HEAP_SECONDS at concurrency 2 (two requests in flight at most, as Envoy's two connections at a
 * modest rate: so what survives is not a backlog of requests in flight) with the sampling heap
 * profiler counting only what outlived the young generation, and prints where that comes from.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { benchConfig, EVERYTHING_MODEL, POLICY_MODEL } from './config.js';
import { ExtProcClient } from '../../operator/envoy-sim/ext-proc/index.js';
import { chatPayload } from './payloads.js';
import { Child, freePort, httpStatus, peakRssKiB, rssKiB, waitReady } from './proc.js';
import { markProbe, probeGc, probeGet, runtimeFigures } from './probe-client.js';
import { allocTable } from './alloc-top.js';
import { withNodeFlags } from '../../extproc/workers/node-flags.js';
import { closedLoop, type Payload } from './scenarios.js';
import { heapReport } from './heap-snapshot.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const PROBE = fileURLToPath(new URL('./probe.ts', import.meta.url));
const MIB = 1024 * 1024;

function chat(model: string | undefined, pii: boolean): Payload {
  return chatPayload(2048, { model, pii });
}

/**
 * The probe as the extproc can load it: a compiled extproc (dist/…) runs without tsx, whose
 * loader alone holds tens of MiB, so it gets the probe as plain JavaScript (as bench.ts does).
 */
function probeModule(entry: string, dir: string): string {
  if (entry.endsWith('.ts')) return PROBE;
  const out = join(dir, 'probe.mjs');
  const js = ts.transpileModule(readFileSync(PROBE, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  writeFileSync(out, js);
  return out;
}

async function main(): Promise<void> {
  const seconds = Number(process.env.HEAP_SECONDS || 3);
  const minMiB = Number(process.env.HEAP_MIN_MIB || 1);
  const entry = resolve(ROOT, process.env.BENCH_EXTPROC || 'operator/cli.ts');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-heap-'));
  const configPath = join(dir, 'extproc.yaml');
  writeFileSync(configPath, benchConfig());
  const adminPort = await freePort();
  const sock = `unix:${join(dir, 'extproc.sock')}`;
  const probe = join(dir, 'extproc.probe.sock');
  const child = new Child(
    'extproc',
    entry,
    ['extproc', '--config', configPath, '--listen', sock, '--admin', `127.0.0.1:${adminPort}`],
    {
      cwd: ROOT,
      logPath: join(dir, 'extproc.log'),
      // What ships (extproc/workers/node-flags.ts), as the bench runs it.
      nodeFlags: withNodeFlags(process.env.BENCH_EXTPROC_FLAGS?.split(' ').filter(Boolean) ?? []),
      preload: [probeModule(entry, dir)],
      env: { BENCH_PROBE_SOCKET: probe },
    },
  );
  const client = new ExtProcClient(sock, {
    channelOptions: { 'grpc.enable_retries': 0, 'grpc.enable_channelz': 0 },
  });
  try {
    await waitReady(
      child,
      async () => (await httpStatus(`http://127.0.0.1:${adminPort}/readyz`)) === 200,
    );
    const mem = async (what: string): Promise<void> => {
      const m = await probeGc(probe);
      console.log(
        `${what.padEnd(34)} RSS ${(rssKiB(child.pid) / 1024).toFixed(1)} MiB (peak ${(peakRssKiB(child.pid) / 1024).toFixed(1)}); after a full GC: V8 heap ${(m.heapUsed / MIB).toFixed(1)} MiB used of ${(m.heapTotal / MIB).toFixed(1)}, external ${(m.external / MIB).toFixed(1)} (Buffers ${(m.arrayBuffers / MIB).toFixed(1)})`,
      );
    };
    await mem('ready (no request yet)');
    const promoted: [string, string][] = [];
    const survivors = async (p: Payload, what: string): Promise<string> => {
      const file = join(dir, `${what.replace(/\W+/g, '-')}.heapprofile`);
      await probeGet(probe, '/alloc/start?survivors=1');
      const begin = await markProbe(probe);
      const r = await closedLoop(target, p, 2, seconds);
      const end = await markProbe(probe);
      await probeGet(probe, `/alloc/stop?file=${encodeURIComponent(file)}`);
      const rt = runtimeFigures(begin, end, r.requests);
      return [
        `${r.requests} requests at concurrency 2: ${rt.scavenges} scavenges, ${rt.marks} mark-compacts, allocated ${rt.allocKiBPerReq.toFixed(1)} KiB/req, promoted ${rt.promotedKiBPerReq.toFixed(2)} KiB/req (${rt.promotedKiBPerScavenge.toFixed(0)} KiB per scavenge)`,
        'where what outlived the young generation was allocated (sampled):',
        allocTable(file, ROOT, 20),
      ].join('\n');
    };
    await client.connect();
    const target = { name: 'sluice' as const, client, streamedFromStart: false };
    for (const [what, p] of [
      ['plain route (chat-2k)', chat(undefined, false)],
      ['masking + budget (chat-2k-policy)', chat(POLICY_MODEL, true)],
      ['every feature on', chat(EVERYTHING_MODEL, true)],
    ] as const) {
      const r = await closedLoop(target, p, 8, seconds);
      if (r.rec.errors > 0) {
        throw new Error(`${what}: ${r.rec.errors} failed exchanges: ${r.rec.firstError}`);
      }
      await mem(`after ${r.requests} × ${what}`);
      promoted.push([what, await survivors(p, what)]);
    }
    for (const [what, report] of promoted) console.log(`\n${what}: ${report}`);
    const file = join(dir, 'extproc.heapsnapshot');
    // A snapshot of ~100 MiB takes tens of seconds to write on a busy machine.
    await probeGet(probe, `/heap?file=${encodeURIComponent(file)}`, 300_000);
    console.log();
    console.log(heapReport(file, minMiB * MIB));
    if (process.env.HEAP_KEEP) console.log(`\nkept ${file}`);
  } finally {
    client.close();
    await child.stop();
    if (!process.env.HEAP_KEEP) rmSync(dir, { recursive: true, force: true });
  }
}

await main();
