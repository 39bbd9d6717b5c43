#!/usr/bin/env node
// Provisions the otlp test tier: builds test/otlp/receiver (a small OTLP/HTTP trace receiver on
// the OpenTelemetry Collector's pdata decoders) with Go from the module proxy, once per source
// change, cached outside the repo in ~/.cache/sluice/otlp/<hash>/. A cold build downloads the
// modules (about a minute here); a warm run only checks the cached binary exists.
// Usage: node test/otlp/setup.mjs  (prints the binary's path on its last line)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

const started = performance.now();
const log = (msg) => console.error(`[otlp setup] ${msg}`);
const secs = () => `${((performance.now() - started) / 1000).toFixed(1)}s`;
const src = new URL('./receiver/', import.meta.url).pathname;

export function receiverPath() {
  const hash = createHash('sha256');
  for (const f of ['main.go', 'go.mod', 'go.sum']) hash.update(readFileSync(join(src, f)));
  const root = process.env.SLUICE_CACHE_DIR ?? join(homedir(), '.cache', 'sluice');
  return join(root, 'otlp', hash.digest('hex').slice(0, 16), 'otlp-receiver');
}

function main() {
  const bin = receiverPath();
  if (existsSync(bin)) {
    log(`receiver cached at ${bin} (${secs()})`);
    console.log(bin);
    return 0;
  }
  if (spawnSync('go', ['version'], { stdio: 'ignore' }).status !== 0) {
    log('FAILED: go is not on PATH; it builds the OTLP receiver');
    return 1;
  }
  mkdirSync(join(bin, '..'), { recursive: true });
  log('building the OTLP receiver (go.opentelemetry.io/collector/pdata) from the module proxy');
  const tmp = `${bin}.tmp-${process.pid}`;
  // -mod=readonly: go.sum pins every module; a build never rewrites the checked-in files.
  const r = spawnSync('go', ['build', '-mod=readonly', '-o', tmp, '.'], {
    cwd: src,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, CGO_ENABLED: '0' },
  });
  if (r.status !== 0) {
    log(`FAILED: go build exited with ${r.status} after ${secs()}`);
    return 1;
  }
  renameSync(tmp, bin);
  log(`built ${bin} in ${secs()}`);
  console.log(bin);
  return 0;
}

if (process.argv[1] === new URL(import.meta.url).pathname) process.exit(main());
