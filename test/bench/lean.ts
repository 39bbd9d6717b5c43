/**
 * Issue 16's figures ("a sidecar as lean as the Go peer"), from the Go load generator at fixed
 * rates: the whole request (router 4 phases + upstream filter) with and without masking and
 * budgets, against Sluice and, in the same run, the do-nothing floors — grpc-go (standing in for
 * the Go peer's transport), grpc-js and bare node:http2. Beside latency and CPU it prints what
 * each Node server's runtime did (test/bench/probe.ts): V8 heap allocated per request, garbage
 * collections and their longest pause, event-loop delay, RSS.
 *
 *   BENCH_LEAN_RATES     rates for Sluice (default 500,1000,2000,3000); the floors run the first two
 *   BENCH_LEAN_TARGETS   which servers to run (default sluice,sluice-node-http2,floor-go,floor,floor-h2;
 *                        sluice-<server>: a second extproc with --grpc-server <server>, e.g.
 *                        sluice-node-http2 or sluice-grpc-js)
 *   BENCH_ALLOC_PROFILE  a directory: sample where Sluice allocates during each of its points
 *                        (V8's sampling heap profiler, collected objects included), print the top
 *   BENCH_CPU_PROFILE    a directory: V8's CPU profile of Sluice during each of its points (the
 *                        warm-up included), and its hot spots printed
 *   BENCH_LEAN_JSON      a file: every point as JSON too (loadgen result, runtime figures, memory),
 *                        for comparing repeated runs
 *   BENCH_LEAN_WARMUP_SECONDS  unmeasured seconds before each point (default 8, for every server:
 *                        V8 re-optimizes Sluice after each change of point, bench.ts says why)
 *   BENCH_LEAN_QUIET_CORE=0  leave the other servers running during a point; by default they are
 *                        stopped (SIGSTOP) for it: they share its core (quiet-core.ts)
 *   BENCH_LEAN_P99_WINDOWS  windows the p99 target is judged on (default 3): the grpc-go floor and
 *                        Sluice on both exchanges at the first rate run again in interleaved rounds,
 *                        and the verdict takes each one's median p99
 *
 * Memory: for each Sluice point, VmRSS right after it, its peak during the point (VmHWM, reset
 * before the point through /proc/PID/clear_refs) and VmRSS and the V8 heap after a full
 * collection (the probe's /gc): the long-lived heap apart from young-generation garbage. At
 * 2,000 req/s (issue 16's RSS target; the last rate listed when 2,000 is not) a third exchange
 * runs with every feature on (masking with every detector, the prompt guard, budgets, the
 * tokenizer); test/bench/heap.ts shows what that heap holds.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAverage, peakRssKiB, rssKiB, rssParts, type Child, type RssParts } from './proc.js';
import { held, noisy, runLoadgen, type Exchange, type GoPoint } from './latency.js';
import { allocTable } from './alloc-top.js';
import { hotSpotTable } from './profile-top.js';
import { probeGc, probeGet, runtimeFigures, type RuntimeFigures } from './probe-client.js';
import { pausedDuring } from './quiet-core.js';
import { fmtInt, fmtMs, median, table } from './stats.js';

export interface LeanEndpoint {
  name: GoPoint['target'];
  child: Child;
  /** What a client dials: unix:/path. */
  address: string;
  /** The probe socket of a Node server (probe.ts); none for the Go floor. */
  probe: string | undefined;
}

