/**
 * Reads loadgen -trace files (BENCH_LOADGEN_TRACE=DIR in the bench) and says where the slow
 * requests were: spread out or clustered in stalls; on one connection or both; which message
 * waited; and what the loadgen (its lag, its GC), the server's main thread (run-queue wait) and
 * the machine (per-core busy and steal) did during each stall.
 *
 *   npx tsx test/bench/loadgen/trace-report.ts FILE.json [FILE.json ...]
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const PHASES = ['rq.hdr', 'rq.body', 'up.hdr', 'rs.hdr', 'rs.body'];

interface TraceRequest {
  i: number;
  conn: number;
  warm?: boolean;
  err?: string;
  due: number;
  began: number;
  end: number;
  sent: number[];
  wrote: number[];
  answered: number[];
}

interface TraceSample {
  t: number;
  cores: Record<string, number[]>;
  serverRunNs: number;
  serverWaitNs: number;
  serverSwitches: number;
  loadgenRunNs: number;
  loadgenWaitNs: number;
}

interface TraceFile {
  startUnixNs: number;
  intervalUs: number;
  warmupN: number;
  conns: number;
  marks?: [number, number];
  gomaxprocs: number;
  requests: TraceRequest[];
  gc: { end: number; pauseUs: number }[];
  samples: TraceSample[];
}

const ms = (us: number): string => (us / 1000).toFixed(1);

function rank(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p * s.length) / 100) - 1))] ?? NaN;
}

/** Per-core busy, steal (ms) and the server's and loadgen's run-queue wait (ms) in [from, to]. */
function machine(samples: TraceSample[], from: number, to: number): string {
  const a = [...samples].reverse().find((s) => s.t <= from) ?? samples[0];
  const b = samples.find((s) => s.t >= to) ?? samples[samples.length - 1];
  if (!a || !b || a === b) return 'no samples';
  const cores = Object.keys(b.cores)
    .sort()
    .map((c) => {
      const x = a.cores[c]!;
      const y = b.cores[c]!;
      const d = y.map((v, k) => v - x[k]!);
      const total = d.reduce((s, v) => s + v, 0);
      const idle = d[3]! + d[4]!;
      return `${c} busy ${((total - idle) * 10).toFixed(0)}/${(total * 10).toFixed(0)} ms steal ${(d[7]! * 10).toFixed(0)}`;
    });
  return `${ms(b.t - a.t)} ms sampled: ${cores.join(', ')}; server main thread ran ${((b.serverRunNs - a.serverRunNs) / 1e6).toFixed(1)} ms, waited for a CPU ${((b.serverWaitNs - a.serverWaitNs) / 1e6).toFixed(1)} ms, slept ${((b.t - a.t) / 1e3 - (b.serverRunNs - a.serverRunNs + b.serverWaitNs - a.serverWaitNs) / 1e6).toFixed(1)} ms (${b.serverSwitches - a.serverSwitches} slices); loadgen ran ${((b.loadgenRunNs - a.loadgenRunNs) / 1e6).toFixed(1)} ms, waited ${((b.loadgenWaitNs - a.loadgenWaitNs) / 1e6).toFixed(1)} ms`;
}

