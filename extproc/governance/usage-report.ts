/**
 * `sluice usage`: spend and tokens per consumer, team, model, route or session for one UTC day or month,
 * read from the state store and aggregated here (the store keeps the finest grain).
 */
import type { StateStore, UsagePeriod, UsageRow } from '../state/store.js';
import { utcDay, utcMonth } from './budget.js';
import { MICROS_PER_USD } from './pricing.js';

export type UsageBy = 'consumer' | 'team' | 'model' | 'route' | 'session';

export interface UsageReportRow {
  /** The consumer, team, model or route; "" when the requests had none (anonymous, no team). */
  key: string;
  /** Answered by a provider; tokens and cost are theirs plus what charged cache hits cost. */
  requests: number;
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens: number;
  totalTokens: number;
  costMicros: number;
  /** Answered from the response cache, and the tokens and cost those hits did not buy. */
  cachedRequests: number;
  savedTokens: number;
  savedMicros: number;
}

export interface UsageReport {
  period: UsagePeriod;
  /** `YYYY-MM-DD` or `YYYY-MM`, UTC. */
  periodKey: string;
  by: UsageBy;
  rows: UsageReportRow[];
  total: Omit<UsageReportRow, 'key'>;
}

export function periodKeyOf(period: UsagePeriod, atMs: number): string {
  return period === 'day' ? utcDay(atMs) : utcMonth(atMs);
}

export async function usageReport(
  store: StateStore,
  opts: { period: UsagePeriod; by: UsageBy; atMs?: number; periodKey?: string },
): Promise<UsageReport> {
  const periodKey = opts.periodKey ?? periodKeyOf(opts.period, opts.atMs ?? Date.now());
  const rows = await store.usage(opts.period, periodKey);
  return buildUsageReport(rows, { period: opts.period, periodKey, by: opts.by });
}

function zero(): Omit<UsageReportRow, 'key'> {
  return {
    requests: 0,
    inputTokens: 0,
    outputTokens: 0,
    cachedInputTokens: 0,
    totalTokens: 0,
    costMicros: 0,
    cachedRequests: 0,
    savedTokens: 0,
    savedMicros: 0,
  };
}

/** Pure: folds store rows by one dimension; rows sorted by cost, then tokens, then key. */
export function buildUsageReport(
  rows: readonly UsageRow[],
  opts: { period: UsagePeriod; periodKey: string; by: UsageBy },
): UsageReport {
  const groups = new Map<string, UsageReportRow>();
  const total = zero();
  for (const r of rows) {
    // A row of refusals only (usage-html's top refusals) served nothing: not a usage row.
    if ((Object.keys(total) as (keyof typeof total)[]).every((m) => r.values[m] === 0)) continue;
    // Rows written before sessions existed, and requests outside one, have no session.
    const key = r.dims[opts.by] ?? '';
    let g = groups.get(key);
    if (!g) {
      g = { key, ...zero() };
      groups.set(key, g);
    }
    for (const m of Object.keys(total) as (keyof typeof total)[]) {
      g[m] += r.values[m];
      total[m] += r.values[m];
    }
  }
  const sorted = [...groups.values()].sort(
    (a, b) =>
      b.costMicros - a.costMicros ||
      b.totalTokens - a.totalTokens ||
      (a.key < b.key ? -1 : a.key > b.key ? 1 : 0),
  );
  return { period: opts.period, periodKey: opts.periodKey, by: opts.by, rows: sorted, total };
}

/** Dollars with cents always shown and sub-cent digits only when they exist (up to 6). */
export function formatUsd(micros: number): string {
  const whole = Math.floor(micros / MICROS_PER_USD);
  const frac = String(micros % MICROS_PER_USD)
    .padStart(6, '0')
    .replace(/0{1,4}$/, '');
  return `$${whole.toLocaleString('en-US')}.${frac.padEnd(2, '0')}`;
}

export function formatUsageTable(report: UsageReport): string {
  const label = (k: string) => (k === '' ? '(none)' : k);
  const header = [
    report.by.toUpperCase(),
    'REQUESTS',
    'INPUT',
    'CACHED',
    'OUTPUT',
    'TOTAL',
    'COST',
    'CACHE HITS',
    'SAVED TOKENS',
    'SAVED',
  ];
  const line = (key: string, r: Omit<UsageReportRow, 'key'>) => [
    key,
    String(r.requests),
    String(r.inputTokens),
    String(r.cachedInputTokens),
    String(r.outputTokens),
    String(r.totalTokens),
    formatUsd(r.costMicros),
    String(r.cachedRequests),
    String(r.savedTokens),
    formatUsd(r.savedMicros),
  ];
  const body = report.rows.map((r) => line(label(r.key), r));
  const cells = [header, ...body, line('TOTAL', report.total)];
  const widths = header.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  const render = (c: string[]) =>
    c
      .map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  const title = `Usage for ${report.period} ${report.periodKey} (UTC), by ${report.by}`;
  if (report.rows.length === 0) return `${title}\nno usage recorded\n`;
  return `${title}\n${[header, ...body].map(render).join('\n')}\n${render(cells[cells.length - 1]!)}\n`;
}

/** The --json shape: money as decimal USD strings so no float rounding reaches a reader. */
export function usageReportJson(report: UsageReport): unknown {
  const row = (r: Omit<UsageReportRow, 'key'>) => ({
    requests: r.requests,
    inputTokens: r.inputTokens,
    cachedInputTokens: r.cachedInputTokens,
    outputTokens: r.outputTokens,
    totalTokens: r.totalTokens,
    costUsd: (r.costMicros / MICROS_PER_USD).toFixed(6),
    cachedRequests: r.cachedRequests,
    savedTokens: r.savedTokens,
    savedUsd: (r.savedMicros / MICROS_PER_USD).toFixed(6),
  });
  return {
    period: report.period,
    periodKey: report.periodKey,
    by: report.by,
    rows: report.rows.map((r) => ({ [report.by]: r.key === '' ? null : r.key, ...row(r) })),
    total: row(report.total),
  };
}