export interface LeanOptions {
  bin: string;
  dir: string;
  rates: number[];
  seconds: number;
  warmup: number;
  loadgenCore: number | undefined;
  log: (line?: string) => void;
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The Go peer's figures in the issue (same machine, whole request): @500 and @1,000 req/s. */
const PEER_CPU_US = { 500: 812, 1000: 608 } as const;
const TARGETS = {
  allocKiB: 30,
  maxPauseMs: 5,
  p99VsGoFloor: 2,
  cpuVsPeer: 1.1,
  rate: 3000,
  rssMiB: 150,
  rssRate: 2000,
};

export interface LeanPoint extends GoPoint {
  rt: RuntimeFigures | undefined;
  /** The server's VmRSS right after the point. */
  rssMiB: number;
  /** Its VmHWM over the point (NaN where the peak could not be reset). */
  peakRssMiB: number;
  /** VmRSS and the V8 heap in use after a full collection, right after the point (probe). */
  gcRssMiB: number;
  gcHeapMiB: number;
  /** Where the RSS was right after the point (/proc/PID/smaps), Sluice only. */
  rssParts: RssParts | undefined;
  /** The p99 target's later rounds (2, 3, ...): the same window again; absent in the main sweep. */
  round?: number;
}

const MIB = 1024 * 1024;

/** The rate of the every-feature exchange: the RSS target's when listed, else the last one. */
function everythingRate(rates: number[]): number {
  return rates.includes(TARGETS.rssRate) ? TARGETS.rssRate : rates[rates.length - 1]!;
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0); false where that is not allowed. */
function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** BENCH_LEAN_QUIET_CORE=0 leaves the other servers running during a point (for comparison). */
function quietCore(): boolean {
  return process.env.BENCH_LEAN_QUIET_CORE !== '0';
}

export function leanTargets(): Set<string> {
  return new Set(
    (process.env.BENCH_LEAN_TARGETS || 'sluice,sluice-node-http2,floor-go,floor,floor-h2')
      .split(',')
      .map((t) => t.trim()),
  );
}

/** The gRPC servers a second extproc runs on (targets sluice-<server>), for the transport table. */
export function alternateServers(): string[] {
  return [...leanTargets()].filter((t) => t.startsWith('sluice-')).map((t) => t.slice(7));
}

/** How many windows the p99 target is judged on (BENCH_LEAN_P99_WINDOWS, default 3). */
export function p99Windows(): number {
  const raw = process.env.BENCH_LEAN_P99_WINDOWS || '3';
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`BENCH_LEAN_P99_WINDOWS=${raw}: expected a positive integer`);
  }
  return n;
}

export function leanRates(): number[] {
  const raw = process.env.BENCH_LEAN_RATES || '500,1000,2000,3000';
  const list = raw.split(',').map(Number);
  if (list.some((r) => !Number.isInteger(r) || r < 1)) {
    throw new Error(`BENCH_LEAN_RATES=${raw}: expected positive integers`);
  }
  return list;
}

/**
 * A profiler the probe runs over each Sluice point (BENCH_ALLOC_PROFILE, BENCH_CPU_PROFILE): its
 * probe path (`/alloc`, `/cpu`), the directory and extension of its files, what it says per file.
 */
interface PointProfiler {
  path: string;
  dir: string;
  ext: string;
  heading: (what: string, file: string) => string;
  table: (file: string) => string;
  /** What each profiled point was, and its file. */
  files: [string, string][];
}

function pointProfilers(): PointProfiler[] {
  const list: PointProfiler[] = [];
  const add = (env: string, p: Omit<PointProfiler, 'dir' | 'files'>): void => {
    const dir = process.env[env];
    if (!dir) return;
    mkdirSync(dir, { recursive: true });
    list.push({ ...p, dir, files: [] });
  };
  add('BENCH_ALLOC_PROFILE', {
    path: '/alloc',
    ext: 'heapprofile',
    heading: (what, file) => `where Sluice allocated, ${what} (sampled, warm-up included): ${file}`,
    table: (file) => allocTable(file, ROOT, 25),
  });
  add('BENCH_CPU_PROFILE', {
    path: '/cpu',
    ext: 'cpuprofile',
    heading: (what, file) =>
      `where Sluice spent its CPU, ${what} (self time, warm-up included): ${file}`,
    table: (file) => hotSpotTable(file, ROOT, 25),
  });
  return list;
}

/** One measured window: a server, an exchange, a rate (the loadgen's run and the runtime's figures). */
async function runPoint(
  o: LeanOptions,
  endpoints: LeanEndpoint[],
  e: LeanEndpoint,
  ex: Exchange,
  rate: number,
  profilers: PointProfiler[],
): Promise<LeanPoint> {
  // Kept whole with BENCH_KEEP_LOGS: a --trace-gc log then covers every point and the time
  // between (the probe marks each window in it).
  if (!process.env.BENCH_KEEP_LOGS) e.child.truncateLog();
  await new Promise((r) => setTimeout(r, 100));
  const profiled = e.name.startsWith('sluice') && e.probe ? profilers : [];
  // Every window starts from a collected heap, as each after the first already did (the
  // full collection after each point, below): the first point of a process otherwise
  // inherited what the bench's earlier sections left in its old generation, and a full
  // collection in that window was theirs, not the window's own intake.
  if (e.name.startsWith('sluice') && e.probe) await probeGc(e.probe);
  for (const pr of profiled) await probeGet(e.probe!, `${pr.path}/start`);
  const peakReset = e.name.startsWith('sluice') && resetPeakRss(e.child.pid);
  // The other servers share the measured one's core: stopped for the point (quiet-core.ts).
  const others = quietCore()
    ? [...new Set(endpoints.map((x) => x.child.pid))].filter((pid) => pid !== e.child.pid)
    : [];
  const p = await pausedDuring(others, () =>
    runLoadgen(ex, e.name, {
      bin: o.bin,
      dir: o.dir,
      socket: e.address,
      serverPid: e.child.pid,
      rate,
      seconds: o.seconds,
      warmup: o.warmup,
      loadgenCore: o.loadgenCore,
      probe: e.probe,
    }),
  );
  for (const pr of profiled) {
    const file = join(pr.dir, `${e.name}-${ex.name}-${rate}.${pr.ext}`);
    await probeGet(e.probe!, `${pr.path}/stop?file=${encodeURIComponent(file)}`);
    pr.files.push([`${e.name} ${ex.name} @${rate}`, file]);
  }
  const r = p.r;
  const rssMiB = rssKiB(e.child.pid) / 1024;
  const parts = e.name.startsWith('sluice') ? rssParts(e.child.pid) : undefined;
  const peakRssMiB = peakReset ? peakRssKiB(e.child.pid) / 1024 : Number.NaN;
  let gcRssMiB = Number.NaN;
  let gcHeapMiB = Number.NaN;
  if (e.name.startsWith('sluice') && e.probe) {
    const m = await probeGc(e.probe);
    gcRssMiB = rssKiB(e.child.pid) / 1024;
    gcHeapMiB = m.heapUsed / MIB;
  }
  return {
    ...p,
    rt: r?.probe ? runtimeFigures(r.probe.begin, r.probe.end, r.completed) : undefined,
    rssMiB,
    peakRssMiB,
    gcRssMiB,
    gcHeapMiB,
    rssParts: parts,
  };
}

