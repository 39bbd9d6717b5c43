/**
 * The bench's side of test/bench/probe.ts: marks a server's probe, and turns two marks into the
 * figures a measured window reports (allocation per request, collections, pauses, loop delay).
 */
import { request } from 'node:http';

/** One mark's answer (probe.ts); the Go load generator passes it on as it is. */
export interface ProbeMark {
  /** process.hrtime in ms, for the window's length. */
  atMs: number;
  /** Bytes allocated on the V8 heap since the probe started. */
  allocatedBytes: number;
  /** Collections since the probe started, by kind, and their summed pauses (ms). */
  gc: { scavenges: number; marks: number; other: number; pauseMs: number };
  /** Since the previous mark: the longest pause and its kind. */
  maxPauseMs: number;
  maxPauseKind: string;
  /** Since the previous mark: event-loop delay beyond the timer's 10 ms period (ms). */
  loopDelay: { p50: number; p99: number; max: number };
  heapUsedBytes: number;
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
  scavenges: number;
  marks: number;
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
  oldSpaceMiB: number;
  arrayBuffersMiB: number;
}

const MIB = 1024 * 1024;

export function runtimeFigures(begin: ProbeMark, end: ProbeMark, requests: number): RuntimeFigures {
  const wallMs = end.atMs - begin.atMs;
  const scavenges = end.gc.scavenges - begin.gc.scavenges;
  const marks = end.gc.marks - begin.gc.marks;
  const count = scavenges + marks + end.gc.other - begin.gc.other;
  return {
    allocKiBPerReq:
      requests > 0 ? (end.allocatedBytes - begin.allocatedBytes) / 1024 / requests : Number.NaN,
    scavenges,
    marks,
    gcPerSecond: wallMs > 0 ? (count * 1000) / wallMs : Number.NaN,
    gcShare: wallMs > 0 ? (end.gc.pauseMs - begin.gc.pauseMs) / wallMs : Number.NaN,
    maxPauseMs: end.maxPauseMs,
    maxPauseKind: end.maxPauseKind,
    loopDelayP99Ms: end.loopDelay.p99,
    loopDelayMaxMs: end.loopDelay.max,
    rssMiB: end.rssBytes / MIB,
    heapUsedMiB: end.heapUsedBytes / MIB,
    oldSpaceMiB: end.oldSpaceUsedBytes / MIB,
    arrayBuffersMiB: end.arrayBuffersBytes / MIB,
  };
}
