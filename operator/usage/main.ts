/**
 * `sluice usage`: spend and tokens per consumer, team, model or route for one UTC day or month,
 * read from the Redis state store the extprocs share. An extproc without Redis keeps usage in its
 * own memory, which no other process can read: there the Prometheus counters are the report.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import {
  formatUsageTable,
  usageReport,
  usageReportJson,
} from '../../extproc/governance/usage-report.js';
import { StateFlags } from '../../extproc/shared/flags.js';
import { RedisStore } from '../../extproc/state/redis.js';
import type { StateStore } from '../../extproc/state/store.js';
import { daysOfMonth, renderUsageHtml } from './html.js';

const USAGE = `Usage: sluice usage [--period day|month] [--by consumer|team|model|route] [--json]
                    [--at YYYY-MM-DD|YYYY-MM] [--redis-url URL] [--html FILE]

Prints requests, tokens and spend from the gateway's state store, for the current UTC day or
month unless --at names another. REQUESTS are answers from providers; CACHE HITS are answers
from the response cache, with the tokens and spend they saved (SAVED TOKENS, SAVED).

Options:
  --period day|month   the window (default day)
  --by DIMENSION       consumer, team, model or route (default consumer)
  --at KEY             the day (YYYY-MM-DD) or month (YYYY-MM), UTC
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
    by: z.enum(['consumer', 'team', 'model', 'route']).default('consumer'),
    at: z.string().optional(),
    json: z.boolean().default(false),
    html: z.string().min(1, '--html must name a file').optional(),
    // The same URL the extprocs take, checked the same way.
    'redis-url': StateFlags.shape['redis-url'],
  })
  .superRefine((f, ctx) => {
    if (f.html !== undefined && f.json) {
      ctx.addIssue({ code: 'custom', message: '--html and --json exclude each other' });
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
