/**
 * Every core of the pod (issue 16): the throughput of `sluice extproc --workers 2` next to
 * `--workers 1`, measured in the same run with the Go load generator driving the whole request
 * (router 4 phases + upstream filter, 2 KB chat) over 2 HTTP/2 connections (Envoy keeps one per
 * worker thread), at a rate far above what either can hold but with at most BENCH_WORKERS_IN_FLIGHT
 * (default 64) requests open, the rest dropped unsent: what completes per second is the
 * throughput. Target: 2 workers ≥ 1.8× one.
 *
 * Caveat printed with the figure: on a 2-core machine the load generator and everything else
 * running share the two cores with the workers, so the ratio measured here understates what two
 * dedicated cores give; `noise` is the CPU of other processes during the window, as a share of
 * one core. The control: the do-nothing grpc-go ext_proc server (the loadgen binary's `serve`,
 * free to use both cores) driven the same way, interleaved with the two: what it completes is
 * the most this load generator drives on this machine, whatever the server. Where one worker
 * already completes about as much, the ratio measures the load generator, not `--workers`.
 * Run alone with: npx tsx test/bench/workers.ts
 *
 * Environment: BENCH_WORKERS_RATE offered rate (default 12000), BENCH_WORKERS_SECONDS measured
 * seconds (default 4), BENCH_WORKERS_REPS repetitions, interleaved, median taken (default 3),
 * BENCH_WORKERS_POLICY=1 adds the masking + budget route (its budget in the primary's memory
 * store over IPC).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchConfig, POLICY_MODEL } from './config.js';
import { runLoadgen, type GoPoint } from './latency.js';
import { buildLoadgen } from './loadgen/build.js';
import { chatPayload } from './payloads.js';
import { Child, freePort, httpStatus, loadAverage, waitReady } from './proc.js';
import type { Payload } from './scenarios.js';
import { fmtInt, median, table } from './stats.js';

const ROOT = resolve(fileURLToPath(new URL('../../', import.meta.url)));
const RATE = Number(process.env.BENCH_WORKERS_RATE ?? 12_000) || 12_000;
const SECONDS = Number(process.env.BENCH_WORKERS_SECONDS ?? 4) || 4;
const REPS = Number(process.env.BENCH_WORKERS_REPS ?? 3) || 3;
const TARGET_RATIO = 1.8;
/** Requests open at once (both connections): enough to keep two workers busy. */
const IN_FLIGHT = Number(process.env.BENCH_WORKERS_IN_FLIGHT ?? 64) || 64;

function payload(policy: boolean): Payload {
  return chatPayload(2048, policy ? { model: POLICY_MODEL, pii: true } : {});
}

interface Server {
  child: Child;
  socket: string;
}

/** The do-nothing grpc-go ext_proc server, on every core: the load generator's ceiling. */
async function startFloor(bin: string, dir: string): Promise<Server> {
  const socket = `unix:${join(dir, 'floor-go.sock')}`;
  const child = new Child('floor-go', bin, ['serve', socket], {
    cwd: ROOT,
    logPath: join(dir, 'floor-go.log'),
    exec: true,
  });
  await waitReady(child, () => child.tail(100).includes('ready'));
  return { child, socket };
}

async function start(dir: string, workers: number, configPath: string): Promise<Server> {
  const adminPort = await freePort();
  const socket = `unix:${join(dir, `w${workers}.sock`)}`;
  const child = new Child(
    `extproc-w${workers}`,
    resolve(ROOT, process.env.BENCH_EXTPROC || 'operator/cli.ts'),
    [
      'extproc',
      '--config',
      configPath,
      '--listen',
      socket,
      '--admin',
      `127.0.0.1:${adminPort}`,
      '--workers',
      String(workers),
      '--shutdown-grace-ms',
      '500',
      '--log-level',
      'warn',
    ],
    { cwd: ROOT, logPath: join(dir, `w${workers}.log`), env: { SLUICE_REDIS_URL: '' } },
  );
  await waitReady(
    child,
    async () => (await httpStatus(`http://127.0.0.1:${adminPort}/readyz`)) === 200,
    60_000,
  );
  return { child, socket };
}

