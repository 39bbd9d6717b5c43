/**
 * The whole fleet of data planes, whichever operator replica each one is connected to.
 *
 * Every replica serves xDS, and an Envoy or extproc connects to whichever one the Service picks;
 * only the leader writes status. So each replica publishes what its own data planes applied, and
 * the leader judges `Programmed` on its own streams plus every other replica's report.
 *
 * Why reports through the API server rather than sending every data plane to the leader: xDS
 * then keeps working on every replica while leadership moves (no reconnect storm on a hand-over,
 * no single replica carrying the fleet), and the API server is already the one thing every
 * replica reaches. The report is a coordination.k8s.io Lease per replica (`sluice-operator-
 * planes-<hash>`, labelled `sluice.dev/report: data-planes`): its renewTime is the replica's
 * heartbeat, and its annotation `sluice.dev/data-planes` holds the report as JSON. A replica that
 * stops deletes its Lease; one that dies stops renewing and its report is dropped once the leader
 * has seen it unchanged for the lease duration (judged on the leader's clock, as leader election
 * does, so clock skew between replicas does not matter).
 *
 * A report is small in the steady state: per data plane only the resources it has NOT applied at
 * their current content (pending, or NACKed with the message), judged against one snapshot
 * version. The leader uses a report only when that version is the one it serves itself (every
 * replica derives the same content hash from the same cluster state); a replica that has not
 * caught up yet counts as pending for everything, which is the truth: its data planes have not
 * been sent the new configuration.
 */
import { createHash } from 'node:crypto';
import { ApiException, CustomObjectsApi, Watch, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Backoff } from '../../extproc/shared/backoff.js';
import { Reflector, type ListWatcher } from '../source/reflector.js';
import type { PreparedSnapshot } from '../xds/cache.js';
import type { DataPlane, ResourceState } from '../xds/tracker.js';
import { CLUSTER, ENDPOINT, EXTPROC_CONFIG, LISTENER, ROUTE } from '../xds/type-urls.js';
import type { ResourceRef } from './footprint.js';
import { microTime, type Lease } from './leader.js';

export const ENVOY_TYPES: readonly string[] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];

/** What the tracker knows, as read by the status computation. */
export interface DataPlaneView {
  dataPlanes(): DataPlane[];
  resourceStatus(typeUrl: string, name: string): ResourceState[];
}

export type NodeState =
  { state: 'acked' } | { state: 'pending'; why?: string } | { state: 'nacked'; message: string };

/** One data plane (one ADS stream) anywhere in the fleet. */
export interface PlaneState {
  nodeId: string;
  /** Envoy and extproc of one gateway pod share it: see gatewayOf. */
  gateway: string;
  envoy: boolean;
  extproc: boolean;
  /** The operator replica it is connected to; undefined: this one. */
  replica: string | undefined;
  /** When its stream opened (wall-clock ms; 0 when not known). */
  connectedAt: number;
  state(ref: ResourceRef): NodeState;
}

/**
 * The gateway a node id belongs to. The chart and `sluice run` name a gateway pod's data planes
 * `<pod>/envoy` (Envoy's --service-node) and `<pod>/extproc` (the extproc's --node-id), so the
 * two halves that serve a request together are paired by what comes before the last `/envoy` or
 * `/extproc`. Any other id is a gateway of its own.
 */
export function gatewayOf(nodeId: string): string {
  const m = /^(.+)\/(envoy|extproc)$/.exec(nodeId);
  return m ? m[1]! : nodeId;
}

function roles(p: DataPlane): { envoy: boolean; extproc: boolean } {
  const types = Object.keys(p.types);
  return {
    envoy: types.some((t) => ENVOY_TYPES.includes(t)),
    extproc: types.includes(EXTPROC_CONFIG),
  };
}

/**
 * A view that reads each resource's state once per pass: routes share the listener, the route
 * configuration and the extproc config, so a pass over thousands of routes would otherwise ask
 * the tracker the same question thousands of times.
 */
