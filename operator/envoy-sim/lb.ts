// Host selection as Envoy's round-robin load balancer does it with locality weighting: a
// priority level chosen by its health (Envoy's priority load: each level takes up to
// overprovisioning factor 1.4 × its healthy share, in order; a level with no healthy host takes
// none; when no level has a healthy host Envoy is in panic and routes as if all were healthy), a
// locality of that level by weight, then round robin inside the locality. Health here is passive
// only (outlier detection; there is no active health checking). The retry plugins narrow the
// choice: previous_priorities excludes levels already tried (starting over when none is left),
// previous_hosts rejects the hosts already tried up to host_selection_retry_max_attempts.
import type { HostModel, LocalityModel, OutlierModel } from './model.js';
import {
  buildRing,
  chooseOnRing,
  priorityByHash,
  type RingConfig,
  type RingEntry,
} from './ring-hash.js';

export interface Pick {
  host: HostModel;
  locality: LocalityModel;
}

export interface RetryMemory {
  priorities: Set<number>;
  hosts: Set<HostModel>;
}

/** Envoy's default overprovisioning factor (1.4): a level 72% healthy still takes all its load. */
const OVERPROVISIONING = 1.4;

/** Envoy's default healthy_panic_threshold: below 50% healthy a priority routes to all hosts. */
const PANIC_THRESHOLD_PERCENT = 50;

/** Loads that sum to 100 (Envoy normalizes the healthy loads of the levels that have any). */
function scaled(
  loads: readonly { priority: number; load: number }[],
  total: number,
): { priority: number; load: number }[] {
  return loads.map((l) => ({ priority: l.priority, load: (l.load * 100) / total }));
}

/**
 * normalizeWeights (thread_aware_lb_impl.cc): with locality weighting each included host gets
 * its locality's share of the weights divided among the locality's included hosts (a locality
 * of weight 0 none); without it every included host of the level gets an equal share. Host
 * weights are all 1 here (the operator sets none). The hash key is the address, `ip:port`.
 */
function normalizedWeights(
  inLevel: readonly LocalityModel[],
  weighted: boolean,
  include: (h: HostModel) => boolean,
): { host: HostModel; key: string; weight: number }[] {
  const out: { host: HostModel; key: string; weight: number }[] = [];
  if (!weighted) {
    const hosts = inLevel.flatMap((l) => l.hosts).filter(include);
    for (const h of hosts) out.push({ host: h, key: hashKey(h), weight: 1 / hosts.length });
    return out;
  }
  const sum = inLevel.reduce((s, l) => s + l.weight, 0);
  if (sum === 0) return out;
  for (const l of inLevel) {
    if (l.weight === 0) continue;
    const hosts = l.hosts.filter(include);
    for (const h of hosts)
      out.push({ host: h, key: hashKey(h), weight: l.weight / sum / hosts.length });
  }
  return out;
}

/** The endpoint's `envoy.lb` `hash_key` metadata when set, else its address as Envoy prints it. */
function hashKey(h: HostModel): string {
  const key = h.metadata['envoy.lb']?.['hash_key'];
  if (typeof key === 'string' && key !== '') return key;
  return h.pipe
    ? h.address
    : h.address.includes(':')
      ? `[${h.address}]:${h.port}`
      : `${h.address}:${h.port}`;
}

/** What an attempt on a host came to, as the router reports it to outlier detection. */
export type AttemptResult = { status: number } | { localFailure: 'connect' | 'reset' | 'timeout' };

interface HostHealth {
  consecutive5xx: number;
  consecutiveGateway: number;
  ejections: number;
  /** Monotonic ms until which the host is ejected. */
  ejectedUntil: number;
}

export class LoadBalancer {
  private readonly cursor = new WeakMap<LocalityModel, number>();
  /** Outlier detection state per cluster and host address (it survives config pushes). */
  private readonly health = new Map<string, HostHealth>();

  constructor(private readonly random: () => number) {}

  pick(
    localities: readonly LocalityModel[],
    weighted: boolean,
    exclude?: { priorities?: ReadonlySet<number>; hosts?: ReadonlySet<HostModel>; tries: number },
    outlier?: { cluster: string; nowMs: number },
  ): Pick | undefined {
    const populated = localities.filter((l) => l.hosts.length > 0 && (!weighted || l.weight > 0));
    if (populated.length === 0) return undefined;
    const levels = [...new Set(populated.map((l) => l.priority))].sort((a, b) => a - b);
    let allowed = levels.filter((p) => !exclude?.priorities?.has(p));
    if (allowed.length === 0) allowed = levels;
    const healthy = (h: HostModel): boolean =>
      !outlier || !this.ejected(outlier.cluster, h, outlier.nowMs);
    const level = this.level(allowed, populated, healthy);
    const inLevel = populated.filter((l) => l.priority === level.priority);
    // Ejected hosts leave the choice (not in panic); the round robin stays per locality.
    const original = new Map<LocalityModel, LocalityModel>();
    const candidates = level.panic
      ? inLevel
      : inLevel.flatMap((l) => {
          const hosts = l.hosts.filter(healthy);
          if (hosts.length === 0) return [];
          const c = hosts.length === l.hosts.length ? l : { ...l, hosts };
          original.set(c, l);
          return [c];
        });
    let chosen: Pick | undefined;
    for (let i = 0; i < Math.max(1, exclude?.tries ?? 1); i++) {
      const picked = weighted ? this.byWeight(candidates) : this.anyHost(candidates);
      const locality = original.get(picked) ?? picked;
      const n = this.cursor.get(locality) ?? 0;
      this.cursor.set(locality, n + 1);
      chosen = { host: picked.hosts[n % picked.hosts.length]!, locality };
      if (!exclude?.hosts?.has(chosen.host)) break;
    }
    return chosen;
  }

