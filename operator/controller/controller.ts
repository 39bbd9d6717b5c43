/**
 * The reconcile loop. Two keyed queues:
 * - `sync` (one key): assemble Resources → compile → snapshot → cache.setSnapshot('*'); debounced
 *   so a burst of watch events becomes one compilation. Compilation is a pure function of the
 *   whole bundle and already isolates bad objects, so there is nothing to gain from translating
 *   objects one by one, and a global key keeps the served config consistent.
 * - one key per AIRoute/AIPolicy (`Kind/namespace/name`): compute its conditions and write them if
 *   they changed. Keys fail and back off independently: an object whose status cannot be written
 *   never delays the others.
 *
 * Status passes are triggered by a new snapshot, by ACKs and NACKs, by data planes connecting,
 * disconnecting or changing subscriptions (polled: the tracker has no event for those), by an
 * object's status being changed by someone else, and by becoming the leader.
 */
import { performance } from 'node:perf_hooks';
import { pino, type Logger } from 'pino';
import type { AIPolicy, AIRoute, ResourceStatus, Resources } from '../api/types.js';
import type { Change } from '../source/kube.js';
import {
  conditionTime,
  desiredConditions,
  INCOMPLETE_GRACE_MS,
  mergeStatus,
  operatorStopped,
} from '../status/conditions.js';
import { eventsFor, type EventRecorder } from '../status/events.js';
import { policySummary, routeSummary } from '../status/summary.js';
import {
  localPlanes,
  memoizedView,
  remotePlanes,
  type PlaneState,
  type ReplicaReport,
} from '../status/fleet.js';
import type { StatusKind, StatusWriter } from '../status/writer.js';
import { nextKeyExpiry } from '../compile/governance.js';
import {
  invalidPolicies,
  compile,
  type StatusResult,
  type CompileOptions,
} from '../compile/index.js';
import { InvalidPolicyReporter } from './invalid-policies.js';
import { ALL_NODES, type SnapshotCache } from '../xds/cache.js';
import type { ResourceEncoder } from '../xds/encode.js';
import type { AckTracker } from '../xds/tracker.js';
import type { Backoff } from '../../extproc/shared/backoff.js';
import type { OperatorMetrics } from './metrics.js';
import { WorkQueue } from './queue.js';
import { desiredState, objectKey, type Desired } from './snapshot.js';

/** What the controller reads from a source (KubeSource implements it). */
export interface ResourceSource {
  readonly synced: boolean;
  resources(): Promise<Resources>;
  onChange(listener: (change: Change) => void): () => void;
  route(namespace: string, name: string): AIRoute | undefined;
  policy(namespace: string, name: string): AIPolicy | undefined;
}

/** The other operator replicas' data planes (status/fleet.ts implements it). */
export interface FleetReports {
  /** Their latest reports that are still being renewed. */
  reports(): ReplicaReport[];
  /** This replica's data planes or snapshot changed: publish its report soon. */
  changed(): void;
  onChange(listener: () => void): () => void;
}

export interface StatusSink {
  writer: StatusWriter;
  /** Only the leader writes; checked before every write. */
  isLeader(): boolean;
}

export interface ControllerOptions {
  source: ResourceSource;
  cache: SnapshotCache;
  encoder: ResourceEncoder;
  tracker: AckTracker;
  compile?: CompileOptions;
  /** Absent: status is never written (a pure xDS replica). */
  status?: StatusSink | undefined;
  /** Absent: only this replica's data planes count (a single replica). */
  fleet?: FleetReports | undefined;
  /** Events on condition transitions, recorded by whoever writes status. */
  events?: EventRecorder | undefined;
  logger?: Logger;
  metrics?: OperatorMetrics | undefined;
  /** Wall-clock milliseconds, for lastTransitionTime and consumer key expiry. */
  now: () => number;
  /** How long a change waits for more before translating (default 20 ms). */
  debounceMs?: number;
  /** How long status waits after an ACK/NACK burst (default 50 ms). */
  statusDebounceMs?: number;
  /** How often data plane connections are checked for changes (default 1000 ms). */
  dataPlanePollMs?: number;
  /** A full sync and status pass this often, whatever happened (default 5 min). */
  resyncMs?: number;
  backoff?: Backoff;
  /** Status writes in flight at once (default 4). */
  statusConcurrency?: number;
  /**
   * How long after a new snapshot a Programmed=True may stay while the data planes have not
   * ACKed yet (default 2000 ms; 0 reports Pending at once). See writeStatus.
   */
  pendingGraceMs?: number;
  /**
   * How long a gateway whose Envoy or extproc has not connected yet is Pending rather than
   * Incomplete (default INCOMPLETE_GRACE_MS, 15 s): the two halves of a pod start apart.
   */
  incompleteGraceMs?: number;
}

