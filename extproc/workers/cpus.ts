/**
 * How many ext_proc workers `--workers auto` starts: the container's CPU limit, read from the
 * cgroup (v2 `cpu.max`, else v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up, never
 * more than the cores Node can schedule on; without a limit, os.availableParallelism().
 *
 * Kubernetes turns `resources.limits.cpu` into exactly this quota (500m → "50000 100000"), so
 * the sidecar uses what it was given and no more: a worker beyond the quota only adds CFS
 * throttling, which is tail latency.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { z } from 'zod';

export interface CpuSources {
  /** Reads a file, or returns undefined when it is absent or unreadable. */
  read(path: string): string | undefined;
  /** Cores this process may run on (os.availableParallelism()). */
  parallelism(): number;
}

export const SYSTEM_CPU_SOURCES: CpuSources = {
  read(path) {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  },
  parallelism: () => availableParallelism(),
};

export interface CpuLimit {
  /** The quota in cores (may be fractional), or undefined when unlimited or unknown. */
  cores: number | undefined;
  source: 'cgroup-v2' | 'cgroup-v1' | 'none';
}

/** "max 100000" (no limit) or "<quota> <period>" in microseconds. */
export function parseCgroupV2(text: string): number | undefined {
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === undefined || quota === 'max') return undefined;
  return ratio(quota, period ?? '100000');
}

function ratio(quota: string, period: string): number | undefined {
  const q = Number(quota);
  const p = Number(period);
  // -1 is cgroup v1's "no limit"; anything not a positive integer is not a limit we can use.
  if (!Number.isInteger(q) || !Number.isInteger(p) || q <= 0 || p <= 0) return undefined;
  return q / p;
}

export function cgroupCpuLimit(src: CpuSources = SYSTEM_CPU_SOURCES): CpuLimit {
  const v2 = src.read('/sys/fs/cgroup/cpu.max');
  if (v2 !== undefined) return { cores: parseCgroupV2(v2), source: 'cgroup-v2' };
  for (const dir of ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpu,cpuacct']) {
    const quota = src.read(`${dir}/cpu.cfs_quota_us`);
    const period = src.read(`${dir}/cpu.cfs_period_us`);
    if (quota !== undefined && period !== undefined) {
      return { cores: ratio(quota.trim(), period.trim()), source: 'cgroup-v1' };
    }
  }
  return { cores: undefined, source: 'none' };
}

/**
 * Workers for `auto`: ceil(quota), at least 1, at most the schedulable cores. Rounded up, because
 * a 1.5-core limit used by one worker leaves half a core idle, while two workers sharing it are
 * throttled only when both are busy at once.
 */
export function autoWorkers(src: CpuSources = SYSTEM_CPU_SOURCES): number {
  const cores = Math.max(1, src.parallelism());
  const limit = cgroupCpuLimit(src).cores;
  if (limit === undefined) return cores;
  return Math.max(1, Math.min(cores, Math.ceil(limit - 1e-9)));
}

/** The most workers `--workers N` accepts: more processes than this is a mistake, not a setting. */
export const MAX_WORKERS = 64;

/** `--workers N|auto` as `sluice run` parses it: a count from 1 to MAX_WORKERS, or `auto`. */
export const WorkersFlag = z
  .string()
  .regex(/^(auto|[1-9]\d{0,2})$/, `--workers must be auto or 1 to ${MAX_WORKERS}`)
  .default('1')
  .transform((v) => (v === 'auto' ? ('auto' as const) : Number(v)))
  .refine((v) => v === 'auto' || v <= MAX_WORKERS, `--workers must be auto or 1 to ${MAX_WORKERS}`);

/** `--workers` as given: a count, or `auto`. */
export function resolveWorkers(
  flag: number | 'auto',
  src: CpuSources = SYSTEM_CPU_SOURCES,
): number {
  return flag === 'auto' ? autoWorkers(src) : flag;
}
