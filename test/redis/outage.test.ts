// Budgets through Redis stalls and outages, with a real redis-server and steady concurrent load
// through the whole extproc (driven as Envoy drives it):
//   - a stall (SIGSTOP) mid-burst: every request in it is refused 503, and when Redis resumes
//     (SIGCONT) and runs the reserves it had queued, they are released: the budget is intact;
//   - a stall under failureMode open: the late reserves are replaced by the settlements with the
//     same ids, so each request counts once;
//   - Redis stopped and restarted mid-traffic (with its data, as a production Redis keeps it),
//     under each failure mode: closed never overshoots and charges exactly what was served; open
//     charges what it served while Redis was away once Redis is back (usage and budgets converge,
//     nothing counted twice) and one replica does not overshoot;
//   - open mode on two replicas: the overshoot stays within the README's bound;
//   - settlements pipelined with the next reserves (as the router sends them, not waiting for
//     each other): the level a replica knows, which open mode holds limits against while Redis is
//     away, never falls below what Redis holds, however their answers interleave.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Budget, chargesFor, utcDay } from '../../extproc/governance/budget.js';
import { run } from '../../extproc/run.js';
import { RedisStore } from '../../extproc/state/redis.js';
import { KEYS, policy } from '../../extproc/state/testing/store-suite.js';
import { ExtProcClient } from '../../operator/envoy-sim/ext-proc/index.js';
import { chatHeaders, get, sendRequest, type Harness } from '../conformance/harness.js';
import { startRedis, type RedisHandle } from './server.js';

const KEY = 'sk-sluice-outage-0001';
const sha = createHash('sha256').update(KEY).digest('hex');

// $25 per million output tokens, input free: max_tokens 100 reserves $0.0025 (2,500 µ$), and an
// answer of 60 output tokens costs $0.0015 (1,500 µ$).
const ESTIMATE = 2_500;
const ACTUAL = 1_500;
const LIMIT = 150_000;

const CONFIG = `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: outage-1
backends:
  - name: openai
    cluster: sluice/backend/openai
    provider: openai
    credential: { value: sk-backend-openai-0001 }
consumers:
  - { name: rita, team: ops, keyHashes: ['${sha}'] }
policies:
${['stall', 'closed', 'open', 'wide', 'pair', 'lenient']
  .map(
    (name) => `  - name: ${name}
    failureMode: ${['open', 'wide', 'pair', 'lenient'].includes(name) ? 'open' : 'closed'}
    identity: { keys: {} }
    limits: { rules: [{ name: daily, per: [consumer], spendPerDayUsd: ${['wide', 'lenient'].includes(name) ? 1000 : LIMIT / 1e6} }] }
    pricing: { models: { '*': { inputPerMTok: 0, outputPerMTok: 25 } } }`,
  )
  .join('\n')}
routes:
${['stall', 'closed', 'open', 'wide', 'pair', 'lenient']
  .map(
    (name) => `  - name: ${name}
    models: [{ exact: gpt-${name} }]
    backends: [{ name: openai }]
    governance: ${name}`,
  )
  .join('\n')}
`;

const HEADERS = [
  ...chatHeaders().filter(([k]) => k !== 'authorization'),
  ['authorization', `Bearer ${KEY}`] as [string, string],
];

type Outcome = { served: true } | { served: false; status: number; code: string | undefined };

/**
 * One request through both filters; served ones answer with 60 output tokens. With `routed`, the
 * answer waits until that resolves (a barrier: every request of a burst reserved first).
 */
