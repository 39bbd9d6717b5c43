/**
 * `sluice usage`: spend and tokens per consumer, team, model or route for one UTC day or month,
 * read from the Redis state store the extprocs share. An extproc without Redis keeps usage in its
 * own memory, which no other process can read: there the Prometheus counters are the report.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import {
  buildUsageReport,
  formatUsageTable,
  usageReport,
  usageReportJson,
} from '../../extproc/governance/usage-report.js';
import { StateFlags } from '../../extproc/shared/flags.js';
import { RedisStore } from '../../extproc/state/redis.js';
import type { StateStore } from '../../extproc/state/store.js';
import { daysOfMonth, renderUsageHtml } from './html.js';

const USAGE = `Usage: sluice usage [--period day|month] [--by consumer|team|model|route|session] [--json]
                    [--at YYYY-MM-DD|YYYY-MM | --from YYYY-MM-DD --to YYYY-MM-DD]
                    [--redis-url URL] [--html FILE]

Prints requests, tokens and spend from the gateway's state store, for the current UTC day or
month unless --at names another, or for the days --from to --to (UTC, both included, at most
366). REQUESTS are answers from providers (a session's turns, with --by session); CACHE HITS are
answers from the response cache, with the tokens and spend they saved (SAVED TOKENS, SAVED).
Sessions are named by the keyed id the access log shows (never the session header itself).

Options:
  --period day|month   the window (default day)
  --by DIMENSION       consumer, team, model, route or session (default consumer)
  --at KEY             the day (YYYY-MM-DD) or month (YYYY-MM), UTC
  --from DAY --to DAY  a span of days instead (YYYY-MM-DD, UTC, both included)
  --json               one JSON document instead of a table
  --html FILE          write a self-contained HTML report of the month (of --at, else the
                       current one) instead: spend and tokens per day by team, consumer, model
  --redis-url URL      the extprocs' Redis (default: env SLUICE_REDIS_URL)
  -h, --help           this text

Exit status: 0 on success, 1 when the store cannot be read, 2 on a usage error.
`;

const Flags = z
  .object({
    period: z.enum(['day', 'month']).default('day'),
    by: z.enum(['consumer', 'team', 'model', 'route', 'session']).default('consumer'),
    at: z.string().optional(),
    from: z.string().optional(),
    to: z.string().optional(),
    json: z.boolean().default(false),
    html: z.string().min(1, '--html must name a file').optional(),
    // The same URL the extprocs take, checked the same way.
    'redis-url': StateFlags.shape['redis-url'],
  })
  .superRefine((f, ctx) => {
    if (f.html !== undefined && f.json) {
      ctx.addIssue({ code: 'custom', message: '--html and --json exclude each other' });
    }
    if ((f.from === undefined) !== (f.to === undefined)) {
      ctx.addIssue({ code: 'custom', message: '--from and --to go together' });
    }
    if (f.from !== undefined && f.to !== undefined) {
      if (f.at !== undefined || f.html !== undefined) {
        ctx.addIssue({ code: 'custom', message: '--from/--to exclude --at and --html' });
      }
      const span = daySpan(f.from, f.to);
      if (typeof span === 'string') ctx.addIssue({ code: 'custom', message: span });
    }
    if (f.at === undefined) return;
    // The HTML report covers a month: a month, or any day of it, names it.
    if (f.html !== undefined && /^\d{4}-\d{2}(-\d{2})?$/.test(f.at)) return;
    const pattern = f.period === 'day' ? /^\d{4}-\d{2}-\d{2}$/ : /^\d{4}-\d{2}$/;
    if (!pattern.test(f.at)) {
      ctx.addIssue({
        code: 'custom',
        message: `--at must be ${f.period === 'day' ? 'YYYY-MM-DD' : 'YYYY-MM'} with --period ${f.period}`,
      });
    }
  });

export interface UsageIo {
  out: (s: string) => void;
  err: (s: string) => void;
  env: NodeJS.ProcessEnv;
  /** Opens the store at the URL; tests pass their own. */
  open?: (url: string) => Promise<StateStore>;
  now?: () => number;
}

