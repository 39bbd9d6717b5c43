/**
 * Builds the Go load generator once per version of its sources into the user's cache
 * (~/.cache/sluice/bench, or SLUICE_BENCH_CACHE), so `npm run bench` compiles it on first use
 * only. Usage as a script: `npx tsx test/bench/loadgen/build.ts` prints the binary's path.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SOURCE_DIR = fileURLToPath(new URL('.', import.meta.url));
const PREFIX = 'loadgen-';

export type LoadgenBuild =
  | { path: string; built: boolean }
  /** Why there is no binary (no Go, a failed build); the bench prints it and moves on. */
  | { skipped: string };

export function cacheDir(): string {
  return process.env.SLUICE_BENCH_CACHE || join(homedir(), '.cache', 'sluice', 'bench');
}

/** The module's own files: go.mod, go.sum and the .go sources (tests included: cheap to hash). */
function sources(): string[] {
  return readdirSync(SOURCE_DIR)
    .filter((f) => f === 'go.mod' || f === 'go.sum' || f.endsWith('.go'))
    .sort();
}

/** Sources and toolchain together: a new Go version rebuilds too. */
function sourceHash(goVersion: string): string {
  const h = createHash('sha256').update(`${goVersion}\0${process.platform}/${process.arch}\0`);
  for (const f of sources())
    h.update(`${f}\0`)
      .update(readFileSync(join(SOURCE_DIR, f)))
      .update('\0');
  return h.digest('hex').slice(0, 16);
}

// Like test/kube: no workspace from above the repo, and go.sum as committed.
export const goEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  GOWORK: 'off',
  GOFLAGS: '-mod=readonly',
  CGO_ENABLED: '0',
});

export function buildLoadgen(log: (line: string) => void = () => undefined): LoadgenBuild {
  const ver = spawnSync('go', ['env', 'GOVERSION'], { encoding: 'utf8', env: goEnv() });
  if (ver.error || ver.status !== 0) return { skipped: 'go not found' };
  const dir = cacheDir();
  const name = `${PREFIX}${sourceHash(ver.stdout.trim())}`;
  const path = join(dir, name);
  if (existsSync(path)) return { path, built: false };

  mkdirSync(dir, { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  log(`building the Go load generator (${ver.stdout.trim()}) into ${dir}`);
  // nice: on 2 cores a first-time build with module downloads should not starve other work.
  const b = spawnSync('nice', ['-n', '10', 'go', 'build', '-trimpath', '-o', tmp, '.'], {
    cwd: SOURCE_DIR,
    encoding: 'utf8',
    env: goEnv(),
  });
  if (b.error || b.status !== 0) {
    rmSync(tmp, { force: true });
    const why = (b.error?.message ?? b.stderr).trim().split('\n').slice(-5).join(' | ');
    return { skipped: `loadgen build failed: ${why}` };
  }
  renameSync(tmp, path);
  // Older builds are dead weight (tens of MB each); one current binary is enough.
  for (const f of readdirSync(dir)) {
    if (f.startsWith(PREFIX) && f !== name && !f.includes('.tmp-'))
      rmSync(join(dir, f), { force: true });
  }
  return { path, built: true };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = buildLoadgen((line) => process.stderr.write(`${line}\n`));
  if ('skipped' in r) {
    process.stderr.write(`skipped: ${r.skipped}\n`);
    process.exitCode = 1;
  } else {
    process.stdout.write(`${r.path}\n`);
  }
}