  /**
   * Ring hash (lb_policy RING_HASH, see ring-hash.ts): the priority by `hash % 100` over the
   * priority loads (the retry priority plugin is not consulted, as in Envoy's thread-aware
   * balancers), then the priority's ring of healthy hosts — all of its hosts when fewer than
   * half are healthy (Envoy's default healthy_panic_threshold, 50%) — and on a host-selection
   * retry (previous_hosts refused the host) the ring entry one further on, up to `tries` times.
   * No hash (the header was absent): a random one, as Envoy draws.
   */
  pickByHash(
    cluster: string,
    localities: readonly LocalityModel[],
    weighted: boolean,
    hash: bigint | undefined,
    ring: RingConfig,
    exclude?: { hosts?: ReadonlySet<HostModel>; tries: number },
    outlier?: { nowMs: number },
  ): Pick | undefined {
    const populated = localities.filter((l) => l.hosts.length > 0 && (!weighted || l.weight > 0));
    if (populated.length === 0) return undefined;
    const h = hash ?? this.randomHash();
    const healthy = (x: HostModel): boolean => !outlier || !this.ejected(cluster, x, outlier.nowMs);
    const levels = [...new Set(populated.map((l) => l.priority))].sort((a, b) => a - b);
    const loads = this.priorityLoads(levels, populated, healthy);
    const total = loads.reduce((s, l) => s + l.load, 0);
    // No healthy host anywhere: Envoy's priority loads then spread by host count (panic); the
    // first level stands in, as in pick().
    const priority =
      total > 0 ? (priorityByHash(h, scaled(loads, total)) ?? levels[0]!) : levels[0]!;
    const inLevel = populated.filter((l) => l.priority === priority);
    const all = inLevel.flatMap((l) => l.hosts);
    const panic = all.filter(healthy).length * 100 < all.length * PANIC_THRESHOLD_PERCENT;
    const r = this.ring(cluster, inLevel, weighted, panic ? () => true : healthy, ring);
    let chosen: HostModel | undefined;
    for (let i = 0; i < Math.max(1, exclude?.tries ?? 1); i++) {
      const index = chooseOnRing(r.entries, h, i);
      chosen = index === undefined ? undefined : r.hosts[index];
      if (!chosen || !exclude?.hosts?.has(chosen)) break;
    }
    if (!chosen) return undefined;
    const locality = inLevel.find((l) => l.hosts.includes(chosen))!;
    return { host: chosen, locality };
  }

  /** Rings by cluster, ring size and members (keys and weights); entries index the members. */
  private readonly rings = new Map<string, RingEntry<number>[]>();

  /**
   * The ring of one priority's hosts as the hosts of this pick: a ring is rebuilt only when the
   * members' keys or weights change (an EDS push makes new host objects for the same endpoints).
   */
  private ring(
    cluster: string,
    inLevel: readonly LocalityModel[],
    weighted: boolean,
    include: (h: HostModel) => boolean,
    cfg: RingConfig,
  ): { entries: RingEntry<number>[]; hosts: HostModel[] } {
    const members = normalizedWeights(inLevel, weighted, include);
    const id = `${cluster}|${cfg.minRingSize}|${cfg.maxRingSize}|${members.map((m) => `${m.key}=${m.weight}`).join(',')}`;
    let entries = this.rings.get(id);
    if (!entries) {
      entries = buildRing(
        members.map((m, i) => ({ host: i, key: m.key, weight: m.weight })),
        cfg,
      );
      // Bounded: a long run through many endpoint changes keeps only recent rings.
      if (this.rings.size >= 64) this.rings.delete(this.rings.keys().next().value!);
      this.rings.set(id, entries);
    }
    return { entries, hosts: members.map((m) => m.host) };
  }

  private randomHash(): bigint {
    const hi = BigInt(Math.floor(this.random() * 2 ** 32));
    const lo = BigInt(Math.floor(this.random() * 2 ** 32));
    return (hi << 32n) | lo;
  }

