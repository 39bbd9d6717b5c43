/**
 * `sluice run` as a component: the whole gateway in one process from YAML files. The files go
 * through the operator's own source and compilation into a snapshot served by an in-process ADS
 * server; the extproc takes its config from that server and listens on a Unix socket; the data
 * plane is Envoy when one is given (it gets a bootstrap pointing ADS at the in-process server),
 * otherwise the emulator from operator/envoy-sim. A file change re-translates and pushes a new
 * snapshot; requests in flight finish on the config they started with.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { stringify } from 'yaml';
import { run as runExtproc, type RunningExtproc } from '../../extproc/run.js';
import type { StateStore } from '../../extproc/state/store.js';
import { startPrimary } from '../../extproc/workers/primary.js';
import { desiredState } from '../controller/snapshot.js';
import { InvalidPolicyReporter, policyInvalidGauge } from '../controller/invalid-policies.js';
import { countNacks, xdsNackCounter } from '../controller/metrics.js';
import { loadResources, SourceMemory, type Problem } from '../source/yaml.js';
import { invalidPolicies, compile, type CompileOptions } from '../compile/index.js';
import { SnapshotCache, ALL_NODES } from '../xds/cache.js';
import { ResourceEncoder } from '../xds/encode.js';
import { startAdsServer, type RunningAdsServer } from '../xds/server.js';

/** The Service name AIRoutes use to reach the built-in mock provider. */
export const MOCK_SERVICE = 'sluice-mock-provider';
export const ENVOY_NODE_ID = 'standalone/envoy';
export const EXTPROC_NODE_ID = 'standalone/extproc';

export interface StandaloneOptions {
  /** Files or directories of AIRoute, AIPolicy, Secret, Service and EndpointSlice YAML. */
  files: string[];
  /** Listener address and port for apps; port 0 picks one (the emulator only). */
  host: string;
  port: number;
  /** The extproc's /metrics, /healthz, /readyz on host:port; absent: none. */
  admin?: string | undefined;
  /** Start the built-in mock provider behind the Service `sluice-mock-provider`. */
  mockProvider?: boolean;
  /** An Envoy binary; absent: the emulator. */
  envoyBin?: string | undefined;
  watch?: boolean;
  /** Passed to the compilation (buffer limit, timeouts, CA file, limits…). */
  compile?: CompileOptions;
  logger: Logger;
  registry: Registry;
  env: NodeJS.ProcessEnv;
  /** The extproc's Redis (budgets, usage, shared vault); absent: env SLUICE_REDIS_URL, else memory. */
  redisUrl?: string | undefined;
  /** A state store the embedder holds (tests read usage from it); it wins over redisUrl. */
  stateStore?: StateStore | undefined;
  /** The masking vault's key file; absent: env SLUICE_VAULT_KEY_FILE. */
  vaultKeyFile?: string | undefined;
  /** OTLP/HTTP base URL for traces; absent: env OTEL_EXPORTER_OTLP_ENDPOINT, else none. */
  otlpEndpoint?: string | undefined;
  /** Share of requests traced, 0..1; absent: env OTEL_TRACES_SAMPLER_ARG, else 1. */
  traceSamplingRatio?: number | undefined;
  /** Emulator knobs for tests: deterministic load balancing, no retry back-off. */
  emulator?: { random?: () => number; retryBackoffBaseMs?: number };
  /** The extproc's wall clock (ms; budget windows, key and stored-response expiry); tests move it. */
  wallClock?: (() => number) | undefined;
  /**
   * Extproc worker processes (as `sluice extproc --workers N`): above 1, this process is their
   * primary (config over the in-process ADS, one state) and each worker runs `sluice extproc`.
   * Not with `stateStore` or `wallClock`, which live in this process. Default 1.
   */
  workers?: number | undefined;
  /** With workers: how long each worker's open streams may finish when it drains (default 15000). */
  shutdownGraceMs?: number | undefined;
  /** With workers: their log level (default info). */
  logLevel?: string | undefined;
}

export interface ReloadResult {
  applied: boolean;
  version: string | undefined;
  problems: Problem[];
}

