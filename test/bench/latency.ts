/**
 * DESIGN §7's latency target measured with the Go load generator (test/bench/loadgen): it
 * replays the same exchanges as the JS driver, open loop at fixed rates, pinned to its own core,
 * for a fraction of the JS driver's CPU per request, so 2,000 req/s is the server's load and not
 * the driver's limit.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SEQUENCE_MARKER, sequenceOffset } from './payloads.js';
import type { ProbeMark } from './probe-client.js';
import { CLUSTER, upstreamFilter, type Payload } from './scenarios.js';
import { fmtInt, fmtMs, table } from './stats.js';

/** DESIGN §7: added per request, 4-phase exchange, 2 KB chat body, 2,000 req/s, one core. */
export const TARGET = { rate: 2000, p50Ms: 0.3, p99Ms: 1 };

/** HTTP/2 connections to the extproc: Envoy keeps one per worker thread; two workers here. */
const CONNECTIONS = 2;

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** What the loadgen prints (test/bench/loadgen/main.go, Result). Latencies in ms. */
export interface LoadgenResult {
  rate: number;
  seconds: number;
  scheduled: number;
  completed: number;
  achieved: number;
  errors: number;
  firstError?: string;
  dropped: number;
  maxInFlight: number;
  overEnvoyTimeout: number;
  added: LatencySummary;
  router: LatencySummary;
  fromSchedule: LatencySummary;
  lag: LatencySummary;
  messages: Record<string, LatencySummary>;
  cpu: {
    serverMs: number;
    serverUsPerReq: number;
    serverShare: number;
    loadgenMs: number;
    loadgenShare: number;
    wallMs: number;
    othersMs: number;
    cores: Record<string, { busyMs: number; totalMs: number }>;
  };
  /** With RunOptions.probe: the server's runtime figures at the window's start and end. */
  probe?: { begin: ProbeMark; end: ProbeMark };
}

export interface Exchange {
  name: string;
  payload: Payload;
  /** Also run against the floor (the do-nothing server) for the ratio. */
  floor: boolean;
}

export interface GoPoint {
  exchange: string;
  /**
   * floor-h2: the floor on node:http2 without grpc-js; floor-go: the floor in grpc-go;
   * sluice-<server>: the extproc on another gRPC server (--grpc-server <server>).
   */
  target: 'sluice' | `sluice-${string}` | 'floor' | 'floor-h2' | 'floor-go';
  rate: number;
  /** Undefined when the loadgen failed; `error` says why. */
  r: LoadgenResult | undefined;
  error?: string;
  /**
   * CPU every other process used during the window, on either core, as a share of one core.
   * (Per-core busy time is no guide here: the kernel's socket work for both sides lands on
   * the cores as time no process is charged for.)
   */
  noise: number;
}

/** The exchange as the loadgen reads it; the upstream filter's attributes as the operator emits. */
export function loadgenSpec(p: Payload): object {
  if (p.sse || p.resChunks.length !== 1) {
    throw new Error('the loadgen replays buffered exchanges only (one response body)');
  }
  const up = upstreamFilter(CLUSTER);
  return {
    requestHeaders: p.reqHeaders,
    requestBody: p.reqBody.toString('base64'),
    // The loadgen gives each request its own number there (payloads.ts, SEQUENCE_MARKER).
    sequenceMarker: sequenceOffset(p.reqBody) === undefined ? null : SEQUENCE_MARKER,
    responseHeaders: p.resHeaders,
    responseBody: p.resChunks[0]!.toString('base64'),
    upstream: p.upstream
      ? { attributes: up.requestAttributes, metadata: up.initialMetadata }
      : null,
  };
}

export interface RunOptions {
  bin: string;
  dir: string;
  socket: string;
  serverPid: number;
  rate: number;
  seconds: number;
  warmup: number;
  /** Pin the loadgen to this core (taskset). */
  loadgenCore: number | undefined;
  /** The server's bench probe socket (probe.ts), marked at the window's start and end. */
  probe?: string | undefined;
  /** Requests open at once beyond which new ones are dropped (loadgen -max-in-flight). */
  maxInFlight?: number | undefined;
}

