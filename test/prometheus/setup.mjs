#!/usr/bin/env node
// Provisions the prometheus test tier: Debian's prometheus (the server and promtool), installed
// through apt only when missing (or taken from SLUICE_PROMETHEUS / SLUICE_PROMTOOL). Idempotent: a
// warm run only checks the versions. Usage: node test/prometheus/setup.mjs
import { spawnSync } from 'node:child_process';
import { aptInstall, failed, StepError } from '../support/apt.mjs';

const started = performance.now();
const log = (msg) => console.log(`[prometheus setup] ${msg}`);
const secs = () => `${((performance.now() - started) / 1000).toFixed(1)}s`;

// `prometheus --version` and `promtool --version` both print "<name>, version 2.42.0 (…)".
function version(bin) {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) return null;
  return /version (\d+\.\d+\.\d+)/.exec(`${r.stdout}${r.stderr}`)?.[1] ?? null;
}

// The test uses the query API's `/api/v1/query` and `/api/v1/series`, `promtool check rules` and
// histogram_quantile over classic buckets: all present long before 2.30, which Debian 12 beats.
const MIN = [2, 30];

try {
  const server = process.env.SLUICE_PROMETHEUS ?? 'prometheus';
  const tool = process.env.SLUICE_PROMTOOL ?? 'promtool';
  let v = version(server);
  if (v) {
    log(`prometheus ${v}: present, nothing to do (${secs()})`);
  } else {
    if (process.env.SLUICE_PROMETHEUS) {
      throw new StepError(`SLUICE_PROMETHEUS=${server} does not run`);
    }
    log('prometheus is missing; installing the Debian package (apt)');
    // No recommends: the package recommends node-exporter, which the tier does not use.
    aptInstall(['prometheus'], 'prometheus');
    v = version(server);
    if (!v) throw new StepError('prometheus was installed but does not run');
    log(`installed prometheus ${v} in ${secs()}`);
  }
  const [major, minor] = v.split('.').map(Number);
  if (major < MIN[0] || (major === MIN[0] && minor < MIN[1])) {
    throw new StepError(`prometheus ${v} is too old; the tests need ${MIN.join('.')} or later`);
  }
  const t = version(tool);
  if (!t) throw new StepError(`${tool} does not run (Debian's prometheus package ships it)`);
  log(`promtool ${t}`);
} catch (err) {
  failed('prometheus setup', secs, err);
}
