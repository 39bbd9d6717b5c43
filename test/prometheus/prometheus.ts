/**
 * A real Prometheus server for the prometheus tier (Debian's package; see setup.mjs): scrapes the
 * given targets every second, evaluates the given rule files every second, and answers queries
 * through its HTTP API. Also: what the tier needs to read PromQL (the metric names an expression
 * uses) and Grafana's dashboard variables.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

export const PROMETHEUS_BIN = process.env['SLUICE_PROMETHEUS'] ?? 'prometheus';
export const PROMTOOL_BIN = process.env['SLUICE_PROMTOOL'] ?? 'promtool';

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface Prometheus {
  url: string;
  /** An instant query (now, or at `time`, Unix seconds); rejects on an API error. */
  query(expr: string, time?: number): Promise<Sample[]>;
  /** Series matching a selector within the retention. */
  series(match: string): Promise<Record<string, string>[]>;
  /** Label values, as Grafana's label_values(metric, label) asks for them. */
  labelValues(label: string, match: string): Promise<string[]>;
  /** Metric families with HELP/TYPE from the last scrapes, samples or not. */
  metadata(): Promise<Record<string, { type: string; help: string }[]>>;
  rules(): Promise<PromRule[]>;
  alerts(): Promise<{ labels: Record<string, string>; state: string }[]>;
  /** Prometheus' own log (stderr), for failure messages. */
  log(): string;
  close(): Promise<void>;
}

export interface PromRule {
  name: string;
  query: string;
  health: string;
  lastError?: string;
  state?: string;
  type: string;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() =>
        addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port')),
      );
    });
  });
}

export async function startPrometheus(opts: {
  targets: Record<string, string>;
  ruleFiles: string[];
}): Promise<Prometheus> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-prometheus-'));
  const config = {
    // The tier waits for scrapes: a 1 s interval keeps that short without sleeping blindly.
    global: { scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' },
    rule_files: opts.ruleFiles,
    scrape_configs: Object.entries(opts.targets).map(([job, target]) => ({
      job_name: job,
      static_configs: [{ targets: [target] }],
    })),
  };
  const configFile = join(dir, 'prometheus.yml');
  await writeFile(configFile, stringify(config), 'utf8');
  const check = spawnSync(PROMTOOL_BIN, ['check', 'config', configFile], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`promtool check config: ${check.stdout}${check.stderr}`);

  let lastErr: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    let stderr = '';
    const child: ChildProcess = spawn(
      PROMETHEUS_BIN,
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(dir, `data-${attempt}`)}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitReady(url, child, () => stderr);
    } catch (err) {
      lastErr = err;
      child.kill('SIGKILL');
      await exited;
      continue;
    }
    const api = async <T>(path: string): Promise<T> => {
      const res = await fetch(`${url}${path}`);
      const body = (await res.json()) as { status: string; data: T; error?: string };
      if (body.status !== 'success') throw new Error(`Prometheus ${path}: ${body.error}`);
      return body.data;
    };
    return {
      url,
      async query(expr, time) {
        const at = time === undefined ? '' : `&time=${time}`;
        const data = await api<{ resultType: string; result: Sample[] | [number, string] }>(
          `/api/v1/query?query=${encodeURIComponent(expr)}${at}`,
        );
        if (data.resultType === 'scalar') {
          return [{ metric: {}, value: data.result as [number, string] }];
        }
        return data.result as Sample[];
      },
      series: (match) => api(`/api/v1/series?match[]=${encodeURIComponent(match)}`),
      labelValues: (label, match) =>
        api(
          `/api/v1/label/${encodeURIComponent(label)}/values?match[]=${encodeURIComponent(match)}`,
        ),
      metadata: () => api('/api/v1/metadata'),
      async rules() {
        const data = await api<{ groups: { rules: PromRule[] }[] }>('/api/v1/rules');
        return data.groups.flatMap((g) => g.rules);
      },
      async alerts() {
        return (
          await api<{ alerts: { labels: Record<string, string>; state: string }[] }>(
            '/api/v1/alerts',
          )
        ).alerts;
      },
      log: () => stderr,
      async close() {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw lastErr instanceof Error ? lastErr : new Error('prometheus did not start');
}

async function waitReady(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`prometheus exited: ${log()}`);
    const ok = await fetch(`${url}/-/ready`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`prometheus not ready after 20 s: ${log()}`);
}

/** Polls `fn` every 100 ms until it returns a value other than undefined. */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Label lists and matchers name labels, not metrics: removed before metric names are read.
const STRINGS = /"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g;
const MATCHERS = /\{[^{}]*\}/g;
const GROUPINGS = /\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)/g;
const RANGES = /\[[^\]]*\]/g;
const FUNCTION_OR_KEYWORD = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'count',
  'topk',
  'bottomk',
  'quantile',
  'stddev',
  'stdvar',
  'group',
  'rate',
  'irate',
  'increase',
  'delta',
  'histogram_quantile',
  'vector',
  'scalar',
  'absent',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'count_values',
  'clamp_min',
  'clamp_max',
  'time',
  'timestamp',
  'label_replace',
  'sort',
  'sort_desc',
  'abs',
  'round',
  'inf',
  'nan',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
]);

/** The metric names a PromQL expression selects (label names, functions and keywords left out). */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(STRINGS, '""')
    .replace(MATCHERS, ' ')
    .replace(GROUPINGS, ' ')
    .replace(RANGES, ' ');
  const out = new Set<string>();
  for (const m of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const id = m[0];
    if (FUNCTION_OR_KEYWORD.has(id.toLowerCase())) continue;
    // A number's exponent (1e3) or a duration's unit cannot start an identifier after a digit.
    const before = bare[m.index - 1];
    if (before !== undefined && /[0-9.]/.test(before)) continue;
    out.add(id);
  }
  return [...out];
}

/**
 * Grafana's variables in a panel query, replaced as Grafana would with "All" selected and the
 * rate interval given; an unknown variable throws, so a new one is not queried half-substituted.
 */
export function grafanaExpr(expr: string, rateInterval: string): string {
  return expr.replace(/\$\{?(\w+)\}?/g, (whole, name: string) => {
    if (name === '__rate_interval' || name === '__interval' || name === '__range') {
      return rateInterval;
    }
    if (name === 'route' || name === 'model' || name === 'consumer') return '.*';
    throw new Error(`unknown dashboard variable ${whole} in: ${expr}`);
  });
}

/**
 * A rule expression split into its signal and threshold: `<signal> <op> <number>`. The tier
 * evaluates the signal, so a rule that should not fire still proves its series exist.
 */
export function splitThreshold(expr: string): { signal: string; op: string; threshold: number } {
  const m = /^([\s\S]*?)\s*(>=|<=|==|!=|>|<)\s*(-?[0-9.]+(?:e[+-]?\d+)?)\s*$/.exec(expr.trim());
  if (!m) throw new Error(`not of the form "<signal> <comparison> <number>": ${expr}`);
  return { signal: m[1]!, op: m[2]!, threshold: Number(m[3]) };
}
