#!/usr/bin/env node
// Provisions the report test tier: Debian's chromium (headless screenshots of the HTML usage
// report), installed through apt only when it is not on PATH (or at SLUICE_CHROMIUM).
// Idempotent: a warm run only checks the version. Usage: node test/report/setup.mjs
import { spawnSync } from 'node:child_process';

const started = performance.now();
const log = (msg) => console.log(`[report setup] ${msg}`);
const secs = () => `${((performance.now() - started) / 1000).toFixed(1)}s`;

class StepError extends Error {}

function version(bin) {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  if (r.error || r.status !== 0) return null;
  return /(\d+\.\d+\.\d+\.\d+)/.exec(r.stdout)?.[1] ?? null;
}

function apt(args) {
  const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  const [file, ...rest] = [...sudo, 'apt-get', ...args];
  const r = spawnSync(file, rest, {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.error) throw new StepError(`apt-get: ${r.error.message}`);
  if (r.status !== 0) throw new StepError(`\`apt-get ${args.join(' ')}\` exited with ${r.status}`);
}

try {
  const bin = process.env.SLUICE_CHROMIUM ?? 'chromium';
  let v = version(bin);
  if (v) {
    log(`chromium ${v}: present, nothing to do (${secs()})`);
  } else {
    if (process.env.SLUICE_CHROMIUM) throw new StepError(`SLUICE_CHROMIUM=${bin} does not run`);
    log('chromium is missing; installing the Debian package (apt)');
    apt(['update', '-qq']);
    apt(['install', '-y', '-qq', '--no-install-recommends', 'chromium']);
    v = version(bin);
    if (!v) throw new StepError('chromium was installed but does not run');
    log(`installed chromium ${v} in ${secs()}`);
  }
} catch (err) {
  console.error(
    `[report setup] FAILED after ${secs()}: ${err instanceof StepError ? err.message : (err?.stack ?? err)}`,
  );
  process.exit(1);
}
