// `sluice run --redis-url … --vault-key-file …`: the flags `sluice extproc` takes reach the
// gateway's extproc, so a local gateway keeps budgets, usage and the masking vault in Redis as a
// cluster replica does. Runs the real CLI as a child process against a real redis-server.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { utcDay } from '../../extproc/governance/budget.js';
import { RedisStore } from '../../extproc/state/redis.js';
import { startRedis, type RedisHandle } from './server.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

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

describe('sluice run with --redis-url and --vault-key-file', () => {
  let redis: RedisHandle;
  let dir: string;
  let child: ChildProcess;
  let out = '';
  let url: string;

  before(async () => {
    redis = await startRedis();
    dir = await mkdtemp(join(tmpdir(), 'sluice-run-flags-'));
    const keyFile = join(dir, 'vault.key');
    await writeFile(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'operator/cli.ts',
        'run',
        '-f',
        'examples/quickstart',
        '--mock-provider',
        '--emulator',
        '--no-watch',
        '--admin',
        'off',
        '--port',
        String(port),
        '--redis-url',
        redis.url,
        '--vault-key-file',
        keyFile,
      ],
      // No SLUICE_* variables: only the flags can point it at Redis.
      { cwd: ROOT, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    const end = Date.now() + 60_000;
    while (!out.includes('gateway on ')) {
      if (child.exitCode !== null || Date.now() > end) {
        throw new Error(`sluice run did not start:\n${out.slice(-3000)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await redis?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps usage and the masking vault in Redis', async () => {
    assert.match(out, /"event":"state_store","kind":"redis"/);
    assert.match(out, /"event":"vault","kind":"redis"/);
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: 'Bearer sk-sluice-quickstart-demo',
        // A conversation: its placeholders live in the shared vault.
        'x-sluice-session': 'conv-1',
      },
      body: JSON.stringify({
        model: 'mock-model',
        max_tokens: 8,
        messages: [{ role: 'user', content: 'write to jane.doe@example.com' }],
      }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    await res.text();
    const store = new RedisStore({ url: redis.url });
    try {
      await store.ready();
      const end = Date.now() + 10_000;
      let rows = await store.usage('day', utcDay(Date.now()));
      while (rows.length === 0 && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 100));
        rows = await store.usage('day', utcDay(Date.now()));
      }
      const demo = rows.find((r) => r.dims.consumer === 'demo');
      assert.equal(demo?.values.requests, 1);
      // The masked email went into the shared vault (HMAC-keyed, encrypted entries).
      const keys = await store.client.keys('sluice:v:*');
      assert.ok(keys.length > 0, 'no vault entries in Redis');
      assert.ok(!(await store.client.dump(keys[0]!))?.includes('jane.doe'));
    } finally {
      await store.close();
    }
  });
});
