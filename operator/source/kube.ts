/**
 * The cluster source: list+watch of AIRoutes, AIPolicies, the Secrets routes reference, and the
 * Services and EndpointSlices behind in-cluster backends, assembled on demand into the same
 * immutable Resources bundle the YAML source builds.
 *
 * Each kind (per watched namespace) has a Reflector: list, then watch from the list's
 * resourceVersion; a 410 Gone (an expired resourceVersion or continue token) relists; any other
 * failure retries with exponential backoff. Nothing here throws out of the loop, so a flaky
 * apiserver slows the operator down but never stops it.
 *
 * Secret values are held only for Secrets some route or policy references: every other Secret is
 * kept as a name and a resourceVersion, so the operator's heap never mirrors the cluster's
 * credentials. A Secret that becomes referenced is read once by name; from then on the watch
 * keeps it current.
 *
 * Consumer Secrets (operator/api/consumer-secret.ts) count only in the consumer namespaces, which
 * the operator's configuration names: a tenant who may create Secrets in its own namespace must
 * not be able to mint a consumer. They are watched there by label, and reduced to their key's
 * digest as they arrive, so no virtual key is ever held.
 */
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  Watch,
  type KubeConfig,
} from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { CONSUMER_LABEL, isConsumerSecret, readConsumerSecret } from '../api/consumer-secret.js';
import {
  API_VERSION,
  GROUP,
  VERSION,
  type AIPolicy,
  type AIRoute,
  type ConsumerKey,
  type ObjectMeta,
  type Resources,
  type SecretData,
  type ServiceEndpoints,
} from '../api/types.js';
import { compileConsumers } from '../translate/governance.js';

// ---------------------------------------------------------------------------------------------
// Reflector: one list+watch loop.

export interface ListPage {
  items: unknown[];
  resourceVersion: string;
  continue?: string | undefined;
}

export interface WatchEvent {
  type: string;
  object: unknown;
}

/** The two calls a reflector makes; the real ones wrap @kubernetes/client-node, tests fake them. */
export interface ListWatcher {
  list(continueToken: string | undefined): Promise<ListPage>;
  /**
   * Opens a watch from `resourceVersion`. `done` is called once when it ends, with the error if
   * it failed. Resolves with a function that ends it early.
   */
  watch(
    resourceVersion: string,
    onEvent: (e: WatchEvent) => void,
    done: (err: unknown) => void,
  ): Promise<() => void>;
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 200, maxMs: 30_000 };

