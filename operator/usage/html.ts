/**
 * `sluice usage --html FILE`: one month of usage from the state store as a self-contained HTML
 * page (inline CSS and SVG, no script, no external asset) for people without Grafana: spend and
 * tokens per day, stacked by team, consumer and model, with a table of each, and the requests
 * the gateway refused (by reason, and the top reason × consumer × model).
 *
 * Pure: the caller reads the store (one `usage('day', …)` per day, the rows `sluice usage` folds)
 * and hands the rows in. Every name on the page comes from config or callers (consumer, team,
 * model and route names), so every one is escaped.
 */
import {
  buildUsageReport,
  formatUsd,
  type UsageBy,
} from '../../extproc/governance/usage-report.js';
import { REFUSAL_METRICS, type UsageRow } from '../../extproc/state/store.js';

export interface DayUsage {
  /** YYYY-MM-DD, UTC. */
  day: string;
  rows: readonly UsageRow[];
}

export interface HtmlReportInput {
  /** YYYY-MM, UTC. */
  month: string;
  days: readonly DayUsage[];
  /** When the report was made (epoch ms), printed in its footer. */
  generatedAtMs: number;
}

/** Series drawn per chart; the rest are summed as "other". */
export const MAX_SERIES = 7;
/** Series colours, then grey for "other" (Okabe–Ito: told apart with colour-blindness). */
export const PALETTE = [
  '#0072B2',
  '#E69F00',
  '#009E73',
  '#CC79A7',
  '#56B4E9',
  '#D55E00',
  '#F0E442',
] as const;
export const OTHER_COLOUR = '#999999';

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const label = (k: string) => (k === '' ? '(none)' : k);

interface Series {
  key: string;
  colour: string;
  /** Per day, in the order of input.days. */
  values: number[];
}

/** The top series by total (ties by key), the rest summed as "other". */
function series(
  days: readonly DayUsage[],
  by: UsageBy,
  metric: 'costMicros' | 'totalTokens',
): Series[] {
  const perKey = new Map<string, number[]>();
  days.forEach((d, i) => {
    for (const r of d.rows) {
      const k = r.dims[by] ?? '';
      let v = perKey.get(k);
      if (!v) {
        v = new Array<number>(days.length).fill(0);
        perKey.set(k, v);
      }
      v[i]! += r.values[metric];
    }
  });
  const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
  const ranked = [...perKey.entries()]
    .filter(([, v]) => sum(v) > 0)
    .sort((a, b) => sum(b[1]) - sum(a[1]) || (a[0] < b[0] ? -1 : 1));
  const out: Series[] = ranked.slice(0, MAX_SERIES).map(([key, values], i) => ({
    key: label(key),
    colour: PALETTE[i]!,
    values,
  }));
  const rest = ranked.slice(MAX_SERIES);
  if (rest.length > 0) {
    const values = new Array<number>(days.length).fill(0);
    for (const [, v] of rest) v.forEach((x, i) => (values[i]! += x));
    out.push({ key: `other (${rest.length})`, colour: OTHER_COLOUR, values });
  }
  return out;
}

