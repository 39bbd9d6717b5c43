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
 * (BENCH_ALLOC_PROFILE; alloc-top.ts sums it per function). `/alloc/start?survivors=1` leaves
 * out what young collections freed: where what is promoted to the old generation comes from.
 * `GET /cpu/start` and `GET /cpu/stop?file=/path.cpuprofile` run V8's CPU profiler (200-µs samples)
 * over a window (BENCH_CPU_PROFILE; profile-top.ts lists the hot spots).
 *
 * `GET /gc` runs a full collection and answers process.memoryUsage() after it: the long-lived
 * heap, apart from young-generation garbage. The probe's own collections (/gc, /heap) are
 * counted apart (gc.forced) and never as a window's collection or pause, whenever they run.
 * Under --trace-gc* each mark writes a line to stderr, so the trace splits into windows. `GET /heap?file=/path.heapsnapshot` writes a heap
 * snapshot (test/bench/heap.ts reads it).
 */
import { createServer } from 'node:http';
import { unlinkSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { GcEvent, ProbeMark } from './probe-client.js';

const MIB = 1024 * 1024;
/** Collections listed per window at most (the counters count them all). */
const MAX_EVENTS = 2000;
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

interface GcHeap {
  heapStatistics: { usedHeapSize: number };
  heapSpaceStatistics: { spaceName: string; spaceUsedSize: number }[];
}
interface GcStat {
  gcType: string;
  /** The main thread's pause, µs. */
  cost: number;
  beforeGC: GcHeap;
  afterGC: GcHeap;
}

/** The old generation's use (old and large-object spaces): what a scavenge promoted grows it. */
function oldGeneration(h: GcHeap): number {
  let sum = 0;
  for (const s of h.heapSpaceStatistics) {
    if (s.spaceName === 'old_space' || s.spaceName === 'large_object_space') sum += s.spaceUsedSize;
  }
  return sum;
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
  const gc = { scavenges: 0, marks: 0, other: 0, pauseMs: 0, forced: 0, promotedBytes: 0 };
  // Since the previous mark: the longest pause, and every collection in order.
  let maxPauseMs = 0;
  let maxPauseKind = '';
  let events: GcEvent[] = [];
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  // Where --trace-gc* writes, a line marks each window so the trace can be split into windows.
  const traced = process.execArgv.some((f) => f.startsWith('--trace-gc'));

  /** The collections since the last call: into the counters (a forced one: its freed bytes only). */
  const drain = (forced: boolean): void => {
    const data = profiler.stop() as { statistics?: GcStat[] } | undefined;
    profiler = new v8.GCProfiler();
    profiler.start();
    for (const s of data?.statistics ?? []) {
      allocated += s.beforeGC.heapStatistics.usedHeapSize - lastUsed;
      lastUsed = s.afterGC.heapStatistics.usedHeapSize;
      if (forced) {
        gc.forced++;
        continue;
      }
      const ms = s.cost / 1000;
      gc.pauseMs += ms;
      const minor = s.gcType === 'Scavenge' || s.gcType === 'MinorMarkSweep';
      const promoted = minor ? oldGeneration(s.afterGC) - oldGeneration(s.beforeGC) : 0;
      if (minor) {
        gc.scavenges++;
        gc.promotedBytes += promoted;
      } else if (s.gcType === 'MarkSweepCompact') gc.marks++;
      else gc.other++;
      if (events.length < MAX_EVENTS) {
        events.push({
          kind: s.gcType,
          pauseMs: ms,
          beforeMiB: s.beforeGC.heapStatistics.usedHeapSize / MIB,
          afterMiB: s.afterGC.heapStatistics.usedHeapSize / MIB,
          promotedKiB: promoted / 1024,
        });
      }
      if (ms > maxPauseMs) {
        maxPauseMs = ms;
        maxPauseKind = s.gcType;
      }
    }
    const used = v8.getHeapStatistics().used_heap_size;
    allocated += used - lastUsed;
    lastUsed = used;
  };

  /**
   * A collection of the probe's own (GET /gc, /heap): what ran before it is folded in first, and
   * it is counted apart (gc.forced), never as a pause of a window nor as one of its collections.
   */
  const forcedGc = (run: () => void): void => {
    drain(false);
    run();
    drain(true);
  };

  const mark = (): ProbeMark => {
    drain(false);
    const ns = (x: number): number => (Number.isFinite(x) ? x / 1e6 : 0);
    const over = (x: number): number => Math.max(0, ns(x) - 10);
    const loopDelay = {
      p50: over(loop.percentile(50)),
      p99: over(loop.percentile(99)),
      max: over(loop.max),
    };
    loop.reset();
    const mem = process.memoryUsage();
    const spaces = v8.getHeapSpaceStatistics();
    const old = spaces.find((s) => s.space_name === 'old_space');
    const answer: ProbeMark = {
      atMs: nowMs(),
      allocatedBytes: allocated,
      gc: { ...gc },
      maxPauseMs,
      maxPauseKind,
      events,
      loopDelay,
      heapUsedBytes: mem.heapUsed,
      heapTotalBytes: mem.heapTotal,
      oldSpaceUsedBytes: old?.space_used_size ?? Number.NaN,
      spaces: spaces.map((s) => ({
        name: s.space_name,
        sizeBytes: s.space_size,
        usedBytes: s.space_used_size,
        committedBytes: s.physical_space_size,
      })),
      externalBytes: mem.external,
      arrayBuffersBytes: mem.arrayBuffers,
      rssBytes: mem.rss,
    };
    maxPauseMs = 0;
    maxPauseKind = '';
    events = [];
    if (traced) process.stderr.write(`bench probe: mark at ${answer.atMs.toFixed(0)} ms\n`);
    return answer;
  };

  try {
    unlinkSync(path);
  } catch {
    // nothing left over
  }
  // One inspector session for both profilers (a second connect() throws), ended when neither runs.
  let session: Session | undefined;
  let profiling = 0;
  const post = (method: string, params: object = {}): Promise<unknown> =>
    new Promise((resolve, reject) => {
      if (!session) {
        session = new Session();
        session.connect();
      }
      session.post(method, params, (err, result) => (err ? reject(err) : resolve(result)));
    });
  /** Starts a profiler: `enable`, then `start` (a promise of its calls). */
  const startWith = (calls: () => Promise<unknown>): Promise<unknown> => {
    profiling++;
    return calls();
  };
  /** Stops a profiler (`method` answers `{ profile }`) and writes its profile to `file`. */
  const stopInto = (method: string, file: string): Promise<void> =>
    post(method).then((r) => {
      writeFileSync(file, JSON.stringify((r as { profile: unknown }).profile));
      if (--profiling <= 0) {
        profiling = 0;
        session?.disconnect();
        session = undefined;
      }
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
      forcedGc(fullGc);
      const body = JSON.stringify(process.memoryUsage());
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    } else if (url.pathname === '/heap' && url.searchParams.get('file')) {
      forcedGc(() => {
        fullGc();
        v8.writeHeapSnapshot(url.searchParams.get('file')!);
      });
      res.writeHead(200).end();
    } else if (url.pathname === '/alloc/start') {
      done(
        startWith(() =>
          post('HeapProfiler.enable').then(() =>
            post('HeapProfiler.startSampling', {
              samplingInterval: 16384,
              includeObjectsCollectedByMajorGC: true,
              // ?survivors=1: only what outlived the young generation (promoted, or still alive)
              includeObjectsCollectedByMinorGC: url.searchParams.get('survivors') !== '1',
            }),
          ),
        ),
      );
    } else if (url.pathname === '/cpu/start') {
      // Sampled every 200 µs: a 2 KB request is ~0.5 ms of the extproc's work.
      done(
        startWith(() =>
          post('Profiler.enable').then(() =>
            post('Profiler.setSamplingInterval', { interval: 200 }).then(() =>
              post('Profiler.start'),
            ),
          ),
        ),
      );
    } else if (url.pathname === '/cpu/stop' && url.searchParams.get('file')) {
      done(stopInto('Profiler.stop', url.searchParams.get('file')!));
    } else if (url.pathname === '/alloc/stop' && url.searchParams.get('file')) {
      done(stopInto('HeapProfiler.stopSampling', url.searchParams.get('file')!));
    } else {
      res.writeHead(404).end();
    }
  });
  server.on('error', (err) => process.stderr.write(`bench probe: ${err.message}\n`));
  server.listen(path);
  // The probe must not keep a server alive that is asked to stop.
  server.unref();
}
