// Two `sluice run` gateways sharing one Redis and one vault key, as two replicas do: an answer
// bought through one is served by the other (called with the official OpenAI SDK), with that
// request's own masked values restored, and `sluice usage` (the real CLI path, reading the same
// Redis) counts the hit as cached, apart from the request a provider answered, with what it saved.
// Runs the real CLI as child processes against a real redis-server (test/redis/server.ts).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { main as usageMain } from '../../operator/usage/main.js';
import { startRedis, type RedisHandle } from './server.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KEY = 'sk-sluice-run-cache-demo-0001';
const EMAILS = ['jane.doe@example.com', 'john.roe@example.org'];

const MANIFESTS = `
apiVersion: sluice.dev/v1alpha1
kind: AIRoute
metadata: { name: mock, namespace: default }
spec:
  models: [{ exact: mock-model }]
  backends:
    - name: mock
      provider: openai
      endpoint: { service: { name: sluice-mock-provider, port: 80 } }
      credential: { secretRef: { name: mock-provider } }
---
apiVersion: v1
kind: Secret
metadata: { name: mock-provider, namespace: default }
stringData: { apiKey: sk-mock-provider-key }
---
apiVersion: v1
kind: Secret
metadata:
  name: demo-key
  namespace: sluice-system
  labels: { sluice.dev/consumer: demo, sluice.dev/team: replicas }
stringData: { key: ${KEY} }
---
apiVersion: sluice.dev/v1alpha1
kind: AIPolicy
metadata: { name: gov, namespace: default }
spec:
  targetRefs: [{ name: mock }]
  consumers: { required: true, keys: {} }
  limits:
    rules: [{ name: daily, per: [consumer], spendPerDayUsd: 100 }]
  pricing:
    models: { 'mock-*': { inputPerMTok: 100, outputPerMTok: 100 } }
---
apiVersion: sluice.dev/v1alpha1
kind: AIPolicy
metadata: { name: cache, namespace: default }
spec:
  targetRefs: [{ name: mock }]
  masking: { detectors: [EMAIL], actions: { EMAIL: mask } }
  cache: { ttlSeconds: 300 }
`;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() =>
        a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port')),
      );
    });
  });
}

interface Gateway {
  child: ChildProcess;
  url: string;
  out: () => string;
}

async function startGateway(dir: string, redisUrl: string, keyFile: string): Promise<Gateway> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'operator/cli.ts',
      'run',
      '-f',
      dir,
      '--mock-provider',
      '--emulator',
      '--no-watch',
      '--admin',
      'off',
      '--port',
      String(port),
      '--redis-url',
      redisUrl,
      '--vault-key-file',
      keyFile,
    ],
    { cwd: ROOT, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const end = Date.now() + 90_000;
  while (!out.includes('gateway on ')) {
    if (child.exitCode !== null || Date.now() > end) {
      child.kill('SIGTERM');
      throw new Error(`sluice run did not start:\n${out.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url: `http://127.0.0.1:${port}`, out: () => out };
}

async function stop(g: Gateway | undefined): Promise<void> {
  if (!g || g.child.exitCode !== null) return;
  const exited = new Promise((r) => g.child.once('exit', r));
  g.child.kill('SIGTERM');
  await exited;
}

describe('two sluice run gateways sharing Redis: the response cache and sluice usage', () => {
  let redis: RedisHandle;
  let dir: string;
  let a: Gateway | undefined;
  let b: Gateway | undefined;

  before(async () => {
    redis = await startRedis();
    dir = await mkdtemp(join(tmpdir(), 'sluice-run-cache-'));
    const manifests = join(dir, 'manifests');
    await mkdir(manifests);
    await writeFile(join(manifests, 'gateway.yaml'), MANIFESTS, 'utf8');
    const keyFile = join(dir, 'vault.key');
    await writeFile(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    [a, b] = await Promise.all([
      startGateway(manifests, redis.url, keyFile),
      startGateway(manifests, redis.url, keyFile),
    ]);
  });

  after(async () => {
    await Promise.all([stop(a), stop(b)]);
    await redis?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const client = (g: Gateway) =>
    new OpenAI({ baseURL: `${g.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 15_000 });
  const ask = (g: Gateway, email: string) =>
    client(g)
      .chat.completions.create({
        model: 'mock-model',
        temperature: 0,
        messages: [{ role: 'user', content: `Write to ${email} today.` }],
      })
      .withResponse();

  it('a miss on one gateway is a hit on the other, counted as cached by sluice usage', async () => {
    for (const g of [a!, b!]) assert.match(g.out(), /"event":"state_store","kind":"redis"/);
    const admin = new Redis(redis.url);
    const bought = { tokens: 0 };
    try {
      const miss = await ask(a!, EMAILS[0]!);
      assert.equal(miss.response.headers.get('x-sluice-cache'), 'miss');
      assert.equal(miss.data.choices[0]!.message.content, `echo: Write to ${EMAILS[0]} today.`);
      bought.tokens = miss.data.usage!.total_tokens;
      assert.ok(bought.tokens > 0);
      // The entry is written after the answer: wait for it in Redis, never by asking b (a miss
      // there would store an entry of b's own).
      const end = Date.now() + 10_000;
      while ((await admin.keys('sluice:c:*')).length === 0) {
        assert.ok(Date.now() < end, 'no cache entry in Redis');
        await new Promise((r) => setTimeout(r, 50));
      }
      const hit = await ask(b!, EMAILS[1]!);
      assert.equal(hit.response.headers.get('x-sluice-cache'), 'hit');
      // The entry holds placeholders; b restores this request's own value.
      assert.equal(hit.data.choices[0]!.message.content, `echo: Write to ${EMAILS[1]} today.`);
      assert.deepEqual(hit.data.usage, miss.data.usage);
      for (const k of await admin.keys('sluice:c:*')) {
        const v = (await admin.getBuffer(k))!.toString('latin1');
        for (const e of EMAILS) assert.ok(!v.includes(e), 'an email in a cache value');
      }
    } finally {
      admin.disconnect();
    }

    // `sluice usage --json` on the shared Redis: both writes follow the answers, so poll.
    type Row = {
      consumer: string;
      requests: number;
      totalTokens: number;
      costUsd: string;
      cachedRequests: number;
      savedTokens: number;
      savedUsd: string;
    };
    let doc: { rows: Row[] } | undefined;
    const end = Date.now() + 10_000;
    for (;;) {
      let out = '';
      let err = '';
      const code = await usageMain(['--json', '--redis-url', redis.url], {
        out: (s) => (out += s),
        err: (s) => (err += s),
        env: {},
      });
      assert.equal(code, 0, err);
      doc = JSON.parse(out) as { rows: Row[] };
      const r = doc.rows.find((x) => x.consumer === 'demo');
      if ((r?.requests ?? 0) >= 1 && (r?.cachedRequests ?? 0) >= 1) break;
      assert.ok(Date.now() < end, `usage never showed the hit: ${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const demo = doc.rows.find((x) => x.consumer === 'demo')!;
    assert.equal(demo.requests, 1, 'one answer a provider gave');
    assert.equal(demo.cachedRequests, 1, 'one answer from the cache');
    assert.equal(demo.savedTokens, bought.tokens, 'the hit saved what the miss bought');
    assert.equal(demo.savedUsd, demo.costUsd, 'a free hit saved what the miss cost');
    assert.ok(Number(demo.savedUsd) > 0);
    assert.equal(demo.totalTokens, bought.tokens, 'the free hit added no served tokens');
  });
});
