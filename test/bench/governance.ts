/**
 * What governance adds to a request (issue "Governance", target ≤ 0.2 ms p50 with Redis on
 * loopback): identity (a virtual key hashed and looked up), access rules, the token estimate, and
 * an atomic reservation across every bucket of the policy; then, after the response, the
 * reconcile. Measured through the router phase's own functions (`admit`, `finishGovernance`), on
 * the memory store and on a real redis-server, one request at a time so the figure is the added
 * latency rather than a queue, in rounds that alternate between the stores so load from
 * elsewhere falls on both alike. Beside it: Redis's own round trip (PING) on the same connection,
 * the CPU a request costs in this process and in redis-server, and the commands Redis runs for
 * it, which say where the figure goes when the machine is busy. `npm run bench` includes it; alone:
 *
 *   npx tsx test/bench/governance.ts
 *
 * Environment: BENCH_GOVERNANCE_N requests per store (default 5,000).
 */
import { createHash } from 'node:crypto';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { ExtprocConfig } from '../../extproc/config/contract.js';
import { RuntimeConfig } from '../../extproc/config/runtime.js';
import { Budget } from '../../extproc/governance/budget.js';
import { admit, finishGovernance } from '../../extproc/pipeline/governance.js';
import { MemoryStore } from '../../extproc/state/memory.js';
import { RedisStore } from '../../extproc/state/redis.js';
import type { StateStore } from '../../extproc/state/store.js';
import { startRedis } from '../redis/server.js';
import { chatRequestBody } from './payloads.js';
import { cpuMs, pinSelf } from './proc.js';
import { fmtMs, Samples, table } from './stats.js';

const N = Number(process.env.BENCH_GOVERNANCE_N ?? 5000) || 5000;
const TARGET_P50_MS = 0.2;
const KEY = 'sk-sluice-bench-governance-0123456789abcdefghijklmn';

/** A policy shaped like a real one: key identity, two access rules, three limits (5 buckets). */
function config(): RuntimeConfig {
  const consumers = Array.from({ length: 500 }, (_, i) => ({
    name: `app-${i}`,
    team: `team-${i % 20}`,
    keyHashes: [
      createHash('sha256')
        .update(i === 250 ? KEY : `sk-other-${i}`)
        .digest('hex'),
    ],
  }));
  return new RuntimeConfig(
    ExtprocConfig.parse({
      apiVersion: 'sluice.dev/extproc/v1',
      kind: 'ExtprocConfig',
      backends: [{ name: 'openai', cluster: 'c-openai', provider: 'openai' }],
      routes: [
        {
          name: 'gpt',
          models: [{ prefix: 'gpt-' }],
          backends: [{ name: 'openai' }],
          governance: 'bench',
        },
      ],
      consumers,
      policies: [
        {
          name: 'bench',
          identity: { keys: {} },
          access: {
            default: 'allow',
            rules: [
              { name: 'no-interns', effect: 'deny', teams: ['interns'] },
              { name: 'mini-only', effect: 'allow', models: ['gpt-4o-mini*'] },
            ],
          },
          limits: {
            rules: [
              { name: 'per-app', per: ['consumer'], requestsPerMinute: 1e9, tokensPerMinute: 1e12 },
              { name: 'per-team', per: ['team', 'model'], spendPerDayUsd: 1e8, concurrent: 1e6 },
              { name: 'all', spendPerMonthUsd: 1e8 },
            ],
          },
          pricing: { models: { 'gpt-4o-mini': { inputPerMTok: 0.15, outputPerMTok: 0.6 } } },
        },
      ],
    }),
    new Map(),
  );
}

export interface GovernanceRow {
  store: string;
  p50: number;
  p99: number;
  reconcileP50: number;
  status: 'PASS' | 'FAIL' | 'info' | 'skipped';
  note?: string;
  /** Printed under the table: what the figure stands on (floor, CPU, commands). */
  detail?: string;
}

/** One store's samples: admission (identity + access + estimate + reserve) and reconcile. */
interface Measured {
  admitted: Samples;
  settled: Samples;
}

/**
 * A round of `n` requests against one store, one at a time: admit, then (as when the response
 * ends) reconcile, awaited before the next request so the figure is the added latency rather
 * than a queue. The reconcile is timed on its own: it runs after the answer.
 */
async function round(
  store: StateStore,
  cfg: RuntimeConfig,
  n: number,
  into: Measured | undefined,
): Promise<void> {
  const budget = new Budget({ store });
  const compiled = cfg.governanceFor('gpt');
  if (!compiled) throw new Error('bench config lost its governance policy');
  const body = JSON.parse(chatRequestBody(2048).toString('utf8')) as Record<string, unknown>;
  body.model = 'gpt-4o-mini';
  const headers = new Map([['authorization', `Bearer ${KEY}`]]);
  const usage = {
    inputTokens: 500,
    outputTokens: 120,
    totalTokens: 620,
    cachedInputTokens: 0,
    cacheCreationInputTokens: 0,
    reasoningTokens: 0,
    estimated: false,
  };
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const g = await admit({
      compiled,
      consumers: cfg.consumers,
      headers,
      operation: 'chat',
      body,
      model: 'gpt-4o-mini',
      route: 'gpt',
      budget,
      wallNow: Date.now(),
    });
    const t1 = performance.now();
    if (!g.state.reservation) throw new Error('the bench request was not reserved');
    g.state.ledger.begin();
    await finishGovernance(g.state, { responded: true, usage, model: 'gpt-4o-mini' }, budget);
    const t2 = performance.now();
    if (into) {
      into.admitted.add(t1 - t0);
      into.settled.add(t2 - t1);
    }
  }
}

