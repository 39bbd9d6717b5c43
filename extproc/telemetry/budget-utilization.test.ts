import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { Budget, type Charge } from '../governance/budget.js';
import { LimitsPolicy } from '../governance/schema.js';
import { MemoryStore } from '../state/memory.js';
import { budgetUtilizationMetric } from './budget-utilization.js';

function charge(limitName: string, metric: Charge['metric'], limit: number, resetAtMs: number) {
  return { key: `k-${limitName}`, limitName, metric, limit, amount: 1, resetAtMs, expireAtMs: 0 };
}

async function values(registry: Registry): Promise<Record<string, number>> {
  const m = await registry.getSingleMetric('sluice_budget_utilization_ratio')!.get();
  return Object.fromEntries(
    m.values.map((v) => [
      `${v.labels['sluice_policy']}/${v.labels['limit']}/${v.labels['metric']}`,
      v.value,
    ]),
  );
}

describe('sluice_budget_utilization_ratio', () => {
  it('keeps the fullest bucket of a limit in its window, restarts with a new window, reads 0 once it ended', async () => {
    const registry = new Registry();
    let now = 1000;
    const observe = budgetUtilizationMetric(registry, () => now);
    const day = charge('daily', 'spendDay', 100, 5000);
    observe('p', [day, charge('conc', 'concurrent', 2, 0)], [85, 1]);
    observe('p', [day], [20]); // another consumer's emptier bucket does not hide the full one
    assert.deepEqual(await values(registry), { 'p/daily/spendDay': 0.85 });
    observe('p', [{ ...day, resetAtMs: 9000 }], [10]);
    assert.deepEqual(await values(registry), { 'p/daily/spendDay': 0.1 });
    now = 9000;
    assert.deepEqual(await values(registry), { 'p/daily/spendDay': 0 });
  });

  it('is fed by Budget.reserve through onLevels, refusals included', async () => {
    const registry = new Registry();
    const now = Date.UTC(2026, 0, 1, 12);
    const budget = new Budget({
      store: new MemoryStore(),
      clock: () => now,
      onLevels: budgetUtilizationMetric(registry, () => now),
    });
    const policy = {
      name: 'gov',
      mode: 'enforce' as const,
      failureMode: 'closed' as const,
      limits: LimitsPolicy.parse({
        rules: [{ name: 'tpm', per: ['consumer'], tokensPerMinute: 10 }],
      }),
    };
    const keys = { consumer: 'a', model: 'm', route: 'r' };
    const first = await budget.reserve(policy, keys, { tokens: 9, costUsd: 0 });
    assert.equal(first.ok, true);
    assert.deepEqual(await values(registry), { 'gov/tpm/tokens': 0.9 });
    const second = await budget.reserve(policy, keys, { tokens: 9, costUsd: 0 });
    assert.equal(second.ok, false);
    assert.deepEqual(await values(registry), { 'gov/tpm/tokens': 0.9 });
  });
});
