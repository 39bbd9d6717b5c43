/**
 * A throwaway redis-server for tests: loopback only, a free port, no persistence, killed with
 * the test process. Install it first with `node test/redis/setup.mjs` (test/run.mjs does).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RedisHandle {
  url: string;
  port: number;
  /** Graceful shutdown (SIGTERM) and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash; resolves once the process is gone. */
  kill(): Promise<void>;
  /**
   * Starts the server again on the same port: empty, unless started with `persist`, when it
   * reloads what it had written (append-only file, fsync on every write).
   */
  restart(): Promise<void>;
  /** SIGSTOP: the process stays, its sockets accept bytes, nothing is answered (a stall). */
  pause(): void;
  /** SIGCONT: runs whatever it read meanwhile, in order. */
  resume(): void;
}

export interface RedisOptions {
  /** Keep data across stop()/restart() in a private directory, as a production Redis would. */
  persist?: boolean;
}

const live = new Set<ChildProcess>();
// The wrapper below already ties redis to our stdin; this covers a normal exit faster.
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr && typeof addr === 'object') resolve(addr.port);
        else reject(new Error('no port'));
      });
    });
  });
}

// redis-server cannot watch its parent, so a shell holds our stdin pipe: when this process dies
// by any means (even SIGKILL), the pipe closes, `cat` returns and the shell kills redis. The pipe
// is duplicated to fd 3 because sh gives background jobs /dev/null as their stdin.
const WRAPPER =
  'exec 3<&0; redis-server "$@" </dev/null & r=$!; echo "pid $r"; ' +
  '(cat <&3 >/dev/null; kill -9 $r 2>/dev/null) & exec 3<&-; wait $r';

interface Running {
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
}

async function launch(
  port: number,
  dataDir: string | undefined,
  extra: string[] = [],
): Promise<Running> {
  const bin = process.env.SLUICE_REDIS_SERVER ?? 'redis-server';
  const persistence = dataDir
    ? ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dataDir]
    : ['--appendonly', 'no', '--dir', '/tmp'];
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    ...persistence,
    '--daemonize',
    'no',
    '--loglevel',
    'notice',
    ...extra,
  ];
  const child = spawn('sh', ['-c', WRAPPER.replace('redis-server', bin), 'sh', ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  live.add(child);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      live.delete(child);
      resolve();
    }),
  );
  let out = '';
  const pid = await new Promise<number>((resolve, reject) => {
    let redisPid = 0;
    const timer = setTimeout(() => {
      reject(new Error(`redis-server did not start on port ${port}:\n${out.slice(-2000)}`));
    }, 10_000);
    const onData = (b: Buffer) => {
      out += b.toString();
      const m = /^pid (\d+)$/m.exec(out);
      if (m) redisPid = Number(m[1]);
      if (redisPid && out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve(redisPid);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited during startup:\n${out.slice(-2000)}`));
    });
  });
  return { child, pid, exited };
}

export async function startRedis(opts: RedisOptions = {}): Promise<RedisHandle> {
  let lastErr: unknown;
  const dataDir = opts.persist ? await mkdtemp(join(tmpdir(), 'sluice-redis-data-')) : undefined;
  if (dataDir) process.once('exit', () => rmSync(dataDir, { recursive: true, force: true }));
  // Another process may take the port between freePort() and redis binding it.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    let running: Running;
    try {
      running = await launch(port, dataDir);
    } catch (err) {
      lastErr = err;
      continue;
    }
    const end = async (signal: NodeJS.Signals) => {
      const r = running;
      try {
        // A stopped process acts on SIGTERM only once it runs again.
        process.kill(r.pid, 'SIGCONT');
        process.kill(r.pid, signal);
      } catch {
        // already gone
      }
      r.child.stdin?.end();
      await r.exited;
    };
    const signal = (s: NodeJS.Signals) => () => {
      process.kill(running.pid, s);
    };
    return {
      url: `redis://127.0.0.1:${port}`,
      port,
      stop: () => end('SIGTERM'),
      kill: () => end('SIGKILL'),
      restart: async () => {
        // A graceful stop first when persisting: what was acknowledged is on disk either way.
        await end(dataDir ? 'SIGTERM' : 'SIGKILL');
        running = await launch(port, dataDir);
      },
      pause: signal('SIGSTOP'),
      resume: signal('SIGCONT'),
    };
  }
  throw lastErr instanceof Error ? lastErr : new Error('could not start redis-server');
}

export interface RedisClusterHandle {
  /** Seed nodes for an ioredis Cluster client. */
  nodes: { host: string; port: number }[];
  stop(): Promise<void>;
  /** SIGSTOP / SIGCONT every node: a stall of the whole cluster. */
  pause(): void;
  resume(): void;
}

/**
 * A throwaway Redis Cluster: `masters` nodes on loopback, no replicas, the 16384 slots spread
 * by `redis-cli --cluster create` (installed with redis-server).
 */
export async function startRedisCluster(masters = 3): Promise<RedisClusterHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-redis-cluster-'));
  const nodes: { port: number; running: Running }[] = [];
  const stop = async () => {
    for (const n of nodes) {
      try {
        process.kill(n.running.pid, 'SIGCONT');
        process.kill(n.running.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      n.running.child.stdin?.end();
      await n.running.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      const running = await launch(port, undefined, [
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout',
        '2000',
      ]);
      nodes.push({ port, running });
    }
    const cli = spawnSync(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (cli.status !== 0) throw new Error(`redis-cli --cluster create: ${cli.stdout}${cli.stderr}`);
    // Every node must agree the cluster is up before clients are told the slot map.
    const end = Date.now() + 20_000;
    for (const n of nodes) {
      for (;;) {
        const info = spawnSync('redis-cli', ['-p', String(n.port), 'cluster', 'info'], {
          encoding: 'utf8',
        });
        if (info.stdout.includes('cluster_state:ok')) break;
        if (Date.now() > end) throw new Error(`cluster not ok on ${n.port}: ${info.stdout}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const signal = (s: NodeJS.Signals) => () => {
    for (const n of nodes) process.kill(n.running.pid, s);
  };
  return {
    nodes: nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
    stop,
    pause: signal('SIGSTOP'),
    resume: signal('SIGCONT'),
  };
}
