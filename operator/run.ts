/**
 * The operator as a component: everything it needs is passed in (cluster access, logger, metrics
 * registry, clock), so tests run it whole and in-process against a real apiserver.
 *
 * Every replica serves xDS from its own informers; only the holder of the status Lease (or the
 * only replica, without leader election) writes status.
 */
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { readiness, startAdmin, type RunningAdmin } from '../extproc/shared/admin.js';
import { Controller } from './controller/controller.js';
import { countNacks, operatorMetrics } from './controller/metrics.js';
import type { Backoff } from '../extproc/shared/backoff.js';
import { kubeApi, type SourceApi } from './source/kube-api.js';
import { KubeSource } from './source/kube.js';
import { EventRecorder, eventApi, type EventApi } from './status/events.js';
import { buildReport, Fleet, memoizedView, reportApi, type ReportApi } from './status/fleet.js';
import { LeaderElector, leaseApi, type LeaseApi } from './status/leader.js';
import { StatusWriter, statusApi, type StatusApi } from './status/writer.js';
import type { CompileOptions } from './compile/index.js';
import type { SnapshotCache } from './xds/cache.js';
import { SnapshotCache as Cache } from './xds/cache.js';
import { ResourceEncoder } from './xds/encode.js';
import { startAdsServer, type RunningAdsServer } from './xds/server.js';
import type { AckTracker } from './xds/tracker.js';

export interface LeaderElectionOptions {
  /** This replica's name in the Lease (default: hostname and pid). */
  identity?: string;
  /** Where the Lease lives. */
  namespace: string;
  /** Default sluice-operator-status. */
  leaseName?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** How often this replica renews its data plane report (default 5000 ms). */
  reportRenewMs?: number;
  /** A report not renewed for this long is dropped by the leader (default 15000 ms). */
  reportDurationMs?: number;
}

export interface OperatorOptions {
  kubeConfig: KubeConfig;
  /** Watched namespaces; empty or absent: all. */
  namespaces?: readonly string[];
  /**
   * Where Secrets labelled sluice.dev/consumer declare consumers (whatever `namespaces` says);
   * empty or absent: nowhere. `sluice operator` defaults it to its own namespace.
   */
  consumerNamespaces?: readonly string[];
  /** ADS listen address: unix:/path or host:port (port 0 picks one). */
  xdsListen: string;
  /** /metrics, /healthz, /readyz on host:port; absent: no admin server. */
  admin?: string | undefined;
  /** Absent: this replica always writes status (run one replica, or turn status off). */
  leaderElection?: LeaderElectionOptions | undefined;
  /** false: never write status (default true). */
  writeStatus?: boolean;
  compile?: CompileOptions;
  logger: Logger;
  registry: Registry;
  /** Wall-clock milliseconds. */
  now: () => number;
  debounceMs?: number;
  dataPlanePollMs?: number;
  /** See ControllerOptions.incompleteGraceMs. */
  incompleteGraceMs?: number;
  backoff?: Backoff;
  /** How long open xDS streams may stay after close() before they are cut (default 2000). */
  shutdownGraceMs?: number;
  encoder?: ResourceEncoder;
  /** Test seams: replace the apiserver calls. */
  sourceApi?: SourceApi;
  leaseApi?: LeaseApi;
  statusApi?: StatusApi;
  reportApi?: ReportApi;
  eventApi?: EventApi;
}

export interface RunningOperator {
  xdsAddress: string;
  adminAddress: string | undefined;
  cache: SnapshotCache;
  tracker: AckTracker;
  controller: Controller;
  source: KubeSource;
  statusWriter: StatusWriter;
  isLeader(): boolean;
  /** The data plane reports shared with the other replicas (with leader election only). */
  fleet: Fleet | undefined;
  events: EventRecorder | undefined;
  /** Resolves once the informers listed everything and the first snapshot is served. */
  ready: Promise<void>;
  close(): Promise<void>;
}