export interface RunningGateway {
  /** http://host:port of the apps' listener. */
  url: string;
  adminAddress: string | undefined;
  dataPlane: 'envoy' | 'envoy-sim';
  mockProviderUrl: string | undefined;
  /** The served snapshot's version. */
  version(): string | undefined;
  /** Re-reads the files now (the watcher calls this on change). */
  reload(): Promise<ReloadResult>;
  /**
   * Stops gracefully (SIGTERM): stops reloading, drains the data plane (no new connections;
   * requests and streams in flight finish within `graceMs`), then closes everything.
   */
  shutdown(graceMs: number): Promise<void>;
  /** Stops now: connections still open are reset. After shutdown(), waits for it. */
  close(): Promise<void>;
}

interface DataPlane {
  url: string;
  /** Resolves once no request is in flight, or after `graceMs`; new connections are refused. */
  drain(graceMs: number): Promise<void>;
  close(): Promise<void>;
}

interface MockHandle {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function run(opts: StandaloneOptions): Promise<RunningGateway> {
  const log = opts.logger;
  const work = await mkdtemp(join(tmpdir(), 'sluice-'));
  const extprocSocket = join(work, 'extproc.sock');
  const adsSocket = join(work, 'ads.sock');
  const cleanup: (() => Promise<void>)[] = [() => rm(work, { recursive: true, force: true })];
  const stopAll = async (): Promise<void> => {
    for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
  };