function report(path: string): void {
  const f = JSON.parse(readFileSync(path, 'utf8')) as TraceFile;
  const all = f.requests.filter((r) => r.end > 0);
  const reqs = all.filter((r) => !r.warm && !r.err);
  const lat = (r: TraceRequest): number => r.end - r.due;
  const lats = reqs.map(lat);
  const p99 = rank(lats, 99);
  const p50 = rank(lats, 50);
  console.log(`\n${basename(path)}: ${reqs.length} measured requests, GOMAXPROCS ${f.gomaxprocs}`);
  console.log(
    `  from schedule p50 ${ms(p50)} p99 ${ms(p99)} max ${ms(Math.max(...lats))} ms; loadgen lag p99 ${ms(
      rank(
        reqs.map((r) => r.began - r.due),
        99,
      ),
    )} max ${ms(Math.max(...reqs.map((r) => r.began - r.due)))} ms`,
  );
  const w0 = reqs[0]?.due ?? 0;
  const w1 = Math.max(...reqs.map((r) => r.end));
  console.log(`  whole window: ${machine(f.samples, w0, w1)}`);
  if (f.marks) {
    console.log(
      `  window-start snapshot (every process's CPU, the server's probe) at ${ms(f.marks[0] - w0)} ms, took ${ms(f.marks[1] - f.marks[0])} ms`,
    );
  }
  const gcs = f.gc.filter((g) => g.end >= w0 && g.end <= w1);
  console.log(
    `  loadgen GC: ${gcs.length} pauses in the window, longest ${gcs.length ? Math.max(...gcs.map((g) => g.pauseUs)).toFixed(0) : '-'} µs`,
  );

  // Where a request's time went: the loadgen's lag, each message's round trip, client gaps.
  const slow = reqs.filter((r) => lat(r) >= p99);
  const share = (rs: TraceRequest[]): string => {
    const sum = new Array<number>(PHASES.length + 2).fill(0);
    for (const r of rs) {
      sum[0]! += r.began - r.due;
      for (let p = 0; p < PHASES.length; p++) {
        if (r.sent[p]) sum[p + 1]! += r.answered[p]! - r.sent[p]!;
      }
      sum[PHASES.length + 1]! += r.wrote.reduce((s, w, p) => s + (w ? w - r.sent[p]! : 0), 0);
    }
    const n = rs.length || 1;
    return `lag ${ms(sum[0]! / n)}, ${PHASES.map((p, k) => `${p} ${ms(sum[k + 1]! / n)}`).join(', ')} (Send blocked ${ms(sum[PHASES.length + 1]! / n)}) ms`;
  };
  console.log(`  mean per request, all: ${share(reqs)}`);
  console.log(`  mean per request, slowest 1% (${slow.length}): ${share(slow)}`);
  const byConn = new Map<number, number>();
  for (const r of slow) byConn.set(r.conn, (byConn.get(r.conn) ?? 0) + 1);
  console.log(
    `  slowest 1% by connection: ${[...byConn].map(([c, n]) => `conn ${c}: ${n}`).join(', ')}`,
  );

  // Stalls: requests over 4× the median (and ≥ 5 ms) that overlap in time form one episode.
  const cut = Math.max(4 * p50, 5000);
  const late = reqs.filter((r) => lat(r) >= cut).sort((a, b) => a.due - b.due);
  const episodes: TraceRequest[][] = [];
  let endOf = -Infinity;
  for (const r of late) {
    if (r.due > endOf) episodes.push([]);
    episodes[episodes.length - 1]!.push(r);
    endOf = Math.max(endOf, r.end);
  }
  console.log(
    `  ${late.length} requests over ${ms(cut)} ms in ${episodes.length} episodes (overlapping in time):`,
  );
  // The largest first: those make the p99.
  const largest = [...episodes].sort((a, b) => b.length - a.length).slice(0, 8);
  console.log('  the largest:');
  for (const e of largest) {
    const from = Math.min(...e.map((r) => r.due));
    const to = Math.max(...e.map((r) => r.end));
    // Which message each late request was waiting on at the episode's start... simpler: the
    // message with its longest round trip.
    const phases = new Map<string, number>();
    for (const r of e) {
      let best = 0;
      for (let p = 1; p < PHASES.length; p++) {
        if (r.answered[p]! - r.sent[p]! > r.answered[best]! - r.sent[best]!) best = p;
      }
      phases.set(PHASES[best]!, (phases.get(PHASES[best]!) ?? 0) + 1);
    }
    const answers = e.flatMap((r) => r.answered.filter((a) => a > 0)).sort((a, b) => a - b);
    // Answers that arrived in one burst after the stall: within 1 ms of the last one.
    const burst = answers.filter((a) => a >= answers[answers.length - 1]! - 1000).length;
    const conns = [...new Set(e.map((r) => r.conn))].sort().join('+');
    const overlapGc = f.gc.filter((g) => g.end >= from && g.end - g.pauseUs <= to);
    console.log(
      `   at ${ms(from - w0)} ms for ${ms(to - from)} ms: ${e.length} requests, worst ${ms(Math.max(...e.map(lat)))} ms, conns ${conns}, longest message ${[...phases].map(([p, n]) => `${p}×${n}`).join(' ')}, lag max ${ms(Math.max(...e.map((r) => r.began - r.due)))} ms, loadgen GC pauses ${overlapGc.length}`,
    );
    console.log(`     ${machine(f.samples, from, to)}`);
    // Was anything answered during the episode, on either connection? A server that answers
    // others while these wait is not stalled as a whole.
    const others = reqs.filter(
      (r) => !e.includes(r) && r.answered.some((a) => a > from && a < to),
    ).length;
    console.log(
      `     other requests answered during it: ${others}; ${burst} of ${answers.length} of its answers came in the last 1 ms`,
    );
  }
}

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: trace-report.ts FILE.json [FILE.json ...]\n');
  process.exit(2);
}
for (const f of files) report(f);
