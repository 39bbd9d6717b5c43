// The governance request path over a real Redis (test/redis/server.ts): admission under
// concurrency, usage reaching the shared store, and both failure modes while Redis is down.
// Skipped when no redis-server binary is installed (`node test/run.mjs redis` installs one).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { utcDay } from '../../extproc/governance/budget.js';
import { run } from '../../extproc/run.js';
import { ExtProcClient, type LocalReply } from '../../operator/envoy-sim/ext-proc/index.js';
import { startRedis, type RedisHandle } from './server.js';
import { chatHeaders, continued, get, sendRequest, type Harness } from '../conformance/harness.js';

const KEY = 'sk-sluice-redis-0001';
const sha = createHash('sha256').update(KEY).digest('hex');

const CONFIG = `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: governance-redis-1
backends:
  - name: openai
    cluster: sluice/backend/openai
    provider: openai
    credential: { value: sk-backend-openai-0001 }
consumers:
  - { name: rita, team: ops, keyHashes: ['${sha}'] }
policies:
  - name: closed
    identity: { keys: {} }
    limits: { rules: [{ name: daily, per: [consumer], spendPerDayUsd: 0.25 }] }
    pricing: { models: { '*': { inputPerMTok: 0, outputPerMTok: 1000 } } }
  - name: open
    failureMode: open
    identity: { keys: {} }
    limits: { rules: [{ name: daily, per: [consumer], spendPerDayUsd: 1000 }] }
routes:
  - name: closed
    models: [{ exact: gpt-closed }]
    backends: [{ name: openai }]
    governance: closed
  - name: open
    models: [{ exact: gpt-open }]
    backends: [{ name: openai }]
    governance: open
`;

const headers = () => [
  ...chatHeaders().filter(([k]) => k !== 'authorization'),
  ['authorization', `Bearer ${KEY}`] as [string, string],
];
const chat = (model: string, maxTokens = 100) => ({
  model,
  max_tokens: maxTokens,
  messages: [{ role: 'user', content: 'hello' }],
});

// The redis tier's setup installs redis-server first, so this never skips silently.
describe('conformance: governance over Redis', () => {
  let redis: RedisHandle;
  let h: Harness;

  before(async () => {
    redis = await startRedis();
    const dir = await mkdtemp(join(tmpdir(), 'sluice-conf-redis-'));
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
      env: { SLUICE_REDIS_URL: redis.url },
    });
    const client = new ExtProcClient(ext.grpcAddress);
    h = {
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
  });

  after(async () => {
    await h?.stop();
    await redis?.stop();
  });

  it('uses the Redis store', () => {
    assert.equal(h.ext.stateStore.kind, 'redis');
  });

  it('admits exactly what fits among concurrent requests', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        sendRequest(h, headers(), chat('gpt-closed'), 'sluice/backend/openai'),
      ),
    );
    const passed = results.filter((r) => r.routed.kind === 'continue');
    assert.equal(passed.length, 2);
    for (const r of results) {
      if (r.routed.kind === 'local-reply') assert.equal(r.routed.status, 429);
    }
    // Usage of completed requests reaches the shared store, where `sluice usage` reads it.
    for (const p of passed) {
      continued(
        await p.router.runResponse(
          [
            [':status', '200'],
            ['content-type', 'application/json'],
          ],
          [
            Buffer.from(
              JSON.stringify({
                object: 'chat.completion',
                model: 'gpt-closed',
                choices: [],
                usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 },
              }),
            ),
          ],
        ),
      );
    }
    await h.ext.settled();
    const rows = await h.ext.stateStore.usage('day', utcDay(Date.now()));
    const rita = rows.find((r) => r.dims.consumer === 'rita' && r.dims.route === 'closed');
    assert.equal(rita?.values.requests, 2);
    assert.equal(rita?.values.costMicros, 10_000);
  });

  it('while Redis is down: closed answers 503, open admits and counts; then recovers', async () => {
    await redis.kill();
    try {
      const closed = await sendRequest(
        h,
        headers(),
        chat('gpt-closed', 1),
        'sluice/backend/openai',
      );
      const r = closed.routed as LocalReply;
      assert.equal(r.kind, 'local-reply');
      assert.equal(r.status, 503);
      assert.equal(get(r.headers, 'x-sluice-error-code'), 'state_unavailable');
      const open = await sendRequest(h, headers(), chat('gpt-open'), 'sluice/backend/openai');
      continued(open.routed);
      open.router.close();
      const metrics = await h.registry.metrics();
      assert.match(metrics, /sluice_governance_fail_open_total\{sluice_policy="open"\} 1/);
    } finally {
      await redis.restart();
    }
    const store = h.ext.stateStore as { ready?: (ms: number) => Promise<void> };
    await store.ready?.(5000);
    const again = await sendRequest(h, headers(), chat('gpt-open'), 'sluice/backend/openai');
    continued(again.routed);
    again.router.close();
  });
});
