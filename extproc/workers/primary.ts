/**
 * `sluice extproc --workers N` (N > 1): this process is the primary of a node:cluster. It owns
 * everything there must be one of, and forks N workers that each run the whole ext_proc server
 * (extproc/run.ts) behind the one listening socket:
 *
 * - the socket: node:cluster's primary accepts and hands connections to workers in turn, so
 *   Envoy's connections (one per Envoy worker thread and ext_proc cluster) spread over them;
 * - the config: the one file watch or xDS stream (one node id, so the operator's ACK/NACK status
 *   is about this pod, not about N anonymous streams), compiled here, pushed to every worker;
 * - the in-memory state (shared-state.ts): budgets and usage, the masking vault and the response
 *   cache, unless Redis holds them (then every worker talks to Redis itself);
 * - the admin endpoint: /metrics aggregated over every worker (prom-client's AggregatorRegistry),
 *   /readyz ready only when every worker serves the current config, /healthz;
 * - shutdown: on SIGTERM every worker drains its streams and settles its budgets (still through
 *   this process's store), then exits; the primary stops after the last one.
 *
 * A worker that dies unexpectedly is replaced (same number, after a short backoff); requests it
 * held fail, as they would in a one-process extproc that crashed.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { AggregatorRegistry, Registry, type Aggregator } from 'prom-client';
import { MemoryCacheStore } from '../cache/store.js';
import { DEFAULT_CACHE_MEMORY_BYTES } from '../cache/setup.js';
import { DEFAULT_SESSIONS_MEMORY_BYTES } from '../sessions/setup.js';
import { MemorySessionStore } from '../sessions/store.js';
import { FileConfigSource } from '../config/load.js';
import type { RuntimeConfig } from '../config/runtime.js';
import { XdsConfigSource } from '../config/xds-source.js';
import { loadVaultKey } from '../masking/vault-key.js';
import { MemoryVault } from '../masking/vault.js';
import { readiness, startAdmin, type RunningAdmin } from '../shared/admin.js';
import { MemoryStore } from '../state/memory.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { IpcPeer, type IpcChannel } from './ipc.js';
import { withNodeFlags } from './node-flags.js';
import { configWire, type ConfigWire } from './config-wire.js';
import { requestOwner } from './requests.js';
import { serveCacheStore, serveSessionStore, serveStateStore, serveVault } from './shared-state.js';

export const WORKER_ENV = 'SLUICE_EXTPROC_WORKER';

/** A registry's metrics as `getMetricsAsJSON()` returns them: what workers send the primary. */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

export interface PrimaryOptions {
  workers: number;
  configPath?: string | undefined;
  xds?: { address: string; nodeId: string; startTimeoutMs?: number } | undefined;
  watchConfig: boolean;
  listen: string;
  admin?: string | undefined;
  shutdownGraceMs: number;
  logger: Logger;
  registry: Registry;
  env: NodeJS.ProcessEnv;
  now: () => number;
  redisUrl?: string | undefined;
  vaultKeyFile?: string | undefined;
  cacheMemoryBytes?: number | undefined;
  /**
   * What workers run; default: this process's own entry point, arguments and node flags. Either
   * way the extproc's node flags (node-flags.ts) are added where missing.
   */
  exec?: { file: string; args: string[]; execArgv?: string[] } | undefined;
  /** How long a dead worker waits before it is replaced (default 1000 ms). */
  restartDelayMs?: number;
}

/** What a worker learns from the primary when it starts (its `hello` call). */
export interface Hello {
  /** Budgets and usage live here (no Redis). */
  sharedStore: boolean;
  /** The vault and the response cache live here; base64 vault key (to unseal entries). */
  sharedVault: { key: string } | undefined;
  sharedCache: boolean;
  /** Stored Responses turns and conversations live here, sealed with the shared vault key. */
  sharedSessions: boolean;
}

interface Slot {
  id: number;
  worker: Worker | undefined;
  peer: IpcPeer | undefined;
  /** The config version the worker serves; undefined until it reports ready. */
  serving: string | undefined;
  restartTimer?: NodeJS.Timeout;
}

export interface RunningPrimary {
  adminAddress: string | undefined;
  /** Resolves when every worker serves the first config. */
  ready(): Promise<void>;
  readonly workers: number;
  /** Re-reads the config file now (SIGHUP); no-op over xDS. */
  reload(): Promise<void>;
  /** Drains every worker, then stops. */
  close(): Promise<void>;
}

/**
 * Metrics whose per-worker values must not be added up: every worker applies every config, and
 * reads the same shared budget levels (the fullest seen is the truth closest to now).
 */