async function openRedis(url: string): Promise<StateStore> {
  const store = new RedisStore({ url });
  try {
    await store.ready();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

export async function main(argv: string[], io?: UsageIo): Promise<number> {
  const { out, err, env } = io ?? {
    out: (s: string) => void process.stdout.write(s),
    err: (s: string) => void process.stderr.write(s),
    env: process.env,
  };
  let raw;
  try {
    raw = parseArgs({
      args: argv,
      options: {
        period: { type: 'string' },
        by: { type: 'string' },
        at: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        json: { type: 'boolean' },
        html: { type: 'string' },
        'redis-url': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    err(`sluice usage: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (raw.help) {
    out(USAGE);
    return 0;
  }
  const parsed = Flags.safeParse(raw);
  if (!parsed.success) {
    err(`sluice usage: ${parsed.error.issues.map((i) => i.message).join('; ')}\n\n${USAGE}`);
    return 2;
  }
  const f = parsed.data;
  const url = f['redis-url'] ?? env['SLUICE_REDIS_URL'];
  if (!url) {
    err(
      'sluice usage: no state store to read: give --redis-url or set SLUICE_REDIS_URL ' +
        '(an extproc without Redis keeps usage in its own memory; see its /metrics)\n',
    );
    return 2;
  }
  let store: StateStore;
  try {
    store = await (io?.open ?? openRedis)(url);
  } catch {
    // The URL may carry a password: never echo it.
    err('sluice usage: the state store cannot be reached\n');
    return 1;
  }
  try {
    if (f.html !== undefined) {
      const now = (io?.now ?? Date.now)();
      const month = f.at?.slice(0, 7) ?? new Date(now).toISOString().slice(0, 7);
      const days = [];
      for (const day of daysOfMonth(month, now))
        days.push({ day, rows: await store.usage('day', day) });
      try {
        await writeFile(f.html, renderUsageHtml({ month, days, generatedAtMs: now }), 'utf8');
      } catch (e) {
        err(
          `sluice usage: cannot write ${f.html}: ${(e as NodeJS.ErrnoException).code ?? 'error'}\n`,
        );
        return 1;
      }
      out(`wrote ${f.html}: usage of ${month} (UTC), ${days.length} days\n`);
      return 0;
    }
    if (f.from !== undefined && f.to !== undefined) {
      const days = daySpan(f.from, f.to) as string[];
      const rows = [];
      for (const day of days) rows.push(...(await store.usage('day', day)));
      const report = buildUsageReport(rows, {
        period: 'day',
        periodKey: `${f.from}..${f.to}`,
        by: f.by,
      });
      out(
        f.json ? `${JSON.stringify(usageReportJson(report), null, 2)}\n` : formatUsageTable(report),
      );
      return 0;
    }
    const report = await usageReport(store, {
      period: f.period,
      by: f.by,
      ...(f.at !== undefined ? { periodKey: f.at } : { atMs: (io?.now ?? Date.now)() }),
    });
    out(
      f.json ? `${JSON.stringify(usageReportJson(report), null, 2)}\n` : formatUsageTable(report),
    );
    return 0;
  } catch {
    err('sluice usage: the state store could not be read\n');
    return 1;
  } finally {
    await store.close();
  }
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;
const MAX_SPAN_DAYS = 366;

/** The days from `from` to `to` (UTC, both included), or why they are not a span. */
export function daySpan(from: string, to: string): string[] | string {
  const start = DAY.test(from) ? Date.parse(`${from}T00:00:00Z`) : NaN;
  const end = DAY.test(to) ? Date.parse(`${to}T00:00:00Z`) : NaN;
  if (Number.isNaN(start) || Number.isNaN(end)) return '--from and --to must be days, YYYY-MM-DD';
  if (new Date(start).toISOString().slice(0, 10) !== from) return `--from ${from} is not a day`;
  if (new Date(end).toISOString().slice(0, 10) !== to) return `--to ${to} is not a day`;
  if (end < start) return '--to is before --from';
  const n = (end - start) / 86_400_000 + 1;
  if (n > MAX_SPAN_DAYS) return `at most ${MAX_SPAN_DAYS} days at once`;
  const days: string[] = [];
  for (let t = start; t <= end; t += 86_400_000) days.push(new Date(t).toISOString().slice(0, 10));
  return days;
}