  try {
    let mock: MockHandle | undefined;
    if (opts.mockProvider) {
      // The mock lives with the tests; loaded only when asked for.
      const { startMockProvider } = await import('../mock-provider/provider.js');
      const m = await startMockProvider({ name: 'sluice-mock', models: ['mock-model'] });
      mock = m;
      cleanup.push(() => m.close());
      log.info({ event: 'mock_provider', url: m.url }, 'built-in mock provider listening');
    }

    const encoder = ResourceEncoder.fromProtoTree();
    const cache = new SnapshotCache();
    let version: string | undefined;
    const generatedFile = join(work, 'generated.yaml');
    // Between reloads: a file that stops parsing keeps its last good state (see SourceMemory).
    const memory = new SourceMemory();
    const invalid = new InvalidPolicyReporter(policyInvalidGauge(opts.registry), log);

    const reload = async (): Promise<ReloadResult> => {
      let paths = opts.files;
      if (mock) {
        const first = await loadResources(opts.files, memory);
        const namespaces = new Set<string>();
        for (const r of first.resources.routes) {
          if (r.spec.backends.some((b) => b.endpoint.service?.name === MOCK_SERVICE)) {
            namespaces.add(r.metadata.namespace);
          }
        }
        await writeFile(generatedFile, mockDocuments([...namespaces], mock.port), 'utf8');
        paths = [...opts.files, generatedFile];
      }
      const { resources, problems } = await loadResources(paths, memory);
      for (const p of problems) {
        const fields = { event: 'resource_problem', source: p.source, problem: p.message };
        if (p.level === 'error') log.error(fields, 'served state differs from the files');
        else log.warn(fields, 'resource left out');
      }
      const compilation = compile(resources, {
        ...opts.compile,
        // Consumer keys expired by now are left out (see toIR).
        now: Date.now(),
        listenerAddress: opts.host,
        listenerPort: opts.port,
        extprocSocket,
      });
      invalid.report(invalidPolicies(compilation.statuses));
      for (const s of compilation.statuses) {
        const accepted = s.conditions.find((c) => c.type === 'Accepted');
        if (accepted && accepted.status !== 'True') {
          log.warn(
            {
              event: 'not_accepted',
              kind: s.kind,
              name: `${s.namespace}/${s.name}`,
              reason: accepted.reason,
              message: accepted.message,
            },
            'resource not accepted',
          );
        }
      }
      try {
        const desired = desiredState(compilation, encoder);
        cache.setSnapshot(ALL_NODES, desired.snapshot);
        version = desired.version;
        log.info(
          { event: 'config_served', version, routes: compilation.ir.routes.length },
          'configuration served',
        );
        return { applied: true, version, problems };
      } catch (err) {
        log.error(
          { event: 'config_refused', reason: (err as Error).message },
          'configuration refused',
        );
        return { applied: false, version, problems };
      }
    };

    await reload();
    const ads: RunningAdsServer = await startAdsServer({
      cache,
      listen: `unix:${adsSocket}`,
      logger: log.child({ component: 'xds' }),
      identifier: 'sluice-standalone',
    });
    cleanup.push(() => ads.close(500));
    // The envoy or extproc here NACKing its config pages as it does in a cluster.
    countNacks(ads.tracker, xdsNackCounter(opts.registry));

    const extproc =
      (opts.workers ?? 1) > 1
        ? await startWorkers(opts, ads.address, extprocSocket)
        : inProcess(
            await runExtproc({
              xds: { address: ads.address, nodeId: EXTPROC_NODE_ID, startTimeoutMs: 10_000 },
              listen: `unix:${extprocSocket}`,
              admin: opts.admin,
              maxMessageBytes: MAX_MESSAGE_BYTES,
              watchConfig: false,
              shutdownGraceMs: 2000,
              logger: log.child({ component: 'extproc' }),
              registry: opts.registry,
              now: () => performance.now(),
              env: opts.env,
              redisUrl: opts.redisUrl,
              stateStore: opts.stateStore,
              vaultKeyFile: opts.vaultKeyFile,
              otlpEndpoint: opts.otlpEndpoint,
              traceSamplingRatio: opts.traceSamplingRatio,
              ...(opts.wallClock && { wallClock: opts.wallClock }),
            }),
          );
    cleanup.push(() => extproc.close());

    let plane: DataPlane;
    if (opts.envoyBin) {
      log.info({ event: 'data_plane', kind: 'envoy', bin: opts.envoyBin }, 'data plane: Envoy');
      const envoy = await startEnvoy(opts.envoyBin, work, adsSocket, opts.host, opts.port, log);
      plane = {
        url: envoy.url,
        close: () => envoy.close(),
        drain: async (graceMs) => {
          const deadline = Date.now() + graceMs;
          // Envoy closes its listeners at once when it shuts down, in-flight requests with them;
          // its admin /drain_listeners stops accepting first and leaves open connections be
          // (envoyproxy.io/docs/envoy/latest/intro/arch_overview/operations/draining).
          await envoy
            .stopListening()
            .catch((err: unknown) =>
              log.warn(
                { event: 'envoy_drain_failed', reason: (err as Error).message },
                'Envoy did not stop its listeners; waiting for requests in flight anyway',
              ),
            );
          // Every request holds an ext_proc stream until its response ends.
          if (extproc.activeStreams === undefined) {
            // Workers count their own streams: draining them is waiting for them (bounded by
            // their shutdown grace).
            await extproc.close();
            return;
          }
          while ((extproc.activeStreams ?? 0) > 0 && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 25));
          }
        },
      };
    } else {
      log.info(
        { event: 'data_plane', kind: 'envoy-sim' },
        'data plane: envoy-sim, the Envoy emulator (no Envoy found: set ENVOY_BIN or put envoy on PATH)',
      );
      const { startEnvoySim } = await import('../envoy-sim/index.js');
      const sim = await startEnvoySim({
        adsAddress: ads.address,
        nodeId: ENVOY_NODE_ID,
        ...(opts.emulator?.random ? { random: opts.emulator.random } : {}),
        ...(opts.emulator?.retryBackoffBaseMs !== undefined
          ? { retryBackoffBaseMs: opts.emulator.retryBackoffBaseMs }
          : {}),
        onXdsEvent: (e) => {
          if (!e.accepted) {
            log.error(
              { event: 'xds_nack', type: e.typeUrl, message: e.message },
              'data plane refused config',
            );
          }
        },
      });
      plane = {
        url: `http://${sim.listenerAddress()}`,
        drain: (graceMs) => sim.drain(graceMs),
        close: () => sim.close(),
      };
    }
    cleanup.push(() => plane.close());

    let watchers: FSWatcher[] = [];
    let stopWatching = (): Promise<void> => Promise.resolve();
    if (opts.watch !== false) {
      let timer: NodeJS.Timeout | undefined;
      let chain: Promise<unknown> = Promise.resolve();
      const changed = (): void => {
        clearTimeout(timer);
        // Editors write a file in several steps; wait for the burst to end.
        timer = setTimeout(() => {
          chain = chain.then(() => reload()).catch(() => undefined);
        }, 100);
      };
      watchers = opts.files.map((f) => watch(f, { recursive: true }, changed));
      stopWatching = () => {
        clearTimeout(timer);
        for (const w of watchers) w.close();
        return chain.then(() => undefined);
      };
      cleanup.push(() => stopWatching());
    }

