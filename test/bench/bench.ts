/**
 * `npm run bench`: what the extproc adds to a request, next to a do-nothing ext_proc server
 * (the floor) measured in the same run with the same driver. Prints figures, and judges them
 * only against DESIGN §7's targets (the summary at the end).
 *
 * Both servers run as child processes pinned to core 1 (their CPU and RSS are their own); the
 * driver runs here, pinned to core 0, and so does the Go load generator (test/bench/loadgen,
 * built into ~/.cache/sluice/bench on first use) that measures the §7 latency target, because
 * the JS driver cannot produce 2,000 req/s on one core by itself. Environment:
 *   BENCH_SECONDS          measured seconds per point (default 3)
 *   BENCH_WARMUP_SECONDS   warm-up before each point (default 1; the lean section: BENCH_LEAN_WARMUP_SECONDS, 8)
 *   BENCH_CONCURRENCY      closed-loop concurrencies (default 1,8,32)
 *   BENCH_RATES            open-loop rates in req/s (default 1000,2000,3000), for the JS driver's
 *                          open loop and the Go load generator's
 *   BENCH_RATE_SECONDS     open-loop duration per rate (default 4)
 *   BENCH_ONLY             comma-separated sections: scenarios (chat-2k, chat-2k-router,
 *                          chat-2k-policy, chat-100k, sse-200), rate (JS open loop), latency (the
 *                          §7 target with the Go load generator), lean (issue 16: the whole
 *                          request at BENCH_LEAN_RATES against the grpc-go floor, with GC,
 *                          allocation and event-loop figures), operator, masking,
 *                          governance, estimate, context, cache, translation, workers,
 *                          cloud (issue 15: the cloud translators per pair, SigV4), markers
 *                          (issue 16: the memory store's settled markers over a simulated 40 min)
 *   BENCH_PROFILE          a directory: run the extproc with --cpu-prof there, print its hot spots
 *   BENCH_EXTPROC_FLAGS    node flags for the extproc besides the shipped ones (extproc/workers/
 *                          node-flags.ts), space-separated (e.g. --trace-gc); they win by name
 *   BENCH_EXTPROC_ENV      environment for the extproc besides the shipped one (EXTPROC_ENV),
 *                          space-separated NAME=value (e.g. LD_PRELOAD=...); it wins by name
 *   BENCH_SHIPPED_FLAGS    0: the extproc without the shipped node flags and environment
 *   BENCH_GRPC_SERVER      the extproc's --grpc-server (default: its own default)
 *   BENCH_KEEP_LOGS        keep the servers' logs (the extproc's stderr: --trace-gc lands there)
 *   BENCH_EXTPROC          the extproc entry point (default: dist/operator/cli.js, as production
 *                          runs it, when `npm run build` made it after the last change to a
 *                          source; else operator/cli.ts through tsx; the header says which)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { globalAgent } from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { benchConfig, EVERYTHING_MODEL, POLICY_MODEL } from './config.js';
import { ExtProcClient, ExtProcFilter } from '../../operator/envoy-sim/ext-proc/index.js';
import {
  chatPayload,
  chatRequestBody,
  PII_TURN,
  requestHeaders,
  sseChunks,
  sseResponseHeaders,
} from './payloads.js';
import {
  floorTable,
  held,
  messagesTable,
  noisy,
  pointsTable,
  runLoadgen,
  TARGET,
  verdict as goVerdict,
  type Exchange,
  type GoPoint,
} from './latency.js';
import { buildLoadgen } from './loadgen/build.js';
import { alternateServers, leanRates, leanSection, type LeanEndpoint } from './lean.js';
import { EXTPROC_ENV, withNodeFlags } from '../../extproc/workers/node-flags.js';
import {
  Child,
  coreTicks,
  cpuMs,
  envAssignments,
  freePort,
  hasTaskset,
  httpStatus,
  loadAverage,
  peakRssKiB,
  pinSelf,
  preloadedLibrary,
  ticksToMs,
  waitReady,
} from './proc.js';
import type { OperatorFigures } from './operator.js';
import { hotSpotTable } from './profile-top.js';
import { probeModule } from './probe-client.js';
import {
  closedLoop,
  openLoop,
  ROUTER,
  type LoopResult,
  type Payload,
  type RateResult,
  type Recording,
  type Target,
} from './scenarios.js';
import { fmtInt, fmtMs, table } from './stats.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const SERVER_CORE = 1;
const PROBE = fileURLToPath(new URL('./probe.ts', import.meta.url));

const DRIVER_CORE = 0;

/**
 * The extproc's node flags: what ships (extproc/workers/node-flags.ts: the chart, npm start and
 * the workers carry them) with BENCH_EXTPROC_FLAGS added, which wins where both name a flag;
 * BENCH_SHIPPED_FLAGS=0 leaves the shipped ones out (and the shipped environment, EXTPROC_ENV).
 */
function extprocNodeFlags(): string[] {
  const extra = process.env.BENCH_EXTPROC_FLAGS?.split(' ').filter(Boolean) ?? [];
  return process.env.BENCH_SHIPPED_FLAGS === '0' ? extra : withNodeFlags(extra);
}

/**
 * The extproc's environment: what ships (EXTPROC_ENV: glibc's malloc settings) unless
 * BENCH_SHIPPED_FLAGS=0, with BENCH_EXTPROC_ENV (space-separated NAME=value) added, which wins:
 * e.g. LD_PRELOAD=libmimalloc.so.2 to measure another malloc (README "node flags").
 */
function extprocEnv(): Record<string, string> {
  return {
    ...(process.env.BENCH_SHIPPED_FLAGS !== '0' && EXTPROC_ENV),
    ...envAssignments(process.env.BENCH_EXTPROC_ENV, 'BENCH_EXTPROC_ENV'),
  };
}

/** Which malloc a running process uses: a preloaded library it has mapped, else glibc's. */
function mallocOf(pid: number): string {
  const lib = preloadedLibrary(pid);
  return lib ? `${lib} (preloaded)` : "glibc's";
}

