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
 *   BENCH_SHIPPED_FLAGS=0  without the shipped environment (EXTPROC_ENV: malloc settings)
 *   HEAP_ENV          more environment for the extproc, space-separated NAME=value (wins)
 *   HEAP_ARGS         more extproc arguments, space-separated (e.g. --log-level warn: no access log)
 *   HEAP_PHASES       instead of the above: exchange kinds driven one after another in this fresh
 *                     extproc, each as kind:concurrency:seconds (kinds: chat-2k, router, policy,
 *                     every, chat-100k, sse-200), printing after each, past a full collection,
 *                     where its RSS is (proc.ts rssParts: malloc's brk heap and thread arenas,
 *                     other anonymous memory, files), its CPU time and page faults per request:
 *                     which exchange leaves what behind, and at the end the same once the client
 *                     has closed its connection. E.g. HEAP_PHASES=chat-100k:32:5,every:16:4
 *   HEAP_INTAKE       instead of the above: what each of these exchange kinds (as HEAP_PHASES names
 *                     them, e.g. HEAP_INTAKE=chat-2k,policy) puts into the old generation directly,
 *                     not by promotion: the extproc runs with semi-spaces too big to fill in a
 *                     window and a large growth factor (INTAKE_FLAGS; BENCH_EXTPROC_FLAGS still
 *                     win), and in windows at concurrency 2, one after another with no forced
 *                     collection between, the old and code spaces' growth per request is printed
 *                     for each window that ran no collection (a promoted Map's table, code, maps,
 *                     internalized strings), and their median. HEAP_INTAKE_WINDOWS per kind
 *                     (default 8), HEAP_INTAKE_SECONDS each (default 2).
 *
 * Per route it also measures what reaches the old generation at steady state: a window of
 * HEAP_SECONDS at concurrency 2 (two requests in flight at most, as Envoy's two connections at a
 * modest rate: so what survives is not a backlog of requests in flight) with the sampling heap
 * profiler counting only what outlived the young generation, and prints where that comes from.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchConfig, EVERYTHING_MODEL, POLICY_MODEL } from './config.js';
import { ExtProcClient } from '../../operator/envoy-sim/ext-proc/index.js';
import {
  chatPayload,
  chatRequestBody,
  requestHeaders,
  sseChunks,
  sseResponseHeaders,
} from './payloads.js';
import {
  Child,
  cpuMs,
  envAssignments,
  freePort,
  httpStatus,
  minorFaults,
  peakRssKiB,
  preloadedLibrary,
  rssKiB,
  rssParts,
  waitReady,
} from './proc.js';
import {
  markProbe,
  probeGc,
  probeGet,
  probeModule,
  runtimeFigures,
  type ProbeMark,
} from './probe-client.js';
import { allocTable } from './alloc-top.js';
import { EXTPROC_ENV, withNodeFlags } from '../../extproc/workers/node-flags.js';
import { closedLoop, type Payload, type Target } from './scenarios.js';
import { heapReport } from './heap-snapshot.js';
import { median, table } from './stats.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const MIB = 1024 * 1024;

function chat(model: string | undefined, pii: boolean): Payload {
  return chatPayload(2048, { model, pii });
}

/** The exchange kinds HEAP_PHASES names. */
function exchange(kind: string): Payload {
  switch (kind) {
    case 'chat-2k':
      return chatPayload(2048, {}, true);
    case 'router':
      return chatPayload(2048, {}, false);
    case 'policy':
      return chatPayload(2048, { model: POLICY_MODEL, pii: true }, true);
    case 'every':
      return chatPayload(2048, { model: EVERYTHING_MODEL, pii: true }, true);
    case 'chat-100k':
      return chatPayload(100 * 1024, {}, true);
    case 'sse-200': {
      const body = chatRequestBody(2048, { stream: true });
      return {
        reqHeaders: requestHeaders(body),
        reqBody: body,
        resHeaders: sseResponseHeaders(),
        resChunks: sseChunks(200),
        sse: true,
        upstream: true,
      };
    }
    default:
      throw new Error(`HEAP_PHASES: no exchange kind '${kind}'`);
  }
}

/**
 * HEAP_INTAKE's node flags: 128 MiB semi-spaces hold ~2,500 requests of 50 KiB, so most 2-s
 * windows at concurrency 2 run no scavenge; V8 starts incremental marking once the old generation's
 * headroom is below the young generation's capacity, which a growth factor of 4 keeps above it.
 */
const INTAKE_FLAGS = [
  '--min-semi-space-size=128',
  '--max-semi-space-size=128',
  '--heap-growing-percent=300',
];