    let closing: Promise<void> | undefined;
    const shutdown = async (graceMs: number): Promise<void> => {
      log.info(
        { event: 'draining', grace_ms: graceMs, open_streams: extproc.activeStreams },
        'draining: no new connections; requests in flight may finish',
      );
      await stopWatching();
      await plane.drain(graceMs);
      await stopAll();
      log.info({ event: 'stopped' }, 'sluice run stopped');
    };
    return {
      url: plane.url,
      adminAddress: extproc.adminAddress,
      dataPlane: opts.envoyBin ? 'envoy' : 'envoy-sim',
      mockProviderUrl: mock?.url,
      version: () => version,
      reload,
      shutdown: (graceMs) => (closing ??= shutdown(graceMs)),
      close: () => (closing ??= stopAll()),
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** The extproc as run() drives it: in this process, or a primary with its workers. */
interface Extproc {
  adminAddress: string | undefined;
  /** Streams open now; undefined with workers, which each drain their own. */
  readonly activeStreams: number | undefined;
  /** Drains (workers: each finishes its streams within its grace), then stops. Idempotent. */
  close(): Promise<void>;
}

function inProcess(e: RunningExtproc): Extproc {
  return {
    adminAddress: e.adminAddress,
    get activeStreams() {
      return e.activeStreams;
    },
    close: () => e.close(),
  };
}

/** The sluice CLI's entry point, and how to run it: from source (tsx) or from dist/. */
function cliEntry(): { file: string; execArgv: string[] } {
  const built = fileURLToPath(new URL('../cli.js', import.meta.url));
  if (existsSync(built)) return { file: built, execArgv: [] };
  return {
    file: fileURLToPath(new URL('../cli.ts', import.meta.url)),
    execArgv: ['--import', 'tsx'],
  };
}

/**
 * `--workers N`: this process becomes the primary of `sluice extproc --workers N` (extproc/
 * workers/): it takes the config from the in-process ADS server as the one extproc node, holds
 * the one state (unless Redis does), serves the admin endpoint, and forks N workers that each
 * run `sluice extproc` on the shared socket. A worker reads from its flags only what it needs
 * to serve (the socket, message size, grace, state and tracing); its config comes from here.
 */
async function startWorkers(
  opts: StandaloneOptions,
  adsAddress: string,
  socket: string,
): Promise<Extproc> {
  if (opts.stateStore || opts.wallClock) {
    throw new Error('workers cannot share a state store or clock held in this process');
  }
  const grace = opts.shutdownGraceMs ?? 15_000;
  const entry = cliEntry();
  const args = [
    'extproc',
    '--xds',
    adsAddress,
    '--node-id',
    EXTPROC_NODE_ID,
    '--listen',
    `unix:${socket}`,
    '--admin',
    'off',
    '--max-message-bytes',
    String(MAX_MESSAGE_BYTES),
    '--shutdown-grace-ms',
    String(grace),
    '--log-level',
    opts.logLevel ?? 'info',
    ...(opts.redisUrl ? ['--redis-url', opts.redisUrl] : []),
    ...(opts.vaultKeyFile ? ['--vault-key-file', opts.vaultKeyFile] : []),
    ...(opts.otlpEndpoint ? ['--otlp-endpoint', opts.otlpEndpoint] : []),
    ...(opts.traceSamplingRatio !== undefined
      ? ['--trace-ratio', String(opts.traceSamplingRatio)]
      : []),
  ];
  const primary = await startPrimary({
    workers: opts.workers!,
    xds: { address: adsAddress, nodeId: EXTPROC_NODE_ID, startTimeoutMs: 10_000 },
    watchConfig: false,
    listen: `unix:${socket}`,
    admin: opts.admin,
    shutdownGraceMs: grace,
    logger: opts.logger.child({ component: 'extproc' }),
    registry: opts.registry,
    env: opts.env,
    now: () => performance.now(),
    redisUrl: opts.redisUrl,
    vaultKeyFile: opts.vaultKeyFile,
    exec: { file: entry.file, args, execArgv: entry.execArgv },
  });
  // A worker that cannot start is replaced over and over: give up rather than wait forever.
  let timer: NodeJS.Timeout | undefined;
  const ready = await Promise.race([
    primary.ready().then(() => true),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 60_000))),
  ]);
  clearTimeout(timer);
  if (!ready) {
    await primary.close();
    throw new Error('the extproc workers did not start serving within 60 s');
  }
  return {
    adminAddress: primary.adminAddress,
    activeStreams: undefined,
    close: () => primary.close(),
  };
}

