/**
 * A small measurement, not a test: the cost of one reserve + reconcile through Budget on each
 * store, for a policy with three limits (5 buckets). Usage: npx tsx test/redis/measure.ts [n]
 */
import { Budget, type BudgetPolicy } from '../../extproc/governance/budget.js';
import { LimitsPolicy } from '../../extproc/governance/schema.js';
import { MemoryStore } from '../../extproc/state/memory.js';
import { RedisStore } from '../../extproc/state/redis.js';
import type { StateStore } from '../../extproc/state/store.js';
import { startRedis } from './server.js';

const n = Number(process.argv[2] ?? 5000);
const policy: BudgetPolicy = {
  name: 'measure',
  mode: 'enforce',
  failureMode: 'closed',
  limits: LimitsPolicy.parse({
    rules: [
      { name: 'consumer', per: ['consumer'], requestsPerMinute: 1e9, tokensPerMinute: 1e12 },
      { name: 'team', per: ['team', 'model'], spendPerDayUsd: 1e8, concurrent: 1e6 },
      { name: 'all', per: [], spendPerMonthUsd: 1e8 },
    ],
  }),
};
const keys = { consumer: 'alice', team: 'red', model: 'gpt-4o', route: 'openai' };

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function measure(label: string, store: StateStore): Promise<void> {
  const b = new Budget({ store });
  for (let i = 0; i < 500; i++) {
    const r = await b.reserve(policy, keys, { tokens: 1000, costUsd: 0.01 });
    if (r.ok && r.reservation) await b.reconcile(r.reservation, { tokens: 900, costUsd: 0.009 });
  }
  const each: number[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const s = process.hrtime.bigint();
    const r = await b.reserve(policy, keys, { tokens: 1000, costUsd: 0.01 });
    if (!r.ok || !r.reservation) throw new Error('refused');
    await b.reconcile(r.reservation, { tokens: 900, costUsd: 0.009 });
    each.push(Number(process.hrtime.bigint() - s) / 1000);
  }
  const total = Number(process.hrtime.bigint() - t0) / 1e6;
  each.sort((a, c) => a - c);
  // 64 in flight: what one process sustains when requests overlap (Redis pipelines them).
  const t1 = process.hrtime.bigint();
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next++ < n) {
        const r = await b.reserve(policy, keys, { tokens: 1000, costUsd: 0.01 });
        if (r.ok && r.reservation)
          await b.reconcile(r.reservation, { tokens: 900, costUsd: 0.009 });
      }
    }),
  );
  const par = Number(process.hrtime.bigint() - t1) / 1e9;
  console.log(
    `${label}: sequential reserve+reconcile p50 ${pct(each, 0.5).toFixed(1)} µs, ` +
      `p99 ${pct(each, 0.99).toFixed(1)} µs, mean ${((total * 1000) / n).toFixed(1)} µs; ` +
      `64 in flight: ${Math.round(n / par)} pairs/s`,
  );
}

await measure('memory', new MemoryStore());
const redis = await startRedis();
const store = new RedisStore({ url: redis.url });
try {
  await store.ready();
  await measure('redis (loopback)', store);
} finally {
  await store.close();
  await redis.stop();
}