async function main(): Promise<void> {
  const lg = buildLoadgen();
  if ('skipped' in lg) {
    console.log(`  skipped: ${lg.skipped}`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-workers-'));
  const configPath = join(dir, 'extproc.yaml');
  writeFileSync(configPath, benchConfig());
  const servers: Server[] = [];
  try {
    const one = await start(dir, 1, configPath);
    servers.push(one);
    const two = await start(dir, 2, configPath);
    servers.push(two);
    const floor = await startFloor(lg.path, dir);
    servers.push(floor);
    const exchanges = [{ name: 'chat-2k', payload: payload(false), floor: false }];
    if (process.env.BENCH_WORKERS_POLICY === '1') {
      exchanges.push({ name: 'chat-2k-policy', payload: payload(true), floor: false });
    }
    const rows: string[][] = [];
    for (const ex of exchanges) {
      // 0: the grpc-go floor (the control), 1 and 2: --workers.
      const got = new Map<number, GoPoint[]>([
        [0, []],
        [1, []],
        [2, []],
      ]);
      // Interleaved, so a burst of someone else's work lands on both sides alike.
      for (let rep = 0; rep < REPS; rep++) {
        for (const [n, s] of [
          [1, one],
          [2, two],
          [0, floor],
        ] as const) {
          const p = await runLoadgen(ex, n === 0 ? 'floor-go' : 'sluice', {
            bin: lg.path,
            dir,
            socket: s.socket,
            serverPid: s.child.pid,
            rate: RATE,
            seconds: SECONDS,
            warmup: 1,
            loadgenCore: undefined,
            // A closed loop in effect: at most this many open, the rest of the schedule dropped
            // unsent, so the server works at capacity instead of drowning in a queue.
            maxInFlight: IN_FLIGHT,
          });
          got.get(n)!.push(p);
        }
      }
      const through = (n: number) =>
        median(got.get(n)!.map((p) => (p.r ? p.r.completed / p.r.seconds : NaN)));
      const noise = (n: number) => median(got.get(n)!.map((p) => p.noise));
      const loadgen = (n: number) => median(got.get(n)!.map((p) => p.r?.cpu.loadgenShare ?? NaN));
      // CPU per completed request of the whole process tree (primary + workers; the loadgen's
      // -server-pid counts children). With two workers on shared cores each sees about half the
      // load, so less is batched per write and the figure rises: it is not a projection.
      const cpu = (n: number) => median(got.get(n)!.map((p) => p.r?.cpu.serverUsPerReq ?? NaN));
      const t1 = through(1);
      const t2 = through(2);
      const t0 = through(0);
      const ratio = t2 / t1;
      // One worker within 10% of what the load generator drives against a server doing nothing:
      // the generator, not the extproc, set both figures.
      const generatorBound = t1 >= 0.9 * t0;
      const errors = [...got.values()].flat().find((p) => !p.r)?.error;
      rows.push([
        ex.name,
        `${fmtInt(t1)} req/s`,
        `${fmtInt(t2)} req/s`,
        Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : '-',
        `${fmtInt(t0)} req/s (one worker ${(t1 / t0).toFixed(2)}×)`,
        `${fmtInt(cpu(1))} / ${fmtInt(cpu(2))} µs`,
        `≥ ${TARGET_RATIO}×`,
        errors
          ? `loadgen failed: ${errors}`
          : `${ratio >= TARGET_RATIO ? 'met' : 'NOT MET'}${generatorBound ? ' (bounded by the load generator: one worker already completes what it drives against the do-nothing floor)' : ''} (loadgen ${(loadgen(2) * 100).toFixed(0)}% of a core, others ${(noise(2) * 100).toFixed(0)}%, 2 cores in all)`,
      ]);
    }
    console.log(
      table(
        [
          'exchange',
          '--workers 1',
          '--workers 2',
          'ratio',
          'grpc-go floor, every core (control)',
          'CPU/req 1 / 2 (all processes)',
          'target',
          'verdict',
        ],
        rows,
        'lrrrrrll',
      ),
    );
    console.log(
      `  offered ${fmtInt(RATE)} req/s over 2 connections, at most ${IN_FLIGHT} open (the rest dropped unsent), ${SECONDS} s × ${REPS} interleaved, medians; load average ${loadAverage()}`,
    );
  } finally {
    for (const s of servers) await s.child.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