async function request(h: Harness, route: string, routed?: () => Promise<void>): Promise<Outcome> {
  const body = {
    model: `gpt-${route}`,
    max_tokens: 100,
    messages: [{ role: 'user', content: 'hi' }],
  };
  const r = await sendRequest(h, HEADERS, body, 'sluice/backend/openai');
  await routed?.();
  if (r.routed.kind === 'local-reply') {
    return {
      served: false,
      status: r.routed.status,
      code: get(r.routed.headers, 'x-sluice-error-code'),
    };
  }
  assert.equal(r.routed.kind, 'continue');
  await r.router.runResponse(
    [
      [':status', '200'],
      ['content-type', 'application/json'],
    ],
    [
      Buffer.from(
        JSON.stringify({
          object: 'chat.completion',
          model: body.model,
          choices: [{ index: 0, message: { role: 'assistant', content: 'ok' } }],
          usage: { prompt_tokens: 3, completion_tokens: 60, total_tokens: 63 },
        }),
      ),
    ],
  );
  r.router.close();
  return { served: true };
}

/** used and reserved of a policy's buckets, read from Redis directly. */
async function bucketLevels(
  url: string,
  scope: string,
): Promise<{ used: number; reserved: number }> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await r.connect();
    const keys = await r.keys(`sluice:{${scope}}:b:*`);
    let used = 0;
    let reserved = 0;
    for (const k of keys) {
      const [u, res] = await r.hmget(k, 'u', 'r');
      used += Number(u ?? 0);
      reserved += Number(res ?? 0);
    }
    return { used, reserved };
  } finally {
    r.disconnect();
  }
}

async function metric(h: Harness, pattern: RegExp): Promise<number | undefined> {
  const m = pattern.exec(await h.registry.metrics());
  return m ? Number(m[1]) : undefined;
}

async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const drained = (h: Harness) => async () =>
  (await metric(h, /^sluice_usage_journal_entries (\d+)$/m)) === 0;

