// Shared by pin.mjs and setup.mjs (plain Node so a fresh machine needs no tsx to bootstrap).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const toolsDir = new URL('.', import.meta.url).pathname;

/** @returns {{ kubernetes: string, etcd: string, kubectlLayer: string }} */
export function readVersions() {
  return JSON.parse(readFileSync(join(toolsDir, 'versions.json'), 'utf8'));
}

// Kept outside the repo so clean clones and `git clean` don't throw away minutes of compiling.
export function cacheRoot() {
  return process.env.SLUICE_KUBE_CACHE ?? join(homedir(), '.cache', 'sluice', 'kube');
}

// k/k tags v1.Y.Z; its staging modules are tagged v0.Y.Z from the same commit.
export function stagingVersion(kubernetesVersion) {
  const m = /^v1\.(\d+\.\d+)$/.exec(kubernetesVersion);
  if (!m) throw new Error(`unexpected Kubernetes version "${kubernetesVersion}"`);
  return `v0.${m[1]}`;
}

export class StepError extends Error {}

// Go commands run niced and without a workspace so they neither starve the other engineers'
// tests on 2 cores nor pick up a go.work from somewhere above the repo.
export function goEnv(extra = {}) {
  return { ...process.env, GOWORK: 'off', GOFLAGS: '-mod=mod', ...extra };
}

/**
 * Runs a command, streaming its output; throws StepError with the command line on failure.
 * @param {string} cmd
 * @param {string[]} args
 * @param {import('node:child_process').SpawnSyncOptions & { nice?: boolean }} [opts]
 */
export function run(cmd, args, opts = {}) {
  const { nice, ...rest } = opts;
  const [file, argv] = nice ? ['nice', ['-n', '10', cmd, ...args]] : [cmd, args];
  const r = spawnSync(file, argv, { stdio: 'inherit', ...rest });
  if (r.error) throw new StepError(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new StepError(`\`${cmd} ${args.join(' ')}\` exited with ${r.status ?? r.signal}`);
  }
  return r;
}

/** Like run() but captures stdout as text. */
export function capture(cmd, args, opts = {}) {
  const r = run(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...opts });
  return String(r.stdout);
}
