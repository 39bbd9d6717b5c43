#!/usr/bin/env node
// Provisions the report test tier: Debian's chromium (headless screenshots of the HTML usage
// report), installed through apt only when it is not on PATH (or at SLUICE_CHROMIUM).
// Idempotent: a warm run only checks the version. Usage: node test/report/setup.mjs
import { spawnSync } from 'node:child_process';
import { aptInstall, failed, StepError } from '../support/apt.mjs';

const started = performance.now();
const log = (msg) => console.log(`[report setup] ${msg}`);
const secs = () => `${((performance.now() - started) / 1000).toFixed(1)}s`;

function version(bin) {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  if (r.error || r.status !== 0) return null;
  return /(\d+\.\d+\.\d+\.\d+)/.exec(r.stdout)?.[1] ?? null;
}

try {
  const bin = process.env.SLUICE_CHROMIUM ?? 'chromium';
  let v = version(bin);
  if (v) {
    log(`chromium ${v}: present, nothing to do (${secs()})`);
  } else {
    if (process.env.SLUICE_CHROMIUM) throw new StepError(`SLUICE_CHROMIUM=${bin} does not run`);
    log('chromium is missing; installing the Debian package (apt)');
    aptInstall(['chromium'], 'chromium');
    v = version(bin);
    if (!v) throw new StepError('chromium was installed but does not run');
    log(`installed chromium ${v} in ${secs()}`);
  }
} catch (err) {
  failed('report setup', secs, err);
}
