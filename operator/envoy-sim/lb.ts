// Host selection as Envoy's round-robin load balancer does it with locality weighting: the
// lowest priority level that has hosts (all hosts are healthy: there is no health checking), a
// locality of that level by weight, then round robin inside the locality. The retry plugins
// narrow the choice: previous_priorities excludes levels already tried (starting over when none
// is left), previous_hosts rejects the hosts already tried up to host_selection_retry_max_attempts.
import type { HostModel, LocalityModel } from './model.js';

export interface Pick {
  host: HostModel;
  locality: LocalityModel;
}

export interface RetryMemory {
  priorities: Set<number>;
  hosts: Set<HostModel>;
}

export class LoadBalancer {
  private readonly cursor = new WeakMap<LocalityModel, number>();

  constructor(private readonly random: () => number) {}

  pick(
    localities: readonly LocalityModel[],
    weighted: boolean,
    exclude?: { priorities?: ReadonlySet<number>; hosts?: ReadonlySet<HostModel>; tries: number },
  ): Pick | undefined {
    const populated = localities.filter((l) => l.hosts.length > 0 && (!weighted || l.weight > 0));
    if (populated.length === 0) return undefined;
    const levels = [...new Set(populated.map((l) => l.priority))].sort((a, b) => a - b);
    let allowed = levels.filter((p) => !exclude?.priorities?.has(p));
    if (allowed.length === 0) allowed = levels;
    const level = allowed[0]!;
    const candidates = populated.filter((l) => l.priority === level);
    let chosen: Pick | undefined;
    for (let i = 0; i < Math.max(1, exclude?.tries ?? 1); i++) {
      const locality = weighted ? this.byWeight(candidates) : this.anyHost(candidates);
      const n = this.cursor.get(locality) ?? 0;
      this.cursor.set(locality, n + 1);
      chosen = { host: locality.hosts[n % locality.hosts.length]!, locality };
      if (!exclude?.hosts?.has(chosen.host)) break;
    }
    return chosen;
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