export async function leanSection(
  o: LeanOptions,
  endpoints: LeanEndpoint[],
  whole: Exchange,
  policy: Exchange,
  everything?: Exchange,
): Promise<LeanPoint[]> {
  const { log } = o;
  const floorRates = o.rates.slice(0, 2);
  log(
    `  ${o.warmup} s warm-up + ${o.seconds} s per point; Sluice at ${o.rates.join(', ')} req/s, the floors at ${floorRates.join(', ')}`,
  );
  log(
    '  the last user turn differs per request (a sequence number in the body), as in a conversation: per-text caches hit on the history only',
  );
  log(
    '  alloc: V8 heap allocated per request; gc: scavenges/mark-compacts in the window; pause: the longest; loop: event-loop delay p99/max',
  );
  const points: LeanPoint[] = [];
  const targets = leanTargets();
  const profilers = pointProfilers();
  const allRate = everythingRate(o.rates);
  for (const rate of o.rates) {
    const exchanges = [whole, policy];
    // Every feature on: Sluice alone, at the rate of the RSS target (or the last rate listed).
    if (everything && rate === allRate) exchanges.push(everything);
    for (const ex of exchanges) {
      for (const e of endpoints) {
        if (!targets.has(e.name)) continue;
        if (ex === everything && e.name !== 'sluice') continue;
        // The other transport runs both exchanges, the floors the whole request, at two rates.
        if (e.name.startsWith('sluice-') && !floorRates.includes(rate)) continue;
        if (e.name.startsWith('floor') && (ex !== whole || !floorRates.includes(rate))) continue;
        points.push(await runPoint(o, endpoints, e, ex, rate, profilers));
      }
    }
  }
  // The p99 target at ~50% of a core: a 4-s window's p99 is its 20th-slowest request of 2,000,
  // which one stall anywhere on the machine decides (a late load generator, a full collection, a
  // descheduled core). The target's windows run again in interleaved rounds (floor, Sluice,
  // Sluice with masking + budget, then again), and the verdict takes each one's median p99.
  const lo = o.rates[0]!;
  for (let round = 2; round <= p99Windows(); round++) {
    for (const [name, ex] of [
      ['floor-go', whole],
      ['sluice', whole],
      ['sluice', policy],
    ] as const) {
      const e = endpoints.find((x) => x.name === name);
      if (!e || !targets.has(name)) continue;
      points.push({ ...(await runPoint(o, endpoints, e, ex, lo, [])), round });
    }
  }
  if (process.env.BENCH_LEAN_JSON) {
    writeFileSync(process.env.BENCH_LEAN_JSON, JSON.stringify({ load: loadAverage(), points }));
  }
  log();
  log(pointsTable(points));
  for (const p of points) {
    if (p.r?.firstError)
      log(`  ${p.exchange} ${p.target} ${p.rate}: first error: ${p.r.firstError}`);
    if (p.error) log(`  ${p.exchange} ${p.target} ${p.rate}: ${p.error}`);
  }
  log();
  log(
    "the collections in each window (the probe's own forced ones, between points, are not among them): count, pauses ms (median/max) and what young ones promoted",
  );
  log(gcTable(points));
  const memory = memoryTable(points);
  if (memory) {
    log();
    log(
      "where Sluice's RSS is right after each point (MiB): V8 heap committed (new/old/other spaces); malloc's main arena and thread arenas; other anonymous memory (V8's code and zones, large mmap'd blocks, stacks); mapped files (node's code, libraries). Buffers live in malloc or other",
    );
    log(memory);
  }
  for (const pr of profilers) {
    for (const [what, file] of pr.files) {
      log();
      log(pr.heading(what, file));
      log(pr.table(file));
    }
  }
  log();
  log(
    "the issue's table: whole request (router 4 phases + upstream), Sluice vs the grpc-go floor of this run",
  );
  log(issueTable(points, whole.name, policy.name, o.rates, everything?.name));
  const p99 = p99WindowsTable(points, whole.name, policy.name, o.rates[0]!);
  if (p99) {
    log();
    log(
      `the p99 target's windows @${o.rates[0]!} req/s, in the order they ran: p99 from schedule (ms), the load generator's own lag behind its schedule (p99, ms: over 1 ms the generator, not the server, was late), full collections in the window`,
    );
    log(p99);
  }
  for (const server of alternateServers()) {
    const transport = transportTable(points, [whole.name, policy.name], floorRates, server);
    if (!transport) continue;
    log();
    log(`transport: Sluice on its default gRPC server vs on --grpc-server ${server}, same run`);
    log(transport);
  }
  return points;
}

