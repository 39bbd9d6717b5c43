/**
 * The bench's side of test/bench/probe.ts: marks a server's probe, and turns two marks into the
 * figures a measured window reports (allocation per request, collections, pauses, loop delay).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const PROBE = fileURLToPath(new URL('./probe.ts', import.meta.url));

/**
 * The probe as an extproc started from `entry` preloads it: probe.ts through tsx when the
 * extproc itself runs through tsx; for a compiled extproc (dist/…) the probe compiled to plain
 * JS in `dir`, so the measured process loads no TypeScript loader (tsx alone adds tens of MiB
 * of RSS).
 */
export function probeModule(entry: string, dir: string): string {
  if (entry.endsWith('.ts')) return PROBE;
  const out = join(dir, 'probe.mjs');
  const js = ts.transpileModule(readFileSync(PROBE, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  writeFileSync(out, js);
  return out;
}

/** One collection in a window (probe.ts), in the order they ran. */
export interface GcEvent {
  /** V8's name: Scavenge, MinorMarkSweep, MarkSweepCompact, IncrementalMarking, ProcessWeakCallbacks. */
  kind: string;
  /** The main thread's pause. */
  pauseMs: number;
  /** The V8 heap in use before and after. */
  beforeMiB: number;
  afterMiB: number;
  /** What a young collection moved to the old generation (0 for other kinds). */
  promotedKiB: number;
}

/** One V8 heap space (v8.getHeapSpaceStatistics): reserved, in use, and resident (committed). */
export interface HeapSpace {
  name: string;
  sizeBytes: number;
  usedBytes: number;
  committedBytes: number;
}

/** One mark's answer (probe.ts); the Go load generator passes it on as it is. */
export interface ProbeMark {
  /** process.hrtime in ms, for the window's length. */
  atMs: number;
  /** Bytes allocated on the V8 heap since the probe started. */
  allocatedBytes: number;
  /**
   * Collections since the probe started, by kind, their summed pauses (ms) and what young ones
   * promoted; `forced`: the probe's own (GET /gc, /heap), which are in none of the others.
   */
  gc: {
    scavenges: number;
    marks: number;
    other: number;
    pauseMs: number;
    forced: number;
    promotedBytes: number;
  };
  /** Since the previous mark: the longest pause and its kind, and each collection. */
  maxPauseMs: number;
  maxPauseKind: string;
  events: GcEvent[];
  /** Since the previous mark: event-loop delay beyond the timer's 10 ms period (ms). */
  loopDelay: { p50: number; p99: number; max: number };
  heapUsedBytes: number;
  heapTotalBytes: number;
  spaces: HeapSpace[];
  /** The old generation's use: long-lived objects plus what was promoted since the last full GC. */
  oldSpaceUsedBytes: number;
  externalBytes: number;
  arrayBuffersBytes: number;
  rssBytes: number;
}

/** GET /mark on a probe's unix socket. */
export function markProbe(socketPath: string): Promise<ProbeMark> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/mark', timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`probe ${socketPath}: ${res.statusCode}`));
        else resolve(JSON.parse(body) as ProbeMark);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`probe ${socketPath}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Any other probe request (/alloc/start, /alloc/stop?file=): fails unless it answers 200. */
export function probeGet(socketPath: string, path: string, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () =>
        res.statusCode === 200
          ? resolve()
          : reject(new Error(`probe ${path}: ${res.statusCode} ${body}`)),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`probe ${path}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** process.memoryUsage() of the server right after a full collection (`GET /gc`). */
export function probeGc(socketPath: string): Promise<NodeJS.MemoryUsage> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/gc', timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () =>
        res.statusCode === 200
          ? resolve(JSON.parse(body) as NodeJS.MemoryUsage)
          : reject(new Error(`probe /gc: ${res.statusCode} ${body}`)),
      );
    });
    req.on('timeout', () => req.destroy(new Error('probe /gc: timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** What a server's runtime did over one window of `requests` completed requests. */
export interface RuntimeFigures {
  allocKiBPerReq: number;
  /** What young collections moved to the old generation, per request and per collection. */
  promotedKiBPerReq: number;
  promotedKiBPerScavenge: number;
  scavenges: number;
  marks: number;
  /** The window's collections, in order (probe.ts; the probe's own forced ones are not among them). */
  events: GcEvent[];
  /** The probe's forced collections inside the window: 0 unless something asked for /gc meanwhile. */
  forced: number;
  /** Collections per second of the window. */
  gcPerSecond: number;
  /** Summed pauses as a share of the window's wall time. */
  gcShare: number;
  maxPauseMs: number;
  maxPauseKind: string;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  rssMiB: number;
  heapUsedMiB: number;
  /** The V8 heap's reserved size, and what of it is resident (committed), at the window's end. */
  heapTotalMiB: number;
  heapCommittedMiB: number;
  spaces: HeapSpace[];
  oldSpaceMiB: number;
  externalMiB: number;
  arrayBuffersMiB: number;
}

const MIB = 1024 * 1024;

export function runtimeFigures(begin: ProbeMark, end: ProbeMark, requests: number): RuntimeFigures {
  const wallMs = end.atMs - begin.atMs;
  const scavenges = end.gc.scavenges - begin.gc.scavenges;
  const marks = end.gc.marks - begin.gc.marks;
  const count = scavenges + marks + end.gc.other - begin.gc.other;
  const promoted = (end.gc.promotedBytes - begin.gc.promotedBytes) / 1024;
  return {
    allocKiBPerReq:
      requests > 0 ? (end.allocatedBytes - begin.allocatedBytes) / 1024 / requests : Number.NaN,
    promotedKiBPerReq: requests > 0 ? promoted / requests : Number.NaN,
    promotedKiBPerScavenge: scavenges > 0 ? promoted / scavenges : Number.NaN,
    scavenges,
    marks,
    events: end.events,
    forced: end.gc.forced - begin.gc.forced,
    gcPerSecond: wallMs > 0 ? (count * 1000) / wallMs : Number.NaN,
    gcShare: wallMs > 0 ? (end.gc.pauseMs - begin.gc.pauseMs) / wallMs : Number.NaN,
    maxPauseMs: end.maxPauseMs,
    maxPauseKind: end.maxPauseKind,
    loopDelayP99Ms: end.loopDelay.p99,
    loopDelayMaxMs: end.loopDelay.max,
    rssMiB: end.rssBytes / MIB,
    heapUsedMiB: end.heapUsedBytes / MIB,
    heapTotalMiB: end.heapTotalBytes / MIB,
    heapCommittedMiB: end.spaces.reduce((a, s) => a + s.committedBytes, 0) / MIB,
    spaces: end.spaces,
    oldSpaceMiB: end.oldSpaceUsedBytes / MIB,
    externalMiB: end.externalBytes / MIB,
    arrayBuffersMiB: end.arrayBuffersBytes / MIB,
  };
}