/** A Service and EndpointSlice per namespace that route `sluice-mock-provider` to the mock. */
function mockDocuments(namespaces: string[], port: number): string {
  const docs: unknown[] = [];
  for (const namespace of namespaces) {
    docs.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: MOCK_SERVICE, namespace },
      spec: { ports: [{ name: 'http', port: 80, targetPort: port }] },
    });
    docs.push({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${MOCK_SERVICE}-local`,
        namespace,
        labels: { 'kubernetes.io/service-name': MOCK_SERVICE },
      },
      addressType: 'IPv4',
      ports: [{ name: 'http', port }],
      endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
    });
  }
  return docs.map((d) => stringify(d)).join('---\n');
}

/**
 * Envoy's bootstrap: only the ADS cluster (everything else comes over ADS), and the admin
 * interface on a Unix socket (in the run's private work directory, so only its owner reaches it).
 */
export function envoyBootstrap(adsSocket: string, adminSocket: string): Record<string, unknown> {
  const ads = { ads: {}, resource_api_version: 'V3' };
  return {
    node: { id: ENVOY_NODE_ID, cluster: 'sluice' },
    admin: { address: { pipe: { path: adminSocket } } },
    dynamic_resources: {
      ads_config: {
        api_type: 'GRPC',
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: 'sluice-xds' } }],
      },
      cds_config: ads,
      lds_config: ads,
    },
    static_resources: {
      clusters: [
        {
          name: 'sluice-xds',
          type: 'STATIC',
          connect_timeout: '1s',
          load_assignment: {
            cluster_name: 'sluice-xds',
            endpoints: [
              { lb_endpoints: [{ endpoint: { address: { pipe: { path: adsSocket } } } }] },
            ],
          },
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
        },
      ],
    },
  };
}

/**
 * Envoy with a bootstrap that holds only the ADS cluster (everything else comes over ADS) and an
 * admin interface on a Unix socket in the private work directory, used only to drain.
 */
async function startEnvoy(
  bin: string,
  work: string,
  adsSocket: string,
  host: string,
  port: number,
  log: Logger,
): Promise<{ url: string; stopListening(): Promise<void>; close(): Promise<void> }> {
  if (port === 0) throw new Error('with Envoy the listener needs a fixed --port');
  const adminSocket = join(work, 'envoy-admin.sock');
  const bootstrap = envoyBootstrap(adsSocket, adminSocket);
  const file = join(work, 'envoy-bootstrap.json');
  await writeFile(file, JSON.stringify(bootstrap, null, 2), 'utf8');
  log.info(
    { event: 'envoy_bootstrap', file, ads: adsSocket },
    'Envoy bootstrap written: ADS points at the in-process server',
  );
  const child: ChildProcess = spawn(bin, ['-c', file, '--log-level', 'warn'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`envoy exited with ${child.exitCode}`);
    if (await canConnect(host, port)) break;
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new Error('envoy did not open its listener in time');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `http://${host}:${port}`,
    stopListening: () => adminPost(adminSocket, '/drain_listeners'),
    close: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A POST to Envoy's admin interface on its Unix socket; rejects unless it answers 200. */
function adminPost(socketPath: string, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, path, method: 'POST', timeout: 5000 }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else reject(new Error(`Envoy admin ${path} answered ${res.statusCode}`));
    });
    req.once('timeout', () => req.destroy(new Error(`Envoy admin ${path} timed out`)));
    req.once('error', reject);
    req.end();
  });
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: host === '0.0.0.0' ? '127.0.0.1' : host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