/** One extproc replica on the shared Redis, driven over its own socket. */
async function replica(redisUrl: string): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-redis-outage-'));
  const configPath = join(dir, 'extproc.yaml');
  await writeFile(configPath, CONFIG);
  const logs: string[] = [];
  const registry = new Registry();
  const ext = await run({
    configPath,
    listen: `unix:${join(dir, 'extproc.sock')}`,
    maxMessageBytes: 16 * 1024 * 1024,
    watchConfig: false,
    shutdownGraceMs: 1000,
    logger: pino({ level: 'info' }, { write: (s: string) => logs.push(s) }),
    registry,
    now: () => performance.now(),
    env: {},
    redisUrl,
    warmTokenizer: false,
  });
  const client = new ExtProcClient(ext.grpcAddress);
  return {
    ext,
    client,
    logs,
    registry,
    dir,
    configPath,
    async stop() {
      client.close();
      await ext.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('budgets through Redis stalls and outages', () => {
  let redis: RedisHandle;
  let h: Harness;

  before(async () => {
    redis = await startRedis({ persist: true });
    h = await replica(redis.url);
  });

  after(async () => {
    await h?.stop();
    await redis?.stop();
  });

  it('a stall mid-burst: refused requests leave nothing reserved once Redis resumes', async (t) => {
    const before = await Promise.all(Array.from({ length: 10 }, () => request(h, 'stall')));
    assert.ok(before.every((o) => o.served));
    await h.ext.settled();
    assert.deepEqual(await bucketLevels(redis.url, 'stall'), { used: 10 * ACTUAL, reserved: 0 });

    redis.pause();
    let stalled: Outcome[];
    try {
      stalled = await Promise.all(Array.from({ length: 200 }, () => request(h, 'stall')));
    } finally {
      redis.resume();
    }
    assert.deepEqual(
      [...new Set(stalled.map((o) => (o.served ? 'served' : `${o.status} ${o.code}`)))],
      ['503 state_unavailable'],
    );
    // Redis ran the 200 reserves it had read during the stall, and the releases behind them.
    await until(drained(h), 10_000, 'the journal to drain');
    await h.ext.settled();
    const levels = await bucketLevels(redis.url, 'stall');
    t.diagnostic(
      `after the stall: used ${levels.used} µ$, reserved ${levels.reserved} µ$ of ${LIMIT} µ$`,
    );
    assert.deepEqual(levels, { used: 10 * ACTUAL, reserved: 0 });

    // The whole rest of the budget is there: (150,000 − 15,000) / 2,500 = 54 reservations fit.
    // No answer until all 70 have reserved: on a busy machine the first ones used to finish (and
    // settle at 1,500) before the last reserved, and then more than 54 fit (70 of 70, seen once).
    let arrived = 0;
    let allRouted!: () => void;
    const routed = new Promise<void>((r) => (allRouted = r));
    const barrier = () => {
      if (++arrived === 70) allRouted();
      return routed;
    };
    const burst = await Promise.all(Array.from({ length: 70 }, () => request(h, 'stall', barrier)));
    const served = burst.filter((o) => o.served).length;
    t.diagnostic(`after the stall: ${served} of 70 admitted`);
    assert.equal(served, 54);
    for (const o of burst) if (!o.served) assert.equal(o.code, 'budget_exceeded');
    assert.equal(
      await metric(h, /^sluice_usage_journal_dropped_total\{reason="\w+"\} ([1-9]\d*)$/m),
      undefined,
    );
  });

  it('a stall under failureMode open: served requests are charged once, their late reserves replaced', async (t) => {
    const before = await bucketLevels(redis.url, 'lenient');
    redis.pause();
    let stalled: Outcome[];
    try {
      stalled = await Promise.all(Array.from({ length: 50 }, () => request(h, 'lenient')));
    } finally {
      redis.resume();
    }
    assert.ok(stalled.every((o) => o.served));
    await h.ext.settled();
    await until(drained(h), 10_000, 'the journal to drain');
    const after = await bucketLevels(redis.url, 'lenient');
    t.diagnostic(
      `lenient: ${JSON.stringify(before)} before the stall, ${JSON.stringify(after)} after`,
    );
    // Redis ran the 50 reserves it had read (estimates) and then the settlements by the same
    // ids: each request counts once, at what it used.
    assert.deepEqual(after, { used: before.used + 50 * ACTUAL, reserved: 0 });
  });

  it('Redis stopped and restarted mid-traffic: closed never overshoots, open converges', async (t) => {
    const served = { closed: 0, open: 0, wide: 0 };
    const refused = new Map<string, number>();
    const count = (k: string) => refused.get(k) ?? 0;
    let running = true;
    // Held while Redis is being stopped: on a slow machine the stop took long enough for open to
    // spend its whole limit first, leaving nothing to admit while Redis was away.
    let paused = false;
    const worker = async (route: keyof typeof served) => {
      while (running) {
        if (paused) {
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        const o = await request(h, route);
        if (o.served) served[route]++;
        else {
          const k = `${route} ${o.status} ${o.code}`;
          refused.set(k, count(k) + 1);
          // Refusals answer at once: pace them so the load stays steady.
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    };
    const routes = ['closed', 'open', 'wide'] as const;
    const workers = Array.from({ length: 12 }, (_, i) => worker(routes[i % 3]!));
    const phase = (what: string, cond: () => boolean) =>
      until(() => Promise.resolve(cond()), 60_000, what);
    // Phases are driven by what happened, not by time, so a slow machine changes nothing.
    // 1: both policies serve until $0.12 of their $0.15 is spent.
    await phase('80 requests each', () => served.closed >= 80 && served.open >= 80);
    const wideAtStop = served.wide;
    paused = true;
    await redis.stop();
    paused = false;
    const atStop = { ...served };
    // 2: Redis is away. Closed refuses (503); open serves until it reaches the limit (held
    // locally) and refuses the rest with 429 budget_exceeded; wide (open, far from its limit)
    // serves on.
    await phase(
      'closed 503s and open at its local limit',
      () =>
        count('closed 503 state_unavailable') >= 20 &&
        count('open 429 budget_exceeded') >= 5 &&
        served.wide >= wideAtStop + 20,
    );
    const atRestart = { ...served };
    await redis.restart();
    const store = h.ext.stateStore as RedisStore;
    await store.ready(10_000);
    // 3: Redis is back (with what it had persisted): both spend what is left of their limit
    // (no budget lost to the outage) and are then refused.
    const before429 = count('closed 429 budget_exceeded');
    const open429 = count('open 429 budget_exceeded');
    const full = (route: 'closed' | 'open') => served[route] * ACTUAL > LIMIT - ESTIMATE;
    await phase(
      'both limits reached after the restart',
      () =>
        full('closed') &&
        full('open') &&
        count('closed 429 budget_exceeded') > before429 &&
        count('open 429 budget_exceeded') > open429,
    );
    running = false;
    await Promise.all(workers);
    await h.ext.settled();
    await until(drained(h), 15_000, 'the journal to drain');
    t.diagnostic(
      `served (closed/open): at stop ${atStop.closed}/${atStop.open}, ` +
        `at restart ${atRestart.closed}/${atRestart.open}, end ${served.closed}/${served.open}; ` +
        `refused ${JSON.stringify(Object.fromEntries(refused))}`,
    );
    // Open kept admitting while Redis was away, up to the limit: held against the level Redis
    // last reported plus what it admitted since.
    const failOpen = await metric(
      h,
      /^sluice_governance_fail_open_total\{sluice_policy="open"\} (\d+)$/m,
    );
    t.diagnostic(`open: ${failOpen} admitted while Redis was away`);
    assert.ok(failOpen! > 0);

    const usage = await store.usage('day', utcDay(Date.now()));
    // `wide` (open, $1,000 a day) served everything while Redis was away; all of it is charged.
    const wideFailOpen = await metric(
      h,
      /^sluice_governance_fail_open_total\{sluice_policy="wide"\} (\d+)$/m,
    );
    t.diagnostic(
      `wide: ${wideFailOpen} admitted while Redis was away, ${served.wide - wideAtStop} served after the stop`,
    );
    assert.ok(wideFailOpen! >= 10);
    for (const route of routes) {
      const levels = await bucketLevels(redis.url, route);
      const row = usage.find((r) => r.scope === route);
      t.diagnostic(
        `${route}: served ${served[route]} = ${served[route] * ACTUAL} µ$; Redis used ` +
          `${levels.used} µ$, reserved ${levels.reserved} µ$; usage ${row?.values.requests} ` +
          `requests, ${row?.values.costMicros} µ$`,
      );
      // Converged: every served request is charged, once, in budgets and in usage reports.
      assert.deepEqual(levels, { used: served[route] * ACTUAL, reserved: 0 }, route);
      assert.equal(row?.values.requests, served[route], route);
      assert.equal(row?.values.costMicros, served[route] * ACTUAL, route);
    }
    // Closed never admits past the limit; each request uses less than it reserved.
    assert.ok(served.closed * ACTUAL <= LIMIT);
    assert.ok(served.closed * ACTUAL > LIMIT - ESTIMATE, 'closed reached its limit');
    // One replica does not overshoot in open mode either.
    assert.ok(served.open * ACTUAL <= LIMIT, `open served ${served.open}`);
    assert.ok(served.open * ACTUAL > LIMIT - ESTIMATE, 'open reached its limit');

    const text = await h.registry.metrics();
    assert.doesNotMatch(text, /^sluice_unsettled_spend_usd\{[^}]*\} [1-9]/m);
    assert.doesNotMatch(text, /^sluice_usage_journal_dropped_total\{reason="\w+"\} [1-9]/m);
  });
  it('open mode on two replicas: each holds the limit on its own; the overshoot stays within the README bound', async (t) => {
    const other = await replica(redis.url);
    try {
      const replicas = [h, other];
      let served = 0;
      const refused = [0, 0];
      let running = true;
      const worker = async (i: number) => {
        while (running) {
          const o = await request(replicas[i]!, 'pair');
          if (o.served) served++;
          else {
            assert.equal(o.code, 'budget_exceeded');
            refused[i]!++;
            await new Promise((r) => setTimeout(r, 5));
          }
        }
      };
      const workers = Array.from({ length: 8 }, (_, i) => worker(i % 2));
      // Both replicas spend half the limit together, then Redis goes away.
      await until(() => Promise.resolve(served * ACTUAL >= LIMIT / 2), 60_000, 'half the limit');
      await redis.stop();
      const atStop = served;
      // Each replica goes on until it refuses on its own count.
      refused.fill(0);
      await until(() => Promise.resolve(refused.every((n) => n >= 5)), 60_000, 'both refusing');
      const inOutage = served - atStop;
      await redis.restart();
      for (const r of replicas) await (r.ext.stateStore as RedisStore).ready(10_000);
      running = false;
      await Promise.all(workers);
      for (const r of replicas) {
        await r.ext.settled();
        await until(drained(r), 15_000, 'the journals to drain');
      }
      const levels = await bucketLevels(redis.url, 'pair');
      const row = (await h.ext.stateStore.usage('day', utcDay(Date.now()))).find(
        (r) => r.scope === 'pair',
      );
      t.diagnostic(
        `pair: ${atStop} served before the stop, ${inOutage} during it (2 replicas); ` +
          `charged ${levels.used} µ$ of ${LIMIT} µ$ (overshoot ${Math.max(0, levels.used - LIMIT)} µ$)`,
      );
      // Converged across both replicas, nothing counted twice.
      assert.deepEqual(levels, { used: served * ACTUAL, reserved: 0 });
      assert.equal(row?.values.requests, served);
      // README: the other replica admits at most one limit's worth meanwhile. Here both knew
      // the shared level, so each admitted about what was left: the overshoot is about one
      // "what was left" (give or take the requests in flight at the stop, 4 per replica).
      assert.ok(levels.used <= 2 * LIMIT);
      assert.ok(levels.used - LIMIT <= LIMIT - atStop * ACTUAL + 8 * ESTIMATE);
    } finally {
      await other.stop();
    }
  });

  it('settlements pipelined with the next reserves: the level a replica knows never falls below Redis', async (t) => {
    // The router does not wait for a request's settlement before the next request reserves, so
    // settles and reserves share the connection's pipeline, and through ioredis the answer of a
    // reserve written right behind a settle reaches the Budget first, its level already holding
    // that settlement. Four callers, 200 requests, five rounds: the level known at the end must be
    // Redis's own, not that less what the settlements answered last gave back a second time.
    const store = new RedisStore({ url: redis.url, commandTimeoutMs: 2000 });
    try {
      await store.ready(10_000);
      for (let round = 0; round < 5; round++) {
        const b = new Budget({ store, retryIntervalMs: 0 });
        const p = policy([{ name: 'daily', per: ['consumer'], spendPerDayUsd: 1000 }], {
          failureMode: 'open',
        });
        const settling = new Set<Promise<unknown>>();
        let made = 0;
        const caller = async () => {
          while (made < 200) {
            made++;
            const r = await b.reserve(p, KEYS, { tokens: 100, costUsd: ESTIMATE / 1e6 });
            assert.ok(r.ok && !r.failOpen);
            const s = b.reconcile(r.reservation, { tokens: 60, costUsd: ACTUAL / 1e6 });
            settling.add(s);
            void s.finally(() => settling.delete(s));
            await new Promise((res) => setImmediate(res));
          }
        };
        await Promise.all(Array.from({ length: 4 }, caller));
        while (settling.size > 0) await Promise.all([...settling]);
        const [key] = chargesFor(p.limits.rules, KEYS, { tokens: 0, costUsd: 0 }, Date.now(), 0);
        const known = b.journal.levels(p.name, [key!.key])[0];
        const held = await bucketLevels(redis.url, p.name);
        t.diagnostic(`round ${round}: Redis holds ${held.used} µ$, the replica knows ${known} µ$`);
        assert.deepEqual(held, { used: made * ACTUAL, reserved: 0 });
        assert.equal(known, made * ACTUAL);
      }
    } finally {
      await store.close();
    }
  });
});
