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

describe('sluice usage --by session, over a span of days', () => {
  async function sessions(): Promise<MemoryStore> {
    const store = new MemoryStore();
    const day = (periodKey: string, session: string, requests: number, totalTokens: number) => ({
      period: 'day' as const,
      periodKey,
      dims: { consumer: 'alice', team: '', model: 'm', route: 'chat', session },
      values: { ...emptyUsage(), requests, totalTokens },
      expireAtMs: Number.MAX_SAFE_INTEGER,
    });
    await store.settle({
      scope: 'gov',
      id: 'r1',
      nowMs: 0,
      markerTtlMs: 120_000,
      buckets: [],
      usage: [
        day('2026-03-30', 'aaaa', 2, 100),
        day('2026-03-31', 'aaaa', 3, 300),
        day('2026-03-31', 'bbbb', 1, 50),
        day('2026-03-31', '', 4, 40),
        day('2026-04-02', 'cccc', 9, 900),
      ],
    });
    return store;
  }
  const run = async (argv: string[]) => {
    let out = '';
    let err = '';
    const store = await sessions();
    const code = await main(['--redis-url', 'redis://x:1', ...argv], {
      out: (s) => (out += s),
      err: (s) => (err += s),
      env: {},
      open: () => Promise.resolve(store),
      now: () => Date.parse('2026-03-31T12:00:00Z'),
    });
    return { code, out, err };
  };

  it('sums each session over the days of --from..--to; requests without one are (none)', async () => {
    const r = await run([
      '--by',
      'session',
      '--from',
      '2026-03-30',
      '--to',
      '2026-04-01',
      '--json',
    ]);
    assert.equal(r.code, 0, r.err);
    const doc = JSON.parse(r.out) as {
      periodKey: string;
      rows: { session: string | null; requests: number; totalTokens: number }[];
    };
    assert.equal(doc.periodKey, '2026-03-30..2026-04-01');
    assert.deepEqual(
      doc.rows.map((x) => [x.session, x.requests, x.totalTokens]),
      [
        ['aaaa', 5, 400],
        ['bbbb', 1, 50],
        [null, 4, 40],
      ],
    );
  });

  it('one day by session, as a table', async () => {
    const r = await run(['--by', 'session']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /by session/);
    assert.match(r.out, /^aaaa\s+3\s/m);
    assert.match(r.out, /^\(none\)\s+4\s/m);
  });

  it('refuses a span that is not one: half given, reversed, too long, not days', async () => {
    for (const argv of [
      ['--from', '2026-03-30'],
      ['--from', '2026-03-31', '--to', '2026-03-30'],
      ['--from', '2025-01-01', '--to', '2026-03-30'],
      ['--from', '2026-02-30', '--to', '2026-03-01'],
      ['--from', '2026-03-01', '--to', '2026-03-02', '--at', '2026-03-01'],
    ]) {
      const r = await run(argv);
      assert.equal(r.code, 2, argv.join(' '));
    }
  });
});