export function memoizedView(view: DataPlaneView): DataPlaneView {
  let planes: DataPlane[] | undefined;
  const states = new Map<string, ResourceState[]>();
  return {
    dataPlanes: () => (planes ??= view.dataPlanes()),
    resourceStatus: (typeUrl, name) => {
      const k = `${typeUrl}\0${name}`;
      let s = states.get(k);
      if (!s) {
        s = view.resourceStatus(typeUrl, name);
        states.set(k, s);
      }
      return s;
    },
  };
}

function streamState(view: DataPlaneView, streamId: string, ref: ResourceRef): NodeState {
  // Not subscribed to it (an Envoy asks for RDS and EDS only after LDS and CDS): not applied.
  const s = view.resourceStatus(ref.typeUrl, ref.name).find((x) => x.streamId === streamId);
  if (!s || s.state === 'pending') return { state: 'pending' };
  return s.state === 'nacked' ? { state: 'nacked', message: s.message } : { state: 'acked' };
}

/** This replica's own data planes, read live from its tracker. */
export function localPlanes(view: DataPlaneView): PlaneState[] {
  return view.dataPlanes().map((p) => ({
    nodeId: p.nodeId,
    gateway: gatewayOf(p.nodeId),
    ...roles(p),
    replica: undefined,
    connectedAt: p.connectedAt.getTime(),
    state: (ref) => streamState(view, p.streamId, ref),
  }));
}

// ---------------------------------------------------------------------------------------------
// Reports

/** Resource names, or every resource of the type in the snapshot. */
const Names = z.union([z.literal('*'), z.array(z.string())]);
type Names = z.infer<typeof Names>;

const PlaneReportSchema = z.object({
  node: z.string().min(1),
  envoy: z.boolean(),
  extproc: z.boolean(),
  /** When the stream opened, epoch ms. */
  connectedAt: z.number().optional(),
  /** By type URL: resources not applied at their current content. */
  pending: z.record(z.string(), Names).default({}),
  nacked: z.record(z.string(), z.object({ names: Names, message: z.string() })).default({}),
});
export type PlaneReport = z.infer<typeof PlaneReportSchema>;

export const ReplicaReportSchema = z.object({
  v: z.literal(1),
  replica: z.string().min(1),
  /** The snapshot version every state in the report was judged against. */
  snapshot: z.string(),
  planes: z.array(PlaneReportSchema),
  /** The replica is shutting down: it will not be there to write status. */
  stopping: z.boolean().optional(),
});
export type ReplicaReport = z.infer<typeof ReplicaReportSchema>;

/** Per type, more names than this are reported as '*'. */
const MAX_NAMES = 100;
/** Annotations are limited to 256 KiB in all; a report stays well under. */
const MAX_REPORT_CHARS = 160_000;
const MAX_NACK_MESSAGE = 1024;

function names(list: string[]): Names {
  return list.length > MAX_NAMES ? '*' : list.sort();
}

/** What this replica's data planes applied of `snapshot`, for the other replicas. */
export function buildReport(
  replica: string,
  view: DataPlaneView,
  snapshot: PreparedSnapshot | undefined,
): ReplicaReport {
  const planes: PlaneReport[] = [];
  for (const p of view.dataPlanes()) {
    const r = roles(p);
    const report: PlaneReport = {
      node: p.nodeId,
      ...r,
      connectedAt: p.connectedAt.getTime(),
      pending: {},
      nacked: {},
    };
    const types = [...(r.envoy ? ENVOY_TYPES : []), ...(r.extproc ? [EXTPROC_CONFIG] : [])];
    for (const typeUrl of types) {
      const pending: string[] = [];
      const nacked: string[] = [];
      let message = '';
      for (const name of snapshot?.types.get(typeUrl)?.resources.keys() ?? []) {
        const s = streamState(view, p.streamId, { typeUrl, name });
        if (s.state === 'pending') pending.push(name);
        else if (s.state === 'nacked') {
          nacked.push(name);
          message = s.message;
        }
      }
      if (pending.length > 0) report.pending[typeUrl] = names(pending);
      if (nacked.length > 0) {
        report.nacked[typeUrl] = {
          names: names(nacked),
          message: message.slice(0, MAX_NACK_MESSAGE),
        };
      }
    }
    planes.push(report);
  }
  const out: ReplicaReport = { v: 1, replica, snapshot: snapshot?.version ?? '', planes };
  if (JSON.stringify(out).length > MAX_REPORT_CHARS) {
    // Too many planes with long lists: coarser, never wrong (a '*' only widens pending).
    for (const p of planes) {
      for (const t of Object.keys(p.pending)) p.pending[t] = '*';
      for (const n of Object.values(p.nacked)) n.names = '*';
    }
  }
  return out;
}