const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(0)}%` : '-');
const f1 = (x: number | undefined): string =>
  x !== undefined && Number.isFinite(x) ? x.toFixed(1) : '-';

function pointsTable(points: LeanPoint[]): string {
  const rows = points.map((p) => {
    const r = p.r;
    if (!r) return [p.exchange, p.target, String(p.rate), `loadgen failed: ${p.error ?? '?'}`];
    const rt = p.rt;
    return [
      p.exchange,
      p.target,
      rateLabel(p),
      fmtInt(r.achieved),
      fmtMs(r.fromSchedule.p50),
      fmtMs(r.fromSchedule.p99),
      fmtMs(r.fromSchedule.max),
      fmtInt(r.cpu.serverUsPerReq),
      pct(r.cpu.serverShare),
      rt ? f1(rt.allocKiBPerReq) : '-',
      rt ? `${rt.scavenges}/${rt.marks}` : '-',
      rt
        ? `${f1(rt.maxPauseMs)} ${rt.maxPauseKind === 'MarkSweepCompact' ? 'mc' : rt.maxPauseKind ? 'sc' : ''}`.trim()
        : '-',
      rt ? pct(rt.gcShare) : '-',
      rt ? `${f1(rt.loopDelayP99Ms)}/${f1(rt.loopDelayMaxMs)}` : '-',
      `${fmtInt(p.rssMiB)}${rt ? ` (${fmtInt(rt.oldSpaceMiB)})` : ''}`,
      Number.isFinite(p.gcRssMiB)
        ? `${fmtInt(p.peakRssMiB)} / ${fmtInt(p.gcRssMiB)} (${fmtInt(p.gcHeapMiB)})`
        : '-',
      pct(p.noise),
      `${r.errors}/${r.dropped}`,
      held(p) ? 'held' : 'NOT held',
    ];
  });
  return table(
    [
      'exchange',
      'target',
      'rate',
      'achieved/s',
      'p50 ms',
      'p99 ms',
      'max ms',
      'srv µs/req',
      'srv cpu',
      'alloc KiB/req',
      'gc sc/mc',
      'pause max ms',
      'gc time',
      'loop p99/max ms',
      'RSS (old) MiB',
      'RSS peak / after GC (heap)',
      'noise',
      'err/drop',
      'rate',
    ],
    rows,
    'llrrrrrrrrrrrrrrrrl',
  );
}

/** Each Node server's window, its collections by kind. */
function gcTable(points: LeanPoint[]): string {
  const kinds: [string, string][] = [
    ['Scavenge', 'scavenge'],
    ['MarkSweepCompact', 'mark-compact'],
    ['IncrementalMarking', 'incr. start'],
    ['ProcessWeakCallbacks', 'weak cb'],
  ];
  const rows = points
    .filter((p) => p.rt)
    .map((p) => {
      const rt = p.rt!;
      const cells = kinds.map(([kind]) => {
        const xs = rt.events
          .filter((e) => e.kind === kind || (kind === 'Scavenge' && e.kind === 'MinorMarkSweep'))
          .map((e) => e.pauseMs);
        return xs.length > 0 ? `${xs.length}: ${f1(median(xs))}/${f1(Math.max(...xs))}` : '-';
      });
      const marks = rt.events.filter((e) => e.kind === 'MarkSweepCompact');
      return [
        p.exchange,
        p.target,
        rateLabel(p),
        ...cells,
        marks.length > 0
          ? marks.map((e) => `${fmtInt(e.beforeMiB)}→${fmtInt(e.afterMiB)}`).join(' ')
          : '-',
        f1(rt.promotedKiBPerScavenge),
        f1(rt.promotedKiBPerReq),
        String(rt.forced),
      ];
    });
  return table(
    [
      'exchange',
      'target',
      'rate',
      ...kinds.map(([, name]) => name),
      'mark-compact heap MiB',
      'promoted KiB/scav.',
      'promoted KiB/req',
      'forced',
    ],
    rows,
    'llrrrrrlrrr',
  );
}

/** Sluice's RSS after each point, by where it is. */
function memoryTable(points: LeanPoint[]): string {
  const mib = (kib: number): string => fmtInt(kib / 1024);
  const rows = points
    .filter((p) => p.rssParts && p.rt)
    .map((p) => {
      const m = p.rssParts!;
      const rt = p.rt!;
      const space = (name: string): number =>
        (rt.spaces.find((s) => s.name === name)?.committedBytes ?? 0) / MIB;
      const young = space('new_space') + space('new_large_object_space');
      const old = space('old_space') + space('large_object_space');
      const v8Kib = rt.heapCommittedMiB * 1024;
      const buffers = rt.arrayBuffersMiB * 1024;
      // Buffers are malloc'd (in the arenas) or mmap'd on their own (in `other`): shown, not subtracted.
      const other = m.anonKiB - v8Kib - m.brkKiB - m.arenaKiB;
      return [
        p.exchange,
        String(p.rate),
        mib(m.rssKiB),
        `${fmtInt(rt.heapCommittedMiB)} (${fmtInt(young)}/${fmtInt(old)}/${fmtInt(rt.heapCommittedMiB - young - old)})`,
        fmtInt(rt.heapUsedMiB),
        mib(buffers),
        `${mib(m.brkKiB)} + ${mib(m.arenaKiB)}`,
        mib(other),
        mib(m.fileKiB),
        String(m.threads),
      ];
    });
  if (rows.length === 0) return '';
  return table(
    [
      'exchange',
      'rate',
      'RSS',
      'V8 heap committed (new/old/other)',
      'V8 heap used',
      'Buffers',
      'malloc brk + arenas',
      'other anon',
      'files',
      'threads',
    ],
    rows,
    'lrrrrrrrrr',
  );
}

function find(
  points: LeanPoint[],
  exchange: string,
  target: GoPoint['target'],
  rate: number,
): LeanPoint | undefined {
  return points.find((p) => p.exchange === exchange && p.target === target && p.rate === rate);
}

/** The highest rate of this run held (rate kept, no errors, none dropped); 0 when none. */
/** Every window of an exchange, server and rate: the main sweep's and the p99 target's rounds. */
function windows(
  points: LeanPoint[],
  exchange: string,
  target: GoPoint['target'],
  rate: number,
): LeanPoint[] {
  return points.filter(
    (p) => p.exchange === exchange && p.target === target && p.rate === rate && p.r,
  );
}

/** The median of the windows' p99 (from schedule), NaN without a window. */
function medianP99(ws: LeanPoint[]): number {
  return ws.length > 0 ? median(ws.map((p) => p.r!.fromSchedule.p99)) : Number.NaN;
}

/** A window's rate, with its round when it is one of the p99 target's repeats. */
function rateLabel(p: LeanPoint): string {
  return p.round ? `${p.rate} #${p.round}` : String(p.rate);
}

