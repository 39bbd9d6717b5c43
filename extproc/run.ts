/**
 * The extproc as a component: everything it needs is passed in (logger, metrics registry, clock,
 * environment), so tests run it whole, in-process, over a real socket.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { readiness, startAdmin, type RunningAdmin } from './shared/admin.js';
import { WIRE } from './config/contract.js';
import {
  configPackagesLoaded,
  FileConfigSource,
  loadConfigPackages,
  type ConfigSourceEvents,
} from './config/load.js';
import { XdsConfigSource } from './config/xds-source.js';
import type { RuntimeConfig } from './config/runtime.js';
import { Budget } from './governance/budget.js';
import { journalMetrics } from './governance/settlement-journal.js';
import { loadVaultKey } from './masking/vault-key.js';
import { SessionIds } from './context/session.js';
import { RedisVault, vaultFailureMetric } from './masking/vault-redis.js';
import { MemoryVault, type Vault } from './masking/vault.js';
import { RequestStore } from './pipeline/request-store.js';
import { MemoryStore } from './state/memory.js';
import { isRedisStore } from './state/is-redis.js';
import { RedisVaultStore } from './state/redis-vault.js';
import type { StateStore } from './state/store.js';
import type { PhaseHandler } from './pipeline/phase.js';
import { RouterExchange } from './pipeline/router.js';
import { budgetUtilizationMetric } from './telemetry/budget-utilization.js';
import { configuredTracing, type TracingOptions } from './telemetry/tracing-config.js';
import type { RunningTracing } from './telemetry/tracing.js';
import { UpstreamExchange, type RemoteRequests } from './pipeline/upstream.js';
import { EXT_PROC_SERVICE, startGrpcServer, type GrpcServerKind } from './server.js';
import { ExtProcStream, type StreamObserver } from './stream.js';
import { Telemetry } from './telemetry/telemetry.js';
import { requestId } from './telemetry/request-id.js';
import { warmTokenizer } from './usage/estimate.js';
import { responseCache } from './cache/setup.js';
import { sessionsFor } from './sessions/setup.js';
import type { SessionStore } from './sessions/store.js';
import type { CacheStore } from './cache/store.js';

export interface ExtprocOptions {
  /** A config file; exactly one of configPath and xds. */
  configPath?: string | undefined;
  /** The operator's ADS stream instead of a file. */
  xds?: { address: string; nodeId: string; startTimeoutMs?: number } | undefined;
  listen: string;
  admin?: string | undefined;
  maxMessageBytes: number;
  /** The ext_proc gRPC server: our node:http2 one (default) or grpc-js's (server.ts). */
  grpcServer?: GrpcServerKind | undefined;
  watchConfig: boolean;
  shutdownGraceMs: number;
  logger: Logger;
  registry: Registry;
  /** Monotonic milliseconds. */
  now: () => number;
  env: NodeJS.ProcessEnv;
  newId?: () => string;
  warmTokenizer?: boolean;
  /** Budgets and usage in Redis; default: env SLUICE_REDIS_URL, else in process memory. */
  redisUrl?: string | undefined;
  /** A store of the caller's (tests); its lifetime stays the caller's. Wins over redisUrl. */
  stateStore?: StateStore | undefined;
  /** Wall-clock ms for budget windows and key expiry (default Date.now). */
  wallClock?: () => number;
  /**
   * The masking vault's key (32 bytes; see masking/vault-key.ts); default: env
   * SLUICE_VAULT_KEY_FILE. With Redis it puts conversation vaults in Redis, shared by replicas.
   */
  vaultKeyFile?: string | undefined;
  /**
   * Stored Responses turns and conversations in a store shared with other processes (a worker's,
   * in the primary), sealed with this key; default: Redis or memory, as the state store.
   */
  sessions?: { store: SessionStore; key: Buffer } | undefined;
  /** The in-memory response cache's bound in bytes (default 64 MiB); unused with Redis. */
  cacheMemoryBytes?: number | undefined;
  /** OpenTelemetry traces; default: otlpEndpoint, else the OTEL_* environment, else none. */
  tracing?: TracingOptions | undefined;
  /** --otlp-endpoint: OTLP/HTTP base URL (…/v1/traces is added). */
  otlpEndpoint?: string | undefined;
  /** --trace-ratio, 0..1. */
  traceSamplingRatio?: number | undefined;
  /**
   * Where configs come from instead of configPath/xds: a cluster worker's primary
   * (workers/worker.ts), which compiled them first.
   */
  configSource?:
    | ((events: ConfigSourceEvents) => {
        start(): Promise<RuntimeConfig>;
        reload(): Promise<void>;
        close(): void;
      })
    | undefined;
  /** The masking vault (a cluster worker's: the primary's, over IPC); default as above. */
  vault?: Vault | undefined;
  /** The response cache's store (a cluster worker's: the primary's); default as above. */
  cacheStore?: CacheStore | undefined;
  /** Requests whose router phase ran in another worker (workers/requests.ts). */
  remoteRequests?: RemoteRequests | undefined;
}