const has = (list: Names | undefined, name: string): boolean =>
  list !== undefined && (list === '*' || list.includes(name));

/** Another replica's data planes, as judged against the snapshot this replica serves. */
export function remotePlanes(report: ReplicaReport, snapshotVersion: string): PlaneState[] {
  const behind = report.snapshot !== snapshotVersion;
  return report.planes.map((p) => ({
    nodeId: p.node,
    gateway: gatewayOf(p.node),
    envoy: p.envoy,
    extproc: p.extproc,
    replica: report.replica,
    connectedAt: p.connectedAt ?? 0,
    state: (ref): NodeState => {
      if (behind) {
        return { state: 'pending', why: `replica ${report.replica} serves another version` };
      }
      const n = p.nacked[ref.typeUrl];
      if (n && has(n.names, ref.name)) return { state: 'nacked', message: n.message };
      if (has(p.pending[ref.typeUrl], ref.name)) return { state: 'pending' };
      return { state: 'acked' };
    },
  }));
}

// ---------------------------------------------------------------------------------------------
// Publishing and reading reports as Leases

export const REPORT_LABEL = 'sluice.dev/report';
export const REPORT_LABEL_VALUE = 'data-planes';
export const REPORT_ANNOTATION = 'sluice.dev/data-planes';

/** The Lease that carries one replica's report. */
export function reportLeaseName(identity: string): string {
  return `sluice-operator-planes-${createHash('sha256').update(identity).digest('hex').slice(0, 12)}`;
}

export interface ReportApi {
  get(namespace: string, name: string): Promise<Lease | undefined>;
  /** Resolves with the new resourceVersion. */
  create(namespace: string, lease: Lease): Promise<string | undefined>;
  /** The new resourceVersion; rejects with a 409 ApiException when stale, 404 when gone. */
  replace(namespace: string, name: string, lease: Lease): Promise<string | undefined>;
  delete(namespace: string, name: string): Promise<void>;
  listWatcher(namespace: string): ListWatcher;
}

const LEASES = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases' };

/** Through the custom-objects client, for the reason leader.ts gives (MicroTime). */
export function reportApi(kc: KubeConfig): ReportApi {
  const api = kc.makeApiClient(CustomObjectsApi);
  const watcher = new Watch(kc);
  const labelSelector = `${REPORT_LABEL}=${REPORT_LABEL_VALUE}`;
  return {
    get: async (namespace, name) => {
      try {
        return (await api.getNamespacedCustomObject({ ...LEASES, namespace, name })) as Lease;
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return undefined;
        throw err;
      }
    },
    create: async (namespace, body) =>
      ((await api.createNamespacedCustomObject({ ...LEASES, namespace, body })) as Lease).metadata
        ?.resourceVersion,
    replace: async (namespace, name, body) =>
      ((await api.replaceNamespacedCustomObject({ ...LEASES, namespace, name, body })) as Lease)
        .metadata?.resourceVersion,
    delete: async (namespace, name) => {
      try {
        await api.deleteNamespacedCustomObject({ ...LEASES, namespace, name });
      } catch (err) {
        if (!(err instanceof ApiException && err.code === 404)) throw err;
      }
    },
    listWatcher: (namespace) => ({
      list: async (token) => {
        const res = (await api.listNamespacedCustomObject({
          ...LEASES,
          namespace,
          labelSelector,
          limit: 500,
          _continue: token,
        })) as { items?: unknown[]; metadata?: { resourceVersion?: string; continue?: string } };
        return {
          items: res.items ?? [],
          resourceVersion: res.metadata?.resourceVersion ?? '',
          continue: res.metadata?.continue || undefined,
        };
      },
      watch: async (rv, onEvent, done) => {
        const ctrl = await watcher.watch(
          `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`,
          {
            resourceVersion: rv,
            allowWatchBookmarks: true,
            labelSelector,
            timeoutSeconds: 240 + Math.round(Math.random() * 120),
          },
          (type: string, object: unknown) => onEvent({ type, object }),
          done,
        );
        return () => ctrl.abort();
      },
    }),
  };
}