/** The load generator ran late: its own lag behind the schedule (p99) over 1 ms. */
export function generatorLate(p: GoPoint): boolean {
  return !!p.r && p.r.lag.p99 > 1;
}

function highestHeld(points: LeanPoint[], exchange: string, target: GoPoint['target']): number {
  return points
    .filter((p) => p.exchange === exchange && p.target === target && held(p))
    .reduce((m, p) => Math.max(m, p.rate), 0);
}

function verdict(ok: boolean | undefined, caveat = ''): string {
  if (ok === undefined) return 'not measured';
  return `${ok ? 'met' : 'NOT MET'}${caveat}`;
}

function issueTable(
  points: LeanPoint[],
  whole: string,
  policy: string,
  rates: number[],
  everything: string | undefined,
): string {
  const [lo, hi] = [rates[0]!, rates[1] ?? rates[0]!];
  const two = (
    exchange: string,
    target: GoPoint['target'],
    fig: (p: LeanPoint) => number,
    fmt: (x: number) => string,
  ): string => {
    const a = find(points, exchange, target, lo);
    const b = find(points, exchange, target, hi);
    return `${a?.r ? fmt(fig(a)) : '-'} / ${b?.r ? fmt(fig(b)) : '-'}`;
  };
  const ratio = (fig: (p: LeanPoint) => number): string => {
    const parts = [lo, hi].map((rate) => {
      const s = find(points, whole, 'sluice', rate);
      const g = find(points, whole, 'floor-go', rate);
      return s?.r && g?.r ? `${(fig(s) / fig(g)).toFixed(2)}×` : '-';
    });
    return parts.join(' / ');
  };
  const cpu = (p: LeanPoint): number => p.r!.cpu.serverUsPerReq;
  const p50 = (p: LeanPoint): number => p.r!.fromSchedule.p50;
  const p99 = (p: LeanPoint): number => p.r!.fromSchedule.p99;
  const rss = (exchange: string, target: GoPoint['target']): string => {
    const xs = points
      .filter((p) => p.exchange === exchange && p.target === target && Number.isFinite(p.rssMiB))
      .map((p) => p.rssMiB);
    return xs.length > 0 ? `${fmtInt(Math.min(...xs))}–${fmtInt(Math.max(...xs))} MiB` : '-';
  };
  const rt = (exchange: string, target: GoPoint['target'], fig: (r: RuntimeFigures) => string) =>
    rates
      .map((rate) => {
        const p = find(points, exchange, target, rate);
        return p?.rt ? fig(p.rt) : undefined;
      })
      .filter((x) => x !== undefined)
      .join(' / ');
  const allRate = everythingRate(rates);
  const memory = (p: LeanPoint | undefined): string =>
    p && Number.isFinite(p.gcRssMiB)
      ? `${fmtInt(p.peakRssMiB)} / ${fmtInt(p.gcRssMiB)} MiB (${fmtInt(p.gcHeapMiB)})`
      : '-';
  const rows: string[][] = [
    [
      `CPU per request @${lo} / @${hi} req/s`,
      two(whole, 'sluice', cpu, (x) => `${fmtInt(x)} µs`),
      two(policy, 'sluice', cpu, (x) => `${fmtInt(x)} µs`),
      two(whole, 'floor-go', cpu, (x) => `${fmtInt(x)} µs`),
      ratio(cpu),
    ],
    [
      `p50 @${lo} / @${hi} (from schedule)`,
      two(whole, 'sluice', p50, fmtMs),
      two(policy, 'sluice', p50, fmtMs),
      two(whole, 'floor-go', p50, fmtMs),
      ratio(p50),
    ],
    [
      `p99 @${lo} / @${hi}`,
      two(whole, 'sluice', p99, fmtMs),
      two(policy, 'sluice', p99, fmtMs),
      two(whole, 'floor-go', p99, fmtMs),
      ratio(p99),
    ],
    [
      `highest rate held of ${rates.join(', ')}`,
      fmtInt(highestHeld(points, whole, 'sluice')),
      fmtInt(highestHeld(points, policy, 'sluice')),
      `(floors run at ${lo}, ${hi} only)`,
      '',
    ],
    [
      'RSS under load (VmRSS after each point)',
      rss(whole, 'sluice'),
      rss(policy, 'sluice'),
      rss(whole, 'floor-go'),
      '',
    ],
    [
      `RSS peak / after a full GC (V8 heap) @${fmtInt(allRate)}`,
      memory(find(points, whole, 'sluice', allRate)),
      memory(find(points, policy, 'sluice', allRate)),
      everything ? `every feature on: ${memory(find(points, everything, 'sluice', allRate))}` : '',
      '',
    ],
    [
      `alloc KiB/req @${rates.join(' / @')}`,
      rt(whole, 'sluice', (r) => f1(r.allocKiBPerReq)),
      rt(policy, 'sluice', (r) => f1(r.allocKiBPerReq)),
      `grpc-js floor ${rt(whole, 'floor', (r) => f1(r.allocKiBPerReq))}; h2 floor ${rt(whole, 'floor-h2', (r) => f1(r.allocKiBPerReq))}`,
      '',
    ],
    [
      'GC pause max ms (scavenges/mark-compacts)',
      rt(whole, 'sluice', (r) => `${f1(r.maxPauseMs)} (${r.scavenges}/${r.marks})`),
      rt(policy, 'sluice', (r) => `${f1(r.maxPauseMs)} (${r.scavenges}/${r.marks})`),
      `grpc-js floor ${rt(whole, 'floor', (r) => f1(r.maxPauseMs))}`,
      '',
    ],
    [
      'event-loop delay p99/max ms',
      rt(whole, 'sluice', (r) => `${f1(r.loopDelayP99Ms)}/${f1(r.loopDelayMaxMs)}`),
      rt(policy, 'sluice', (r) => `${f1(r.loopDelayP99Ms)}/${f1(r.loopDelayMaxMs)}`),
      '',
      '',
    ],
  ];
  const out = [
    table(
      ['whole request', 'Sluice', 'Sluice, masking + budget', 'grpc-go floor', 'Sluice / floor'],
      rows,
      'lrrrr',
    ),
  ];
  out.push('', 'issue 16 targets vs this run');
  out.push(
    table(
      ['target', 'measured', 'verdict'],
      targetRows(points, whole, policy, lo, hi, everything),
      'lll',
    ),
  );
  const busy = points.filter((p) => noisy(p));
  if (busy.length > 0) {
    out.push(
      `  (other processes took ≥ 20% of a core during ${busy.length} of ${points.length} points: figures are noisy)`,
    );
  }
  return out.join('\n');
}