const CONFIG = benchConfig();

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${raw}: expected a positive number`);
  return n;
}

interface Settings {
  seconds: number;
  warmup: number;
  concurrency: number[];
  rates: number[];
  rateSeconds: number;
  only: Set<string> | undefined;
  profileDir: string | undefined;
  extprocEntry: string;
}

function envList(name: string, fallback: string): number[] {
  const raw = process.env[name] || fallback;
  const list = raw.split(',').map((s) => Number(s));
  if (list.some((c) => !Number.isInteger(c) || c < 1)) {
    throw new Error(`${name}=${raw}: expected positive integers, e.g. ${fallback}`);
  }
  return list;
}

function settings(): Settings {
  const only = process.env.BENCH_ONLY;
  const profile = process.env.BENCH_PROFILE;
  return {
    seconds: envNumber('BENCH_SECONDS', 3),
    warmup: envNumber('BENCH_WARMUP_SECONDS', 1),
    concurrency: envList('BENCH_CONCURRENCY', '1,8,32'),
    rates: envList('BENCH_RATES', '1000,2000,3000'),
    rateSeconds: envNumber('BENCH_RATE_SECONDS', 4),
    only: only ? new Set(only.split(',').map((s) => s.trim())) : undefined,
    profileDir: profile ? resolve(profile) : undefined,
    extprocEntry: extprocEntry(),
  };
}

const BUILT = 'dist/operator/cli.js';

/**
 * The extproc the bench runs: BENCH_EXTPROC when set; else the compiled build (what ships) when
 * `npm run build` has made it and it is newer than every TypeScript source of the extproc and
 * the CLI; else the sources through tsx (which costs more than the build: the header says which).
 */
function extprocEntry(): string {
  if (process.env.BENCH_EXTPROC) return resolve(ROOT, process.env.BENCH_EXTPROC);
  const built = join(ROOT, BUILT);
  let builtAt: number;
  try {
    builtAt = statSync(built).mtimeMs;
  } catch {
    return join(ROOT, 'operator/cli.ts');
  }
  const newer = (dir: string): boolean =>
    readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' }).some(
      (f) =>
        f.endsWith('.ts') &&
        !f.endsWith('.test.ts') &&
        statSync(join(ROOT, dir, f)).mtimeMs > builtAt,
    );
  return newer('extproc') || newer('operator') ? join(ROOT, 'operator/cli.ts') : built;
}

interface Scenario {
  name: string;
  what: string;
  payload: Payload;
}

/**
 * The lean section's every-feature exchange (issue 16's RSS target): as chat-2k-policy, on the
 * route with masking by every detector, the prompt guard and budgets (config.ts).
 */
function everythingPayload(): Payload {
  return chatPayload(2048, { model: EVERYTHING_MODEL, pii: true });
}

function scenarios(): Scenario[] {
  const chat = (kib: number, upstream: boolean, policy = false): Payload =>
    chatPayload(kib * 1024, policy ? { model: POLICY_MODEL, pii: true } : {}, upstream);
  const streamBody = chatRequestBody(2048, { stream: true });
  const c2 = chat(2, true);
  const c100 = chat(100, true);
  return [
    {
      name: 'chat-2k',
      what: `router 4 phases + upstream headers; ${c2.reqBody.length} B request, ${c2.resChunks[0]!.length} B JSON response`,
      payload: c2,
    },
    {
      name: 'chat-2k-router',
      what: 'the router 4-phase exchange alone (DESIGN §7 "4-phase exchange")',
      payload: chat(2, false),
    },
    {
      name: 'chat-2k-policy',
      what: 'as chat-2k, on a route with masking (all built-in detectors; 4 findings in the prompt) and budgets (virtual key, tokens/min, daily spend, memory store)',
      payload: chat(2, true, true),
    },
    {
      name: 'chat-100k',
      what: `as chat-2k with a ${c100.reqBody.length} B request`,
      payload: c100,
    },
    {
      name: 'sse-200',
      what: `stream: true without include_usage (forced usage), 200 SSE chunks fed one by one after each answer`,
      payload: {
        reqHeaders: requestHeaders(streamBody),
        reqBody: streamBody,
        resHeaders: sseResponseHeaders(),
        resChunks: sseChunks(200),
        sse: true,
        upstream: true,
      },
    },
  ];
}

/** A server child the Go load generator can drive. */
interface Endpoint {
  name: GoPoint['target'];
  child: Child;
  /** What a client dials: unix:/path. */
  address: string;
}

interface Server {
  target: Target;
  child: Child;
  address: string;
}

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface CpuMark {
  server: number;
  driver: NodeJS.CpuUsage;
  serverCore: { busy: number; total: number };
  driverCore: { busy: number; total: number };
}

function mark(pid: number): CpuMark {
  return {
    server: cpuMs(pid),
    driver: process.cpuUsage(),
    serverCore: coreTicks(SERVER_CORE),
    driverCore: coreTicks(DRIVER_CORE),
  };
}

interface CpuFigures {
  /** Server CPU per request (µs) and as a share of one core. */
  cpuUsPerReq: number;
  cpuShare: number;
  driverUsPerReq: number;
  driverShare: number;
  /** CPU used on each pinned core by other processes, as a share of the wall time. */
  noiseServer: number;
  noiseDriver: number;
}

function since(
  m: CpuMark,
  pid: number,
  requests: number,
  wallMs: number,
  pinned: boolean,
): CpuFigures {
  const now = mark(pid);
  const serverMs = now.server - m.server;
  const d = process.cpuUsage(m.driver);
  const driverMs = (d.user + d.system) / 1000;
  const others = (a: CpuMark['serverCore'], b: CpuMark['serverCore'], ownMs: number): number => {
    const total = ticksToMs(b.total - a.total);
    return pinned && total > 0
      ? Math.max(0, ticksToMs(b.busy - a.busy) - ownMs) / total
      : Number.NaN;
  };
  return {
    cpuUsPerReq: requests > 0 ? (serverMs * 1000) / requests : Number.NaN,
    cpuShare: serverMs / wallMs,
    driverUsPerReq: requests > 0 ? (driverMs * 1000) / requests : Number.NaN,
    driverShare: driverMs / wallMs,
    noiseServer: others(m.serverCore, now.serverCore, serverMs),
    noiseDriver: others(m.driverCore, now.driverCore, driverMs),
  };
}

/**
 * Which core was full (its process plus the noise on it at ≥ 90%): the figures then describe
 * that side's limit, not the other's. `noisy` flags other processes taking ≥ 20% of either.
 */
function bound(c: CpuFigures): string {
  const b: string[] = [];
  const full = (own: number, noise: number): boolean =>
    own + (Number.isNaN(noise) ? 0 : noise) >= 0.9;
  if (full(c.cpuShare, c.noiseServer)) b.push('server');
  if (full(c.driverShare, c.noiseDriver)) b.push('driver');
  if (c.noiseServer >= 0.2 || c.noiseDriver >= 0.2) b.push('noisy');
  return b.join(',');
}

interface Point extends CpuFigures {
  scenario: string;
  concurrency: number;
  target: string;
  loop: LoopResult;
}

async function measure(
  s: Server,
  sc: Scenario,
  concurrency: number,
  cfg: Settings,
  pinned: boolean,
): Promise<Point> {
  await closedLoop(s.target, sc.payload, concurrency, cfg.warmup);
  s.child.truncateLog();
  await settle(50);
  const m = mark(s.child.pid);
  const loop = await closedLoop(s.target, sc.payload, concurrency, cfg.seconds);
  // Work finishing after the last answer (access log, stream teardown) belongs to these requests.
  await settle(100);
  return {
    scenario: sc.name,
    concurrency,
    target: s.target.name,
    loop,
    ...since(m, s.child.pid, loop.requests, loop.seconds * 1000 + 100, pinned),
  };
}

const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(0)}%` : '-');
const noise = (c: CpuFigures): string => `${pct(c.noiseServer)}/${pct(c.noiseDriver)}`;