interface Received {
  identity: string;
  /** Changes whenever the holder renews or rewrites the report. */
  key: string;
  /** The report as published. */
  text: string | undefined;
  report: ReplicaReport | undefined;
  observedAt: number;
}

export interface FleetOptions {
  api: ReportApi;
  namespace: string;
  identity: string;
  /** This replica's report, built on demand. */
  build(): ReplicaReport;
  /** Wall-clock milliseconds (renewTime) and the basis of staleness. */
  now: () => number;
  logger: Logger;
  /** Heartbeat (default 5000 ms); a report unchanged for `durationMs` (15000) is dropped. */
  renewMs?: number;
  durationMs?: number;
  /** How long a change waits for more before the report is written (default 50 ms). */
  debounceMs?: number;
  backoff?: Backoff;
}

/**
 * Publishes this replica's report and reads everyone else's. Failures are logged and retried at
 * the next change or heartbeat; they never stop xDS or status.
 */
export class Fleet {
  private readonly name: string;
  private readonly reflector: Reflector<Received>;
  private readonly listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private again = false;
  private lastJson = '';
  private lastWrite = 0;
  private resourceVersion: string | undefined;
  private stopped = false;
  private stopping = false;
  private failing = false;

  constructor(private readonly opts: FleetOptions) {
    this.name = reportLeaseName(opts.identity);
    this.reflector = new Reflector<Received>({
      name: 'Lease (data plane reports)',
      lw: opts.api.listWatcher(opts.namespace),
      logger: opts.logger,
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
      convert: (raw) => this.read(raw),
      // A heartbeat changes only renewTime: nothing to judge again.
      onChange: (_key, before, after) => {
        if (!before || !after || before.text !== after.text) this.emit();
      },
    });
  }

  get leaseName(): string {
    return this.name;
  }

  start(): void {
    this.reflector.start();
    const renew = this.opts.renewMs ?? 5000;
    this.heartbeat = setInterval(() => this.changed(0), renew);
    this.heartbeat.unref();
    this.changed(0);
  }

  /** Resolves once the other replicas' reports have been listed once. */
  get synced(): Promise<void> {
    return this.reflector.synced;
  }

