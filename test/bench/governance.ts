/**
 * What governance adds to a request (issue "Governance", target ≤ 0.2 ms p50 with Redis on
 * loopback): identity (a virtual key hashed and looked up), access rules, the token estimate, and
 * an atomic reservation across every bucket of the policy; then, after the response, the
 * reconcile. Measured through the router phase's own functions (`admit`, `finishGovernance`), on
 * the memory store and on a real redis-server, one request at a time so the figure is the added
 * latency rather than a queue. `npm run bench` includes it; alone:
 *
 *   npx tsx test/bench/governance.ts
 *
 * Environment: BENCH_GOVERNANCE_N requests per store (default 5,000).
 */
import { createHash } from 'node:crypto';
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
import { pinSelf } from './proc.js';
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
}

async function measure(store: StateStore, cfg: RuntimeConfig): Promise<Samples[]> {
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
  const admitted = new Samples();
  const settled = new Samples();
  const one = async (record: boolean): Promise<void> => {
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
    if (record) {
      admitted.add(t1 - t0);
      settled.add(t2 - t1);
    }
  };
  for (let i = 0; i < Math.min(1000, N); i++) await one(false);
  for (let i = 0; i < N; i++) await one(true);
  return [admitted, settled];
}

function row(store: string, [admitted, settled]: Samples[], gated: boolean): GovernanceRow {
  const [p50, p99] = admitted!.percentiles([50, 99]);
  const [reconcileP50] = settled!.percentiles([50]);
  return {
    store,
    p50: p50!,
    p99: p99!,
    reconcileP50: reconcileP50!,
    status: gated ? (p50! <= TARGET_P50_MS ? 'PASS' : 'FAIL') : 'info',
  };
}

export async function runGovernanceBench(): Promise<GovernanceRow[]> {
  const cfg = config();
  const rows: GovernanceRow[] = [];
  const memory = new MemoryStore();
  rows.push(row('memory', await measure(memory, cfg), false));
  let redis: Awaited<ReturnType<typeof startRedis>> | undefined;
  try {
    redis = await startRedis();
  } catch (err) {
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
  const store = new RedisStore({ url: redis.url });
  try {
    await store.ready();
    rows.push(row('redis (loopback)', await measure(store, cfg), true));
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
  process.stdout.write(
    `(one request at a time, ${N} per store, 500 consumers, 5 buckets${pinned ? ', pinned to core 0' : ''}; reconcile runs after the response and adds no latency)\n`,
  );
  process.exitCode = rows.some((r) => r.status === 'FAIL') ? 1 : 0;
}