export interface RunningExtproc {
  grpcAddress: string;
  adminAddress: string | undefined;
  config(): RuntimeConfig;
  /** Re-reads the config file now (SIGHUP); a bad file is refused and the old one kept. No-op over xDS. */
  reload(): Promise<void>;
  close(): Promise<void>;
  readonly activeStreams: number;
  readonly pendingRequests: number;
  /** The state store budgets and usage reports use. */
  readonly stateStore: StateStore;
  /** Resolves once every settlement started so far has reached the store (or its backlog). */
  settled(): Promise<void>;
  /** What the router phase left for the upstream phase, per request (workers/requests.ts). */
  readonly requests: RequestStore;
}

/** Which filter opened the stream: the operator sets this in the upstream filter's initial metadata. */
export const FILTER_METADATA = WIRE.filterMetadata;

export async function run(opts: ExtprocOptions): Promise<RunningExtproc> {
  const log = opts.logger;
  // First: a bad key file fails the start before anything is opened that would need closing.
  const vaultKeyFile = opts.vaultKeyFile ?? opts.env['SLUICE_VAULT_KEY_FILE'];
  const vaultKey = vaultKeyFile ? await loadVaultKey(vaultKeyFile) : undefined;
  // Session ids in logs and usage: the same on every replica that shares the vault key.
  const sessionIds = SessionIds.fromVaultKey(vaultKey);
  const tracing = await startTracingIfConfigured(opts, log);
  const telemetry = new Telemetry(opts.registry, log.child({ log: 'access' }), tracing?.onRequest);
  let current: RuntimeConfig | undefined;
  let draining = false;
  let open = 0;

  const apply = (cfg: RuntimeConfig): void => {
    current = cfg;
    telemetry.configApplied(cfg.version, cfg.knownNames());
    log.info(
      { event: 'config_applied', version: cfg.version, routes: cfg.routes.length },
      'config applied',
    );
  };
  // A config is applied once the packages its backends need are loaded (config/load.ts). A file's
  // or an xDS document's were loaded while it was compiled, so it applies at once; a worker's
  // configs come compiled by its primary, and one that newly names such a backend waits for them
  // here, or is refused if they fail to load. Configs apply in the order they came.
  let waiting = 0;
  let queue: Promise<boolean> = Promise.resolve(true);
  // Later: a promise of whether it applied (a worker reports a version serving only then).
  const onConfig = (cfg: RuntimeConfig): Promise<boolean> | void => {
    if (waiting === 0 && configPackagesLoaded(cfg)) {
      apply(cfg);
      return;
    }
    waiting++;
    queue = queue
      .then(() => loadConfigPackages(cfg))
      .then(
        () => {
          apply(cfg);
          return true;
        },
        (err: unknown) => {
          const reason = err instanceof Error ? err.message : 'packages failed to load';
          log.error(
            { event: 'config_rejected', version: cfg.version, reason },
            'config refused; keeping the last good one',
          );
          telemetry.configRejected();
          return false;
        },
      )
      .finally(() => waiting--);
    return queue;
  };
  const events = { onConfig, onRejected: () => telemetry.configRejected() };
  let source: { reload(): Promise<void>; close(): void };
  if (opts.configSource) {
    const own = opts.configSource(events);
    const first = await own.start();
    await loadConfigPackages(first);
    apply(first);
    source = own;
  } else if (opts.xds) {
    const xds = new XdsConfigSource({ ...opts.xds, logger: log }, events);
    apply(await xds.start());
    source = { reload: () => Promise.resolve(), close: () => xds.close() };
  } else if (opts.configPath !== undefined) {
    const file = new FileConfigSource(opts.configPath, events, log, opts.env);
    apply(await file.start(opts.watchConfig));
    source = file;
  } else {
    throw new Error('either configPath or xds is required');
  }

  const newId = opts.newId ?? requestId;
  const wallClock = opts.wallClock ?? Date.now;
  const redisUrl = opts.redisUrl ?? opts.env['SLUICE_REDIS_URL'];
  let stateStore: StateStore;
  if (opts.stateStore) {
    stateStore = opts.stateStore;
  } else if (redisUrl) {
    // ioredis is imported only for a Redis store (issue 16); a failure to load fails the start.
    const { RedisStore } = await import('./state/redis.js');
    const redis = new RedisStore({
      url: redisUrl,
      onError: (err) => log.warn({ event: 'redis_error', reason: err.message }, 'redis error'),
    });
    try {
      await redis.ready();
    } catch {
      // Not fatal: the client reconnects on its own, and each policy's failure mode decides
      // meanwhile (closed: 503, open: admitted and counted).
      log.warn({ event: 'redis_unavailable' }, 'redis not reachable at start; retrying');
    }
    stateStore = redis;
  } else {
    stateStore = new MemoryStore();
  }
  log.info({ event: 'state_store', kind: stateStore.kind }, 'state store ready');
  let vault: Vault;
  if (opts.vault) {
    vault = opts.vault;
  } else if (isRedisStore(stateStore) && vaultKey) {
    vault = new RedisVault({
      store: new RedisVaultStore({ client: stateStore.client }),
      key: vaultKey,
      onFailure: vaultFailureMetric(opts.registry),
    });
  } else {
    if (isRedisStore(stateStore)) {
      // Replicas without a shared key could neither match nor read each other's entries.
      log.warn(
        { event: 'vault_key_missing' },
        'no vault key (--vault-key-file): masking conversations stay in each replica',
      );
    }
    vault = new MemoryVault({ now: opts.now, ...(vaultKey && { key: vaultKey }) });
  }
  log.info(
    { event: 'vault', kind: vault instanceof RedisVault ? 'redis' : 'memory' },
    'vault ready',
  );
  const store = new RequestStore(opts.now, undefined, vault);
  const cache = responseCache(opts, stateStore, vaultKey, wallClock, log, opts.cacheStore);
  const sessions = sessionsFor({ wallNow: wallClock }, stateStore, vaultKey, log, opts.sessions);
  const onSessionError = (err: unknown): void =>
    log.warn(
      { event: 'session_store_failed', reason: err instanceof Error ? err.name : 'unknown' },
      'a stored turn could not be written; its answer went to the caller',
    );
  const settlementLost = journalMetrics(opts.registry, () => budget.journal);
  const budget = new Budget({
    store: stateStore,
    clock: wallClock,
    onFailOpen: (policy) => telemetry.governanceFailOpen(policy),
    onLevels: budgetUtilizationMetric(opts.registry, wallClock),
    onSettlementLost: (count, reason) => {
      settlementLost(count, reason);
      log.warn({ event: 'settlement_lost', count, reason }, 'budget settlements dropped');
    },
  });
  // Settlements in flight, counted: a request's is watched with two shared callbacks, not a Set
  // entry and a `finally` closure per request (~0.35 KiB each, issue 16's allocation profile).
  let unsettled = 0;
  let whenSettled: (() => void)[] = [];
  const settledOne = (): void => {
    if (--unsettled > 0) return;
    const waiting = whenSettled;
    whenSettled = [];
    for (const resolve of waiting) resolve();
  };
  // A settlement that rejects still counts as done, and its rejection stays unhandled (as the
  // promise `finally` made of it was).
  const settleFailed = (err: unknown): never => {
    settledOne();
    throw err;
  };
  const settling = (p: Promise<unknown>): void => {
    unsettled++;
    void p.then(settledOne, settleFailed);
  };
  const settled = (): Promise<void> =>
    unsettled === 0 ? Promise.resolve() : new Promise((resolve) => whenSettled.push(resolve));

  // One per filter, not per stream: what each stream reports goes to the same metric children.
  const observer = (filter: 'router' | 'upstream'): StreamObserver => {
    const m = telemetry.streamMetrics(filter);
    return {
      phase: m.phase,
      opened: () => {
        open++;
        m.opened();
      },
      closed: () => {
        open--;
        m.closed();
      },
    };
  };
  const observers = { router: observer('router'), upstream: observer('upstream') };

  const grpcServer = await startGrpcServer({
    listen: opts.listen,
    maxMessageBytes: opts.maxMessageBytes,
    server: opts.grpcServer,
    logger: log,
    onStream(call, metadata) {
      // Each stream reads one config version from start to end.
      const config = current;
      const upstream = metadata.get(FILTER_METADATA)[0] === 'upstream';
      const filter = upstream ? 'upstream' : 'router';
      const handler: PhaseHandler = upstream
        ? new UpstreamExchange({
            config,
            store,
            wallNow: wallClock,
            ...(opts.remoteRequests && { remote: opts.remoteRequests }),
          })
        : new RouterExchange({
            config,
            store,
            telemetry,
            now: opts.now,
            newId,
            budget,
            wallNow: wallClock,
            settling,
            cache,
            sessionIds,
            sessions,
            onSessionError,
            // Envoy's ext_proc span, when Envoy traces: its gRPC client puts it in the metadata.
            ...(tracing && {
              trace: {
                ratio: tracing.samplingRatio,
                stream: {
                  traceparent: metadataString(metadata, 'traceparent'),
                  tracestate: metadataString(metadata, 'tracestate'),
                },
              },
            }),
          });
      new ExtProcStream(
        call,
        handler,
        observers[filter],
        log,
        opts.now,
        // The upstream filter sends request headers only: its answer is the last message.
        { endAfterRequestHeaders: upstream },
      ).start();
    },
  });
  // The tokenizer takes ~150 ms to load; pay that now, not inside the first request without usage.
  if (opts.warmTokenizer !== false) warmTokenizer();
  grpcServer.health.setStatus('', 'SERVING');
  grpcServer.health.setStatus(EXT_PROC_SERVICE, 'SERVING');

  let admin: RunningAdmin | undefined;
  if (opts.admin) {
    admin = await startAdmin({
      listen: opts.admin,
      registry: opts.registry,
      ready: () => readiness(draining, current ? undefined : 'no config'),
    });
    log.info({ event: 'admin_listening', address: admin.address }, 'admin server listening');
  }

  let closing: Promise<void> | undefined;
  return {
    grpcAddress: grpcServer.address,
    adminAddress: admin?.address,
    config: () => current!,
    reload: () => source.reload(),
    get activeStreams() {
      return open;
    },
    get pendingRequests() {
      return store.size;
    },
    stateStore,
    settled,
    requests: store,
    close() {
      closing ??= (async () => {
        draining = true;
        source.close();
        log.info({ event: 'shutdown', open_streams: open }, 'draining ext_proc streams');
        await grpcServer.shutdown(opts.shutdownGraceMs);
        store.close();
        await settled();
        await tracing?.shutdown();
        // One last try for settlements queued while the store was away.
        budget.close();
        await budget.flush().catch(() => 0);
        if (budget.journal.size > 0) {
          log.warn(
            { event: 'settlement_lost', count: budget.journal.size, reason: 'shutdown' },
            'budget settlements not delivered before shutdown',
          );
        }
        if (!opts.stateStore) await stateStore.close();
        await admin?.close();
        log.info({ event: 'stopped' }, 'extproc stopped');
      })();
      return closing;
    },
  };
}

/**
 * Tracing when `opts.tracing` or the OTEL_* environment names an endpoint: only then is
 * OpenTelemetry imported (telemetry/tracing.ts; ~10 MiB of V8 heap with what it loads, issue 16).
 * A bad endpoint or ratio, or packages that fail to load, fail the start.
 */
async function startTracingIfConfigured(
  opts: ExtprocOptions,
  log: Logger,
): Promise<RunningTracing | undefined> {
  const cfg = configuredTracing(opts);
  if (!cfg) return undefined;
  let startTracing;
  try {
    ({ startTracing } = await import('./telemetry/tracing.js'));
  } catch (err) {
    throw new Error(
      `tracing is configured but OpenTelemetry failed to load: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  return startTracing({ ...opts, tracing: cfg }, log);
}

function metadataString(m: { get(key: string): unknown[] }, key: string): string | undefined {
  const v = m.get(key)[0];
  return typeof v === 'string' ? v : undefined;
}
