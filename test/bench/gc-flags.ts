/**
 * Node/V8 settings for the extproc compared by what a busy machine does not bend: the extproc
 * pinned to one core runs a closed loop (a fixed number of requests in flight, so what survives a
 * young collection does not grow with a backlog), and each setting is measured by its CPU per
 * request (all the process's threads: GC helpers included), V8 heap allocated and promoted per
 * request, collections per 1,000 requests and their summed main-thread pauses, and RSS. The
 * settings run interleaved, GC_REPS rounds, each in a fresh process; medians and ranges printed.
 * Wall-clock pauses and latency need a quiet machine: the lean section of `npm run bench` (issue
 * 16's p99) is where the chosen setting is confirmed.
 *
 *   node --import tsx test/bench/gc-flags.ts 'default=' 'stgc=--single-threaded-gc' ...
 *   GC_REPS          rounds (default 3)
 *   GC_REQUESTS      measured exchanges per exchange kind (default 4000), after GC_WARMUP (1500):
 *                    a count, not a time, so a slow (busy) machine measures the same work
 *   GC_CONCURRENCY   requests in flight (default 4)
 *   GC_EXCHANGES     exchange kinds, in this order in each fresh extproc (default chat-2k,chat-2k-policy;
 *                    chat-2k-all: every feature on, the RSS target's exchange)
 *   BENCH_EXTPROC    the extproc entry (default dist/operator/cli.js when built, else the sources)
 *
 * A setting is `name=flags`, flags space-separated; `ENV:NAME=value` among them sets the
 * extproc's environment (e.g. ENV:MALLOC_ARENA_MAX=2), and `SHIPPED` stands for what ships
 * (extproc/workers/node-flags.ts: its flags and its environment), e.g.
 * 'ship=SHIPPED' 'grow=SHIPPED --heap-growing-percent=30'. Nothing is added otherwise.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExtProcClient } from '../../operator/envoy-sim/ext-proc/index.js';
import { EXTPROC_ENV, EXTPROC_NODE_FLAGS } from '../../extproc/workers/node-flags.js';
import { benchConfig, EVERYTHING_MODEL, POLICY_MODEL } from './config.js';
import { chatPayload } from './payloads.js';
import {
  Child,
  cpuMs,
  freePort,
  hasTaskset,
  httpStatus,
  loadAverage,
  pinSelf,
  rssParts,
  waitReady,
} from './proc.js';
import {
  markProbe,
  probeModule,
  runtimeFigures,
  type GcEvent,
  type HeapSpace,
} from './probe-client.js';
import { countedLoop, type Payload } from './scenarios.js';
import { median, table } from './stats.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const SERVER_CORE = 1;
const DRIVER_CORE = 0;

interface Setting {
  name: string;
  flags: string[];
  env: Record<string, string>;
}

interface Sample {
  setting: string;
  exchange: string;
  round: number;
  load: string;
  requests: number;
  cpuUsPerReq: number;
  allocKiB: number;
  promotedKiB: number;
  scavengesPer1k: number;
  marksPer1k: number;
  /** Summed main-thread pauses per request (µs) and the longest (ms): wall time, bent by load. */
  pauseUsPerReq: number;
  maxPauseMs: number;
  /** The longest young and full collection of the window (ms; 0 when there was none). */
  maxScavengeMs: number;
  maxMarkCompactMs: number;
  rssMiB: number;
  heapCommittedMiB: number;
  /** Of it, the young generation and the old space (MiB resident). */
  newSpaceMiB: number;
  oldSpaceMiB: number;
  /** Memory outside the V8 heap that V8 knows of (ArrayBuffers among it), at the window's end. */
  externalMiB: number;
  mallocMiB: number;
  threads: number;
}

function parseSetting(spec: string): Setting {
  const eq = spec.indexOf('=');
  if (eq < 1) throw new Error(`setting ${spec}: expected name=flags`);
  const flags: string[] = [];
  const env: Record<string, string> = {};
  for (const tok of spec
    .slice(eq + 1)
    .split(' ')
    .filter(Boolean)) {
    if (tok === 'SHIPPED') {
      flags.push(...EXTPROC_NODE_FLAGS);
      Object.assign(env, EXTPROC_ENV);
    } else if (tok.startsWith('ENV:')) {
      const [k, v] = tok.slice(4).split('=');
      if (!k || v === undefined) throw new Error(`setting ${spec}: ${tok} is not ENV:NAME=value`);
      env[k] = v;
    } else flags.push(tok);
  }
  return { name: spec.slice(0, eq), flags, env };
}

