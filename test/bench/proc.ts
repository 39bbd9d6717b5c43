/** Child processes of the benchmark and what Linux says about them (/proc). */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, truncateSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';

export function hasTaskset(): boolean {
  return spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Pins this process, all its threads included (GC, libuv pool), to one core. */
export function pinSelf(core: number): boolean {
  const r = spawnSync('taskset', ['-a', '-p', '-c', String(core), String(process.pid)], {
    stdio: 'ignore',
  });
  return r.status === 0;
}

let ticks: number | undefined;
/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat. */
function clockTicks(): number {
  if (ticks === undefined) {
    const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    const n = Number(out.stdout?.trim());
    ticks = Number.isInteger(n) && n > 0 ? n : 100;
  }
  return ticks;
}

/** User plus system CPU time of a process, in ms (resolution one clock tick, 10 ms). */
export function cpuMs(pid: number): number {
  return parseStatCpuTicks(readFileSync(`/proc/${pid}/stat`, 'utf8')) * (1000 / clockTicks());
}

/** utime + stime from a /proc/<pid>/stat line; the command name may contain spaces and ')'. */
export function parseStatCpuTicks(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of proc(5), counted from the state field (3).
  return Number(fields[11]) + Number(fields[12]);
}

/** Busy and total ticks of one core, from /proc/stat. */
export function coreTicks(core: number): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${core} `));
  if (!line) return { busy: Number.NaN, total: Number.NaN };
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  // idle and iowait are fields 4 and 5.
  return { busy: total - v[3]! - v[4]!, total };
}

export function ticksToMs(t: number): number {
  return t * (1000 / clockTicks());
}

/** Minor page faults so far (a fresh mapping's pages each fault once when first touched). */
export function minorFaults(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Field 10 of proc(5), counted from the state field (3).
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
}

/** Peak resident set size (VmHWM) in KiB. */
export function peakRssKiB(pid: number): number {
  const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

/** Resident set size now (VmRSS) in KiB. */
export function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

/**
 * Space-separated NAME=value assignments (HEAP_ENV, BENCH_EXTPROC_ENV) as an environment; an
 * item without `=` is an error, not a variable named by the whole item.
 */
export function envAssignments(raw: string | undefined, what: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of (raw ?? '').split(' ').filter(Boolean)) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`${what}: "${kv}" is not NAME=value`);
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return env;
}

/**
 * The malloc library a process has preloaded (EXTPROC_MALLOC's), by its mappings: what it runs
 * on, whatever its environment asked for; undefined when it runs on glibc's.
 */
export function preloadedLibrary(pid: number): string | undefined {
  let maps: string;
  try {
    maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch {
    return undefined;
  }
  return /\/(lib(?:mi|je|tc)malloc[^/\s]*\.so[^/\s]*)$/m.exec(maps)?.[1];
}

export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'unknown';
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * A Node child running an entry point (TypeScript through tsx, or compiled .js), or an executable,
 * optionally pinned with taskset (taskset execs its command, so the pid is node's or the binary's). stdout and stderr go to a file: a pipe would put
 * the access log's reading on the driver's core, and a full pipe would stall the child.
 */
export class Child {
  readonly proc: ChildProcess;
  readonly logPath: string;
  private readonly logFd: number;
  private logClosed = false;
  private exitInfo: string | undefined;
  readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    entry: string,
    args: string[],
    opts: {
      cwd: string;
      logPath: string;
      core?: number;
      nodeFlags?: string[];
      /** Modules imported before the entry point (after tsx's loader): the bench probe. */
      preload?: string[];
      /** Added to this process's environment. */
      env?: Record<string, string>;
      /** Run `entry` as an executable instead of a Node entry point. */
      exec?: boolean;
    },
  ) {
    this.logFd = openSync(opts.logPath, 'a');
    this.logPath = opts.logPath;
    const preload = (opts.preload ?? []).flatMap((m) => ['--import', m]);
    const ts = entry.endsWith('.ts') || (opts.preload ?? []).some((m) => m.endsWith('.ts'));
    const loader = ts ? ['--import', 'tsx'] : [];
    const [bin, binArgs] = opts.exec
      ? [entry, args]
      : [process.execPath, [...(opts.nodeFlags ?? []), ...loader, ...preload, entry, ...args]];
    const [cmd, argv] =
      opts.core === undefined
        ? [bin, binArgs]
        : ['taskset', ['-c', String(opts.core), bin, ...binArgs]];
    this.proc = spawn(cmd, argv, {
      cwd: opts.cwd,
      stdio: ['ignore', this.logFd, this.logFd],
      env: { ...process.env, ...opts.env },
    });
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exitInfo = signal ? `killed by ${signal}` : `exited with code ${code}`;
        resolve();
      });
      this.proc.once('error', (err) => {
        this.exitInfo = `failed to start: ${err.message}`;
        resolve();
      });
    });
  }

  get pid(): number {
    const pid = this.proc.pid;
    if (pid === undefined) throw new Error(`${this.name}: not running (${this.exitInfo ?? '?'})`);
    return pid;
  }

  get dead(): string | undefined {
    return this.exitInfo;
  }

  /** The last bytes the child wrote, for error messages. */
  tail(bytes = 4000): string {
    try {
      const text = readFileSync(this.logPath, 'utf8');
      return text.slice(-bytes);
    } catch {
      return '';
    }
  }

  /** Keeps the log file small between measurements; the fd is O_APPEND, so writes follow. */
  truncateLog(): void {
    try {
      truncateSync(this.logPath, 0);
    } catch {
      // only a size concern
    }
  }

  /** SIGTERM, then SIGKILL after graceMs (a --cpu-prof child writes its profile on a clean exit). */
  async stop(graceMs = 3000): Promise<void> {
    if (!this.exitInfo && this.proc.exitCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(t);
    }
    this.closeLog();
  }

  /** For process 'exit': synchronous, no grace. */
  killNow(): void {
    if (!this.exitInfo && this.proc.exitCode === null) this.proc.kill('SIGKILL');
    this.closeLog();
  }

  private closeLog(): void {
    if (this.logClosed) return;
    this.logClosed = true;
    closeSync(this.logFd);
  }
}

export function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = get(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.setTimeout(1000, () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

/** Polls `ready` until true; fails early when the child dies, with what it printed. */
export async function waitReady(
  child: Child,
  ready: () => Promise<boolean> | boolean,
  timeoutMs = 30_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (child.dead) {
      throw new Error(
        `${child.name} ${child.dead} before it was ready. Its output:\n${child.tail()}`,
      );
    }
    if (await ready()) return;
    if (Date.now() > end) {
      throw new Error(
        `${child.name} not ready after ${timeoutMs} ms. Its output:\n${child.tail()}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Where a process's resident memory is, from /proc/PID/smaps (KiB) and its thread count. */
export interface RssParts {
  rssKiB: number;
  /** Mapped files: node's own code and the shared libraries. */
  fileKiB: number;
  /** Anonymous memory: the V8 heap, malloc's arenas, Buffers, thread stacks. */
  anonKiB: number;
  /** malloc's main arena (the brk heap, `[heap]`). */
  brkKiB: number;
  /** Anonymous mappings of 64 MiB reservations: malloc's per-thread arenas (glibc). */
  arenaKiB: number;
  threads: number;
}

const ARENA_RESERVE_KIB = 64 * 1024;

export function rssParts(pid: number): RssParts | undefined {
  let text: string;
  let status: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const parts: RssParts = {
    rssKiB: 0,
    fileKiB: 0,
    anonKiB: 0,
    brkKiB: 0,
    arenaKiB: 0,
    threads: Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? Number.NaN),
  };
  // A glibc thread arena is one 64 MiB-aligned reservation: a read-write part that grows and the
  // rest mapped ---p, adjacent. Their rw part is counted as arena memory.
  interface Mapping {
    start: bigint;
    end: bigint;
    perms: string;
    path: string;
    rss: number;
  }
  const maps: Mapping[] = [];
  let cur: Mapping | undefined;
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      cur = {
        start: BigInt(`0x${head[1]}`),
        end: BigInt(`0x${head[2]}`),
        perms: head[3]!,
        path: head[4]!.trim(),
        rss: 0,
      };
      maps.push(cur);
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && cur) cur.rss = Number(rss[1]);
  }
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i]!;
    parts.rssKiB += m.rss;
    if (m.path === '[heap]') {
      parts.brkKiB += m.rss;
      parts.anonKiB += m.rss;
    } else if (m.path === '' || m.path.startsWith('[')) {
      parts.anonKiB += m.rss;
      const next = maps[i + 1];
      const kib = (x: bigint): number => Number(x / 1024n);
      if (
        m.perms.startsWith('rw') &&
        next &&
        next.path === '' &&
        next.perms === '---p' &&
        next.start === m.end &&
        kib(next.end - m.start) === ARENA_RESERVE_KIB
      ) {
        parts.arenaKiB += m.rss;
      }
    } else {
      parts.fileKiB += m.rss;
    }
  }
  return parts;
}
