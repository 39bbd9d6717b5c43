#!/usr/bin/env node
// Provisions the redis test tier: Debian's redis-server, installed through apt only when it is
// not already on PATH (or at SLUICE_REDIS_SERVER). Idempotent: a warm run only checks the version.
// Usage: node test/redis/setup.mjs
import { spawnSync } from 'node:child_process';
import { aptInstall, failed, StepError } from '../support/apt.mjs';

const started = performance.now();
const log = (msg) => console.log(`[redis setup] ${msg}`);
const secs = () => `${((performance.now() - started) / 1000).toFixed(1)}s`;

function version(bin) {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return null;
  return /v=(\d+\.\d+\.\d+)/.exec(r.stdout)?.[1] ?? null;
}

// The Lua scripts use ZRANGE … BYSCORE, new in Redis 6.2; an older server would fail on the first
// call with an opaque script error instead of here.
const MIN = [6, 2];

try {
  const bin = process.env.SLUICE_REDIS_SERVER ?? 'redis-server';
  let v = version(bin);
  if (v) {
    log(`redis-server ${v}: present, nothing to do (${secs()})`);
  } else {
    if (process.env.SLUICE_REDIS_SERVER) {
      throw new StepError(`SLUICE_REDIS_SERVER=${bin} does not run`);
    }
    log('redis-server is missing; installing the Debian package (apt)');
    aptInstall(['redis-server'], 'redis-server');
    v = version(bin);
    if (!v) throw new StepError('redis-server was installed but does not run');
    log(`installed redis-server ${v} in ${secs()}`);
  }
  const [major, minor] = v.split('.').map(Number);
  if (major < MIN[0] || (major === MIN[0] && minor < MIN[1])) {
    throw new StepError(`redis-server ${v} is too old; the tests need ${MIN.join('.')} or later`);
  }
} catch (err) {
  failed('redis setup', secs, err);
}