  /**
   * Envoy's priority load over the allowed levels: each takes min(remaining, 1.4 × its healthy
   * share); the result is a random draw by load. No healthy host anywhere: panic, lowest level.
   */
  private level(
    allowed: readonly number[],
    populated: readonly LocalityModel[],
    healthy: (h: HostModel) => boolean,
  ): { priority: number; panic: boolean } {
    const loads = this.priorityLoads(allowed, populated, healthy);
    const total = loads.reduce((s, l) => s + l.load, 0);
    if (total <= 0) return { priority: allowed[0]!, panic: true };
    // One level takes everything (the usual case): no draw, so the locality draw that follows
    // sees the same random sequence as without priorities.
    const only = loads.filter((l) => l.load > 0);
    if (only.length === 1) return { priority: only[0]!.priority, panic: false };
    let r = this.random() * total;
    for (const l of loads) {
      r -= l.load;
      if (r < 0 && l.load > 0) return { priority: l.priority, panic: false };
    }
    return { priority: loads.filter((l) => l.load > 0).at(-1)!.priority, panic: false };
  }

  private priorityLoads(
    allowed: readonly number[],
    populated: readonly LocalityModel[],
    healthy: (h: HostModel) => boolean,
  ): { priority: number; load: number }[] {
    const loads: { priority: number; load: number }[] = [];
    let remaining = 100;
    for (const p of allowed) {
      const hosts = populated.filter((l) => l.priority === p).flatMap((l) => l.hosts);
      const share = hosts.filter(healthy).length / hosts.length;
      const load = Math.min(remaining, Math.min(100, share * 100 * OVERPROVISIONING));
      loads.push({ priority: p, load });
      remaining -= load;
    }
    return loads;
  }

  /**
   * Outlier detection (Envoy's consecutive_5xx and consecutive_gateway_failure, with
   * split_external_local_origin_errors off): a local failure counts as the 503 or 504 the router
   * answers for it; any status below 500 resets both counters. An ejection lasts
   * base_ejection_time × the host's ejections so far, capped at max_ejection_time; a host comes
   * back when that has passed (Envoy checks on its interval timer: up to `interval` later).
   */
  report(
    cluster: string,
    model: OutlierModel,
    host: HostModel,
    all: readonly LocalityModel[],
    result: AttemptResult,
    nowMs: number,
  ): void {
    const key = `${cluster}|${host.address}:${host.port}`;
    let h = this.health.get(key);
    if (!h)
      this.health.set(
        key,
        (h = { consecutive5xx: 0, consecutiveGateway: 0, ejections: 0, ejectedUntil: 0 }),
      );
    const status =
      'status' in result ? result.status : result.localFailure === 'timeout' ? 504 : 503;
    if (status < 500) {
      h.consecutive5xx = 0;
      h.consecutiveGateway = 0;
      return;
    }
    h.consecutive5xx++;
    if (status >= 502 && status <= 504) h.consecutiveGateway++;
    else h.consecutiveGateway = 0;
    const tripped =
      (model.consecutive5xx > 0 && h.consecutive5xx >= model.consecutive5xx) ||
      (model.enforcingGatewayFailure > 0 &&
        model.consecutiveGatewayFailure > 0 &&
        h.consecutiveGateway >= model.consecutiveGatewayFailure);
    if (!tripped || h.ejectedUntil > nowMs) return;
    // max_ejection_percent of the cluster's hosts, but always at least one host (Envoy 1.27+).
    const hosts = all.flatMap((l) => l.hosts);
    const ejected = hosts.filter((x) => this.ejected(cluster, x, nowMs)).length;
    if (ejected >= Math.max(1, Math.floor((hosts.length * model.maxEjectionPercent) / 100))) return;
    h.ejections++;
    const ms = Math.min(
      model.baseEjectionMs * h.ejections,
      Math.max(model.baseEjectionMs, model.maxEjectionMs),
    );
    h.ejectedUntil = nowMs + ms;
    h.consecutive5xx = 0;
    h.consecutiveGateway = 0;
  }

  ejected(cluster: string, host: HostModel, nowMs: number): boolean {
    const h = this.health.get(`${cluster}|${host.address}:${host.port}`);
    return h !== undefined && h.ejectedUntil > nowMs;
  }

  private byWeight(ls: readonly LocalityModel[]): LocalityModel {
    const total = ls.reduce((s, l) => s + l.weight, 0);
    let r = this.random() * total;
    for (const l of ls) {
      r -= l.weight;
      if (r < 0) return l;
    }
    return ls[ls.length - 1]!;
  }

  /** Without locality weighting every host of the level is equally likely. */
  private anyHost(ls: readonly LocalityModel[]): LocalityModel {
    const total = ls.reduce((s, l) => s + l.hosts.length, 0);
    let r = Math.floor(this.random() * total);
    for (const l of ls) {
      if (r < l.hosts.length) return l;
      r -= l.hosts.length;
    }
    return ls[ls.length - 1]!;
  }
}