/** HEAP_INTAKE: per kind, old- and code-space growth per request in windows without a collection. */
async function intake(spec: string, target: Target, probe: string): Promise<void> {
  const windows = Number(process.env.HEAP_INTAKE_WINDOWS || 8);
  const seconds = Number(process.env.HEAP_INTAKE_SECONDS || 2);
  const used = (m: ProbeMark, space: string): number =>
    m.spaces.find((s) => s.name === space)?.usedBytes ?? 0;
  for (const kind of spec.split(',')) {
    const p = exchange(kind);
    await closedLoop(target, p, 2, 3);
    await probeGc(probe);
    const rows: string[][] = [];
    // Old space is counted as V8 hands out allocation buffers, so one window's figure is coarse:
    // the median of the clean windows after the first (which re-optimizes after the forced GC).
    const clean: number[] = [];
    let end = await markProbe(probe);
    for (let w = 0; w < windows; w++) {
      const begin = end;
      const r = await closedLoop(target, p, 2, seconds);
      end = await markProbe(probe);
      const collections = end.gc.scavenges - begin.gc.scavenges + end.gc.marks - begin.gc.marks;
      const per = (space: string): number => (used(end, space) - used(begin, space)) / r.requests;
      if (collections === 0 && w > 0) clean.push(per('old_space'));
      rows.push([
        kind,
        String(w + 1),
        String(r.requests),
        String(collections),
        collections === 0 ? per('old_space').toFixed(0) : '-',
        collections === 0 ? per('code_space').toFixed(0) : '-',
      ]);
    }
    console.log(
      table(['exchange', 'window', 'requests', 'collections', 'old B/req', 'code B/req'], rows),
    );
    console.log(
      `${kind}: ${clean.length > 0 ? `${median(clean).toFixed(0)} B/req` : 'no window'} into the old generation directly (median of ${clean.length} clean windows after the first)\n`,
    );
  }
}

/** HEAP_PHASES: each kind in turn, and where the extproc's RSS is after it (MiB). */
async function phases(spec: string, target: Target, pid: number, probe: string): Promise<void> {
  for (const phase of spec.split(',')) {
    const [kind = '', conc = '8', secs = '4'] = phase.split(':');
    const p = exchange(kind);
    const cpu = cpuMs(pid);
    const faults = minorFaults(pid);
    const r = await closedLoop(target, p, Number(conc), Number(secs));
    if (r.rec.errors > 0) throw new Error(`${kind}: ${r.rec.errors} failed: ${r.rec.firstError}`);
    const perReq = (x: number): string => (x / r.requests).toFixed(1);
    const m = await probeGc(probe);
    const parts = rssParts(pid);
    const mib = (kib: number): string => (kib / 1024).toFixed(0);
    console.log(
      `${`${kind} × ${r.requests} at concurrency ${conc}`.padEnd(38)} ${perReq((cpuMs(pid) - cpu) * 1000)} µs CPU, ${perReq(minorFaults(pid) - faults)} page faults /req; ` +
        (parts
          ? `RSS ${mib(parts.rssKiB)}: brk ${mib(parts.brkKiB)}, thread arenas ${mib(parts.arenaKiB)}, other anon ${mib(parts.anonKiB - parts.brkKiB - parts.arenaKiB)}, files ${mib(parts.fileKiB)}; `
          : '') +
        `after a full GC V8 heap ${(m.heapUsed / MIB).toFixed(0)} used of ${(m.heapTotal / MIB).toFixed(0)}, external ${(m.external / MIB).toFixed(0)} (Buffers ${(m.arrayBuffers / MIB).toFixed(0)})`,
    );
  }
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
    [
      'extproc',
      '--config',
      configPath,
      '--listen',
      sock,
      '--admin',
      `127.0.0.1:${adminPort}`,
      ...(process.env.HEAP_ARGS?.split(' ').filter(Boolean) ?? []),
    ],
    {
      cwd: ROOT,
      logPath: join(dir, 'extproc.log'),
      // What ships (extproc/workers/node-flags.ts), as the bench runs it.
      nodeFlags: withNodeFlags([
        ...(process.env.HEAP_INTAKE ? INTAKE_FLAGS : []),
        ...(process.env.BENCH_EXTPROC_FLAGS?.split(' ').filter(Boolean) ?? []),
      ]),
      preload: [probeModule(entry, dir)],
      // The shipped environment too (malloc's settings), as the bench runs it.
      env: {
        ...(process.env.BENCH_SHIPPED_FLAGS !== '0' && EXTPROC_ENV),
        ...envAssignments(process.env.HEAP_ENV, 'HEAP_ENV'),
        BENCH_PROBE_SOCKET: probe,
      },
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
    // Under mimalloc, rssParts' "thread arenas" are its segments: reservations committed in part,
    // which is how glibc's thread arenas look too.
    console.log(`malloc: ${preloadedLibrary(child.pid) ?? "glibc's"}`);
    await mem('ready (no request yet)');
    if (process.env.HEAP_INTAKE) {
      await client.connect();
      await intake(
        process.env.HEAP_INTAKE,
        { name: 'sluice', client, streamedFromStart: false },
        probe,
      );
      return;
    }
    if (process.env.HEAP_PHASES) {
      await client.connect();
      await phases(
        process.env.HEAP_PHASES,
        { name: 'sluice', client, streamedFromStart: false },
        child.pid,
        probe,
      );
      // What the connection itself held (node:http2's session, its streams' leftovers): the same
      // figures once the client has closed it.
      client.close();
      await new Promise((r) => setTimeout(r, 500));
      await mem('after the client closed its connection');
      return;
    }
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