/** A round upper bound for the axis: 1, 2 or 5 times a power of ten. */
function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function stackedBars(
  title: string,
  days: readonly DayUsage[],
  s: Series[],
  format: (v: number) => string,
): string {
  const W = 960;
  const H = 240;
  const left = 80;
  const bottom = 24;
  const top = 10;
  const plotH = H - top - bottom;
  const totals = days.map((_, i) => s.reduce((a, x) => a + x.values[i]!, 0));
  const max = niceMax(Math.max(0, ...totals));
  const slot = (W - left - 10) / Math.max(1, days.length);
  const bar = Math.max(2, slot * 0.7);
  const parts: string[] = [];
  for (const f of [0, 0.5, 1]) {
    const y = top + plotH * (1 - f);
    parts.push(
      `<line x1="${left}" x2="${W - 10}" y1="${y}" y2="${y}" class="grid"/>`,
      `<text x="${left - 6}" y="${y + 4}" class="axis" text-anchor="end">${escapeHtml(format(max * f))}</text>`,
    );
  }
  days.forEach((d, i) => {
    const x = left + slot * i + (slot - bar) / 2;
    let y = top + plotH;
    for (const x0 of s) {
      const v = x0.values[i]!;
      if (v <= 0) continue;
      const h = (v / max) * plotH;
      y -= h;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${bar.toFixed(1)}" height="${h.toFixed(1)}" fill="${x0.colour}"><title>${escapeHtml(`${d.day} ${x0.key}: ${format(v)}`)}</title></rect>`,
      );
    }
    parts.push(
      `<text x="${(x + bar / 2).toFixed(1)}" y="${H - 8}" class="axis" text-anchor="middle">${Number(d.day.slice(8))}</text>`,
    );
  });
  const legend = s
    .map(
      (x) =>
        `<li><span class="swatch" style="background:${x.colour}"></span>${escapeHtml(x.key)}</li>`,
    )
    .join('');
  const body =
    s.length === 0
      ? '<p class="empty">nothing recorded</p>'
      : `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeHtml(title)}">${parts.join('')}</svg><ul class="legend">${legend}</ul>`;
  return `<figure><figcaption>${escapeHtml(title)}</figcaption>${body}</figure>`;
}

function table(days: readonly DayUsage[], month: string, by: UsageBy): string {
  const report = buildUsageReport(
    days.flatMap((d) => d.rows),
    { period: 'month', periodKey: month, by },
  );
  if (report.rows.length === 0) return '';
  const num = (n: number) => n.toLocaleString('en-US');
  const row = (k: string, r: (typeof report)['total'], cls = '') =>
    `<tr${cls}><th scope="row">${escapeHtml(k)}</th><td>${num(r.requests)}</td><td>${num(r.inputTokens)}</td><td>${num(r.cachedInputTokens)}</td><td>${num(r.outputTokens)}</td><td>${num(r.totalTokens)}</td><td>${formatUsd(r.costMicros)}</td><td>${num(r.cachedRequests)}</td><td>${formatUsd(r.savedMicros)}</td></tr>`;
  return `<table><thead><tr><th scope="col">${by}</th><th scope="col">requests</th><th scope="col">input</th><th scope="col">cached</th><th scope="col">output</th><th scope="col">tokens</th><th scope="col">spend</th><th scope="col">cache hits</th><th scope="col">saved</th></tr></thead><tbody>${report.rows
    .map((r) => row(label(r.key), r))
    .join('')}${row('total', report.total, ' class="total"')}</tbody></table>`;
}

/** Rows of the top-refusals table; the rest are counted in a note. */
export const MAX_REFUSAL_ROWS = 15;

/**
 * Requests the gateway refused this month (governance: identity, access, rate limits, budgets;
 * policies: masking and the prompt guard), by reason, then the top (reason, consumer, model).
 */