/** Points run so far in this process: numbers the BENCH_LOADGEN_TRACE files in run order. */
let traced = 0;

/**
 * BENCH_LOADGEN_TRACE=DIR: each loadgen run writes its -trace file there (every request's
 * schedule and per-message times, the loadgen's GC pauses, a per-core CPU and run-queue
 * timeline), named NN-target-exchange-rate.json; test/bench/loadgen/trace-report.ts reads them.
 */
function traceFile(ex: Exchange, target: GoPoint['target'], rate: number): string | undefined {
  const dir = process.env.BENCH_LOADGEN_TRACE;
  if (!dir) return undefined;
  mkdirSync(dir, { recursive: true });
  traced += 1;
  return join(dir, `${String(traced).padStart(2, '0')}-${target}-${ex.name}-${rate}.json`);
}

export async function runLoadgen(
  ex: Exchange,
  target: GoPoint['target'],
  o: RunOptions,
): Promise<GoPoint> {
  const spec = join(o.dir, `loadgen-${ex.name}.json`);
  writeFileSync(spec, JSON.stringify(loadgenSpec(ex.payload)));
  const args = [
    '-target',
    o.socket,
    '-spec',
    spec,
    '-rate',
    String(o.rate),
    '-seconds',
    String(o.seconds),
    '-warmup',
    String(o.warmup),
    '-conns',
    String(CONNECTIONS),
    '-server-pid',
    String(o.serverPid),
    ...(o.probe ? ['-probe', o.probe] : []),
    ...(o.maxInFlight ? ['-max-in-flight', String(o.maxInFlight)] : []),
  ];
  const trace = traceFile(ex, target, o.rate);
  if (trace) args.push('-trace', trace);
  const [cmd, argv] =
    o.loadgenCore === undefined
      ? [o.bin, args]
      : ['taskset', ['-c', String(o.loadgenCore), o.bin, ...args]];
  const base = { exchange: ex.name, target, rate: o.rate, noise: NaN };
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve) => {
      const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', (err) => resolve({ code: -1, stdout, stderr: err.message }));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    },
  );
  const line = out.stdout.trim().split('\n').at(-1) ?? '';
  if (out.code !== 0 || !line.startsWith('{')) {
    const why = out.stderr.trim().split('\n').slice(-3).join(' | ');
    return { ...base, r: undefined, error: why || `exited with ${out.code}` };
  }
  const r = JSON.parse(line) as LoadgenResult;
  return {
    ...base,
    r,
    noise: r.cpu.wallMs > 0 ? r.cpu.othersMs / r.cpu.wallMs : NaN,
  };
}

/** The rate was held (2% slack), nothing failed or was dropped. */
export function held(p: GoPoint): boolean {
  const r = p.r;
  return !!r && r.achieved >= p.rate * 0.98 && r.errors === 0 && r.dropped === 0;
}

export function noisy(p: GoPoint): boolean {
  return p.noise >= 0.2;
}

/**
 * PASS/FAIL against the target, judged on the latency counted from each request's scheduled
 * start (the stricter figure: it includes any lag behind the schedule). Other rates: no verdict.
 */
export function verdict(p: GoPoint): string {
  if (p.target !== 'sluice' || p.rate !== TARGET.rate) return '';
  if (!p.r) return 'FAIL (no result)';
  const s = p.r.fromSchedule;
  const why: string[] = [];
  if (!held(p)) why.push('rate not held');
  if (!(s.p50 <= TARGET.p50Ms)) why.push(`p50 > ${fmtMs(TARGET.p50Ms)}`);
  if (!(s.p99 <= TARGET.p99Ms)) why.push(`p99 > ${fmtMs(TARGET.p99Ms)}`);
  const caveat = noisy(p) ? ' (noisy machine)' : '';
  return why.length === 0 ? `PASS${caveat}` : `FAIL: ${why.join(', ')}${caveat}`;
}