/** Redis's own round trip on the store's connection (PING): the floor under the Redis figure. */
async function pingFloor(store: RedisStore, n: number): Promise<number> {
  const s = new Samples();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await store.client.ping();
    s.add(performance.now() - t0);
  }
  return s.percentiles([50])[0]!;
}

/** Commands Redis ran inside the scripts per request (reserve + settle), from INFO commandstats. */
async function innerCalls(store: RedisStore): Promise<number> {
  const info = await store.client.info('commandstats');
  let inner = 0;
  let scripts = 0;
  for (const m of info.matchAll(/^cmdstat_([\w|]+):calls=(\d+)/gm)) {
    if (m[1] === 'evalsha' || m[1] === 'eval') scripts += Number(m[2]);
    else if (!m[1]!.startsWith('config') && m[1] !== 'ping') inner += Number(m[2]);
  }
  return scripts > 0 ? inner / (scripts / 2) : Number.NaN;
}

function row(store: string, m: Measured, gated: boolean, detail?: string): GovernanceRow {
  const [p50, p99] = m.admitted.percentiles([50, 99]);
  const [reconcileP50] = m.settled.percentiles([50]);
  return {
    store,
    p50: p50!,
    p99: p99!,
    reconcileP50: reconcileP50!,
    status: gated ? (p50! <= TARGET_P50_MS ? 'PASS' : 'FAIL') : 'info',
    ...(detail ? { detail } : {}),
  };
}

/** Rounds per store, interleaved (memory, Redis, memory, …): a burst of load hits both alike. */
const ROUNDS = 5;

export async function runGovernanceBench(): Promise<GovernanceRow[]> {
  const cfg = config();
  const rows: GovernanceRow[] = [];
  const memory = new MemoryStore();
  const mem: Measured = { admitted: new Samples(), settled: new Samples() };
  let redis: Awaited<ReturnType<typeof startRedis>> | undefined;
  try {
    redis = await startRedis();
  } catch (err) {
    await round(memory, cfg, Math.min(1000, N), undefined);
    await round(memory, cfg, N, mem);
    rows.push(row('memory', mem, false));
    rows.push({
      store: 'redis (loopback)',
      p50: Number.NaN,
      p99: Number.NaN,
      reconcileP50: Number.NaN,
      status: 'skipped',
      note: `no redis-server: ${(err as Error).message.split('\n')[0]}`,
    });
    return rows;
  }
  // redis-server inherits this process's CPU pin (pinSelf before it starts): one request at a
  // time, the two never run at once, and a round trip is a switch on one core rather than a
  // cross-core wake-up, which on a VM costs more than the whole target.
  const store = new RedisStore({ url: redis.url });
  const red: Measured = { admitted: new Samples(), settled: new Samples() };
  try {
    await store.ready();
    await round(memory, cfg, Math.min(1000, N), undefined);
    await round(store, cfg, Math.min(1000, N), undefined);
    const floor = await pingFloor(store, Math.min(2000, N));
    await store.client.config('RESETSTAT');
    const per = Math.ceil(N / ROUNDS);
    const redisPid = Number(/process_id:(\d+)/.exec(await store.client.info('server'))?.[1]);
    let nodeCpu = 0;
    let redisCpu = 0;
    for (let r = 0; r < ROUNDS; r++) {
      await round(memory, cfg, per, mem);
      const c0 = process.cpuUsage();
      const r0 = cpuMs(redisPid);
      await round(store, cfg, per, red);
      const c1 = process.cpuUsage(c0);
      nodeCpu += (c1.user + c1.system) / 1000;
      redisCpu += cpuMs(redisPid) - r0;
    }
    const calls = await innerCalls(store);
    const count = per * ROUNDS;
    rows.push(row('memory', mem, false));
    rows.push(
      row(
        'redis (loopback)',
        red,
        true,
        `redis: PING round trip ${fmtMs(floor)} ms p50 on the same connection; CPU per ` +
          `request and its reconcile: node ${fmtMs(nodeCpu / count)} ms + redis-server ` +
          `${fmtMs(redisCpu / count)} ms; ${calls.toFixed(1)} Redis commands (one script each)`,
      ),
    );
  } finally {
    await store.close();
    await redis.stop();
  }
  return rows;
}

export function governanceTable(rows: readonly GovernanceRow[]): string {
  return table(
    [
      'governance (identity + access + reserve)',
      'p50 ms',
      'p99 ms',
      'reconcile p50',
      'target',
      'result',
    ],
    rows.map((r) => [
      r.store + (r.note ? ` (${r.note})` : ''),
      fmtMs(r.p50),
      fmtMs(r.p99),
      fmtMs(r.reconcileP50),
      r.status === 'info' ? '-' : `p50 ≤ ${TARGET_P50_MS}`,
      r.status,
    ]),
    'lrrrll',
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const pinned = pinSelf(0);
  const rows = await runGovernanceBench();
  process.stdout.write(`${governanceTable(rows)}\n`);
  for (const r of rows) if (r.detail) process.stdout.write(`${r.detail}\n`);
  process.stdout.write(
    `(one request at a time, ${N} per store in ${ROUNDS} interleaved rounds, 500 consumers, 5 buckets${pinned ? ', pinned to core 0 with redis-server' : ''}, load average ${loadavg()[0]!.toFixed(1)}; reconcile runs after the response and adds no latency)\n`,
  );
  process.exitCode = rows.some((r) => r.status === 'FAIL') ? 1 : 0;
}
