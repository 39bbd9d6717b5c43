import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore } from '../../extproc/state/memory.js';
import { emptyUsage } from '../../extproc/state/store.js';
import { main } from './main.js';

async function storeWithUsage(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await store.reserve({ scope: 'gov', id: 'r1', nowMs: 0, ttlMs: 60_000, buckets: [] });
  await store.settle({
    scope: 'gov',
    id: 'r1',
    nowMs: 0,
    markerTtlMs: 120_000,
    buckets: [],
    usage: [
      {
        period: 'day',
        periodKey: '2026-03-31',
        dims: { consumer: 'alice', team: 'red', model: 'gpt-4o', route: 'chat' },
        values: {
          ...emptyUsage(),
          requests: 2,
          totalTokens: 30,
          costMicros: 1_500_000,
          cachedRequests: 3,
          savedTokens: 45,
          savedMicros: 2_000,
        },
        expireAtMs: Number.MAX_SAFE_INTEGER,
      },
    ],
  });
  return store;
}

async function runUsage(argv: string[], env: NodeJS.ProcessEnv = {}) {
  let out = '';
  let err = '';
  const store = await storeWithUsage();
  const code = await main(argv, {
    out: (s) => (out += s),
    err: (s) => (err += s),
    env,
    open: () => Promise.resolve(store),
    now: () => Date.parse('2026-03-31T12:00:00Z'),
  });
  return { code, out, err };
}

describe('sluice usage', () => {
  it('prints a table for the current UTC day by consumer', async () => {
    const r = await runUsage(['--redis-url', 'redis://127.0.0.1:1']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /Usage for day 2026-03-31 \(UTC\), by consumer/);
    assert.match(r.out, /alice\s+2\s+.*\$1\.50\s+3\s+45\s+\$0\.002$/m);
  });

  it('prints JSON by team, the URL taken from the environment', async () => {
    const r = await runUsage(['--by', 'team', '--json'], { SLUICE_REDIS_URL: 'redis://x:1' });
    assert.equal(r.code, 0, r.err);
    const doc = JSON.parse(r.out) as { rows: { team: string; costUsd: string }[] };
    assert.deepEqual(doc.rows, [
      {
        team: 'red',
        requests: 2,
        inputTokens: 0,
        cachedInputTokens: 0,
        outputTokens: 0,
        totalTokens: 30,
        costUsd: '1.500000',
        cachedRequests: 3,
        savedTokens: 45,
        savedUsd: '0.002000',
      },
    ]);
  });

  it('refuses bad flags and a missing store with exit status 2', async () => {
    assert.equal((await runUsage(['--by', 'planet', '--redis-url', 'redis://x:1'])).code, 2);
    assert.equal((await runUsage(['--period', 'month', '--at', '2026-03-31'])).code, 2);
    const none = await runUsage([]);
    assert.equal(none.code, 2);
    assert.match(none.err, /SLUICE_REDIS_URL/);
  });
});
