/**
 * The cluster source: list+watch of AIRoutes, AIPolicies, the Secrets routes reference, and the
 * Services and EndpointSlices behind in-cluster backends, assembled on demand into the same
 * immutable Resources bundle the YAML source builds.
 *
 * Each kind (per watched namespace) has a Reflector (reflector.ts: list, watch, relist on 410,
 * backoff, never throws) over the apiserver calls of kube-api.ts; kube-objects.ts reduces each
 * object to what is kept. This file ties them together: which objects matter, when the bundle
 * changed, and the bundle itself.
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
import { pino, type Logger } from 'pino';
import type { Backoff } from '../../extproc/shared/backoff.js';
import { CONSUMER_LABEL, groupConsumerKeys } from '../api/consumer-secret.js';
import type {
  AIPolicy,
  AIRoute,
  ConsumerKey,
  ObjectMeta,
  Resources,
  SecretData,
  ServiceEndpoints,
} from '../api/types.js';
import type { Kind, SourceApi } from './kube-api.js';
import {
  decodeSecretData,
  deepFreeze,
  readMeta,
  references,
  serviceEndpoints,
  toConsumerSecret,
  toPolicy,
  toRoute,
  toService,
  toSlice,
  type ConsumerSecretEntry,
  type SecretEntry,
  type ServiceInfo,
  type SliceInfo,
} from './kube-objects.js';
import { describeError, Reflector } from './reflector.js';

/**
 * What changed in one turn of the event loop: `spec` means the bundle differs and needs a new
 * compilation; `status` names the AIRoutes and AIPolicies (`Kind/namespace/name`) whose status
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
   * Problems between consumer Secrets (compilation leaves such consumers out), logged once each
   * while they last rather than on every compilation.
   */
  private reportConsumerProblems(keys: readonly ConsumerKey[]): void {
    const now = new Set<string>();
    for (const p of groupConsumerKeys(keys).problems) {
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
