#!/usr/bin/env node
// Runs every test tier with node's own test runner (TypeScript through tsx).
// Tiers are folders; `node test/run.mjs unit conformance` runs a subset.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { availableParallelism } from 'node:os';

const root = new URL('..', import.meta.url).pathname;
const tiers = {
  unit: ['operator', 'extproc'],
  proto: ['test/proto'],
  golden: ['test/golden'],
  'envoy-config': ['test/envoy-config'],
  driver: ['test/driver'],
  conformance: ['test/conformance'],
  // The ext_proc server's HTTP/2 against h2spec (built from the Go module proxy, then cached).
  interop: ['test/interop'],
  e2e: ['test/e2e'],
  kube: ['test/kube'],
  redis: ['test/redis'],
  prometheus: ['test/prometheus'],
  otlp: ['test/otlp'],
  report: ['test/report'],
  // The bench's own pieces (payloads, probe, load generator); never the timed bench itself.
  bench: ['test/bench'],
};

function find(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) find(path, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, path));
  }
  return out;
}

const wanted = process.argv.slice(2);
const selected = wanted.length > 0 ? wanted : Object.keys(tiers);
const files = [];
for (const tier of selected) {
  const dirs = tiers[tier];
  if (!dirs) {
    console.error(`unknown tier "${tier}"; known: ${Object.keys(tiers).join(', ')}`);
    process.exit(2);
  }
  for (const d of dirs) files.push(...find(join(root, d), []).sort());
}
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
// The kube tier needs kube-apiserver, etcd, kubectl and helm: built or fetched once, then cached
// outside the repo (~/.cache/sluice), so a fresh machine gets them from the project's own script.
if (selected.includes('kube')) {
  const setup = spawnSync(process.execPath, [join(root, 'test/kube/setup.mjs')], {
    stdio: 'inherit',
  });
  if (setup.status !== 0) process.exit(setup.status ?? 1);
}
// The redis tier needs a redis-server binary: installed from Debian's packages when missing.
if (selected.includes('redis')) {
  const setup = spawnSync(process.execPath, [join(root, 'test/redis/setup.mjs')], {
    stdio: 'inherit',
  });
  if (setup.status !== 0) process.exit(setup.status ?? 1);
}
// The report tier screenshots the HTML usage report with Debian's chromium, installed when missing.
if (selected.includes('report')) {
  const setup = spawnSync(process.execPath, [join(root, 'test/report/setup.mjs')], {
    stdio: 'inherit',
  });
  if (setup.status !== 0) process.exit(setup.status ?? 1);
}
// The otlp tier's trace receiver is built with Go from the module proxy, cached like the kube tools.
if (selected.includes('otlp')) {
  const setup = spawnSync(process.execPath, [join(root, 'test/otlp/setup.mjs')], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (setup.status !== 0) process.exit(setup.status ?? 1);
}
// The prometheus tier runs Debian's prometheus (and promtool) against a gateway on Redis.
if (selected.includes('prometheus')) {
  for (const script of ['test/redis/setup.mjs', 'test/prometheus/setup.mjs']) {
    const setup = spawnSync(process.execPath, [join(root, script)], { stdio: 'inherit' });
    if (setup.status !== 0) process.exit(setup.status ?? 1);
  }
}
const concurrency = Math.max(1, availableParallelism());
const result = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    `--test-concurrency=${concurrency}`,
    '--test-reporter=spec',
    ...files,
  ],
  { cwd: root, stdio: 'inherit', env: { ...process.env, NODE_ENV: 'test' } },
);
process.exit(result.status ?? 1);