function detail(sc: Scenario, rec: Recording): string {
  if (sc.payload.sse) {
    const [c50, c99] = rec.chunk.percentiles([50, 99]);
    const [h50] = rec.chunkHead.percentiles([50]);
    const [t50] = rec.chunkTail.percentiles([50]);
    return `chunk p50 ${fmtMs(c50!)} p99 ${fmtMs(c99!)}; first/last 50 p50 ${fmtMs(h50!)}/${fmtMs(t50!)}`;
  }
  if (sc.payload.upstream) {
    const [r50, r99] = rec.router.percentiles([50, 99]);
    return `router 4-phase p50 ${fmtMs(r50!)} p99 ${fmtMs(r99!)}`;
  }
  return '';
}

const COLS: [string, number][] = [
  ['scenario', 14],
  ['conc', 4],
  ['target', 6],
  ['req/s', 6],
  ['p50 ms', 7],
  ['p99 ms', 8],
  ['srv µs/req', 10],
  ['srv cpu', 7],
  ['drv µs/req', 10],
  ['drv cpu', 7],
  ['noise s/d', 9],
  ['bound', 13],
  ['detail', 0],
];

function row(cells: string[]): string {
  return cells
    .map((c, i) => {
      const w = COLS[i]![1];
      return i === 0 || i >= COLS.length - 2 ? c.padEnd(w) : c.padStart(w);
    })
    .join('  ')
    .trimEnd();
}

function pointRow(sc: Scenario, p: Point): string {
  const [p50, p99] = p.loop.rec.added.percentiles([50, 99]);
  return row([
    p.scenario,
    String(p.concurrency),
    p.target,
    fmtInt(p.loop.requests / p.loop.seconds),
    fmtMs(p50!),
    fmtMs(p99!),
    fmtInt(p.cpuUsPerReq),
    pct(p.cpuShare),
    fmtInt(p.driverUsPerReq),
    pct(p.driverShare),
    noise(p),
    bound(p),
    detail(sc, p.loop.rec),
  ]);
}

interface RatePoint extends CpuFigures {
  rate: number;
  target: string;
  r: RateResult;
}

async function measureRate(
  s: Server,
  p: Payload,
  rate: number,
  cfg: Settings,
  pinned: boolean,
): Promise<RatePoint> {
  await openLoop(s.target, p, rate, 1);
  s.child.truncateLog();
  await settle(50);
  const m = mark(s.child.pid);
  const r = await openLoop(s.target, p, rate, cfg.rateSeconds);
  await settle(100);
  return {
    rate,
    target: s.target.name,
    r,
    ...since(m, s.child.pid, r.completed, r.seconds * 1000 + 100, pinned),
  };
}

/** The open loop kept its schedule (2% slack) and every request succeeded. */
function rateHeld(x: RatePoint): boolean {
  return x.r.completed / x.r.seconds >= x.rate * 0.98 && x.r.rec.errors === 0 && x.r.dropped === 0;
}

function log(line = ''): void {
  process.stdout.write(`${line}\n`);
}