/** Exponential with full jitter on the upper half, so replicas that failed together spread out. */
export function backoffDelay(b: Backoff, attempt: number, random: () => number = Math.random) {
  const ceiling = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

interface Stored<T> {
  rv: string;
  value: T;
}

export interface ReflectorOptions<T> {
  name: string;
  lw: ListWatcher;
  /** Reduces a raw object to what the source keeps; undefined skips it. */
  convert(raw: Record<string, unknown>): T | undefined;
  /** After every change of the store (before: absent on add; after: absent on delete). */
  onChange(key: string, before: T | undefined, after: T | undefined): void;
  logger: Logger;
  backoff?: Backoff;
  /** A watch that ends sooner than this without delivering anything counts as a failure. */
  minWatchMs?: number;
  onRestart?(reason: 'gone' | 'error'): void;
}

class Gone extends Error {}

function isGone(err: unknown): boolean {
  if (err instanceof Gone) return true;
  if (err instanceof ApiException) return err.code === 410;
  const e = err as { statusCode?: unknown; code?: unknown } | null;
  return e !== null && typeof e === 'object' && (e.statusCode === 410 || e.code === 410);
}

function describeError(err: unknown): string {
  if (err instanceof ApiException) return `HTTP ${err.code}`;
  if (err instanceof Error) return err.message.split('\n')[0]!;
  return 'unknown error';
}

function objectKey(raw: Record<string, unknown>): { key: string; rv: string } | undefined {
  const m = raw.metadata as { name?: unknown; namespace?: unknown; resourceVersion?: unknown };
  if (typeof m !== 'object' || m === null || typeof m.name !== 'string') return undefined;
  const ns = typeof m.namespace === 'string' ? m.namespace : '';
  const rv = typeof m.resourceVersion === 'string' ? m.resourceVersion : '';
  return { key: `${ns}/${m.name}`, rv };
}

export class Reflector<T> {
  private readonly store = new Map<string, Stored<T>>();
  private rv = '';
  private stopped = false;
  private stopWatch: (() => void) | undefined;
  private wake: (() => void) | undefined;
  private loopDone: Promise<void> | undefined;
  private markSynced!: () => void;
  /** Resolves after the first complete list. */
  readonly synced: Promise<void>;
  hasSynced = false;

  constructor(private readonly opts: ReflectorOptions<T>) {
    this.synced = new Promise((resolve) => (this.markSynced = resolve));
  }

  start(): void {
    this.loopDone ??= this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopWatch?.();
    this.wake?.();
    await this.loopDone;
  }

  get(key: string): T | undefined {
    return this.store.get(key)?.value;
  }

  /** The stored resourceVersion of `key`, to tell whether it changed meanwhile. */
  version(key: string): string | undefined {
    return this.store.get(key)?.rv;
  }

  /** Replaces a stored value in place (same resourceVersion), e.g. to add or drop Secret data. */
  update(key: string, rv: string, value: T): boolean {
    const cur = this.store.get(key);
    if (!cur || cur.rv !== rv) return false;
    this.store.set(key, { rv, value });
    this.opts.onChange(key, cur.value, value);
    return true;
  }

  values(): IterableIterator<T> {
    const it = this.store.values();
    return (function* () {
      for (const s of it) yield s.value;
    })();
  }

  private async loop(): Promise<void> {
    const backoff = this.opts.backoff ?? DEFAULT_BACKOFF;
    let failures = 0;
    while (!this.stopped) {
      try {
        if (this.rv === '') await this.relist();
        const started = Date.now();
        const delivered = await this.watchOnce();
        if (this.stopped) break;
        if (delivered === 0 && Date.now() - started < (this.opts.minWatchMs ?? 1000)) {
          throw new Error('watch closed at once');
        }
        failures = 0;
      } catch (err) {
        if (this.stopped) break;
        const gone = isGone(err);
        if (gone) this.rv = '';
        this.opts.onRestart?.(gone ? 'gone' : 'error');
        const delay = gone && failures === 0 ? 0 : backoffDelay(backoff, failures);
        failures++;
        this.opts.logger.warn(
          {
            event: 'watch_restart',
            resource: this.opts.name,
            reason: gone ? 'gone' : describeError(err),
            delay_ms: delay,
          },
          gone ? 'resourceVersion expired; relisting' : 'list/watch failed; retrying',
        );
        await this.sleep(delay);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private async relist(): Promise<void> {
    const items: unknown[] = [];
    let token: string | undefined;
    let rv: string;
    do {
      const page = await this.opts.lw.list(token);
      items.push(...page.items);
      rv = page.resourceVersion;
      token = page.continue || undefined;
    } while (token !== undefined && !this.stopped);
    if (this.stopped) return;
    const seen = new Set<string>();
    for (const raw of items) this.apply('ADDED', raw, seen);
    for (const [key, old] of [...this.store]) {
      if (seen.has(key)) continue;
      this.store.delete(key);
      this.opts.onChange(key, old.value, undefined);
    }
    this.rv = rv;
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.markSynced();
    }
  }

  /** Applies one object; returns its key. */
  private apply(type: string, raw: unknown, seen?: Set<string>): void {
    if (typeof raw !== 'object' || raw === null) return;
    const obj = raw as Record<string, unknown>;
    const id = objectKey(obj);
    if (!id) return;
    seen?.add(id.key);
    const old = this.store.get(id.key);
    if (type === 'DELETED') {
      if (!old) return;
      this.store.delete(id.key);
      this.opts.onChange(id.key, old.value, undefined);
      return;
    }
    if (old && old.rv === id.rv && id.rv !== '') return;
    const value = this.opts.convert(obj);
    if (value === undefined) {
      if (old) {
        this.store.delete(id.key);
        this.opts.onChange(id.key, old.value, undefined);
      }
      return;
    }
    this.store.set(id.key, { rv: id.rv, value });
    this.opts.onChange(id.key, old?.value, value);
  }

  /** Runs one watch to its end; returns how many events it delivered. Throws on failure. */
  private watchOnce(): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      let delivered = 0;
      let finished = false;
      const finish = (err: unknown): void => {
        if (finished) return;
        finished = true;
        this.stopWatch?.();
        this.stopWatch = undefined;
        if (err !== null && err !== undefined && !this.stopped) {
          reject(err instanceof Error ? err : new Error(describeError(err)));
        } else resolve(delivered);
      };
      const onEvent = (e: WatchEvent): void => {
        if (finished) return;
        delivered++;
        const obj = e.object as { metadata?: { resourceVersion?: unknown }; code?: unknown };
        if (e.type === 'ERROR') {
          // A watch from an expired resourceVersion answers 200 and then this event.
          finish(obj?.code === 410 ? new Gone('410 Gone') : new Error(`watch error event`));
          return;
        }
        if (e.type === 'ADDED' || e.type === 'MODIFIED' || e.type === 'DELETED') {
          this.apply(e.type, e.object);
        }
        const rv = obj?.metadata?.resourceVersion;
        if (typeof rv === 'string' && rv !== '') this.rv = rv;
      };
      this.opts.lw.watch(this.rv, onEvent, finish).then(
        (stop) => {
          if (finished || this.stopped) stop();
          else this.stopWatch = stop;
        },
        (err: unknown) => finish(err ?? new Error('watch failed')),
      );
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Conversions: raw API objects (watch JSON or client-node's typed list items) to what we keep.

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function stringRecord(v: unknown, drop?: string): Record<string, string> | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) if (typeof x === 'string' && k !== drop) out[k] = x;
  return out;
}

export function readMeta(raw: Record<string, unknown>): ObjectMeta | undefined {
  const m = raw.metadata as Record<string, unknown> | undefined;
  if (typeof m !== 'object' || m === null) return undefined;
  const name = str(m.name);
  if (!name) return undefined;
  const meta: ObjectMeta = { name, namespace: str(m.namespace) || 'default' };
  const uid = str(m.uid);
  if (uid) meta.uid = uid;
  if (typeof m.generation === 'number') meta.generation = m.generation;
  const rv = str(m.resourceVersion);
  if (rv) meta.resourceVersion = rv;
  const created: unknown = m.creationTimestamp;
  if (typeof created === 'string') meta.creationTimestamp = created;
  else if (created instanceof Date) meta.creationTimestamp = created.toISOString();
  const labels = stringRecord(m.labels);
  if (labels && Object.keys(labels).length > 0) meta.labels = labels;
  // The last-applied copy doubles each object's size and translation never reads it.
  const annotations = stringRecord(m.annotations, LAST_APPLIED);
  if (annotations && Object.keys(annotations).length > 0) meta.annotations = annotations;
  return meta;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

export function toRoute(raw: Record<string, unknown>): AIRoute | undefined {
  const metadata = readMeta(raw);
  if (!metadata || typeof raw.spec !== 'object' || raw.spec === null) return undefined;
  const route = {
    apiVersion: API_VERSION,
    kind: 'AIRoute',
    metadata,
    spec: structuredClone(raw.spec),
  } as AIRoute;
  if (typeof raw.status === 'object' && raw.status !== null) {
    route.status = structuredClone(raw.status);
  }
  return deepFreeze(route);
}

export function toPolicy(raw: Record<string, unknown>): AIPolicy | undefined {
  const metadata = readMeta(raw);
  if (!metadata || typeof raw.spec !== 'object' || raw.spec === null) return undefined;
  const policy = {
    apiVersion: API_VERSION,
    kind: 'AIPolicy',
    metadata,
    spec: structuredClone(raw.spec),
  } as AIPolicy;
  if (typeof raw.status === 'object' && raw.status !== null) {
    policy.status = structuredClone(raw.status);
  }
  return deepFreeze(policy);
}

/** A Secret as kept: its values only while some route references it. */
export interface SecretEntry {
  namespace: string;
  name: string;
  rv: string;
  data?: Readonly<Record<string, string>>;
}

/** Decodes a Secret's base64 `data` (stringData never reaches a reader: the apiserver merges it). */
export function decodeSecretData(raw: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  const data = raw.data;
  if (typeof data !== 'object' || data === null) return out;
  for (const [k, v] of Object.entries(data)) {
    if (typeof v === 'string') out[k] = Buffer.from(v, 'base64').toString('utf8');
    else if (v instanceof Uint8Array) out[k] = Buffer.from(v).toString('utf8');
  }
  return out;
}

/** A consumer Secret as kept: its key's digest, or why it is left out. Never the key. */
export interface ConsumerSecretEntry {
  namespace: string;
  name: string;
  key?: ConsumerKey;
  problem?: string;
}

export function toConsumerSecret(raw: Record<string, unknown>): ConsumerSecretEntry | undefined {
  const meta = readMeta(raw);
  // The watch is by label already; this only guards against a server that ignores it.
  if (!meta || !isConsumerSecret(meta)) return undefined;
  const read = readConsumerSecret(meta, decodeSecretData(raw));
  const entry: ConsumerSecretEntry = { namespace: meta.namespace, name: meta.name };
  if (read.ok) entry.key = Object.freeze(read.key);
  else entry.problem = read.message;
  return Object.freeze(entry);
}

export interface ServiceInfo {
  namespace: string;
  name: string;
  ports: { name: string; port: number }[];
}

export function toService(raw: Record<string, unknown>): ServiceInfo | undefined {
  const meta = readMeta(raw);
  if (!meta) return undefined;
  const spec = raw.spec as { ports?: unknown } | undefined;
  const ports = Array.isArray(spec?.ports) ? (spec.ports as Record<string, unknown>[]) : [];
  return deepFreeze({
    namespace: meta.namespace,
    name: meta.name,
    ports: ports
      .filter((p) => typeof p.port === 'number')
      .map((p) => ({ name: str(p.name) ?? '', port: p.port as number })),
  });
}

export interface SliceInfo {
  namespace: string;
  name: string;
  service: string;
  ports: { name: string; port: number }[];
  endpoints: { addresses: string[]; ready: boolean; zone?: string }[];
}

export function toSlice(raw: Record<string, unknown>): SliceInfo | undefined {
  const meta = readMeta(raw);
  const service = meta?.labels?.['kubernetes.io/service-name'];
  // FQDN slices name hosts, not addresses: nothing EDS could carry.
  if (!meta || !service || raw.addressType === 'FQDN') return undefined;
  const ports = (Array.isArray(raw.ports) ? (raw.ports as Record<string, unknown>[]) : [])
    .filter((p) => typeof p.port === 'number')
    .map((p) => ({ name: str(p.name) ?? '', port: p.port as number }));
  const endpoints = (
    Array.isArray(raw.endpoints) ? (raw.endpoints as Record<string, unknown>[]) : []
  ).map((e) => {
    const conditions = e.conditions as { ready?: unknown } | undefined;
    const addresses = Array.isArray(e.addresses)
      ? (e.addresses as unknown[]).filter((a): a is string => typeof a === 'string')
      : [];
    // The EndpointSlice API: an unset ready condition means ready.
    const out: SliceInfo['endpoints'][number] = {
      addresses,
      ready: conditions?.ready !== false,
    };
    const zone = str(e.zone);
    if (zone) out.zone = zone;
    return out;
  });
  return deepFreeze({ namespace: meta.namespace, name: meta.name, service, ports, endpoints });
}

/**
 * The addresses behind one Service port. A slice port carries the name of the Service port it
 * serves; a one-port Service and a one-port slice pair up whatever their names. Undefined when
 * the Service or that port does not exist, so translation can say which.
 */
export function serviceEndpoints(
  ref: { namespace: string; service: string; port: number },
  service: ServiceInfo | undefined,
  slices: readonly SliceInfo[],
): ServiceEndpoints | undefined {
  const sp = service?.ports.find((p) => p.port === ref.port);
  if (!service) return undefined;
  if (!sp) {
    // Not "no Service": the Service is there and the route names a port it does not have.
    const ports = service.ports.map((p) => p.port).sort((a, b) => a - b);
    return {
      namespace: ref.namespace,
      service: ref.service,
      port: ref.port,
      addresses: [],
      portNotFound: { ports },
    };
  }
  const out: ServiceEndpoints = {
    namespace: ref.namespace,
    service: ref.service,
    port: ref.port,
    addresses: [],
  };
  const seen = new Set<string>();
  const ordered = [...slices].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const slice of ordered) {
    const only =
      slice.ports.length === 1 && service.ports.length === 1 ? slice.ports[0] : undefined;
    const target = slice.ports.find((p) => p.name === sp.name) ?? only;
    if (!target) continue;
    for (const ep of slice.endpoints) {
      for (const ip of ep.addresses) {
        const k = `${ip}:${target.port}`;
        if (seen.has(k)) continue;
        seen.add(k);
        const a: ServiceEndpoints['addresses'][number] = { ip, port: target.port, ready: ep.ready };
        if (ep.zone) a.zone = ep.zone;
        out.addresses.push(a);
      }
    }
  }
  return out;
}

/**
 * What the routes and policies point at: Secrets (ns/name; route credentials and masking hash
 * keys) and Service ports (ns/name:port).
 */
export function references(
  routes: Iterable<AIRoute>,
  policies: Iterable<AIPolicy> = [],
): {
  secrets: Set<string>;
  services: Map<string, { namespace: string; service: string; port: number }>;
  /** ns/name of every referenced Service, whatever the port. */
  serviceNames: Set<string>;
} {
  const secrets = new Set<string>();
  const serviceNames = new Set<string>();
  const services = new Map<string, { namespace: string; service: string; port: number }>();
  for (const r of routes) {
    const ns = r.metadata.namespace;
    const backends = Array.isArray(r.spec.backends) ? r.spec.backends : [];
    for (const b of backends) {
      const secret = b?.credential?.secretRef?.name;
      if (typeof secret === 'string' && secret !== '') secrets.add(`${ns}/${secret}`);
      const svc = b?.endpoint?.service;
      if (svc && typeof svc.name === 'string' && typeof svc.port === 'number') {
        services.set(`${ns}/${svc.name}:${svc.port}`, {
          namespace: ns,
          service: svc.name,
          port: svc.port,
        });
        serviceNames.add(`${ns}/${svc.name}`);
      }
    }
  }
  for (const p of policies) {
    const secret = p.spec?.masking?.hashKeySecretRef?.name;
    if (typeof secret === 'string' && secret !== '')
      secrets.add(`${p.metadata.namespace}/${secret}`);
  }
  return { secrets, services, serviceNames };
}

// ---------------------------------------------------------------------------------------------
// The source.

export type Kind = 'AIRoute' | 'AIPolicy' | 'Secret' | 'Service' | 'EndpointSlice';

/** How the source reaches the apiserver; `kubeApi(kubeConfig)` is the real one. */
export interface SourceApi {
  /** `labelSelector` narrows the list and the watch, as the API's own parameter does. */
  listWatcher(kind: Kind, namespace: string | undefined, labelSelector?: string): ListWatcher;
  /** One Secret by name, raw; undefined when it does not exist. */
  getSecret(namespace: string, name: string): Promise<Record<string, unknown> | undefined>;
}

/**
 * What changed in one turn of the event loop: `spec` means the bundle differs and needs a new
 * translation; `status` names the AIRoutes and AIPolicies (`Kind/namespace/name`) whose status
 * alone changed, which only need their status checked.
 */
export interface Change {
  spec: boolean;
  status: ReadonlySet<string>;
}

export interface KubeSourceOptions {
  api: SourceApi;
  /** Watched namespaces; empty or absent: all. */
  namespaces?: readonly string[];
  /** Where consumer Secrets count; empty or absent: nowhere (no consumers). */
  consumerNamespaces?: readonly string[];
  logger?: Logger;
  backoff?: Backoff;
  onRestart?(kind: Kind, reason: 'gone' | 'error'): void;
}

const PAGE = 500;

function paths(kind: Kind, ns: string | undefined): string {
  const n = ns === undefined ? '' : `/namespaces/${encodeURIComponent(ns)}`;
  switch (kind) {
    case 'AIRoute':
      return `/apis/${GROUP}/${VERSION}${n}/airoutes`;
    case 'AIPolicy':
      return `/apis/${GROUP}/${VERSION}${n}/aipolicies`;
    case 'EndpointSlice':
      return `/apis/discovery.k8s.io/v1${n}/endpointslices`;
    case 'Secret':
      return `/api/v1${n}/secrets`;
    case 'Service':
      return `/api/v1${n}/services`;
  }
}

function listPage(v: unknown): ListPage {
  const list = v as {
    items?: unknown;
    metadata?: { resourceVersion?: unknown; _continue?: unknown; continue?: unknown };
  };
  const md = list?.metadata;
  const cont = md?._continue ?? md?.continue;
  return {
    items: Array.isArray(list?.items) ? (list.items as unknown[]) : [],
    resourceVersion: typeof md?.resourceVersion === 'string' ? md.resourceVersion : '',
    continue: typeof cont === 'string' && cont !== '' ? cont : undefined,
  };
}

/** The real apiserver access, through @kubernetes/client-node. */
export function kubeApi(kc: KubeConfig, watchTimeoutSeconds = 300): SourceApi {
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const watcher = new Watch(kc);
  const list = async (
    kind: Kind,
    ns: string | undefined,
    token: string | undefined,
    labelSelector: string | undefined,
  ) => {
    const common = {
      limit: PAGE,
      _continue: token,
      ...(labelSelector !== undefined ? { labelSelector } : {}),
    };
    switch (kind) {
      case 'AIRoute':
      case 'AIPolicy':
      case 'EndpointSlice': {
        const [group, version, plural] =
          kind === 'EndpointSlice'
            ? ['discovery.k8s.io', 'v1', 'endpointslices']
            : [GROUP, VERSION, kind === 'AIRoute' ? 'airoutes' : 'aipolicies'];
        const res: unknown =
          ns === undefined
            ? await custom.listClusterCustomObject({ group, version, plural, ...common })
            : await custom.listNamespacedCustomObject({
                group,
                version,
                plural,
                namespace: ns,
                ...common,
              });
        return listPage(res);
      }
      case 'Secret':
        return listPage(
          ns === undefined
            ? await core.listSecretForAllNamespaces(common)
            : await core.listNamespacedSecret({ namespace: ns, ...common }),
        );
      case 'Service':
        return listPage(
          ns === undefined
            ? await core.listServiceForAllNamespaces(common)
            : await core.listNamespacedService({ namespace: ns, ...common }),
        );
    }
  };
  return {
    listWatcher: (kind, ns, labelSelector) => ({
      list: (token) => list(kind, ns, token, labelSelector),
      watch: async (rv, onEvent, done) => {
        // Server-side timeouts with jitter: every watch is renewed now and then, and replicas
        // do not all come back at the same moment.
        const timeoutSeconds = Math.round(watchTimeoutSeconds * (0.75 + Math.random() * 0.5));
        const ctrl = await watcher.watch(
          paths(kind, ns),
          {
            resourceVersion: rv,
            allowWatchBookmarks: true,
            timeoutSeconds,
            ...(labelSelector !== undefined ? { labelSelector } : {}),
          },
          (type: string, object: unknown) => onEvent({ type, object }),
          done,
        );
        return () => ctrl.abort();
      },
    }),
    getSecret: async (namespace, name) => {
      try {
        const s = await core.readNamespacedSecret({ namespace, name });
        return s as unknown as Record<string, unknown>;
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return undefined;
        throw err;
      }
    },
  };
}

function specKey(o: AIRoute | AIPolicy): string {
  const { resourceVersion: _rv, ...meta } = o.metadata;
  return JSON.stringify([meta, o.spec]);
}

export class KubeSource {
  private readonly routes: Reflector<AIRoute>[] = [];
  private readonly policies: Reflector<AIPolicy>[] = [];
  private readonly secrets: Reflector<SecretEntry>[] = [];
  private readonly services: Reflector<ServiceInfo>[] = [];
  private readonly slices: Reflector<SliceInfo>[] = [];
  private readonly consumerSecrets: Reflector<ConsumerSecretEntry>[] = [];
  private consumerProblems = new Set<string>();
  private readonly all: Reflector<unknown>[] = [];
  private readonly log: Logger;
  private readonly listeners = new Set<(change: Change) => void>();
  private pendingSpec = false;
  private pendingStatus = new Set<string>();
  private notifyQueued = false;
  private refs: ReturnType<typeof references> = references([]);
  private refsDirty = true;
  private bundle: Resources | undefined;
  private readonly fetches = new Map<string, Promise<void>>();
  private readonly fetchErrors = new Map<string, unknown>();
  private readonly watchedNamespaces: readonly (string | undefined)[];

  constructor(private readonly opts: KubeSourceOptions) {
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.watchedNamespaces =
      opts.namespaces && opts.namespaces.length > 0 ? [...new Set(opts.namespaces)] : [undefined];
    for (const ns of this.watchedNamespaces) {
      this.routes.push(this.reflector('AIRoute', ns, toRoute, (_k, a, b) => this.onObject(a, b)));
      this.policies.push(
        this.reflector('AIPolicy', ns, toPolicy, (_k, a, b) => this.onObject(a, b)),
      );
      this.secrets.push(
        this.reflector(
          'Secret',
          ns,
          (raw) => this.toSecret(raw),
          (key, a, b) => {
            if (
              this.referencedSecrets().has(key) &&
              (a?.data !== undefined || b?.data !== undefined)
            ) {
              this.changed('spec');
            }
          },
        ),
      );
      this.services.push(
        this.reflector('Service', ns, toService, (key) => {
          if (this.serviceReferenced(key)) this.changed('spec');
        }),
      );
      this.slices.push(
        this.reflector('EndpointSlice', ns, toSlice, (_k, a, b) => {
          const s = b ?? a;
          if (s && this.serviceReferenced(`${s.namespace}/${s.service}`)) this.changed('spec');
        }),
      );
    }
    for (const ns of new Set(opts.consumerNamespaces ?? [])) {
      this.consumerSecrets.push(
        this.reflector(
          'Secret',
          ns,
          toConsumerSecret,
          (key, before, after) => {
            if (after?.problem !== undefined && after.problem !== before?.problem) {
              this.log.warn(
                { event: 'consumer_secret_refused', secret: key, reason: after.problem },
                'consumer Secret left out',
              );
            }
            this.changed('spec');
          },
          CONSUMER_LABEL,
        ),
      );
    }
  }

  private reflector<T>(
    kind: Kind,
    ns: string | undefined,
    convert: (raw: Record<string, unknown>) => T | undefined,
    onChange: (key: string, before: T | undefined, after: T | undefined) => void,
    labelSelector?: string,
  ): Reflector<T> {
    const what = labelSelector === undefined ? kind : `${kind} (${labelSelector})`;
    const r = new Reflector<T>({
      name: ns === undefined ? what : `${what} in ${ns}`,
      lw:
        labelSelector === undefined
          ? this.opts.api.listWatcher(kind, ns)
          : this.opts.api.listWatcher(kind, ns, labelSelector),
      convert,
      onChange,
      logger: this.log,
      ...(this.opts.backoff ? { backoff: this.opts.backoff } : {}),
      onRestart: (reason) => this.opts.onRestart?.(kind, reason),
    });
    this.all.push(r);
    return r;
  }

  /** Starts every list+watch; resolves once each has listed once. */
  async start(): Promise<void> {
    for (const r of this.all) r.start();
    await Promise.all(this.all.map((r) => r.synced));
  }

  get synced(): boolean {
    return this.all.every((r) => r.hasSynced);
  }

  async stop(): Promise<void> {
    await Promise.all(this.all.map((r) => r.stop()));
  }

  /** Called once per turn of the event loop with everything that changed in it. */
  onChange(listener: (change: Change) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The current bundle. Waits for referenced Secrets still being read; throws when one could not
   * be read (a transient error: the caller retries), so a route is never judged on a Secret the
   * source merely has not fetched yet.
   */
  async resources(): Promise<Resources> {
    const refs = this.currentRefs();
    for (const key of refs.secrets) {
      const entry = this.secretEntry(key);
      if (entry && entry.data === undefined) this.fetchSecret(key, entry.rv);
    }
    if (this.fetches.size > 0) await Promise.all(this.fetches.values());
    const failed = [...this.fetchErrors].filter(([k]) => refs.secrets.has(k));
    if (failed.length > 0) {
      throw new Error(
        `could not read Secret ${failed.map(([k]) => k).join(', ')}: ${describeError(failed[0]![1])}`,
      );
    }
    if (this.bundle) return this.bundle;
    const byKey = <T extends { metadata: ObjectMeta }>(list: T[]) =>
      list.sort((a, b) => {
        const x = `${a.metadata.namespace}/${a.metadata.name}`;
        const y = `${b.metadata.namespace}/${b.metadata.name}`;
        return x < y ? -1 : x > y ? 1 : 0;
      });
    const routes = byKey(this.routes.flatMap((r) => [...r.values()]));
    const policies = byKey(this.policies.flatMap((r) => [...r.values()]));
    const secrets: SecretData[] = [];
    for (const key of [...refs.secrets].sort()) {
      const e = this.secretEntry(key);
      if (e?.data)
        secrets.push({ metadata: { name: e.name, namespace: e.namespace }, data: e.data });
    }
    const slicesByService = new Map<string, SliceInfo[]>();
    for (const r of this.slices) {
      for (const s of r.values()) {
        const k = `${s.namespace}/${s.service}`;
        if (!slicesByService.has(k) && !this.serviceReferenced(k)) continue;
        const list = slicesByService.get(k) ?? [];
        list.push(s);
        slicesByService.set(k, list);
      }
    }
    const endpoints: ServiceEndpoints[] = [];
    for (const [, ref] of [...refs.services].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const k = `${ref.namespace}/${ref.service}`;
      const svc = this.find(this.services, k);
      const e = serviceEndpoints(ref, svc, slicesByService.get(k) ?? []);
      if (e) endpoints.push(e);
    }
    const consumerKeys = this.consumerSecrets
      .flatMap((r) => [...r.values()])
      .flatMap((e) => (e.key ? [e.key] : []))
      .sort((a, b) => {
        const x = `${a.namespace}/${a.secret}`;
        const y = `${b.namespace}/${b.secret}`;
        return x < y ? -1 : x > y ? 1 : 0;
      });
    this.reportConsumerProblems(consumerKeys);
    this.bundle = deepFreeze({ routes, policies, secrets, endpoints, consumerKeys });
    return this.bundle;
  }

  /**
   * Problems between consumer Secrets (translation leaves such consumers out), logged once each
   * while they last rather than on every translation.
   */
  private reportConsumerProblems(keys: readonly ConsumerKey[]): void {
    const now = new Set<string>();
    for (const p of compileConsumers(keys).problems) {
      const id = `${p.secrets.join(',')}|${p.message}`;
      now.add(id);
      if (this.consumerProblems.has(id)) continue;
      this.log.warn(
        { event: 'consumer_refused', consumer: p.consumer, secrets: p.secrets, reason: p.message },
        'consumer left out',
      );
    }
    this.consumerProblems = now;
  }

  /** The cached object, for the status writer (its status and resourceVersion). */
  route(namespace: string, name: string): AIRoute | undefined {
    return this.find(this.routes, `${namespace}/${name}`);
  }

  policy(namespace: string, name: string): AIPolicy | undefined {
    return this.find(this.policies, `${namespace}/${name}`);
  }

  private find<T>(reflectors: Reflector<T>[], key: string): T | undefined {
    for (const r of reflectors) {
      const v = r.get(key);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  private secretEntry(key: string): SecretEntry | undefined {
    return this.find(this.secrets, key);
  }

  private onObject(before: AIRoute | AIPolicy | undefined, after: AIRoute | AIPolicy | undefined) {
    const obj = after ?? before;
    if (!obj) return;
    if (before && after && specKey(before) === specKey(after)) {
      this.changed('status', `${obj.kind}/${obj.metadata.namespace}/${obj.metadata.name}`);
      return;
    }
    // Routes reference credentials and Services, policies masking hash keys.
    this.refsDirty = true;
    this.changed('spec');
  }

  private changed(kind: 'spec' | 'status', key?: string): void {
    if (kind === 'spec') {
      this.bundle = undefined;
      this.pendingSpec = true;
    } else if (key !== undefined) this.pendingStatus.add(key);
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    setImmediate(() => {
      this.notifyQueued = false;
      const change: Change = { spec: this.pendingSpec, status: this.pendingStatus };
      this.pendingSpec = false;
      this.pendingStatus = new Set();
      if (change.spec) this.syncSecretData();
      for (const l of [...this.listeners]) l(change);
    });
  }

  private currentRefs(): ReturnType<typeof references> {
    if (this.refsDirty) {
      this.refsDirty = false;
      this.refs = references(
        this.routes.flatMap((r) => [...r.values()]),
        this.policies.flatMap((r) => [...r.values()]),
      );
    }
    return this.refs;
  }

  private referencedSecrets(): Set<string> {
    return this.currentRefs().secrets;
  }

  private serviceReferenced(nsName: string): boolean {
    return this.currentRefs().serviceNames.has(nsName);
  }

  private toSecret(raw: Record<string, unknown>): SecretEntry | undefined {
    const meta = readMeta(raw);
    if (!meta) return undefined;
    const rv = meta.resourceVersion ?? '';
    const entry: SecretEntry = { namespace: meta.namespace, name: meta.name, rv };
    if (this.referencedSecrets().has(`${meta.namespace}/${meta.name}`)) {
      entry.data = Object.freeze(decodeSecretData(raw));
    }
    return Object.freeze(entry);
  }

  /** Reads newly referenced Secrets and forgets the values of those no longer referenced. */
  private syncSecretData(): void {
    const refs = this.referencedSecrets();
    for (const r of this.secrets) {
      for (const e of [...r.values()]) {
        const key = `${e.namespace}/${e.name}`;
        if (e.data !== undefined && !refs.has(key)) {
          r.update(key, e.rv, Object.freeze({ namespace: e.namespace, name: e.name, rv: e.rv }));
        } else if (e.data === undefined && refs.has(key)) {
          this.fetchSecret(key, e.rv);
        }
      }
    }
    for (const k of this.fetchErrors.keys()) if (!refs.has(k)) this.fetchErrors.delete(k);
  }

  private fetchSecret(key: string, rv: string): void {
    if (this.fetches.has(key)) return;
    const [namespace, name] = [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)];
    const p = this.opts.api
      .getSecret(namespace, name)
      .then((raw) => {
        this.fetchErrors.delete(key);
        if (!raw) return;
        // The watch is the authority: apply the read only over the marker it was started for.
        for (const r of this.secrets) {
          const cur = r.get(key);
          if (!cur || cur.data !== undefined || cur.rv !== rv) continue;
          r.update(
            key,
            rv,
            Object.freeze({ namespace, name, rv, data: Object.freeze(decodeSecretData(raw)) }),
          );
        }
      })
      .catch((err: unknown) => {
        this.fetchErrors.set(key, err);
        this.log.warn(
          { event: 'secret_read_failed', secret: key, reason: describeError(err) },
          'could not read a referenced Secret',
        );
      })
      .finally(() => this.fetches.delete(key));
    this.fetches.set(key, p);
  }
}