export async function run(opts: OperatorOptions): Promise<RunningOperator> {
  const log = opts.logger;
  const metrics = operatorMetrics(opts.registry);
  const encoder = opts.encoder ?? ResourceEncoder.fromProtoTree();
  const cache = new Cache();
  const ads: RunningAdsServer = await startAdsServer({
    cache,
    listen: opts.xdsListen,
    logger: log.child({ log: 'xds' }),
  });

  const source = new KubeSource({
    api: opts.sourceApi ?? kubeApi(opts.kubeConfig),
    namespaces: opts.namespaces ?? [],
    consumerNamespaces: opts.consumerNamespaces ?? [],
    logger: log.child({ log: 'source' }),
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
    onRestart: (kind, reason) => metrics.watchRestarts.inc({ kind, reason }),
  });

  countNacks(ads.tracker, metrics.nacks);

  const writer = new StatusWriter(opts.statusApi ?? statusApi(opts.kubeConfig));
  const le = opts.leaderElection;
  const identity = le?.identity ?? `${hostname()}_${process.pid}`;
  // With leader election there may be other replicas serving data planes: each one reports its
  // own, and the leader counts them all (status/fleet.ts).
  const fleet = le
    ? new Fleet({
        api: opts.reportApi ?? reportApi(opts.kubeConfig),
        namespace: le.namespace,
        identity,
        build: () => buildReport(identity, memoizedView(ads.tracker), cache.snapshotFor('*')),
        now: opts.now,
        logger: log.child({ log: 'fleet' }),
        ...(le.reportRenewMs !== undefined ? { renewMs: le.reportRenewMs } : {}),
        ...(le.reportDurationMs !== undefined ? { durationMs: le.reportDurationMs } : {}),
        ...(opts.backoff ? { backoff: opts.backoff } : {}),
      })
    : undefined;
  const events =
    opts.writeStatus === false
      ? undefined
      : new EventRecorder({
          api: opts.eventApi ?? eventApi(opts.kubeConfig),
          instance: identity,
          logger: log.child({ log: 'events' }),
          now: opts.now,
        });
  let elector: LeaderElector | undefined;
  const isLeader = (): boolean => opts.writeStatus !== false && (elector ? elector.isLeader : true);
  const controller = new Controller({
    source,
    cache,
    encoder,
    tracker: ads.tracker,
    ...(opts.compile ? { compile: opts.compile } : {}),
    status: opts.writeStatus === false ? undefined : { writer, isLeader },
    fleet,
    events,
    logger: log.child({ log: 'controller' }),
    metrics,
    now: opts.now,
    ...(opts.debounceMs !== undefined ? { debounceMs: opts.debounceMs } : {}),
    ...(opts.dataPlanePollMs !== undefined ? { dataPlanePollMs: opts.dataPlanePollMs } : {}),
    ...(opts.incompleteGraceMs !== undefined ? { incompleteGraceMs: opts.incompleteGraceMs } : {}),
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
  });
  if (opts.writeStatus !== false && le) {
    elector = new LeaderElector({
      api: opts.leaseApi ?? leaseApi(opts.kubeConfig),
      namespace: le.namespace,
      identity,
      ...(le.leaseName !== undefined ? { name: le.leaseName } : {}),
      ...(le.leaseDurationMs !== undefined ? { leaseDurationMs: le.leaseDurationMs } : {}),
      ...(le.renewDeadlineMs !== undefined ? { renewDeadlineMs: le.renewDeadlineMs } : {}),
      ...(le.retryPeriodMs !== undefined ? { retryPeriodMs: le.retryPeriodMs } : {}),
      now: opts.now,
      logger: log.child({ log: 'leader' }),
      onStartedLeading: () => {
        metrics.leader.set(1);
        controller.statusAll(0);
      },
      onStoppedLeading: () => metrics.leader.set(0),
    });
  }
  if (!elector && opts.writeStatus !== false) metrics.leader.set(1);

  let served = false;
  let draining = false;
  const ready = (async () => {
    await source.start();
    log.info({ event: 'informers_synced' }, 'informers synced');
    controller.start();
    fleet?.start();
    elector?.start();
    // Ready once a first snapshot is served: an Envoy that connects earlier waits for it.
    await new Promise<void>((resolve) => {
      if (cache.snapshotFor('*')) return resolve();
      const off = cache.onChange(() => {
        off();
        resolve();
      });
    });
    served = true;
  })();
  ready.catch(() => undefined);

  let admin: RunningAdmin | undefined;
  if (opts.admin) {
    admin = await startAdmin({
      listen: opts.admin,
      registry: opts.registry,
      ready: () =>
        readiness(
          draining,
          served ? undefined : source.synced ? 'no snapshot yet' : 'informers not synced',
        ),
    });
    log.info({ event: 'admin_listening', address: admin.address }, 'admin server listening');
  }

  let closing: Promise<void> | undefined;
  return {
    xdsAddress: ads.address,
    adminAddress: admin?.address,
    cache,
    tracker: ads.tracker,
    controller,
    source,
    statusWriter: writer,
    isLeader,
    fleet,
    events,
    ready,
    close: () =>
      (closing ??= (async () => {
        draining = true;
        log.info({ event: 'shutdown' }, 'operator stopping');
        // Is this the last replica? Then nothing will keep Programmed true (helm uninstall).
        // Every replica says it is stopping first, and looks a moment later, so two replicas
        // stopped together see each other go.
        let last = true;
        if (fleet) {
          await fleet.announceStopping().catch(() => undefined);
          await new Promise((r) => setTimeout(r, 300));
          last = !fleet.othersRunning();
        }
        // Release first, so a standby starts writing status while this one drains.
        await elector?.stop();
        // Then withdraw this replica's report: its data planes reconnect to the others.
        await fleet?.stop();
        await controller.close();
        if (last && opts.writeStatus !== false && served) {
          await controller.markStopped(opts.shutdownGraceMs ?? 2000);
        }
        await source.stop();
        await ads.close(opts.shutdownGraceMs ?? 2000);
        await admin?.close();
        log.info({ event: 'stopped' }, 'operator stopped');
      })()),
  };
}
