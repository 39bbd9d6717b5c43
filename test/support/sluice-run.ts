/**
 * The real `sluice run` CLI as child processes, as an operator starts it (`node --import tsx
 * operator/cli.ts run …` from the repository root, no SLUICE_* variables: only flags), and the
 * replicas the Redis tier runs: several gateways from one manifests file sharing one redis-server
 * and one vault key.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRedis, type RedisHandle } from '../redis/server.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A free TCP port on 127.0.0.1 (the CLI is told its port; it cannot report one back). */
export async function freePort(): Promise<number> {
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

export interface SluiceRun {
  child: ChildProcess;
  /** The gateway's listener, `http://127.0.0.1:<port>`. */
  url: string;
  /** Everything it wrote so far, stdout and stderr interleaved. */
  out(): string;
}

/**
 * `sluice run <args> --port <free port>`, resolved once it logs `gateway on `. A run that exits or
 * takes longer than `timeoutMs` is killed and fails with the end of its output.
 */
export async function startSluiceRun(
  args: readonly string[],
  timeoutMs = 90_000,
): Promise<SluiceRun> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'operator/cli.ts', 'run', ...args, '--port', String(port)],
    { cwd: ROOT, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const end = Date.now() + timeoutMs;
  while (!out.includes('gateway on ')) {
    if (child.exitCode !== null || Date.now() > end) {
      child.kill('SIGTERM');
      throw new Error(`sluice run did not start:\n${out.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url: `http://127.0.0.1:${port}`, out: () => out };
}

/** SIGTERM, and wait for the exit; nothing to do for a run that never started or already ended. */
export async function stopSluiceRun(g: SluiceRun | undefined): Promise<void> {
  if (!g || g.child.exitCode !== null) return;
  const exited = new Promise((r) => g.child.once('exit', r));
  g.child.kill('SIGTERM');
  await exited;
}

export interface Replicas {
  redis: RedisHandle;
  gateways: SluiceRun[];
  /** Stops every gateway, then Redis, and removes the manifests and the vault key. */
  close(): Promise<void>;
}

/**
 * `count` gateways from the same manifests (`--mock-provider --emulator --no-watch --admin off`),
 * sharing a fresh redis-server (`--redis-url`) and one vault key (`--vault-key-file`), as the
 * replicas of one deployment do. What started is stopped again when any of them fails to start.
 */
export async function startReplicas(name: string, manifests: string, count = 2): Promise<Replicas> {
  const redis = await startRedis();
  const dir = await mkdtemp(join(tmpdir(), `${name}-`));
  const gateways: SluiceRun[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(gateways.map((g) => stopSluiceRun(g)));
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const files = join(dir, 'manifests');
    await mkdir(files);
    await writeFile(join(files, 'gateway.yaml'), manifests, 'utf8');
    const keyFile = join(dir, 'vault.key');
    await writeFile(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    const args = [
      '-f',
      files,
      '--mock-provider',
      '--emulator',
      '--no-watch',
      '--admin',
      'off',
      '--redis-url',
      redis.url,
      '--vault-key-file',
      keyFile,
    ];
    const started = await Promise.allSettled(
      Array.from({ length: count }, () => startSluiceRun(args)),
    );
    for (const s of started) if (s.status === 'fulfilled') gateways.push(s.value);
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (err) {
    await close();
    throw err;
  }
  return { redis, gateways, close };
}