async function startServers(
  dir: string,
  cfg: Settings,
  pin: boolean,
  children: Child[],
): Promise<{ sluice: Server; floor: Server; floorH2: Endpoint; probes: Map<Child, string> }> {
  const configPath = join(dir, 'extproc.yaml');
  writeFileSync(configPath, CONFIG);
  const adminPort = await freePort();
  const sluiceSock = `unix:${join(dir, 'extproc.sock')}`;
  const floorSock = `unix:${join(dir, 'floor.sock')}`;
  const floorH2Sock = `unix:${join(dir, 'floor-h2.sock')}`;
  const core = pin ? SERVER_CORE : undefined;
  // Every Node server runs the probe (GC, allocation, loop delay); it answers on its own socket.
  const probes = new Map<Child, string>();
  const extProbe = probeModule(cfg.extprocEntry, dir);
  const probed = (
    name: string,
    module = PROBE,
  ): { preload: string[]; env: Record<string, string> } => ({
    preload: [module],
    env: { BENCH_PROBE_SOCKET: join(dir, `${name}.probe.sock`) },
  });
  const ext = new Child(
    'extproc',
    cfg.extprocEntry,
    [
      'extproc',
      '--config',
      configPath,
      '--listen',
      sluiceSock,
      '--admin',
      `127.0.0.1:${adminPort}`,
      '--shutdown-grace-ms',
      '500',
      ...(process.env.BENCH_GRPC_SERVER ? ['--grpc-server', process.env.BENCH_GRPC_SERVER] : []),
    ],
    {
      cwd: ROOT,
      logPath: join(dir, 'extproc.log'),
      core,
      nodeFlags: [
        ...(cfg.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${cfg.profileDir}`] : []),
        ...extprocNodeFlags(),
      ],
      preload: [extProbe],
      env: {
        ...extprocEnv(),
        ...probed('extproc', extProbe).env,
      },
    },
  );
  children.push(ext);
  const floor = new Child('floor', 'test/bench/floor-server.ts', [floorSock], {
    cwd: ROOT,
    logPath: join(dir, 'floor.log'),
    core,
    ...probed('floor'),
  });
  children.push(floor);
  // For the Go load generator only: the floor without grpc-js, what HTTP/2 itself costs.
  const floorH2 = new Child(
    'floor-h2',
    'test/bench/floor-server.ts',
    [floorH2Sock, '--transport', 'http2'],
    { cwd: ROOT, logPath: join(dir, 'floor-h2.log'), core, ...probed('floor-h2') },
  );
  children.push(floorH2);
  for (const [c, name] of [
    [ext, 'extproc'],
    [floor, 'floor'],
    [floorH2, 'floor-h2'],
  ] as const) {
    probes.set(c, probed(name).env.BENCH_PROBE_SOCKET!);
  }
  await waitReady(
    ext,
    async () => (await httpStatus(`http://127.0.0.1:${adminPort}/readyz`)) === 200,
  );
  await waitReady(floor, () => floor.tail(100).includes('ready'));
  await waitReady(floorH2, () => floorH2.tail(100).includes('ready'));
  const client = (sock: string): ExtProcClient =>
    new ExtProcClient(sock, {
      // Envoy neither retries ext_proc streams nor keeps channelz; in grpc-js both cost per call
      // (retries buffer every message sent), which would only add to the driver's overhead.
      channelOptions: { 'grpc.enable_retries': 0, 'grpc.enable_channelz': 0 },
    });
  const sluiceClient = client(sluiceSock);
  const floorClient = client(floorSock);
  await Promise.all([sluiceClient.connect(), floorClient.connect()]);
  return {
    sluice: {
      target: { name: 'sluice', client: sluiceClient, streamedFromStart: false },
      child: ext,
      address: sluiceSock,
    },
    floor: {
      target: { name: 'floor', client: floorClient, streamedFromStart: true },
      child: floor,
      address: floorSock,
    },
    floorH2: { name: 'floor-h2', child: floorH2, address: floorH2Sock },
    probes,
  };
}

/**
 * A second extproc, the same config on another gRPC server (`--grpc-server <server>`, target
 * `sluice-<server>`): the lean section's same-run comparison of the transports.
 */
async function startExtprocOn(
  server: string,
  dir: string,
  cfg: Settings,
  pin: boolean,
): Promise<LeanEndpoint> {
  const adminPort = await freePort();
  const sock = `unix:${join(dir, `extproc-${server}.sock`)}`;
  const probe = join(dir, `extproc-${server}.probe.sock`);
  const child = new Child(
    `extproc-${server}`,
    cfg.extprocEntry,
    [
      'extproc',
      '--config',
      join(dir, 'extproc.yaml'),
      '--listen',
      sock,
      '--admin',
      `127.0.0.1:${adminPort}`,
      '--shutdown-grace-ms',
      '500',
      '--grpc-server',
      server,
    ],
    {
      cwd: ROOT,
      logPath: join(dir, `extproc-${server}.log`),
      core: pin ? SERVER_CORE : undefined,
      nodeFlags: extprocNodeFlags(),
      preload: [probeModule(cfg.extprocEntry, dir)],
      env: {
        ...extprocEnv(),
        BENCH_PROBE_SOCKET: probe,
      },
    },
  );
  await waitReady(
    child,
    async () => (await httpStatus(`http://127.0.0.1:${adminPort}/readyz`)) === 200,
  );
  return { name: `sluice-${server}`, child, address: sock, probe };
}

/** The do-nothing grpc-go ext_proc server (the loadgen binary's `serve` mode), one core. */
async function startGoFloor(bin: string, dir: string, pin: boolean): Promise<Endpoint> {
  const sock = `unix:${join(dir, 'floor-go.sock')}`;
  const child = new Child('floor-go', bin, ['serve', sock], {
    cwd: ROOT,
    logPath: join(dir, 'floor-go.log'),
    core: pin ? SERVER_CORE : undefined,
    env: { GOMAXPROCS: '1' },
    exec: true,
  });
  await waitReady(child, () => child.tail(100).includes('ready'));
  return { name: 'floor-go', child, address: sock };
}

/**
 * The policy scenario measures masking and budgets only if its request really takes that path:
 * checked once, so a config drift fails the bench instead of quietly measuring plain chat.
 */
async function checkPolicyScenario(t: Target, p: Payload, name = 'chat-2k-policy'): Promise<void> {
  const f = new ExtProcFilter(t.client, ROUTER);
  const r = await f.runRequest(p.reqHeaders, [p.reqBody]);
  f.close();
  if (r.kind !== 'continue') {
    throw new Error(
      `${name}: the extproc refused the request (${r.status}): ${r.body.toString().slice(0, 300)}`,
    );
  }
  if (r.body.includes(PII_TURN)) {
    throw new Error(`${name}: the prompt left the router unmasked; check the bench config`);
  }
}

function verdict(ok: boolean): string {
  return ok ? 'met' : 'NOT MET';
}

async function main(): Promise<void> {
  const cfg = settings();
  const cores = availableParallelism();
  const taskset = hasTaskset();
  const pin = taskset && cores >= 2;
  const selfPinned = pin && pinSelf(DRIVER_CORE);
  log('Sluice ext_proc benchmark');
  log(`node ${process.version}, ${cores} cores, load average at start ${loadAverage()}`);
  log(
    cfg.extprocEntry.endsWith('.ts')
      ? `extproc: the sources through tsx (no ${BUILT} newer than them: \`npm run build\` to measure what ships)`
      : `extproc: ${relative(ROOT, cfg.extprocEntry)} (compiled, as shipped)`,
  );
  log(
    `extproc node flags: ${extprocNodeFlags().join(' ') || "none (V8's defaults)"}; environment: ${
      Object.entries(extprocEnv())
        .map(([k, v]) => `${k}=${v}`)
        .join(' ') || 'none'
    }`,
  );
  if (pin) {
    log(
      `pinning: extproc and floor on core ${SERVER_CORE} (taskset -c ${SERVER_CORE}); driver ${selfPinned ? `on core ${DRIVER_CORE} (taskset -p)` : 'NOT pinned (taskset -p failed)'}`,
    );
  } else {
    log(
      `pinning: NONE (${taskset ? 'fewer than 2 cores' : 'taskset not found'}); servers and driver share all cores`,
    );
  }
  log(
    `${cfg.seconds} s per point after ${cfg.warmup} s warm-up; concurrency ${cfg.concurrency.join(', ')}; open loop ${cfg.rates.join(', ')} req/s for ${cfg.rateSeconds} s each`,
  );

  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  const children: Child[] = [];
  let cleaned = false;
  const cleanupNow = (): void => {
    if (cleaned) return;
    cleaned = true;
    for (const c of children) c.killNow();
    if (process.env.BENCH_KEEP_LOGS) console.error(`bench: the servers' logs are kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', cleanupNow);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping the servers\n`);
      cleanupNow();
      process.exit(130);
    });
  }

  try {
    const startedAt = performance.now();
    const { sluice, floor, floorH2, probes } = await startServers(dir, cfg, pin, children);
    const servers = [sluice, floor];
    const all = scenarios();
    const named = (name: string): Scenario => all.find((sc) => sc.name === name)!;
    await checkPolicyScenario(sluice.target, named('chat-2k-policy').payload);
    const wanted = (name: string): boolean => !cfg.only || cfg.only.has(name);
    log(`servers ready: extproc pid ${sluice.child.pid}, floor pid ${floor.child.pid}`);
    log(`extproc malloc: ${mallocOf(sluice.child.pid)}`);
    log();
    for (const sc of all) if (wanted(sc.name)) log(`  ${sc.name.padEnd(15)} ${sc.what}`);
    log();
    log('  p50/p99    added latency per request: the sum of its ext_proc round trips, ms');
    log('  srv        the server child: CPU (utime+stime) per request, and share of its core');
    log('  drv        the driver (this process): CPU per request, and share of its core');
    log('  noise s/d  CPU other processes used on the server / driver core meanwhile');
    log(
      "  bound      a core ≥ 90% busy (its process + noise): the figures show that side's limit;",
    );
    log('             noisy = other processes took ≥ 20% of a core');
    log();

    const measuringFrom = performance.now() - startedAt;
    // JIT and connection warm-up, so the first point does not pay for it.
    for (const s of servers) {
      await closedLoop(s.target, named('chat-2k').payload, 8, 2);
      await closedLoop(s.target, named('sse-200').payload, 1, 0.5);
    }

    log(row(COLS.map(([h]) => h)));
    log(row(COLS.map(([, w], i) => '-'.repeat(i === COLS.length - 1 ? 6 : w))));
    const points: Point[] = [];
    for (const sc of all) {
      if (!wanted(sc.name)) continue;
      for (const c of cfg.concurrency) {
        for (const s of servers) {
          const p = await measure(s, sc, c, cfg, pin);
          points.push(p);
          log(pointRow(sc, p));
        }
      }
    }

    if (points.length > 0) {
      log();
      log('sluice vs floor (same driver, same exchanges):');
      const rows: string[][] = [];
      for (const p of points) {
        if (p.target !== 'sluice') continue;
        const f = points.find(
          (q) =>
            q.target === 'floor' && q.scenario === p.scenario && q.concurrency === p.concurrency,
        )!;
        const [s50, s99] = p.loop.rec.added.percentiles([50, 99]);
        const [f50, f99] = f.loop.rec.added.percentiles([50, 99]);
        const sr = p.loop.requests / p.loop.seconds;
        const fr = f.loop.requests / f.loop.seconds;
        rows.push([
          p.scenario,
          String(p.concurrency),
          fmtInt(sr),
          fmtInt(fr),
          (sr / fr).toFixed(2),
          fmtMs(s50! - f50!),
          fmtMs(s99! - f99!),
          fmtInt(p.cpuUsPerReq - f.cpuUsPerReq),
          (p.cpuUsPerReq / f.cpuUsPerReq).toFixed(2),
          `${bound(p) || '-'} / ${bound(f) || '-'}`,
        ]);
      }
      log(
        table(
          [
            'scenario',
            'conc',
            'sluice req/s',
            'floor req/s',
            'sluice/floor',
            'Δp50 ms',
            'Δp99 ms',
            'Δsrv µs/req',
            'srv cpu ×',
            'bound s / f',
          ],
          rows,
          'lrrrrrrrrl',
        ),
      );
    }

    const rates: RatePoint[] = [];
    if (wanted('rate')) {
      log();
      log(
        "JS driver open loop: chat-2k (router 4 phases + upstream) at fixed rates; latency counted from each request's scheduled start",
      );
      for (const rate of cfg.rates) {
        for (const s of servers)
          rates.push(await measureRate(s, named('chat-2k').payload, rate, cfg, pin));
      }
      const rows = rates.map((x) => {
        const [a50, a99, a999] = x.r.rec.scheduled.percentiles([50, 99, 99.9]);
        const [r50, r99] = x.r.rec.router.percentiles([50, 99]);
        const [, l99] = x.r.lag.percentiles([50, 99]);
        return [
          String(x.rate),
          x.target,
          fmtInt(x.r.completed / x.r.seconds),
          fmtMs(a50!),
          fmtMs(a99!),
          fmtMs(a999!),
          fmtMs(x.r.rec.scheduled.max()),
          `${fmtMs(r50!)}/${fmtMs(r99!)}`,
          fmtMs(l99!),
          String(x.r.maxInFlight),
          fmtInt(x.cpuUsPerReq),
          pct(x.cpuShare),
          pct(x.driverShare),
          noise(x),
          `${x.r.rec.errors}/${x.r.dropped}`,
          bound(x) || '-',
        ];
      });
      log(
        table(
          [
            'rate',
            'target',
            'achieved/s',
            'p50 ms',
            'p99 ms',
            'p99.9 ms',
            'max ms',
            'router p50/p99',
            'lag p99',
            'in flight',
            'srv µs/req',
            'srv cpu',
            'drv cpu',
            'noise s/d',
            'err/drop',
            'bound',
          ],
          rows,
          'rlrrrrrrrrrrrrrl',
        ),
      );
      for (const x of rates) {
        if (x.r.rec.firstError) log(`  ${x.rate} ${x.target} first error: ${x.r.rec.firstError}`);
      }
    }

    let go: GoPoint[] | string | undefined;
    if (wanted('latency')) {
      const endpoints: Endpoint[] = [
        { name: 'sluice', child: sluice.child, address: sluice.address },
        { name: 'floor', child: floor.child, address: floor.address },
        floorH2,
      ];
      go = await latencySection(dir, cfg, pin, endpoints, named);
    }

    if (wanted('lean')) {
      log();
      log(
        'issue 16: whole request vs the do-nothing floors (grpc-go, grpc-js, node:http2), Go open-loop load',
      );
      const b = buildLoadgen(log);
      if ('skipped' in b) {
        log(`  skipped: ${b.skipped}`);
      } else {
        const everything = everythingPayload();
        await checkPolicyScenario(sluice.target, everything, 'chat-2k-all');
        const goFloor = await startGoFloor(b.path, dir, pin);
        children.push(goFloor.child);
        const endpoints: LeanEndpoint[] = [];
        for (const server of alternateServers()) {
          const other = await startExtprocOn(server, dir, cfg, pin);
          children.push(other.child);
          endpoints.push(other);
        }
        endpoints.push(
          { ...goFloor, probe: undefined },
          {
            name: 'floor',
            child: floor.child,
            address: floor.address,
            probe: probes.get(floor.child),
          },
          { ...floorH2, probe: probes.get(floorH2.child) },
          {
            name: 'sluice',
            child: sluice.child,
            address: sluice.address,
            probe: probes.get(sluice.child),
          },
        );
        await leanSection(
          {
            bin: b.path,
            dir,
            rates: leanRates(),
            seconds: cfg.rateSeconds,
            // Longer than the other sections' (1 s): V8 compiles the extproc's hot paths again
            // after each change of point. The probe's full collection before a point runs with no
            // request in flight and marks ~135 optimized functions for deoptimization at once
            // (--trace-deopt: "weak objects", objects their code embeds died; which ones is not
            // known, per-request hidden classes are likely), where the collections V8 runs under
            // traffic mark 0-4. Then 250-390 TurboFan compilations take 1-1.5 s of CPU over ~8 s,
            // on the one core the main thread runs on (the p99). With 3 s the 4-s window held
            // 22-41 of them (98-192 ms), with 8 s 7-21 (30-133 ms) (--trace-opt, lean at 500
            // req/s): the window measures the steady state. The floors get the same warm-up.
            warmup: envNumber('BENCH_LEAN_WARMUP_SECONDS', 8),
            loadgenCore: pin ? DRIVER_CORE : undefined,
            log,
          },
          endpoints,
          { name: 'chat-2k', payload: named('chat-2k').payload, floor: true },
          { name: 'chat-2k-policy', payload: named('chat-2k-policy').payload, floor: false },
          { name: 'chat-2k-all', payload: everything, floor: false },
        );
      }
    }

    log();
    const rss = servers.map(
      (s) => `${s.target.name} ${fmtInt(peakRssKiB(s.child.pid) / 1024)} MiB`,
    );
    log(`peak RSS (VmHWM): ${rss.join(', ')}`);
    log(`load average at end ${loadAverage()}`);

    summary(points, rates, go);

    sluice.target.client.close();
    floor.target.client.close();
    // The probe marks went through the global agent, whose idle keep-alive sockets keep each
    // server alive after its shutdown until they time out (5 s), past stop()'s grace: a --cpu-prof
    // extproc was then killed before writing its profile.
    globalAgent.destroy();
    for (const c of children) await c.stop();
    if (cfg.profileDir) printProfile(cfg.profileDir, measuringFrom);
    if (wanted('operator')) operatorSection();
    if (wanted('masking'))
      childSection(
        'masking',
        'masking: detector quality, scan speed, added latency (issue "Data protection")',
      );
    if (wanted('governance'))
      childSection(
        'governance',
        'governance: identity + access + reservation added latency (issue "Governance")',
      );
    if (wanted('estimate'))
      childSection('estimate', 'token estimation: CPU per MiB of the worst inputs (issue 11)');
    if (wanted('context'))
      childSection(
        'context',
        'context window: counting and trimming a conversation against its estimate (issue 18)',
      );
    if (wanted('cache'))
      childSection('cache', 'response cache: a miss lookup, and a hit end to end (issue 19)');
    if (wanted('translation'))
      childSection(
        'translation',
        'translation: CPU a translated exchange adds over a same-API one, upstream phase (issue 12)',
      );
    if (wanted('cloud'))
      childSection(
        'cloud',
        'cloud translators: request and answer per pair, SigV4 per attempt (issue 15)',
      );
    if (wanted('workers'))
      childSection('workers', 'every core: --workers 2 next to --workers 1, throughput (issue 16)');
    if (wanted('markers'))
      childSection(
        'markers',
        'settled markers: the memory store over 30+ simulated minutes, bytes and RSS (issue 16)',
      );
  } finally {
    for (const c of children) c.killNow();
    cleanupNow();
  }
}

const TARGET_RATE = TARGET.rate;

/**
 * DESIGN §7's latency target with the Go load generator: the router-only 4-phase exchange, the
 * whole request (plus the upstream phase), and the whole request with masking and budgets on,
 * at each BENCH_RATES rate, against Sluice and (for the first two) the floor; the floor without
 * grpc-js (floor-h2) at the target rate only. Returns the points, or why the section was skipped.
 */
async function latencySection(
  dir: string,
  cfg: Settings,
  pin: boolean,
  endpoints: Endpoint[],
  named: (name: string) => Scenario,
): Promise<GoPoint[] | string> {
  log();
  log('§7 latency target, Go open-loop load (test/bench/loadgen)');
  const b = buildLoadgen(log);
  if ('skipped' in b) {
    log(`  skipped: ${b.skipped}`);
    return b.skipped;
  }
  const exchanges: Exchange[] = [
    { name: 'chat-2k-router', payload: named('chat-2k-router').payload, floor: true },
    { name: 'chat-2k', payload: named('chat-2k').payload, floor: true },
    { name: 'chat-2k-policy', payload: named('chat-2k-policy').payload, floor: false },
  ];
  log(
    `  ${b.path}${b.built ? ' (just built)' : ''}; ${pin ? `pinned to core ${DRIVER_CORE}` : 'not pinned'}; ${cfg.warmup} s warm-up + ${cfg.rateSeconds} s per point at ${cfg.rates.join(', ')} req/s`,
  );
  log(
    '  p50…max   added per request: the sum of its ext_proc round trips (what Envoy waits on), ms',
  );
  log("  sched     the same plus the request's lag behind its schedule (no coordinated omission)");
  log(
    '  lg cpu    the load generator (core 0); noise: CPU of every other process, share of a core',
  );
  log(
    `  verdict   at ${TARGET.rate} req/s: rate held, no errors, sched p50 ≤ ${fmtMs(TARGET.p50Ms)} and p99 ≤ ${fmtMs(TARGET.p99Ms)} ms`,
  );
  const points: GoPoint[] = [];
  for (const ex of exchanges) {
    for (const rate of cfg.rates) {
      for (const s of endpoints) {
        if (s.name !== 'sluice' && !ex.floor) continue;
        if (s.name === 'floor-h2' && rate !== TARGET_RATE) continue;
        s.child.truncateLog();
        await settle(100);
        points.push(
          await runLoadgen(ex, s.name, {
            bin: b.path,
            dir,
            socket: s.address,
            serverPid: s.child.pid,
            rate,
            seconds: cfg.rateSeconds,
            warmup: cfg.warmup,
            loadgenCore: pin ? DRIVER_CORE : undefined,
          }),
        );
      }
    }
  }
  log();
  log(pointsTable(points));
  for (const p of points) {
    if (p.r?.firstError)
      log(`  ${p.exchange} ${p.target} ${p.rate}: first error: ${p.r.firstError}`);
  }
  log();
  log('sluice vs floor, same exchange and rate (added per request, ms):');
  log(floorTable(points));
  log();
  log(`each message's round trip at ${TARGET.rate} req/s (sluice):`);
  log(messagesTable(points));
  return points;
}

/**
 * A figure set measured by its own script (test/bench/<name>.ts) in a process of its own, pinned
 * to the driver's core: its output table is printed as it is.
 */
function childSection(
  name:
    | 'masking'
    | 'governance'
    | 'estimate'
    | 'context'
    | 'cache'
    | 'translation'
    | 'workers'
    | 'cloud'
    | 'markers',
  title: string,
): void {
  log();
  log(title);
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(new URL(`./${name}.ts`, import.meta.url))],
    { encoding: 'utf8', env: process.env },
  );
  const out = child.stdout.trimEnd();
  if (out) log(out);
  if (child.status !== 0 && !out.includes('FAIL')) {
    log(`  ${name} measurement failed: ${child.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
}

/** The operator's figures, measured in a process of their own (its peak RSS is the operator's). */
function operatorSection(): void {
  log();
  log('operator: 2,000 synthetic AIRoutes with policies (DESIGN §7)');
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(new URL('./operator.ts', import.meta.url))],
    { encoding: 'utf8', env: { ...process.env, BENCH_ROUTES: '2000' } },
  );
  const line = child.stdout.trim().split('\n').at(-1) ?? '';
  if (child.status !== 0 || !line.startsWith('{')) {
    log(`  operator measurement failed: ${child.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    return;
  }
  const f = JSON.parse(line) as OperatorFigures;
  const sorted = [...f.translateMs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  log(
    table(
      ['figure', 'measured', 'target', 'verdict'],
      [
        [
          `compile ${f.routes} routes (5 runs)`,
          `median ${fmtMs(median)} ms, min ${fmtMs(sorted[0]!)}, max ${fmtMs(sorted.at(-1)!)}`,
          '< 1000 ms',
          median < 1000 ? 'met' : 'NOT MET',
        ],
        [
          `change → ACK (${f.propagation.changes} changes, ${f.propagation.clusters} clusters)`,
          `p50 ${fmtMs(f.propagation.p50)} ms, p99 ${fmtMs(f.propagation.p99)} ms, max ${fmtMs(f.propagation.max)} ms`,
          'p99 < 1000 ms',
          f.propagation.p99 < 1000 ? 'met' : 'NOT MET',
        ],
        [
          'operator process peak RSS',
          `${fmtInt(f.peakRssMiB)} MiB (${fmtInt(f.rssBeforeMiB)} MiB before loading routes; includes the test xDS client)`,
          '-',
          '-',
        ],
      ],
      'llll',
    ),
  );
}

/** The §7 latency rows from the Go load generator's points at the target rate. */
function goRows(go: GoPoint[]): string[][] {
  const rows: string[][] = [];
  const labels: Record<string, string> = {
    'chat-2k-policy': 'whole request, masking + accounting + budget on (§7 as written)',
    'chat-2k': 'whole request (router 4 phases + upstream), accounting on',
    'chat-2k-router': 'router 4-phase exchange alone',
  };
  for (const name of ['chat-2k-policy', 'chat-2k', 'chat-2k-router']) {
    const p = go.find(
      (q) => q.exchange === name && q.target === 'sluice' && q.rate === TARGET_RATE,
    );
    if (!p) continue;
    const f = go.find((q) => q.exchange === name && q.target === 'floor' && q.rate === TARGET_RATE);
    const r = p.r;
    const figures = r
      ? `p50 ${fmtMs(r.fromSchedule.p50)}, p99 ${fmtMs(r.fromSchedule.p99)} ms from schedule (round trips ${fmtMs(r.added.p50)}/${fmtMs(r.added.p99)}); ${fmtInt(r.achieved)} req/s, ${r.errors} errors; extproc ${pct(r.cpu.serverShare)} of its core${f?.r ? `; floor ${fmtMs(f.r.added.p50)}/${fmtMs(f.r.added.p99)}` : ''}${noisy(p) ? `; other processes ${pct(p.noise)} of a core` : ''}`
      : `loadgen failed: ${p.error ?? '?'}`;
    rows.push([
      `p50 ≤ ${fmtMs(TARGET.p50Ms)}, p99 ≤ ${fmtMs(TARGET.p99Ms)} ms added at ${fmtInt(TARGET_RATE)} req/s, one core: ${labels[name]}`,
      figures,
      goVerdict(p) || (held(p) ? '-' : 'rate not held'),
    ]);
  }
  // The bare HTTP/2 ping-pong floor of §7's throughput target is floor-h2: capacity on one core
  // goes as 1 / CPU per request, so the CPU ratio is the throughput ratio.
  for (const name of ['chat-2k-router', 'chat-2k']) {
    const at = (t: GoPoint['target']): GoPoint | undefined =>
      go.find((q) => q.exchange === name && q.target === t && q.rate === TARGET_RATE);
    const s = at('sluice')?.r;
    const h = at('floor-h2')?.r;
    if (!s || !h) continue;
    const x = s.cpu.serverUsPerReq / h.cpu.serverUsPerReq;
    rows.push([
      `throughput within 4× of a bare HTTP/2 ping-pong floor (${name}, Go loadgen)`,
      `extproc ${fmtInt(s.cpu.serverUsPerReq)} vs ${fmtInt(h.cpu.serverUsPerReq)} µs CPU per request at ${fmtInt(TARGET_RATE)} req/s: ${x.toFixed(2)}× (grpc-js floor ${fmtInt(at('floor')?.r?.cpu.serverUsPerReq ?? Number.NaN)})`,
      verdict(x <= 4),
    ]);
  }
  return rows;
}

function summary(points: Point[], rates: RatePoint[], go: GoPoint[] | string | undefined): void {
  log();
  log('DESIGN §7 targets vs this run');
  const rows: string[][] = [];
  if (Array.isArray(go)) {
    rows.push(...goRows(go));
  } else {
    rows.push([
      'latency target with the Go load generator',
      go === undefined ? 'not run (BENCH_ONLY)' : `skipped: ${go}`,
      '-',
    ]);
  }
  const at = rates.filter((r) => r.rate === TARGET_RATE);
  const sl = at.find((r) => r.target === 'sluice');
  const fl = at.find((r) => r.target === 'floor');
  if (sl) {
    const [r50, r99] = sl.r.rec.router.percentiles([50, 99]);
    const [a50, a99] = sl.r.rec.scheduled.percentiles([50, 99]);
    const held = rateHeld(sl);
    const judge = (ok: boolean): string =>
      ok || held || !bound(sl).includes('driver')
        ? verdict(ok)
        : 'NOT MET (unverified: the driver core was full)';
    const why = held
      ? ''
      : `; ${TARGET_RATE} req/s not held (achieved ${fmtInt(sl.r.completed / sl.r.seconds)}/s, ${bound(sl) || 'no side saturated'}${fl && !rateHeld(fl) ? ', the floor did not hold it either' : ''})`;
    rows.push([
      `JS driver: p50 ≤ 0.300 ms added, 4-phase 2 KB, ${TARGET_RATE} req/s`,
      `router 4-phase ${fmtMs(r50!)}, whole request from schedule ${fmtMs(a50!)}${why}`,
      judge(r50! <= 0.3 && held),
    ]);
    rows.push([
      `JS driver: p99 ≤ 1.000 ms added, same load`,
      `router 4-phase ${fmtMs(r99!)}, whole request from schedule ${fmtMs(a99!)}`,
      judge(r99! <= 1 && held),
    ]);
    if (fl) {
      const [f50, f99] = fl.r.rec.scheduled.percentiles([50, 99]);
      rows.push([
        `  (floor at the same rate, whole request)`,
        `p50 ${fmtMs(f50!)} p99 ${fmtMs(f99!)}${rateHeld(fl) ? '' : `, rate not held (${bound(fl) || '?'})`}`,
        '',
      ]);
    }
  } else if (!Array.isArray(go)) {
    rows.push([`latency at ${TARGET_RATE} req/s`, 'not run (BENCH_ONLY / BENCH_RATES)', '-']);
  }
  // A collapsed open loop spreads the work of failed requests over the few that finished, so
  // the capacity estimate comes from the cheapest closed-loop point instead.
  const cheapest = points
    .filter((p) => p.target === 'sluice' && p.scenario === 'chat-2k')
    .reduce<Point | undefined>((a, b) => (a && a.cpuUsPerReq <= b.cpuUsPerReq ? a : b), undefined);
  if (cheapest) {
    const need = (cheapest.cpuUsPerReq * TARGET_RATE) / 1e6;
    rows.push([
      `  extproc CPU for chat-2k at ${TARGET_RATE} req/s`,
      `${fmtInt(cheapest.cpuUsPerReq)} µs/req (best closed-loop point, @${cheapest.concurrency}) → ${pct(need)} of one core`,
      need < 0.7 ? 'headroom' : need < 1 ? 'little headroom' : 'over one core',
    ]);
  }
  for (const name of ['chat-2k-router', 'chat-2k']) {
    const ratios = points
      .filter((p) => p.target === 'sluice' && p.scenario === name)
      .map((p) => {
        const f = points.find(
          (q) => q.target === 'floor' && q.scenario === name && q.concurrency === p.concurrency,
        )!;
        return {
          c: p.concurrency,
          x: f.loop.requests / f.loop.seconds / (p.loop.requests / p.loop.seconds),
          cpu: p.cpuUsPerReq / f.cpuUsPerReq,
          driverBound: bound(f).includes('driver') || bound(p).includes('driver'),
        };
      });
    if (ratios.length === 0) continue;
    const worst = ratios.reduce((a, b) => (b.x > a.x ? b : a));
    const driverBound = ratios.some((r) => r.driverBound);
    rows.push([
      `throughput within 4× of the floor (${name})`,
      `floor/sluice req/s ${ratios.map((r) => `${r.x.toFixed(2)}× @${r.c}`).join(', ')}; server CPU per request ${ratios.map((r) => `${r.cpu.toFixed(2)}×`).join(', ')}${driverBound ? ' (driver-bound points: req/s understates the gap, CPU ratio is the better guide)' : ''}`,
      verdict(worst.x <= 4),
    ]);
  }
  const sse = points.filter((p) => p.target === 'sluice' && p.scenario === 'sse-200');
  if (sse.length > 0) {
    const parts = sse.map((p) => {
      const [h] = p.loop.rec.chunkHead.percentiles([50]);
      const [t] = p.loop.rec.chunkTail.percentiles([50]);
      return { c: p.concurrency, h: h!, t: t! };
    });
    const flat = parts.every((x) => x.t <= x.h * 1.5 + 0.05);
    rows.push([
      'SSE per-chunk work O(chunk): chunk p50, first → last 50',
      parts.map((x) => `${fmtMs(x.h)} → ${fmtMs(x.t)} @${x.c}`).join(', '),
      flat ? 'met (no growth)' : 'NOT MET (grows)',
    ]);
  }
  rows.push(policyRow(points, Array.isArray(go) ? go : []));
  rows.push(['bodies > 128 KB stay Buffers', 'not observable from outside', 'not measured']);
  log(table(['target', 'measured', 'verdict'], rows, 'lll'));
}

/** What masking + budgets cost over plain chat-2k: server CPU per request and latency. */
function policyRow(points: Point[], go: GoPoint[]): string[] {
  const parts: string[] = [];
  const best = (name: string): Point | undefined =>
    points
      .filter((p) => p.target === 'sluice' && p.scenario === name)
      .reduce<Point | undefined>(
        (a, b) => (a && a.cpuUsPerReq <= b.cpuUsPerReq ? a : b),
        undefined,
      );
  const pol = best('chat-2k-policy');
  const plain = best('chat-2k');
  if (pol && plain) {
    parts.push(
      `server CPU ${fmtInt(pol.cpuUsPerReq)} vs ${fmtInt(plain.cpuUsPerReq)} µs/req (chat-2k), ×${(pol.cpuUsPerReq / plain.cpuUsPerReq).toFixed(2)}`,
    );
  }
  const at = (name: string): GoPoint | undefined =>
    go.find((q) => q.exchange === name && q.target === 'sluice' && q.rate === TARGET_RATE);
  const gp = at('chat-2k-policy');
  const gc = at('chat-2k');
  if (gp?.r && gc?.r) {
    parts.push(
      `at ${fmtInt(TARGET_RATE)} req/s p50 ${fmtMs(gp.r.added.p50)} vs ${fmtMs(gc.r.added.p50)} ms, p99 ${fmtMs(gp.r.added.p99)} vs ${fmtMs(gc.r.added.p99)} ms, extproc ${pct(gp.r.cpu.serverShare)} vs ${pct(gc.r.cpu.serverShare)} of its core`,
    );
  }
  return [
    'masking + budget on (chat-2k-policy) vs chat-2k',
    parts.length > 0 ? parts.join('; ') : 'not run (BENCH_ONLY)',
    gp ? goVerdict(gp) || '-' : '-',
  ];
}

function printProfile(dir: string, skipMs: number): void {
  // One file per thread (CPU.<date>.<time>.<pid>.<thread>.<seq>); the main thread is 0, the
  // others are tsx's loader.
  const last = readdirSync(dir)
    .filter((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f))
    .sort()
    .at(-1);
  if (!last) {
    log(`\nno main-thread .cpuprofile in ${dir} (the extproc did not exit cleanly?)`);
    return;
  }
  log(
    `\nextproc CPU profile ${join(dir, last)}: self time after the first ${(skipMs / 1000).toFixed(1)} s (start-up), idle excluded`,
  );
  log(hotSpotTable(join(dir, last), ROOT, 30, skipMs));
}

main().then(
  () => {
    process.exitCode = 0;
  },
  (err: unknown) => {
    process.stderr.write(
      `\nbench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exitCode = 1;
  },
);