const SYNC = 'sync';

export class Controller {
  private readonly log: Logger;
  private readonly syncQueue: WorkQueue;
  private readonly statusQueue: WorkQueue;
  private current: Desired | undefined;
  private statusIndex = new Map<string, StatusResult>();
  private planes: PlaneState[] | undefined;
  private readonly unsubscribe: (() => void)[] = [];
  private timers: NodeJS.Timeout[] = [];
  private statusAllTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private planesSignature = '';
  private readonly invalidPolicies: InvalidPolicyReporter;
  private snapshotAt = 0;
  private started = false;
  private closed = false;

  constructor(private readonly opts: ControllerOptions) {
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.invalidPolicies = new InvalidPolicyReporter(opts.metrics?.policyInvalid, this.log);
    const backoff = opts.backoff ? { backoff: opts.backoff } : {};
    this.syncQueue = new WorkQueue(() => this.sync(), {
      ...backoff,
      onError: (_key, err, attempt, delayMs) => {
        opts.metrics?.syncs.inc({ result: 'error' });
        this.log.error(
          { event: 'sync_failed', attempt, retry_ms: delayMs, reason: reason(err) },
          'reconcile failed; serving the last good snapshot',
        );
      },
    });
    this.statusQueue = new WorkQueue((key) => this.writeStatus(key), {
      ...backoff,
      concurrency: opts.statusConcurrency ?? 4,
      onError: (key, err, attempt, delayMs) => {
        opts.metrics?.statusWrites.inc({ kind: key.slice(0, key.indexOf('/')), result: 'error' });
        this.log.warn(
          {
            event: 'status_write_failed',
            object: key,
            attempt,
            retry_ms: delayMs,
            reason: reason(err),
          },
          'status write failed',
        );
      },
    });
  }

  /** Begins reconciling; call once the source has synced. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    const { source, tracker } = this.opts;
    this.unsubscribe.push(
      source.onChange((change) => {
        if (change.spec) this.syncQueue.add(SYNC, this.opts.debounceMs ?? 20);
        for (const key of change.status) if (this.statusIndex.has(key)) this.statusQueue.add(key);
      }),
      tracker.onAck(() => this.localPlanesChanged()),
      tracker.onNack(() => this.localPlanesChanged()),
      tracker.onPlanesChanged(() => this.localPlanesChanged()),
    );
    if (this.opts.fleet)
      this.unsubscribe.push(this.opts.fleet.onChange(() => this.dataPlanesChanged()));
    this.timers.push(
      setInterval(() => this.pollDataPlanes(), this.opts.dataPlanePollMs ?? 1000),
      setInterval(() => {
        this.syncQueue.add(SYNC);
        this.statusAll(0);
      }, this.opts.resyncMs ?? 300_000),
    );
    for (const t of this.timers) t.unref();
    this.syncQueue.add(SYNC);
  }

  /** The snapshot being served, with the compilation it came from. */
  get desired(): Desired | undefined {
    return this.current;
  }

  /** Queues a status check of every object (e.g. on becoming the leader). */
  statusAll(delayMs = this.opts.statusDebounceMs ?? 50): void {
    if (this.closed || this.statusAllTimer) return;
    const run = (): void => {
      this.statusAllTimer = undefined;
      this.planes = undefined;
      for (const key of this.statusIndex.keys()) this.statusQueue.add(key);
    };
    if (delayMs <= 0) return run();
    this.statusAllTimer = setTimeout(run, delayMs);
  }

  /** Resolves when nothing is queued or running (tests, shutdown). */
  async idle(): Promise<void> {
    await this.syncQueue.idle();
    await this.statusQueue.idle();
  }

