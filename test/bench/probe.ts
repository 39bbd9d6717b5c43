/**
 * Preloaded into a benchmarked server (`node --import tsx --import ./test/bench/probe.ts ...`,
 * with BENCH_PROBE_SOCKET=/path set): what the server's own runtime did over a measured window,
 * which /proc cannot tell — bytes allocated on the V8 heap, garbage collections and their pauses,
 * event-loop delay. The bench (or the Go load generator, -probe) marks the window's start and
 * end with `GET /mark` on that unix socket; each mark answers the counters since the process
 * started plus the maxima since the previous mark, and resets those maxima.
 *
 * Allocation is counted exactly from V8's own figures: what the heap grew between two marks
 * plus what every collection in between freed (v8.GCProfiler gives each collection's heap use
 * before and after, and its cost, the main thread's pause, in µs). ArrayBuffer backing stores
 * (Buffers) live outside the V8 heap and are reported apart, as the external/arrayBuffers size.
 *
 * `GET /alloc/start` and `GET /alloc/stop?file=/path.heapprofile` run V8's sampling heap
 * profiler over a window with collected objects included: where the allocation comes from
 * (BENCH_ALLOC_PROFILE; alloc-top.ts sums it per function).
 *
 * `GET /gc` runs a full collection and answers process.memoryUsage() after it: the long-lived
 * heap, apart from young-generation garbage. `GET /heap?file=/path.heapsnapshot` writes a heap
 * snapshot (test/bench/heap.ts reads it).
 */
import { createServer } from 'node:http';
import { unlinkSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { ProbeMark } from './probe-client.js';

interface GcStat {
  gcType: string;
  cost: number;
  beforeGC: { heapStatistics: { usedHeapSize: number } };
  afterGC: { heapStatistics: { usedHeapSize: number } };
}

const socketPath = process.env.BENCH_PROBE_SOCKET;
// Not for the processes this one starts (they inherit its environment and its --import flags: the
// PERSON name lists are built in a child): one taking over the socket would unlink it on exit.
delete process.env.BENCH_PROBE_SOCKET;
if (socketPath) start(socketPath);

/** A full, compacting collection without --expose-gc on the server's command line. */
let gcFn: (() => void) | undefined;
function fullGc(): void {
  if (!gcFn) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  gcFn();
}

function start(path: string): void {
  let profiler = new v8.GCProfiler();
  profiler.start();
  let lastUsed = v8.getHeapStatistics().used_heap_size;
  let allocated = 0;
  const gc = { scavenges: 0, marks: 0, other: 0, pauseMs: 0 };
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();

  const mark = (): ProbeMark => {
    const data = profiler.stop() as { statistics?: GcStat[] } | undefined;
    profiler = new v8.GCProfiler();
    profiler.start();
    let maxPauseMs = 0;
    let maxPauseKind = '';
    for (const s of data?.statistics ?? []) {
      allocated += s.beforeGC.heapStatistics.usedHeapSize - lastUsed;
      lastUsed = s.afterGC.heapStatistics.usedHeapSize;
      const ms = s.cost / 1000;
      gc.pauseMs += ms;
      if (s.gcType === 'Scavenge' || s.gcType === 'MinorMarkSweep') gc.scavenges++;
      else if (s.gcType === 'MarkSweepCompact') gc.marks++;
      else gc.other++;
      if (ms > maxPauseMs) {
        maxPauseMs = ms;
        maxPauseKind = s.gcType;
      }
    }
    const used = v8.getHeapStatistics().used_heap_size;
    allocated += used - lastUsed;
    lastUsed = used;
    const ns = (x: number): number => (Number.isFinite(x) ? x / 1e6 : 0);
    const over = (x: number): number => Math.max(0, ns(x) - 10);
    const loopDelay = {
      p50: over(loop.percentile(50)),
      p99: over(loop.percentile(99)),
      max: over(loop.max),
    };
    loop.reset();
    const mem = process.memoryUsage();
    const old = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space');
    return {
      atMs: Number(process.hrtime.bigint()) / 1e6,
      allocatedBytes: allocated,
      gc: { ...gc },
      maxPauseMs,
      maxPauseKind,
      loopDelay,
      heapUsedBytes: mem.heapUsed,
      oldSpaceUsedBytes: old?.space_used_size ?? Number.NaN,
      externalBytes: mem.external,
      arrayBuffersBytes: mem.arrayBuffers,
      rssBytes: mem.rss,
    };
  };

  try {
    unlinkSync(path);
  } catch {
    // nothing left over
  }
  let session: Session | undefined;
  const post = (method: string, params: object = {}): Promise<unknown> =>
    new Promise((resolve, reject) => {
      session ??= new Session();
      if (method === 'HeapProfiler.enable') session.connect();
      session.post(method, params, (err, result) => (err ? reject(err) : resolve(result)));
    });
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://probe');
    const done = (p: Promise<unknown>): void => {
      p.then(
        () => res.writeHead(200).end(),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    };
    if (url.pathname === '/mark') {
      const body = JSON.stringify(mark());
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    } else if (url.pathname === '/gc') {
      fullGc();
      const body = JSON.stringify(process.memoryUsage());
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    } else if (url.pathname === '/heap' && url.searchParams.get('file')) {
      fullGc();
      v8.writeHeapSnapshot(url.searchParams.get('file')!);
      res.writeHead(200).end();
    } else if (url.pathname === '/alloc/start') {
      done(
        post('HeapProfiler.enable').then(() =>
          post('HeapProfiler.startSampling', {
            samplingInterval: 16384,
            includeObjectsCollectedByMajorGC: true,
            includeObjectsCollectedByMinorGC: true,
          }),
        ),
      );
    } else if (url.pathname === '/alloc/stop' && url.searchParams.get('file')) {
      const file = url.searchParams.get('file')!;
      done(
        post('HeapProfiler.stopSampling').then((r) => {
          writeFileSync(file, JSON.stringify((r as { profile: unknown }).profile));
          session?.disconnect();
          session = undefined;
        }),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  server.on('error', (err) => process.stderr.write(`bench probe: ${err.message}\n`));
  server.listen(path);
  // The probe must not keep a server alive that is asked to stop.
  server.unref();
}