export const METRIC_AGGREGATORS: Readonly<Record<string, Aggregator>> = {
  sluice_config_info: 'max',
  sluice_config_reloads_total: 'max',
  sluice_budget_utilization_ratio: 'max',
};

/** What the admin endpoint serves as /metrics: every process's metrics, aggregated. */
class ClusterRegistry extends Registry {
  constructor(private readonly aggregated: () => Promise<string>) {
    super();
  }
  override metrics(): Promise<string> {
    return this.aggregated();
  }
}

function workerChannel(w: Worker): IpcChannel {
  return {
    // worker.send's own false means "backed up": the message is queued and will be delivered.
    send: (msg) => {
      if (!w.isConnected()) return false;
      w.send(msg as object);
      return true;
    },
    onMessage: (fn) => void w.on('message', fn),
    onClose: (fn) => void w.once('disconnect', fn),
  };
}

export async function startPrimary(opts: PrimaryOptions): Promise<RunningPrimary> {
  const log = opts.logger;
  const redisUrl = opts.redisUrl ?? opts.env['SLUICE_REDIS_URL'];
  const vaultKeyFile = opts.vaultKeyFile ?? opts.env['SLUICE_VAULT_KEY_FILE'];
  const fileKey = vaultKeyFile ? await loadVaultKey(vaultKeyFile) : undefined;

  // One store, vault and cache for every worker, unless Redis is shared by every replica anyway.
  const store = redisUrl ? undefined : new MemoryStore();
  // Redis without a key keeps vault and cache per replica (run.ts); per worker would be worse.
  const sharedVaultState = !(redisUrl && fileKey);
  const vaultKey = fileKey ?? randomBytes(32);
  const vault = sharedVaultState ? new MemoryVault({ now: opts.now, key: vaultKey }) : undefined;
  const cache = sharedVaultState
    ? new MemoryCacheStore({
        maxBytes: opts.cacheMemoryBytes ?? DEFAULT_CACHE_MEMORY_BYTES,
        now: opts.now,
      })
    : undefined;
  const sessionStore = sharedVaultState
    ? new MemorySessionStore({ maxBytes: DEFAULT_SESSIONS_MEMORY_BYTES, now: Date.now })
    : undefined;
  const hello: Hello = {
    sharedStore: store !== undefined,
    sharedVault: vault ? { key: vaultKey.toString('base64') } : undefined,
    sharedCache: cache !== undefined,
    sharedSessions: sessionStore !== undefined,
  };

  // The config: compiled here first (what the operator's ACK means), then pushed.
  const telemetry = new Telemetry(opts.registry, log.child({ log: 'access' }));
  let current: { cfg: RuntimeConfig; wire: ConfigWire } | undefined;
  const slots: Slot[] = [];
  const apply = (cfg: RuntimeConfig): void => {
    current = { cfg, wire: configWire(cfg) };
    telemetry.configApplied(cfg.version, cfg.knownNames());
    log.info({ event: 'config_applied', version: cfg.version }, 'config pushed to workers');
    for (const s of slots) s.peer?.notify('config', current.wire);
  };
  const events = { onConfig: apply, onRejected: () => telemetry.configRejected() };
  let source: { reload(): Promise<void>; close(): void };
  let first: RuntimeConfig;
  if (opts.xds) {
    const xds = new XdsConfigSource({ ...opts.xds, logger: log }, events);
    first = await xds.start();
    source = { reload: () => Promise.resolve(), close: () => xds.close() };
  } else if (opts.configPath !== undefined) {
    const file = new FileConfigSource(opts.configPath, events, log, opts.env);
    first = await file.start(opts.watchConfig);
    source = file;
  } else {
    throw new Error('either configPath or xds is required');
  }
  apply(first);

  // Workers must not remove the socket file: it is the primary's, shared by all of them.
  if (opts.listen.startsWith('unix:')) {
    const path = opts.listen.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    await mkdir(dirname(path), { recursive: true });
    await unlink(path).catch(() => undefined);
  }

  cluster.setupPrimary({
    ...(opts.exec && { exec: opts.exec.file, args: opts.exec.args }),
    // Each worker is an extproc: it runs with the extproc's node flags whatever started this one.
    execArgv: withNodeFlags(opts.exec?.execArgv ?? process.execArgv),
    serialization: 'json',
  });

  let draining = false;
  let readyWaiters: (() => void)[] = [];
  const allServing = (): boolean =>
    current !== undefined && slots.every((s) => s.serving === current!.cfg.version);
  const checkReady = (): void => {
    if (!allServing()) return;
    const w = readyWaiters;
    readyWaiters = [];
    for (const f of w) f();
  };

  const fork = (slot: Slot): void => {
    const worker = cluster.fork({ ...opts.env, [WORKER_ENV]: String(slot.id) });
    const peer = new IpcPeer(workerChannel(worker));
    slot.worker = worker;
    slot.peer = peer;
    slot.serving = undefined;
    peer.handle('hello', () => hello);
    peer.handle('config.get', () => current!.wire);
    if (store) serveStateStore(peer, store);
    if (vault) serveVault(peer, vault);
    if (cache) serveCacheStore(peer, cache);
    if (sessionStore) serveSessionStore(peer, sessionStore);
    // An upstream attempt that reached another worker than its router phase (requests.ts).
    // The owner gone (restarted) has lost its requests: answered as not found (fail closed).
    const owner = (id: string) => {
      const n = requestOwner(id);
      return n === undefined ? undefined : slots[n - 1]?.peer;
    };
    peer.handle('request.get', (id: string) => owner(id)?.call('request.get', id, 2000) ?? null);
    peer.handle(
      'request.begin',
      (a: { id: string }) => owner(a.id)?.call('request.begin', a, 2000) ?? false,
    );
    peer.onNotify('serving', (a: { version: string }) => {
      slot.serving = a.version;
      checkReady();
    });
    worker.on('exit', (code, signal) => {
      peer.close();
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      slot.peer = undefined;
      slot.serving = undefined;
      if (draining) {
        log.info({ event: 'worker_stopped', worker: slot.id, code }, 'worker stopped');
        return;
      }
      log.error(
        { event: 'worker_exited', worker: slot.id, code, signal },
        'worker exited unexpectedly; starting another',
      );
      slot.restartTimer = setTimeout(() => fork(slot), opts.restartDelayMs ?? 1000);
    });
  };
  for (let i = 1; i <= opts.workers; i++) {
    const slot: Slot = { id: i, worker: undefined, peer: undefined, serving: undefined };
    slots.push(slot);
    fork(slot);
  }
  log.info({ event: 'workers_started', workers: opts.workers }, 'ext_proc workers started');

  const metrics = async (): Promise<string> => {
    const own = await opts.registry.getMetricsAsJSON();
    const theirs = await Promise.all(
      slots.map((s) =>
        s.peer
          ? s.peer.call<MetricsJson>('metrics', null, 3000).catch((): MetricsJson => [])
          : Promise.resolve<MetricsJson>([]),
      ),
    );
    const all = [own, ...theirs].map((list) =>
      list.map((m) => {
        const a = METRIC_AGGREGATORS[m.name];
        return a ? { ...m, aggregator: a } : m;
      }),
    );
    return AggregatorRegistry.aggregate(all).metrics();
  };

  let admin: RunningAdmin | undefined;
  if (opts.admin) {
    admin = await startAdmin({
      listen: opts.admin,
      registry: new ClusterRegistry(metrics),
      ready: () => readiness(draining, allServing() ? undefined : 'workers starting'),
    });
    log.info({ event: 'admin_listening', address: admin.address }, 'admin server listening');
  }

  let closing: Promise<void> | undefined;
  return {
    adminAddress: admin?.address,
    workers: opts.workers,
    ready: () =>
      allServing() ? Promise.resolve() : new Promise<void>((r) => readyWaiters.push(r)),
    reload: () => source.reload(),
    close() {
      closing ??= (async () => {
        draining = true;
        source.close();
        log.info({ event: 'shutdown', workers: slots.length }, 'draining ext_proc workers');
        // Workers drain their streams (shutdown grace), then settle; the hard stop is later.
        const hardStop = opts.shutdownGraceMs + 10_000;
        await Promise.all(
          slots.map(async (s) => {
            if (s.restartTimer) clearTimeout(s.restartTimer);
            const w = s.worker;
            if (!w) return;
            const exited = new Promise<void>((r) => w.once('exit', () => r()));
            s.peer?.notify('drain', null);
            const timer = setTimeout(() => {
              log.warn({ event: 'worker_killed', worker: s.id }, 'worker did not stop in time');
              w.process.kill('SIGKILL');
            }, hardStop);
            await exited;
            clearTimeout(timer);
          }),
        );
        await store?.close();
        vault?.close();
        cache?.close();
        await admin?.close();
        log.info({ event: 'stopped' }, 'extproc stopped');
      })();
      return closing;
    },
  };
}
