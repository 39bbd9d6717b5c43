// Host selection as Envoy's round-robin load balancer does it with locality weighting: a
// priority level chosen by its health (Envoy's priority load: each level takes up to
// overprovisioning factor 1.4 × its healthy share, in order; a level with no healthy host takes
// none; when no level has a healthy host Envoy is in panic and routes as if all were healthy), a
// locality of that level by weight, then round robin inside the locality. Health here is passive
// only (outlier detection; there is no active health checking). The retry plugins narrow the
// choice: previous_priorities excludes levels already tried (starting over when none is left),
// previous_hosts rejects the hosts already tried up to host_selection_retry_max_attempts.
import type { HostModel, LocalityModel, OutlierModel } from './model.js';

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
   * Envoy's priority load over the allowed levels: each takes min(remaining, 1.4 × its healthy
   * share); the result is a random draw by load. No healthy host anywhere: panic, lowest level.
   */
  private level(
    allowed: readonly number[],
    populated: readonly LocalityModel[],
    healthy: (h: HostModel) => boolean,
  ): { priority: number; panic: boolean } {
    const loads: { priority: number; load: number }[] = [];
    let remaining = 100;
    for (const p of allowed) {
      const hosts = populated.filter((l) => l.priority === p).flatMap((l) => l.hosts);
      const share = hosts.filter(healthy).length / hosts.length;
      const load = Math.min(remaining, Math.min(100, share * 100 * OVERPROVISIONING));
      loads.push({ priority: p, load });
      remaining -= load;
    }
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