const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(0)}%` : '-');

export function pointsTable(points: GoPoint[]): string {
  const rows = points.map((p) => {
    const r = p.r;
    if (!r) return [p.exchange, p.target, String(p.rate), `loadgen failed: ${p.error ?? '?'}`];
    const a = r.added;
    return [
      p.exchange,
      p.target,
      String(p.rate),
      fmtInt(r.achieved),
      fmtMs(a.p50),
      fmtMs(a.p90),
      fmtMs(a.p99),
      fmtMs(a.p999),
      fmtMs(a.max),
      `${fmtMs(r.fromSchedule.p50)}/${fmtMs(r.fromSchedule.p99)}`,
      fmtMs(r.lag.p99),
      fmtInt(r.cpu.serverUsPerReq),
      pct(r.cpu.serverShare),
      pct(r.cpu.loadgenShare),
      pct(p.noise),
      `${r.errors}/${r.dropped}`,
      verdict(p),
    ];
  });
  return table(
    [
      'exchange',
      'target',
      'rate',
      'achieved/s',
      'p50 ms',
      'p90 ms',
      'p99 ms',
      'p99.9 ms',
      'max ms',
      'sched p50/p99',
      'lag p99',
      'srv µs/req',
      'srv cpu',
      'lg cpu',
      'noise',
      'err/drop',
      'verdict',
    ],
    rows,
    'llrrrrrrrrrrrrrrl',
  );
}

/**
 * Sluice next to the floor, same exchange and rate: what Sluice itself adds; and, where it ran,
 * the floor without grpc-js (floor-h2): what the gRPC library adds to HTTP/2.
 */
export function floorTable(points: GoPoint[]): string {
  const rows: string[][] = [];
  const find = (t: GoPoint['target'], s: GoPoint): LoadgenResult | undefined =>
    points.find((q) => q.target === t && q.exchange === s.exchange && q.rate === s.rate)?.r;
  const three = (a: number, b: number, c: number | undefined, fmt: (x: number) => string) =>
    `${fmt(a)} / ${fmt(b)}${c === undefined ? '' : ` / ${fmt(c)}`}`;
  for (const s of points) {
    if (s.target !== 'sluice' || !s.r) continue;
    const f = find('floor', s);
    if (!f) continue;
    const h = find('floor-h2', s);
    rows.push([
      s.exchange,
      String(s.rate),
      three(s.r.added.p50, f.added.p50, h?.added.p50, fmtMs),
      fmtMs(s.r.added.p50 - f.added.p50),
      three(s.r.added.p99, f.added.p99, h?.added.p99, fmtMs),
      fmtMs(s.r.added.p99 - f.added.p99),
      three(s.r.cpu.serverUsPerReq, f.cpu.serverUsPerReq, h?.cpu.serverUsPerReq, fmtInt),
      (s.r.cpu.serverUsPerReq / f.cpu.serverUsPerReq).toFixed(2),
    ]);
  }
  return table(
    [
      'exchange',
      'rate',
      'p50 sluice / floor [/ h2]',
      'Δp50',
      'p99 sluice / floor [/ h2]',
      'Δp99',
      'srv µs/req sluice / floor [/ h2]',
      'cpu ×',
    ],
    rows,
    'lrrrrrrr',
  );
}

/** The loadgen's message names, in the order Envoy sends them. */
const MESSAGE_ORDER = [
  'router.request_headers',
  'router.request_body',
  'upstream.request_headers',
  'router.response_headers',
  'router.response_body',
];

/** Each message's round trip at the target rate: where the added time goes. */
export function messagesTable(points: GoPoint[]): string {
  const rows: string[][] = [];
  const rank = (name: string): number => {
    const i = MESSAGE_ORDER.indexOf(name);
    return i < 0 ? MESSAGE_ORDER.length : i;
  };
  for (const p of points) {
    if (p.target !== 'sluice' || p.rate !== TARGET.rate || !p.r) continue;
    const messages = Object.entries(p.r.messages).sort(([a], [b]) => rank(a) - rank(b));
    for (const [name, m] of messages) {
      rows.push([p.exchange, name, fmtMs(m.p50), fmtMs(m.p90), fmtMs(m.p99), fmtMs(m.max)]);
    }
  }
  return table(['exchange', 'message', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'], rows, 'llrrrr');
}