function entry(): string {
  if (process.env.BENCH_EXTPROC) return resolve(ROOT, process.env.BENCH_EXTPROC);
  const built = join(ROOT, 'dist/operator/cli.js');
  return existsSync(built) ? built : join(ROOT, 'operator/cli.ts');
}

async function measure(
  s: Setting,
  round: number,
  exchanges: [string, Payload][],
  o: { requests: number; warmup: number; concurrency: number; pin: boolean },
): Promise<Sample[]> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-gc-flags-'));
  const file = entry();
  const configPath = join(dir, 'extproc.yaml');
  writeFileSync(configPath, benchConfig());
  const adminPort = await freePort();
  const sock = `unix:${join(dir, 'extproc.sock')}`;
  const probe = join(dir, 'extproc.probe.sock');
  const child = new Child(
    'extproc',
    file,
    ['extproc', '--config', configPath, '--listen', sock, '--admin', `127.0.0.1:${adminPort}`],
    {
      cwd: ROOT,
      logPath: join(dir, 'extproc.log'),
      nodeFlags: s.flags,
      preload: [probeModule(file, dir)],
      env: { BENCH_PROBE_SOCKET: probe, ...s.env },
      ...(o.pin && { core: SERVER_CORE }),
    },
  );
  const client = new ExtProcClient(sock, {
    channelOptions: { 'grpc.enable_retries': 0, 'grpc.enable_channelz': 0 },
  });
  const out: Sample[] = [];
  try {
    await waitReady(
      child,
      async () => (await httpStatus(`http://127.0.0.1:${adminPort}/readyz`)) === 200,
    );
    await client.connect();
    const target = { name: 'sluice' as const, client, streamedFromStart: false };
    for (const [name, p] of exchanges) {
      await countedLoop(target, p, o.concurrency, o.warmup);
      const cpu0 = cpuMs(child.pid);
      const begin = await markProbe(probe);
      const r = await countedLoop(target, p, o.concurrency, o.requests);
      const end = await markProbe(probe);
      const cpu = cpuMs(child.pid) - cpu0;
      if (r.rec.errors > 0) throw new Error(`${s.name} ${name}: ${r.rec.firstError}`);
      const rt = runtimeFigures(begin, end, r.requests);
      const parts = rssParts(child.pid);
      out.push({
        setting: s.name,
        exchange: name,
        round,
        load: loadAverage(),
        requests: r.requests,
        cpuUsPerReq: (cpu * 1000) / r.requests,
        allocKiB: rt.allocKiBPerReq,
        promotedKiB: rt.promotedKiBPerReq,
        scavengesPer1k: (rt.scavenges * 1000) / r.requests,
        marksPer1k: (rt.marks * 1000) / r.requests,
        pauseUsPerReq: ((end.gc.pauseMs - begin.gc.pauseMs) * 1000) / r.requests,
        maxPauseMs: rt.maxPauseMs,
        maxScavengeMs: longest(rt.events, 'Scavenge'),
        maxMarkCompactMs: longest(rt.events, 'MarkSweepCompact'),
        rssMiB: (parts?.rssKiB ?? Number.NaN) / 1024,
        heapCommittedMiB: rt.heapCommittedMiB,
        newSpaceMiB: committed(rt.spaces, 'new_space'),
        oldSpaceMiB: committed(rt.spaces, 'old_space'),
        externalMiB: rt.externalMiB,
        mallocMiB: ((parts?.brkKiB ?? Number.NaN) + (parts?.arenaKiB ?? Number.NaN)) / 1024,
        threads: parts?.threads ?? Number.NaN,
      });
    }
  } finally {
    client.close();
    await child.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

/** The longest pause of one kind of collection among a window's (0 when none ran). */
function longest(events: readonly GcEvent[], kind: string): number {
  return events.reduce((m, e) => (e.kind === kind ? Math.max(m, e.pauseMs) : m), 0);
}

/** One V8 space's resident size (MiB). */
function committed(spaces: readonly HeapSpace[], name: string): number {
  return (spaces.find((x) => x.name === name)?.committedBytes ?? Number.NaN) / (1024 * 1024);
}

function summary(samples: Sample[], settings: Setting[], exchanges: string[]): string {
  const cols: [keyof Sample, string, number][] = [
    ['cpuUsPerReq', 'CPU µs/req', 0],
    ['allocKiB', 'alloc KiB/req', 1],
    ['promotedKiB', 'promoted KiB/req', 2],
    ['scavengesPer1k', 'scav./1k req', 1],
    ['marksPer1k', 'mark-comp./1k req', 2],
    ['pauseUsPerReq', 'pause µs/req', 0],
    ['maxScavengeMs', 'scav. max ms', 1],
    ['maxMarkCompactMs', 'mark-comp. max ms', 1],
    ['rssMiB', 'RSS MiB', 0],
    ['heapCommittedMiB', 'V8 committed MiB', 0],
    ['newSpaceMiB', 'new MiB', 0],
    ['oldSpaceMiB', 'old MiB', 0],
    ['externalMiB', 'external MiB', 0],
    ['mallocMiB', 'malloc MiB', 0],
    ['threads', 'threads', 0],
  ];
  const rows: string[][] = [];
  for (const ex of exchanges) {
    for (const s of settings) {
      const xs = samples.filter((x) => x.exchange === ex && x.setting === s.name);
      if (xs.length === 0) continue;
      rows.push([
        ex,
        s.name,
        String(xs.length),
        ...cols.map(([k, , d]) => {
          const v = xs.map((x) => x[k] as number);
          return `${median(v).toFixed(d)} [${Math.min(...v).toFixed(d)}–${Math.max(...v).toFixed(d)}]`;
        }),
      ]);
    }
  }
  return table(
    ['exchange', 'setting', 'n', ...cols.map(([, h]) => `${h} median [range]`)],
    rows,
    `llr${'r'.repeat(cols.length)}`,
  );
}

async function main(): Promise<void> {
  const specs = process.argv.slice(2);
  if (specs.length === 0) {
    process.stderr.write("usage: gc-flags.ts 'name=flags' ... (see the file's comment)\n");
    process.exit(2);
  }
  const settings = specs.map(parseSetting);
  const o = {
    requests: Number(process.env.GC_REQUESTS || 4000),
    warmup: Number(process.env.GC_WARMUP || 1500),
    concurrency: Number(process.env.GC_CONCURRENCY || 4),
    pin: hasTaskset(),
  };
  const reps = Number(process.env.GC_REPS || 3);
  // The driver (grpc-js client) on the other core: it must not take turns with the server.
  if (o.pin) pinSelf(DRIVER_CORE);
  const kinds: Record<string, Payload> = {
    'chat-2k': chatPayload(2048, { model: undefined, pii: false }),
    'chat-2k-policy': chatPayload(2048, { model: POLICY_MODEL, pii: true }),
    'chat-2k-all': chatPayload(2048, { model: EVERYTHING_MODEL, pii: true }),
  };
  const exchanges = (process.env.GC_EXCHANGES || 'chat-2k,chat-2k-policy')
    .split(',')
    .map((k): [string, Payload] => {
      const p = kinds[k];
      if (!p)
        throw new Error(`GC_EXCHANGES: no exchange '${k}' (${Object.keys(kinds).join(', ')})`);
      return [k, p];
    });
  console.log(
    `${entry()}; extproc ${o.pin ? `pinned to core ${SERVER_CORE}` : 'not pinned'}; closed loop, ${o.concurrency} in flight; ${o.warmup} warm-up + ${o.requests} measured exchanges each; ${reps} interleaved rounds; load average ${loadAverage()}`,
  );
  const samples: Sample[] = [];
  for (let round = 1; round <= reps; round++) {
    for (const s of settings) {
      const got = await measure(s, round, exchanges, o);
      samples.push(...got);
      for (const g of got) {
        console.log(
          `  round ${round} ${s.name} ${g.exchange}: ${g.requests} req, ${g.cpuUsPerReq.toFixed(0)} µs/req, ${g.scavengesPer1k.toFixed(1)}/${g.marksPer1k.toFixed(2)} gc/1k, pause ${g.pauseUsPerReq.toFixed(0)} µs/req (max ${g.maxPauseMs.toFixed(1)} ms), RSS ${g.rssMiB.toFixed(0)} MiB; load ${g.load}`,
        );
      }
    }
  }
  if (process.env.GC_JSON) writeFileSync(process.env.GC_JSON, JSON.stringify(samples));
  console.log();
  console.log(
    summary(
      samples,
      settings,
      exchanges.map(([n]) => n),
    ),
  );
  console.log(`load average at end ${loadAverage()}`);
}

await main();