  /** Something this replica's data planes did: publish soon. */
  changed(delayMs = this.opts.debounceMs ?? 50): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.publish();
    }, delayMs);
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The other replicas' reports that are still being renewed. */
  reports(): ReplicaReport[] {
    const now = this.opts.now();
    const duration = this.opts.durationMs ?? 15_000;
    const out: ReplicaReport[] = [];
    for (const r of this.reflector.values()) {
      if (r.identity === this.opts.identity || !r.report) continue;
      if (now - r.observedAt > duration) continue;
      out.push(r.report);
    }
    return out.sort((a, b) => a.replica.localeCompare(b.replica));
  }

  /** Whether another replica is running and not shutting down (it will keep status true). */
  othersRunning(): boolean {
    return this.reports().some((r) => !r.stopping);
  }

  /** Says in the report, now, that this replica is shutting down. */
  async announceStopping(): Promise<void> {
    if (this.stopped) return;
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.writing;
    await this.publish();
  }

  /** Stops publishing and deletes this replica's report, so the leader stops counting on it. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.writing;
    await this.reflector.stop();
    try {
      await this.opts.api.delete(this.opts.namespace, this.name);
    } catch (err) {
      this.opts.logger.warn(
        { event: 'fleet_report_delete_failed', lease: this.name, reason: describe(err) },
        'could not delete the data plane report; it expires on its own',
      );
    }
  }

  private emit(): void {
    for (const l of [...this.listeners]) l();
  }

  private read(raw: Record<string, unknown>): Received | undefined {
    const lease = raw as unknown as Lease;
    const identity = lease.spec?.holderIdentity;
    if (!identity) return undefined;
    const text = lease.metadata.annotations?.[REPORT_ANNOTATION];
    let report: ReplicaReport | undefined;
    if (text !== undefined) {
      try {
        const parsed = ReplicaReportSchema.safeParse(JSON.parse(text));
        if (parsed.success && parsed.data.replica === identity) report = parsed.data;
      } catch {
        // Unreadable: counted as no report (its data planes are then unknown to the leader).
      }
    }
    if (!report && identity !== this.opts.identity) {
      this.opts.logger.warn(
        { event: 'fleet_report_unreadable', replica: identity },
        'another replica published a data plane report this one cannot read',
      );
    }
    const key = `${lease.spec?.renewTime}\0${text ?? ''}`;
    const old = this.reflector.get(`${lease.metadata.namespace}/${lease.metadata.name}`);
    const observedAt = old && old.key === key ? old.observedAt : this.opts.now();
    return { identity, key, text, report, observedAt };
  }

  private publish(): Promise<void> {
    if (this.writing) {
      this.again = true;
      return this.writing;
    }
    this.writing = this.write()
      .catch((err: unknown) => {
        this.resourceVersion = undefined;
        if (!this.failing) {
          this.opts.logger.warn(
            { event: 'fleet_report_failed', lease: this.name, reason: describe(err) },
            'could not publish this replica’s data plane report; the leader cannot count its data planes',
          );
        }
        this.failing = true;
      })
      .finally(() => {
        this.writing = undefined;
        if (this.again && !this.stopped) {
          this.again = false;
          this.changed();
        }
      });
    return this.writing;
  }

  private async write(): Promise<void> {
    if (this.stopped) return;
    const report = this.opts.build();
    if (this.stopping) report.stopping = true;
    const json = JSON.stringify(report);
    const now = this.opts.now();
    const renew = this.opts.renewMs ?? 5000;
    if (json === this.lastJson && now - this.lastWrite < renew * 0.8) return;
    const { api, namespace, identity } = this.opts;
    const seconds = Math.ceil((this.opts.durationMs ?? 15_000) / 1000);
    const lease: Lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: this.name,
        namespace,
        labels: { [REPORT_LABEL]: REPORT_LABEL_VALUE, 'app.kubernetes.io/part-of': 'sluice' },
        annotations: { [REPORT_ANNOTATION]: json },
      },
      spec: { holderIdentity: identity, leaseDurationSeconds: seconds, renewTime: microTime(now) },
    };
    for (let attempt = 0; attempt < 3; attempt++) {
      if (this.resourceVersion === undefined) {
        const current = await api.get(namespace, this.name);
        if (!current) {
          this.done(json, now, await api.create(namespace, lease));
          return;
        }
        this.resourceVersion = current.metadata.resourceVersion;
      }
      try {
        const rv = await api.replace(namespace, this.name, {
          ...lease,
          metadata: {
            ...lease.metadata,
            ...(this.resourceVersion !== undefined
              ? { resourceVersion: this.resourceVersion }
              : {}),
          },
        });
        this.done(json, now, rv);
        return;
      } catch (err) {
        this.resourceVersion = undefined;
        if (!(err instanceof ApiException) || (err.code !== 409 && err.code !== 404)) throw err;
      }
    }
    throw new Error('the report Lease kept changing under this replica');
  }

  private done(json: string, now: number, resourceVersion: string | undefined): void {
    this.resourceVersion = resourceVersion;
    this.lastJson = json;
    this.lastWrite = now;
    if (this.failing) {
      this.failing = false;
      this.opts.logger.info(
        { event: 'fleet_report_recovered', lease: this.name },
        'data plane report published again',
      );
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof ApiException) return `HTTP ${err.code}`;
  return err instanceof Error ? err.message.split('\n')[0]! : 'unknown error';
}