function targetRows(
  points: LeanPoint[],
  whole: string,
  policy: string,
  lo: number,
  hi: number,
  everything: string | undefined,
): string[][] {
  const rows: string[][] = [];
  const sluice = points.filter((p) => p.target === 'sluice' && p.rt);
  if (sluice.length > 0) {
    const worstAlloc = sluice.reduce((a, b) =>
      b.rt!.allocKiBPerReq > a.rt!.allocKiBPerReq ? b : a,
    );
    rows.push([
      `allocation per request ≤ ${TARGETS.allocKiB} KiB`,
      `worst ${f1(worstAlloc.rt!.allocKiBPerReq)} KiB (${worstAlloc.exchange} @${worstAlloc.rate})`,
      verdict(worstAlloc.rt!.allocKiBPerReq <= TARGETS.allocKiB),
    ]);
    const worstPause = sluice.reduce((a, b) => (b.rt!.maxPauseMs > a.rt!.maxPauseMs ? b : a));
    rows.push([
      `no GC pause over ${TARGETS.maxPauseMs} ms`,
      `longest ${f1(worstPause.rt!.maxPauseMs)} ms ${worstPause.rt!.maxPauseKind} (${worstPause.exchange} @${worstPause.rate})`,
      verdict(worstPause.rt!.maxPauseMs <= TARGETS.maxPauseMs),
    ]);
  }
  for (const ex of [whole, policy]) {
    const ss = windows(points, ex, 'sluice', lo);
    const gs = windows(points, whole, 'floor-go', lo);
    if (ss.length > 0 && gs.length > 0) {
      const x = medianP99(ss) / medianP99(gs);
      const share = median(ss.map((p) => p.r!.cpu.serverShare));
      const late = [...ss, ...gs].filter(generatorLate).length;
      rows.push([
        `p99 within ${TARGETS.p99VsGoFloor}× of the grpc-go floor at ~50% of a core (${ex} @${lo}; median of ${ss.length} windows)`,
        `${fmtMs(medianP99(ss))} vs ${fmtMs(medianP99(gs))} ms: ${x.toFixed(2)}× (Sluice at ${pct(share)} of its core${late > 0 ? `; the load generator ran late in ${late} of ${ss.length + gs.length} windows` : ''})`,
        verdict(x <= TARGETS.p99VsGoFloor && ss.every(held)),
      ]);
    }
  }
  for (const rate of [lo, hi]) {
    const s = find(points, whole, 'sluice', rate);
    const peer = PEER_CPU_US[rate as keyof typeof PEER_CPU_US];
    const g = find(points, whole, 'floor-go', rate);
    if (!s?.r || peer === undefined) continue;
    const us = s.r.cpu.serverUsPerReq;
    rows.push([
      `CPU per request ≤ ${TARGETS.cpuVsPeer}× the Go peer's ${peer} µs @${rate} (issue's figure)`,
      `${fmtInt(us)} µs: ${(us / peer).toFixed(2)}×${g?.r ? `; grpc-go floor ${fmtInt(g.r.cpu.serverUsPerReq)} µs (${(us / g.r.cpu.serverUsPerReq).toFixed(2)}×)` : ''}`,
      verdict(us <= peer * TARGETS.cpuVsPeer),
    ]);
  }
  for (const ex of [whole, policy]) {
    const h = highestHeld(points, ex, 'sluice');
    const tried = points.some(
      (p) => p.exchange === ex && p.target === 'sluice' && p.rate >= TARGETS.rate,
    );
    rows.push([
      `highest rate held on one core ≥ ${fmtInt(TARGETS.rate)} req/s (${ex})`,
      `${fmtInt(h)} req/s`,
      tried ? verdict(h >= TARGETS.rate) : 'not measured (BENCH_LEAN_RATES)',
    ]);
  }
  // The issue's target names every feature; without that exchange, masking + budget stands in.
  const rssEx = everything ?? policy;
  const r = find(points, rssEx, 'sluice', TARGETS.rssRate);
  // The worst the point saw: its peak where the peak could be reset, else VmRSS after it.
  const worst = r ? (Number.isFinite(r.peakRssMiB) ? r.peakRssMiB : r.rssMiB) : Number.NaN;
  rows.push([
    `RSS ≤ ${TARGETS.rssMiB} MiB at ${fmtInt(TARGETS.rssRate)} req/s, ${everything ? 'every feature on' : 'masking + budget on'}`,
    r?.rt
      ? `peak ${fmtInt(r.peakRssMiB)}, after ${fmtInt(r.rssMiB)}, after a full GC ${fmtInt(r.gcRssMiB)} MiB (V8 heap ${fmtInt(r.gcHeapMiB)} after GC, ${fmtInt(r.rt.heapUsedMiB)} before; old space ${fmtInt(r.rt.oldSpaceMiB)}, Buffers ${fmtInt(r.rt.arrayBuffersMiB)})`
      : 'not measured',
    verdict(r?.rt ? worst <= TARGETS.rssMiB : undefined),
  ]);
  return rows;
}