  /**
   * The last operator replica is going away: nothing will keep `Programmed` true, so it says
   * Unknown/OperatorStopped on every object (as far as `deadlineMs` allows) rather than claiming
   * data planes nobody watches any more. Call after close().
   */
  async markStopped(deadlineMs: number): Promise<number> {
    const sink = this.opts.status;
    if (!sink) return 0;
    const deadline = performance.now() + deadlineMs;
    const now = conditionTime(this.opts.now());
    let written = 0;
    const keys = [...this.statusIndex.values()];
    const next = async (): Promise<void> => {
      for (let r = keys.shift(); r && performance.now() < deadline; r = keys.shift()) {
        const cached =
          r.kind === 'AIRoute'
            ? this.opts.source.route(r.namespace, r.name)
            : this.opts.source.policy(r.namespace, r.name);
        if (!cached) continue;
        try {
          const outcome = await sink.writer.write(r.kind, cached, r.namespace, r.name, (cur) =>
            operatorStopped(cur, now),
          );
          if (outcome === 'written') written++;
        } catch (err) {
          this.log.warn(
            {
              event: 'status_write_failed',
              object: `${r.kind}/${r.namespace}/${r.name}`,
              reason: reason(err),
            },
            'could not mark status as unknown on shutdown',
          );
        }
      }
    };
    await Promise.all(Array.from({ length: this.opts.statusConcurrency ?? 4 }, next));
    this.log.info(
      { event: 'status_marked_stopped', objects: written },
      'Programmed set to Unknown: no operator replica is left',
    );
    return written;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const u of this.unsubscribe) u();
    for (const t of this.timers) clearInterval(t);
    if (this.statusAllTimer) clearTimeout(this.statusAllTimer);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    await Promise.all([this.syncQueue.close(), this.statusQueue.close()]);
  }

  private dataPlanesChanged(): void {
    this.planes = undefined;
    this.statusAll();
  }

  private localPlanesChanged(): void {
    this.opts.fleet?.changed();
    this.dataPlanesChanged();
  }

  /**
   * Every data plane of the fleet: this replica's streams, read live, and the other replicas'
   * reports, judged against the snapshot this replica serves.
   */
  private fleetPlanes(): PlaneState[] {
    const local = localPlanes(memoizedView(this.opts.tracker));
    const version = this.current?.version ?? '';
    const remote = (this.opts.fleet?.reports() ?? []).flatMap((r) => remotePlanes(r, version));
    return [...local, ...remote];
  }

  /** Gateways with only one half connected for longer than the grace. */
  private overdueHalfGateways(): string[] {
    const grace = this.opts.incompleteGraceMs ?? INCOMPLETE_GRACE_MS;
    const now = this.opts.now();
    const byGateway = new Map<string, { envoy: boolean; extproc: boolean; since: number }>();
    for (const p of this.fleetPlanes()) {
      const g = byGateway.get(p.gateway) ?? { envoy: false, extproc: false, since: Infinity };
      g.envoy ||= p.envoy;
      g.extproc ||= p.extproc;
      g.since = Math.min(g.since, p.connectedAt);
      byGateway.set(p.gateway, g);
    }
    return [...byGateway]
      .filter(([, g]) => g.envoy !== g.extproc && now - g.since >= grace)
      .map(([name]) => name)
      .sort();
  }

  private pollDataPlanes(): void {
    // Reports also expire without an event (a replica that died), and a half-connected
    // gateway's grace runs out without one: the poll notices both.
    const replicas = (this.opts.fleet?.reports() ?? []).map((r) => r.replica).join(',');
    const sig =
      this.opts.tracker
        .dataPlanes()
        .map((p) => `${p.streamId}:${Object.keys(p.types).sort().join(',')}`)
        .join('|') + `#${replicas}#${this.overdueHalfGateways().join(',')}`;
    this.opts.metrics?.dataPlanes.set(this.opts.tracker.dataPlanes().length);
    if (sig === this.planesSignature) return;
    this.planesSignature = sig;
    this.dataPlanesChanged();
  }

  private async sync(): Promise<void> {
    const { source, metrics } = this.opts;
    if (!source.synced) return;
    const resources = await source.resources();
    const t0 = performance.now();
    const now = this.opts.now();
    const compilation = compile(resources, { ...this.opts.compile, now });
    this.invalidPolicies.report(invalidPolicies(compilation.statuses));
    this.syncAtNextKeyExpiry(resources, now);
    const desired = desiredState(compilation, this.opts.encoder);
    const changed = desired.version !== this.current?.version;
    if (changed) {
      this.opts.cache.setSnapshot(ALL_NODES, desired.snapshot);
      this.snapshotAt = performance.now();
    }
    this.current = desired;
    this.statusIndex = new Map(
      compilation.statuses.map((s) => [objectKey(s.kind, s.namespace, s.name), s]),
    );
    const seconds = (performance.now() - t0) / 1000;
    metrics?.syncs.inc({ result: 'ok' });
    metrics?.syncSeconds.observe(seconds);
    if (changed) {
      metrics?.snapshots.inc();
      this.opts.fleet?.changed();
      const accepted = compilation.ir.routes.length;
      this.log.info(
        {
          event: 'snapshot_set',
          version: desired.version,
          extproc_version: desired.extproc.version,
          routes: resources.routes.length,
          accepted_routes: accepted,
          policies: resources.policies.length,
          ms: Math.round(seconds * 1000),
        },
        'new configuration served',
      );
    }
    this.planes = undefined;
    this.statusAll(0);
  }

  /**
   * A consumer key that expires leaves the configuration at the next compilation, which is
   * scheduled for that moment: nothing else changes when a key expires, and the extproc can only
   * enforce a consumer's latest expiry, not each key's.
   */
  private syncAtNextKeyExpiry(resources: Resources, now: number): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const next = nextKeyExpiry(resources.consumerKeys ?? [], now);
    if (next === undefined || this.closed) return;
    // setTimeout takes at most 2^31-1 ms; a later expiry is rescheduled by the resyncs meanwhile.
    const delay = Math.min(next - now, 2 ** 31 - 1);
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.syncQueue.add(SYNC);
    }, delay);
    this.expiryTimer.unref();
  }

  /**
   * Every new snapshot makes every route Pending until its data planes ACK, which takes
   * milliseconds: writing True → Pending → True for each of thousands of routes on each change
   * would be two status writes per route per change, for a state nobody can act on. So while a
   * snapshot is younger than the grace period, a Programmed=True already written stays, and the
   * key is checked again once the grace is over: only data planes that are really slow (or that
   * NACK, which is reported at once) show up in status.
   *
   * Never for an object whose own spec changed: its Programmed=True was about an older
   * generation, and `kubectl wait --for=condition=Programmed` must not return before the new one
   * is applied. A new generation is Unknown/Pending at once.
   */
  private holdWhileInFlight(
    key: string,
    desired: HoldableCondition[],
    current: readonly HoldableCondition[] | undefined,
  ): void {
    const grace = this.opts.pendingGraceMs ?? 2000;
    const age = performance.now() - this.snapshotAt;
    if (grace <= 0 || age >= grace) return;
    const i = desired.findIndex((c) => c.type === 'Programmed' && c.reason === 'Pending');
    const previous = current?.find((c) => c.type === 'Programmed');
    if (i === -1 || previous?.status !== 'True') return;
    if (previous.observedGeneration !== desired[i]!.observedGeneration) return;
    const held: HoldableCondition = {
      type: previous.type,
      status: previous.status,
      reason: previous.reason,
      message: previous.message,
    };
    if (previous.observedGeneration !== undefined) {
      held.observedGeneration = previous.observedGeneration;
    }
    desired[i] = held;
    this.statusQueue.add(key, Math.ceil(grace - age) + 10);
  }

  private async writeStatus(key: string): Promise<void> {
    const sink = this.opts.status;
    const current = this.current;
    if (!sink || !sink.isLeader() || !current) return;
    const result = this.statusIndex.get(key);
    if (!result) return;
    const kind: StatusKind = result.kind;
    const cached =
      kind === 'AIRoute'
        ? this.opts.source.route(result.namespace, result.name)
        : this.opts.source.policy(result.namespace, result.name);
    if (!cached) return;
    this.planes ??= this.fleetPlanes();
    const desired = desiredConditions(
      result,
      current.footprints.get(key),
      this.planes,
      this.opts.now(),
      this.opts.incompleteGraceMs ?? INCOMPLETE_GRACE_MS,
    );
    this.holdWhileInFlight(key, desired.conditions, cached.status?.conditions);
    const now = conditionTime(this.opts.now());
    const summary =
      kind === 'AIRoute'
        ? routeSummary(cached as AIRoute)
        : policySummary(
            cached as AIPolicy,
            current.compilation.ir.policyTargets?.get(`${result.namespace}/${result.name}`),
          );
    let before: ResourceStatus | undefined;
    let after: ResourceStatus | undefined;
    const outcome = await sink.writer.write(kind, cached, result.namespace, result.name, (cur) => {
      before = cur;
      after = mergeStatus(cur, { ...desired, summary }, now);
      return after;
    });
    if (outcome === 'written') {
      this.opts.metrics?.statusWrites.inc({ kind, result: 'written' });
      this.log.debug({ event: 'status_written', object: key }, 'status written');
      const events = eventsFor(before?.conditions, after?.conditions ?? []);
      if (events.length > 0) {
        this.opts.events?.record(
          {
            kind,
            name: result.name,
            namespace: result.namespace,
            uid: cached.metadata.uid,
            resourceVersion: cached.metadata.resourceVersion,
          },
          events,
        );
      }
    }
  }
}

export interface HoldableCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0]! : 'unknown';
}
