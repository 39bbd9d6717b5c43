// Two `sluice run` gateways sharing one Redis and one vault key, as two replicas do: a
// conversation of the stateful Responses API on a Claude route (the built-in mock speaking
// Anthropic Messages) started on one is continued, retrieved, listed and deleted on the other,
// with the official OpenAI SDK; another key gets 404 on both; Redis holds sealed records under
// keyed names only (scanned for the conversation's text). Real CLI child processes against a real
// redis-server (test/redis/server.ts).
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
import { startRedis, type RedisHandle } from './server.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KEYS = { alice: 'sk-sluice-run-responses-alice-01', bob: 'sk-sluice-run-responses-bob-002' };
const EMAIL = 'jane.doe@example.com';

const consumer = (name: string, key: string) => `
apiVersion: v1
kind: Secret
metadata:
  name: ${name}-key
  namespace: sluice-system
  labels: { sluice.dev/consumer: ${name} }
stringData: { key: ${key} }
`;

const MANIFESTS = `
apiVersion: sluice.dev/v1alpha1
kind: AIRoute
metadata: { name: claude, namespace: default }
spec:
  models: [{ exact: claude-mock }]
  backends:
    - name: mock
      provider: anthropic
      endpoint: { service: { name: sluice-mock-provider, port: 80 } }
      credential: { secretRef: { name: mock-provider } }
---
apiVersion: v1
kind: Secret
metadata: { name: mock-provider, namespace: default }
stringData: { apiKey: sk-mock-provider-key }
---
${consumer('alice', KEYS.alice)}
---
${consumer('bob', KEYS.bob)}
---
apiVersion: sluice.dev/v1alpha1
kind: AIPolicy
metadata: { name: gov, namespace: default }
spec:
  targetRefs: [{ name: claude }]
  consumers: { required: true, keys: {} }
  masking: { detectors: [EMAIL], actions: { EMAIL: mask } }
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

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => assert.fail(`succeeded: ${JSON.stringify(v)}`),
    (e: unknown) => e,
  );
}

describe('two sluice run gateways sharing Redis: one Responses conversation', () => {
  let redis: RedisHandle;
  let dir: string;
  let a: Gateway | undefined;
  let b: Gateway | undefined;

  before(async () => {
    redis = await startRedis();
    dir = await mkdtemp(join(tmpdir(), 'sluice-run-responses-'));
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

  const client = (g: Gateway, key = KEYS.alice) =>
    new OpenAI({ baseURL: `${g.url}/v1`, apiKey: key, maxRetries: 0, timeout: 15_000 });

  it('is started on one replica and continued, read and deleted on the other', async () => {
    for (const g of [a!, b!]) assert.match(g.out(), /"event":"sessions","kind":"redis"/);
    const first = await client(a!).responses.create({
      model: 'claude-mock',
      input: `My email is ${EMAIL}.`,
    });
    assert.equal(first.output_text, `echo: My email is ${EMAIL}.`);

    // Streamed on b, continuing a's turn.
    const stream = await client(b!).responses.create({
      model: 'claude-mock',
      previous_response_id: first.id,
      input: 'And again?',
      stream: true,
    });
    let second: OpenAI.Responses.Response | undefined;
    for await (const e of stream) if (e.type === 'response.completed') second = e.response;
    assert.ok(second);
    assert.equal(second.previous_response_id, first.id);

    const items = await client(a!).responses.inputItems.list(second.id, { order: 'asc' });
    const texts = items.data.map((i) =>
      i.type === 'message' ? (i.content as { text?: string }[]).map((c) => c.text).join('') : '',
    );
    assert.deepEqual(texts, [`My email is ${EMAIL}.`, `echo: My email is ${EMAIL}.`, 'And again?']);

    for (const g of [a!, b!]) {
      const e = await rejection(client(g, KEYS.bob).responses.retrieve(first.id));
      assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    }

    const admin = new Redis(redis.url);
    try {
      const names = await admin.keys('sluice:s:*');
      assert.equal(names.length, 2, 'one record per stored turn');
      for (const k of names) {
        assert.ok(!k.includes(first.id) && !k.includes('alice'), 'a plain name in Redis');
        const v = (await admin.getBuffer(k))!.toString('latin1');
        for (const s of [EMAIL, 'echo:', 'And again', first.id])
          assert.ok(!v.includes(s), `"${s}" in a session value`);
        assert.ok((await admin.pttl(k)) > 0, 'a record without a TTL');
      }
    } finally {
      admin.disconnect();
    }

    await client(b!).responses.delete(first.id);
    const gone = await rejection(client(a!).responses.retrieve(first.id));
    assert.ok(gone instanceof OpenAI.NotFoundError, String(gone));
    // The turn after it keeps its own snapshot.
    assert.equal((await client(a!).responses.retrieve(second.id)).id, second.id);
  });
});