/** Each window the p99 target is judged on, round by round, with what may have made it slow. */
function p99WindowsTable(points: LeanPoint[], whole: string, policy: string, lo: number): string {
  const cols: [string, GoPoint['target'], string][] = [
    [whole, 'floor-go', 'grpc-go floor'],
    [whole, 'sluice', 'Sluice'],
    [policy, 'sluice', 'Sluice, masking + budget'],
  ];
  const per = cols.map(([ex, target]) => windows(points, ex, target, lo));
  const rounds = Math.max(0, ...per.map((ws) => ws.length));
  if (rounds < 2) return '';
  const cell = (p: LeanPoint | undefined): string =>
    p?.r
      ? `${fmtMs(p.r.fromSchedule.p99)} (lag ${fmtMs(p.r.lag.p99)}${p.rt ? `, mc ${p.rt.marks}` : ''})${held(p) ? '' : ' NOT held'}`
      : '-';
  const rows = Array.from({ length: rounds }, (_, i) => [
    String(i + 1),
    ...per.map((ws) => cell(ws[i])),
    per[0]![i]?.r && per[1]![i]?.r
      ? `${(per[1]![i].r.fromSchedule.p99 / per[0]![i].r.fromSchedule.p99).toFixed(2)}×`
      : '-',
  ]);
  rows.push([
    'median',
    ...per.map((ws) => fmtMs(medianP99(ws))),
    `${(medianP99(per[1]!) / medianP99(per[0]!)).toFixed(2)}×`,
  ]);
  return table(['round', ...cols.map(([, , name]) => name), 'Sluice / floor'], rows, 'lrrrr');
}

