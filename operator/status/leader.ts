/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it, so
 * only one replica writes status while every replica serves xDS.
 *
 * Expiry is judged on this process's own clock from when it last SAW the lease record change,
 * never by comparing the holder's renewTime with local time: replicas' clocks may disagree, and
 * a skewed clock must not let two replicas lead at once. Every write carries the
 * resourceVersion it read, so of two replicas racing for an expired lease exactly one wins.
 *
 * A leader that cannot renew within `renewDeadlineMs` steps down before its lease can expire
 * elsewhere (renewDeadline < leaseDuration), so two leaders never overlap by this replica's clock.
 */
import { ApiException, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';

/** A Lease as JSON: times are MicroTime strings (RFC 3339 with exactly six fraction digits). */
export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: {
    holderIdentity?: string | undefined;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** The Lease calls the elector makes; `leaseApi(kc)` is the real one. */
export interface LeaseApi {
  get(namespace: string, name: string): Promise<Lease | undefined>;
  create(namespace: string, lease: Lease): Promise<void>;
  /** Rejects with a 409 ApiException when the resourceVersion is stale. */
  replace(namespace: string, name: string, lease: Lease): Promise<void>;
}

const LEASES = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases' };

/**
 * Through the generic custom-objects client on purpose: the typed CoordinationV1Api of
 * @kubernetes/client-node 1.4 serialises MicroTime with milliseconds, which the apiserver refuses.
 */
export function leaseApi(kc: KubeConfig): LeaseApi {
  const api = kc.makeApiClient(CustomObjectsApi);
  return {
    get: async (namespace, name) => {
      try {
        const raw: unknown = await api.getNamespacedCustomObject({ ...LEASES, namespace, name });
        return raw as Lease;
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return undefined;
        throw err;
      }
    },
    create: async (namespace, body) => {
      await api.createNamespacedCustomObject({ ...LEASES, namespace, body });
    },
    replace: async (namespace, name, body) => {
      await api.replaceNamespacedCustomObject({ ...LEASES, namespace, name, body });
    },
  };
}

/** MicroTime: 2006-01-02T15:04:05.000000Z. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export const DEFAULT_LEASE_NAME = 'sluice-operator-status';

const LEASE_WARN_EVERY_MS = 60_000;

/** What went wrong with a Lease call, with what to check for the usual causes. */
export function leaseErrorReason(err: unknown): string {
  if (err instanceof ApiException) {
    if (err.code === 403) {
      return 'HTTP 403 Forbidden: the operator may not use Leases in this namespace (check --lease-namespace and the RBAC Role)';
    }
    if (err.code === 404) return 'HTTP 404 Not Found: does the namespace exist?';
    return `HTTP ${err.code}`;
  }
  return err instanceof Error ? err.message.split('\n')[0]! : 'unknown error';
}

export interface LeaderElectorOptions {
  api: LeaseApi;
  namespace: string;
  name?: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Wall-clock milliseconds (lease timestamps) and the basis of expiry. */
  now: () => number;
  logger: Logger;
  onStartedLeading?(): void;
  onStoppedLeading?(): void;
}

export class LeaderElector {
  private leading = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private observedKey = '';
  private observedAt = 0;
  private lastRenew = 0;
  private failingSince: number | undefined;
  private lastReason = '';
  private lastWarned = 0;
  private loop: Promise<void> | undefined;
  private readonly name: string;
  private readonly leaseMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryMs: number;

  constructor(private readonly opts: LeaderElectorOptions) {
    this.name = opts.name ?? DEFAULT_LEASE_NAME;
    this.leaseMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryMs = opts.retryPeriodMs ?? 2_000;
    if (this.renewDeadlineMs >= this.leaseMs) {
      throw new Error('renewDeadlineMs must be shorter than leaseDurationMs');
    }
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    if (this.loop) return;
    this.loop = this.tick();
  }

  /** Stops campaigning; a leader releases the lease so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.loop;
    if (!this.leading) return;
    this.setLeading(false);
    try {
      const lease = await this.opts.api.get(this.opts.namespace, this.name);
      if (lease?.spec?.holderIdentity !== this.opts.identity) return;
      const now = microTime(this.opts.now());
      await this.opts.api.replace(this.opts.namespace, this.name, {
        ...lease,
        spec: {
          ...lease.spec,
          holderIdentity: undefined,
          leaseDurationSeconds: 1,
          renewTime: now,
          acquireTime: now,
        },
      });
      this.opts.logger.info({ event: 'leader_released', lease: this.name }, 'lease released');
    } catch (err) {
      this.opts.logger.warn(
        { event: 'leader_release_failed', reason: (err as Error).message },
        'could not release the lease; it expires on its own',
      );
    }
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    let ok = false;
    let failed = false;
    try {
      ok = await this.tryAcquireOrRenew();
    } catch (err) {
      failed = true;
      this.leaseFailed(err);
    }
    if (!failed && this.failingSince !== undefined) {
      this.opts.logger.info(
        { event: 'lease_recovered', lease: this.name, namespace: this.opts.namespace },
        'the status lease can be read and written again',
      );
      this.failingSince = undefined;
      this.lastReason = '';
    }
    if (this.stopped) return;
    const now = this.opts.now();
    if (ok) {
      this.lastRenew = now;
      if (!this.leading) this.setLeading(true);
    } else if (this.leading && now - this.lastRenew >= this.renewDeadlineMs) {
      this.setLeading(false);
    }
    this.timer = setTimeout(() => {
      this.loop = this.tick();
    }, this.retryMs);
  }

  /**
   * A replica that cannot reach its Lease never writes status, so the failure is a warning: at
   * once, whenever the reason changes, and once a minute while it lasts (never every retry).
   */
  private leaseFailed(err: unknown): void {
    const reason = leaseErrorReason(err);
    const now = this.opts.now();
    if (this.failingSince === undefined) this.failingSince = now;
    if (reason === this.lastReason && now - this.lastWarned < LEASE_WARN_EVERY_MS) return;
    this.lastReason = reason;
    this.lastWarned = now;
    this.opts.logger.warn(
      {
        event: 'lease_error',
        lease: this.name,
        namespace: this.opts.namespace,
        reason,
        failing_ms: now - this.failingSince,
      },
      'cannot read or write the status lease; this replica will not write status until it can',
    );
  }

  private setLeading(leading: boolean): void {
    this.leading = leading;
    this.opts.logger.info(
      {
        event: leading ? 'leader_elected' : 'leader_lost',
        lease: this.name,
        identity: this.opts.identity,
      },
      leading ? 'became the status leader' : 'no longer the status leader',
    );
    if (leading) this.opts.onStartedLeading?.();
    else this.opts.onStoppedLeading?.();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { api, namespace, identity } = this.opts;
    const now = this.opts.now();
    const seconds = Math.ceil(this.leaseMs / 1000);
    const lease = await api.get(namespace, this.name);
    if (!lease) {
      await api.create(namespace, {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.name, namespace },
        spec: {
          holderIdentity: identity,
          leaseDurationSeconds: seconds,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: 0,
        },
      });
      return true;
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const key = `${holder}\0${spec.renewTime}\0${spec.leaseDurationSeconds}`;
    if (key !== this.observedKey) {
      this.observedKey = key;
      this.observedAt = now;
    }
    const duration = (spec.leaseDurationSeconds ?? seconds) * 1000;
    if (holder !== '' && holder !== identity && now - this.observedAt < duration) return false;
    const mine = holder === identity;
    try {
      await api.replace(namespace, this.name, {
        ...lease,
        spec: {
          ...spec,
          holderIdentity: identity,
          leaseDurationSeconds: seconds,
          acquireTime: mine && spec.acquireTime ? spec.acquireTime : microTime(now),
          renewTime: microTime(now),
          leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
        },
      });
    } catch (err) {
      if (err instanceof ApiException && err.code === 409) return false;
      throw err;
    }
    return true;
  }
}