function refusals(days: readonly DayUsage[]): string {
  const byReason = new Map<string, number>();
  const top = new Map<string, { reason: string; consumer: string; model: string; n: number }>();
  for (const d of days) {
    for (const r of d.rows) {
      for (const [reason, metric] of REFUSAL_METRICS) {
        const n = r.values[metric];
        if (!n) continue;
        byReason.set(reason, (byReason.get(reason) ?? 0) + n);
        const k = [reason, r.dims.consumer, r.dims.model].join('\x1f');
        const e = top.get(k);
        if (e) e.n += n;
        else top.set(k, { reason, consumer: r.dims.consumer, model: r.dims.model, n });
      }
    }
  }
  if (byReason.size === 0) {
    return '<p class="empty">No refused requests recorded this month.</p>';
  }
  const num = (n: number) => n.toLocaleString('en-US');
  const reasons = [...byReason.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const ranked = [...top.values()].sort(
    (a, b) =>
      b.n - a.n || (a.reason + a.consumer + a.model < b.reason + b.consumer + b.model ? -1 : 1),
  );
  const shown = ranked.slice(0, MAX_REFUSAL_ROWS);
  const more =
    ranked.length > shown.length
      ? `<p class="note">${ranked.length - shown.length} more (reason, consumer, model) combinations, ${num(ranked.slice(MAX_REFUSAL_ROWS).reduce((a, e) => a + e.n, 0))} refusals.</p>`
      : '';
  return `<table class="refusals"><thead><tr><th scope="col">reason</th><th scope="col">refused</th></tr></thead><tbody>${reasons
    .map(([k, n]) => `<tr><th scope="row">${escapeHtml(k)}</th><td>${num(n)}</td></tr>`)
    .join('')}</tbody></table>
<table class="refusals"><thead><tr><th scope="col">reason</th><th scope="col">consumer</th><th scope="col">model</th><th scope="col">refused</th></tr></thead><tbody>${shown
    .map(
      (e) =>
        `<tr><th scope="row">${escapeHtml(e.reason)}</th><td class="name">${escapeHtml(label(e.consumer))}</td><td class="name">${escapeHtml(label(e.model))}</td><td>${num(e.n)}</td></tr>`,
    )
    .join('')}</tbody></table>${more}`;
}

const CSS = `
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:24px auto;max-width:1000px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.kpis{display:flex;gap:16px;margin:16px 0}.kpi{border:1px solid #ddd;border-radius:6px;padding:8px 14px}
.kpi b{display:block;font-size:20px}figure{margin:8px 0 12px}figcaption{font-weight:600;margin-bottom:4px}
svg .grid{stroke:#e5e5e5}svg .axis{font-size:11px;fill:#666}
.legend{list-style:none;padding:0;margin:4px 0 0;display:flex;flex-wrap:wrap;gap:4px 14px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:5px;border-radius:2px}
table{border-collapse:collapse;width:100%;margin-top:8px}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th[scope=row],thead th:first-child,td.name{text-align:left;word-break:break-all}tr.total{font-weight:600}.empty,.note{color:#666}
footer{margin-top:28px;color:#888;font-size:12px}`;

/** The whole page. */
export function renderUsageHtml(input: HtmlReportInput): string {
  const total = buildUsageReport(
    input.days.flatMap((d) => d.rows),
    { period: 'month', periodKey: input.month, by: 'team' },
  ).total;
  const money = (micros: number) => formatUsd(Math.round(micros));
  const tokens = (n: number) =>
    n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);
  const sections = (['team', 'consumer', 'model'] as const).map(
    (by) =>
      `<h2>By ${by}</h2>${stackedBars(`Spend per day by ${by}`, input.days, series(input.days, by, 'costMicros'), money)}${stackedBars(`Tokens per day by ${by}`, input.days, series(input.days, by, 'totalTokens'), tokens)}${table(input.days, input.month, by)}`,
  );
  const kpi = (name: string, v: string) => `<div class="kpi">${escapeHtml(name)}<b>${v}</b></div>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sluice usage ${escapeHtml(input.month)}</title>
<style>${CSS}</style></head>
<body>
<h1>Sluice usage, ${escapeHtml(input.month)} (UTC)</h1>
<p class="note">Requests, tokens and spend at the governance policies' prices, per day, from the gateway's state store. Requests count provider answers; cache hits are answered from the response cache, and saved is what they did not buy.</p>
<div class="kpis">${kpi('spend', formatUsd(total.costMicros))}${kpi('tokens', total.totalTokens.toLocaleString('en-US'))}${kpi('requests', total.requests.toLocaleString('en-US'))}${kpi('cache hits', total.cachedRequests.toLocaleString('en-US'))}${kpi('saved by the cache', formatUsd(total.savedMicros))}</div>
${sections.join('\n')}
<h2>Top refusals</h2>
${refusals(input.days)}
<footer>Generated ${new Date(input.generatedAtMs).toISOString()} by sluice usage --html.</footer>
</body></html>
`;
}

/** The UTC days of `month` (YYYY-MM) up to and including `lastDay` when it falls in it. */
export function daysOfMonth(month: string, nowMs: number): string[] {
  const [y, m] = month.split('-').map(Number) as [number, number];
  const count = new Date(Date.UTC(y, m, 0)).getUTCDate();
  const today = new Date(nowMs).toISOString().slice(0, 10);
  const out: string[] = [];
  for (let d = 1; d <= count; d++) {
    const key = `${month}-${String(d).padStart(2, '0')}`;
    if (key > today) break;
    out.push(key);
  }
  return out;
}