/** Sluice on its default gRPC server and on another, same exchange and rate: what the transport costs. */
function transportTable(
  points: LeanPoint[],
  exchanges: string[],
  rates: number[],
  server: string,
): string {
  const rows: string[][] = [];
  for (const ex of exchanges) {
    for (const rate of rates) {
      const a = find(points, ex, 'sluice', rate);
      const b = find(points, ex, `sluice-${server}`, rate);
      if (!a?.r || !b?.r) continue;
      const ratio = (x: number, y: number): string => (y > 0 ? `${(x / y).toFixed(2)}×` : '-');
      rows.push([
        ex,
        String(rate),
        `${fmtInt(a.r.cpu.serverUsPerReq)} / ${fmtInt(b.r.cpu.serverUsPerReq)}`,
        ratio(a.r.cpu.serverUsPerReq, b.r.cpu.serverUsPerReq),
        `${f1(a.rt?.allocKiBPerReq)} / ${f1(b.rt?.allocKiBPerReq)}`,
        `${fmtMs(a.r.fromSchedule.p50)} / ${fmtMs(b.r.fromSchedule.p50)}`,
        `${fmtMs(a.r.fromSchedule.p99)} / ${fmtMs(b.r.fromSchedule.p99)}`,
        `${f1(a.rt?.maxPauseMs)} / ${f1(b.rt?.maxPauseMs)}`,
      ]);
    }
  }
  if (rows.length === 0) return '';
  return table(
    [
      'exchange',
      'rate',
      `srv µs/req default / ${server}`,
      'cpu ×',
      'alloc KiB/req',
      'p50 ms',
      'p99 ms',
      'pause max ms',
    ],
    rows,
    'lrrrrrrr',
  );
}
