/**
 * `sluice_budget_utilization_ratio{sluice_policy, limit, metric}`: how full the fullest bucket of
 * each limit is, as this replica last saw it in the current window. It is what "a budget above
 * 80%" alerts on. Per limit, not per bucket: buckets are split by consumer, team or model, and a
 * series per consumer would grow with the key count; the alert needs the worst one, and the
 * access log and `sluice usage` name it.
 *
 * The store answers every reserve with each bucket's level (used plus reserved, this request's
 * reservation included when admitted), so the ratio costs no extra store call. Within a window a
 * bucket's level only grows by what requests use, so the highest level seen is the one to keep;
 * a new window (a later reset time) starts again from what it sees, and a window that has ended
 * by scrape time is reported as 0 rather than last month's figure. Concurrency limits have no
 * window and are not budgets: left out.
 */
import { Gauge, type Registry } from 'prom-client';
import type { Charge } from '../governance/budget.js';

export const BUDGET_UTILIZATION_METRIC = 'sluice_budget_utilization_ratio';

interface Seen {
  policy: string;
  limit: string;
  metric: string;
  resetAtMs: number;
  ratio: number;
}

export type LevelsObserver = (
  policy: string,
  charges: readonly Charge[],
  levels: readonly number[],
) => void;

/**
 * Registers the gauge on `registry` and returns what Budget's `onLevels` needs. `now` is the same
 * wall clock the budget's windows use.
 */
export function budgetUtilizationMetric(registry: Registry, now: () => number): LevelsObserver {
  const seen: Seen[] = [];
  new Gauge({
    name: BUDGET_UTILIZATION_METRIC,
    help:
      'Fullest bucket of each limit in its current window as this replica saw it: (used + ' +
      'reserved) / limit, by governance policy, limit name and metric (requests, tokens, ' +
      'spendDay, spendMonth). 1 or more: exhausted.',
    labelNames: ['sluice_policy', 'limit', 'metric'],
    registers: [registry],
    collect() {
      this.reset();
      const t = now();
      for (const s of seen) {
        this.set(
          { sluice_policy: s.policy, limit: s.limit, metric: s.metric },
          t >= s.resetAtMs ? 0 : s.ratio,
        );
      }
    },
  });
  // Seen by policy, then limit and metric: nested Maps, so a reserve builds no key string (it
  // reports every bucket of every reserve). Bounded by the limits configured, as the series are.
  const byPolicy = new Map<string, Map<string, Map<string, Seen>>>();
  return (policy, charges, levels) => {
    for (let i = 0; i < charges.length; i++) {
      const c = charges[i]!;
      const level = levels[i];
      if (c.metric === 'concurrent' || level === undefined || c.limit <= 0) continue;
      let byLimit = byPolicy.get(policy);
      if (byLimit === undefined)
        byPolicy.set(policy, (byLimit = new Map<string, Map<string, Seen>>()));
      let byMetric = byLimit.get(c.limitName);
      if (byMetric === undefined) byLimit.set(c.limitName, (byMetric = new Map<string, Seen>()));
      const ratio = level / c.limit;
      const s = byMetric.get(c.metric);
      if (!s) {
        const fresh = {
          policy,
          limit: c.limitName,
          metric: c.metric,
          resetAtMs: c.resetAtMs,
          ratio,
        };
        byMetric.set(c.metric, fresh);
        seen.push(fresh);
      } else if (c.resetAtMs > s.resetAtMs) {
        // A new window starts again from what it sees.
        s.resetAtMs = c.resetAtMs;
        s.ratio = ratio;
      } else if (c.resetAtMs === s.resetAtMs && ratio > s.ratio) {
        s.ratio = ratio;
      }
    }
  };
}
