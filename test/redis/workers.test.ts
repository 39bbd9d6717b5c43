// `sluice extproc --workers 2` on Redis: the workers talk to Redis themselves (no state in the
// primary), so one budget and one vault hold across them exactly as across replicas.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import {
  ExtProcClient,
  ExtProcFilter,
  type Continued,
  type HeaderList,
  type PhaseResult,
} from '../../operator/envoy-sim/ext-proc/index.js';
import { CONFIG, ROUTER, upstreamFilter } from '../conformance/harness.js';
import { startRedis, type RedisHandle } from './server.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const KEY = 'sk-workers-redis-key';
const MODEL = 'gpt-4o-mini-governed';
const RPM = 20;

function config(): string {
  const doc = parseYaml(CONFIG) as {
    version: string;
    routes: object[];
    consumers?: object[];
    policies?: object[];
  };
  doc.version = 'redis-workers-1';
  doc.consumers = [
    { name: 'bot', team: 'ops', keyHashes: [createHash('sha256').update(KEY).digest('hex')] },
  ];
  doc.policies = [
    {
      name: 'gov',
      identity: { keys: {} },
      limits: { rules: [{ name: 'rpm', per: ['consumer'], requestsPerMinute: RPM }] },
    },
  ];
  doc.routes.unshift({
    name: 'governed',
    models: [{ exact: MODEL }],
    backends: [{ name: 'openai' }],
    policy: { name: 'pii', masking: {} },
    governance: 'gov',
  });
  return stringifyYaml(doc);
}

function headers(body: Buffer, session: string): HeaderList {
  return [
    [':method', 'POST'],
    [':path', '/v1/chat/completions'],
    [':scheme', 'http'],
    [':authority', 'gateway.local'],
    ['content-type', 'application/json'],
    ['content-length', String(body.length)],
    ['authorization', `Bearer ${KEY}`],
    ['x-sluice-session', session],
  ];
}

const chat = (text: string) =>
  Buffer.from(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: text }] }));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function continued(r: PhaseResult | undefined, what: string): Continued {
  if (!r || r.kind !== 'continue')
    assert.fail(`${what}: ${r ? `${r.status} ${r.body.toString()}` : 'nothing'}`);
  return r;
}

let redis: RedisHandle;
let dir: string;
let proc: ChildProcess;
let socket: string;
const clients: ExtProcClient[] = [];

before(async () => {
  redis = await startRedis();
  dir = mkdtempSync(join(tmpdir(), 'sluice-redis-workers-'));
  writeFileSync(join(dir, 'extproc.yaml'), config());
  writeFileSync(join(dir, 'vault.key'), randomBytes(32).toString('hex'));
  const admin = await freePort();
  socket = `unix:${join(dir, 'extproc.sock')}`;
  proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'operator/cli.ts'),
      'extproc',
      '--config',
      join(dir, 'extproc.yaml'),
      '--listen',
      socket,
      '--admin',
      `127.0.0.1:${admin}`,
      '--workers',
      '2',
      '--redis-url',
      redis.url,
      '--vault-key-file',
      join(dir, 'vault.key'),
    ],
    { cwd: ROOT, stdio: 'ignore' },
  );
  const end = Date.now() + 60_000;
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${admin}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    if (Date.now() > end) throw new Error('the extproc did not become ready');
    await new Promise((r) => setTimeout(r, 100));
  }
  for (let i = 0; i < 2; i++) {
    // A connection each (a local subchannel pool): node:cluster hands them to both workers.
    const c = new ExtProcClient(socket, {
      channelOptions: { 'grpc.enable_retries': 0, 'grpc.use_local_subchannel_pool': 1 },
    });
    await c.connect();
    clients.push(c);
  }
});

after(async () => {
  for (const c of clients) c.close();
  proc?.kill('SIGKILL');
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('sluice extproc --workers 2 on Redis', () => {
  it('spends one budget from both workers at once, and keeps one vault', async () => {
    const [a, b] = clients as [ExtProcClient, ExtProcClient];
    // A per-minute bucket: this test's requests must share one minute, or two windows would admit.
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 10_000) await new Promise((r) => setTimeout(r, left + 500));
    // The conversation first: one value, one placeholder, whichever worker masks it.
    const sent: string[] = [];
    for (const conn of [a, b]) {
      const body = chat('Mail ada@example.com about it.');
      const router = new ExtProcFilter(conn, ROUTER);
      const routed = continued(await router.runRequest(headers(body, 'conv-r'), [body]), 'router');
      const up = new ExtProcFilter(conn, upstreamFilter('sluice/backend/openai'));
      const out = continued(
        await up.runRequest(routed.headers, [routed.body], undefined, { dataWithHeaders: true }),
        'upstream',
      );
      up.close();
      router.close();
      sent.push(out.body.toString());
    }
    for (const s of sent) assert.match(s, /Mail \[EMAIL_1\] about it\./);
    // Then the budget: RPM in all, two spent above.
    // Every stream stays open until all 40 are answered: a stream that ends before its request
    // reached a provider gives its request back to the bucket (attempts never made are not
    // charged), which would let one more through and make "exactly the limit" a race.
    const filters = Array.from(
      { length: 40 },
      (_, i) => new ExtProcFilter(i % 2 === 0 ? a : b, ROUTER),
    );
    const tries = await Promise.all(
      filters.map((f, i) => {
        const body = chat(`request ${i}`);
        return f.runRequest(headers(body, `s-${i}`), [body]);
      }),
    );
    for (const f of filters) f.close();
    // On a failure, say what the others got (a 429 of the limit, or a fail-closed 503 of a store
    // call that timed out): a count alone does not tell which.
    const refusals = new Map<string, number>();
    for (const r of tries) {
      if (r.kind !== 'local-reply') continue;
      const code = r.headers.find(([k]) => k === 'x-sluice-error-code')?.[1] ?? '-';
      const what = `${r.status} ${code}`;
      refusals.set(what, (refusals.get(what) ?? 0) + 1);
    }
    assert.equal(
      tries.filter((r) => r.kind === 'continue').length,
      RPM - 2,
      `refused: ${[...refusals].map(([w, n]) => `${n} × ${w}`).join(', ')}`,
    );
  });
});
