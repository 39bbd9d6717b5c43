// A throwaway Kubernetes control plane (etcd + kube-apiserver, no controllers, no kubelet) for
// the kube test tier, started the way controller-runtime's envtest does it. Binaries come from
// the cache that `node test/kube/setup.mjs` fills.
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';

export interface KubeEnvOptions {
  /** Extra kube-apiserver flags, e.g. feature gates; later flags win. */
  apiserverArgs?: string[];
  /** How long to wait for /readyz before giving up (default 60 s). */
  startTimeoutMs?: number;
  /** Keep the temp dir (logs, certs, etcd data) after stop(); SLUICE_KUBE_KEEP=1 does the same. */
  keep?: boolean;
}

export interface Identity {
  kubeConfig: KubeConfig;
  /** A kubeconfig file for the same identity, for kubectl and helm. */
  kubeconfigPath: string;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface KubeEnv {
  /** https://127.0.0.1:PORT */
  server: string;
  /** The pinned Kubernetes version the server reports, e.g. v1.34.10. */
  version: string;
  /** Admin (system:masters) kubeconfig on disk, for kubectl/helm. */
  kubeconfigPath: string;
  /** Admin (system:masters) client config. */
  kubeConfig: KubeConfig;
  /** Temp dir holding certs, logs (etcd.log, kube-apiserver.log) and etcd data. */
  dir: string;
  bin: { kubectl: string; helm: string };
  /**
   * Admin credentials plus an Impersonate-User header. For a ServiceAccount user name
   * (system:serviceaccount:NS:NAME) the apiserver adds that account's groups itself, so this is
   * how to check what a chart's ServiceAccount may do.
   */
  impersonate(user: string): KubeConfig;
  /**
   * Really authenticates as `user` in `groups`, with a client certificate minted by the test CA.
   * Use when arbitrary groups matter (client-node sends at most one Impersonate-Group header).
   */
  authenticateAs(user: string, groups?: string[]): Promise<Identity>;
  /** Runs the cached kubectl against this server (admin unless --kubeconfig is given). */
  kubectl(args: string[], opts?: { input?: string }): Promise<ExecResult>;
  /** Kills etcd and kube-apiserver and removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

interface Versions {
  kubernetes: string;
  etcd: string;
}

const versions = JSON.parse(
  readFileSync(new URL('./tools/versions.json', import.meta.url), 'utf8'),
) as Versions;

// Must agree with cacheRoot() in tools/common.mjs.
function cacheRoot(): string {
  return process.env.SLUICE_KUBE_CACHE ?? join(homedir(), '.cache', 'sluice', 'kube');
}

// The child is exec'd by sh, so its pid is the server's; the background watchdog holds the read
// end of our stdin pipe and kills the server when that pipe closes, which happens however this
// process dies (test failure, timeout, SIGKILL), so servers never outlive the test process.
const WATCHDOG =
  'exec 3<&0; { cat <&3 >/dev/null 2>&1; kill -9 $$ 2>/dev/null; ' +
  'if [ -n "$SLUICE_KUBE_RM" ]; then sleep 0.2; rm -rf "$SLUICE_KUBE_RM"; fi; } ' +
  '</dev/null >/dev/null 2>&1 & exec "$@" 3<&- </dev/null';

interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<void>;
  done: boolean;
}

const live = new Set<{ procs: Proc[]; dir: string; keep: boolean }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const env of live) {
      for (const p of env.procs) if (!p.done && p.child.pid) tryKill(p.child.pid);
      if (!env.keep) rmSync(env.dir, { recursive: true, force: true });
    }
  });
}

function tryKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function startProc(name: string, bin: string, args: string[], dir: string, rm: string): Proc {
  const log = join(dir, `${name}.log`);
  const fd = openSync(log, 'a');
  const child = spawn('/bin/sh', ['-c', WATCHDOG, 'sh', bin, ...args], {
    stdio: ['pipe', fd, fd],
    env: { ...process.env, SLUICE_KUBE_RM: rm },
  });
  closeSync(fd);
  // A test that forgets stop() must still let its process exit; the exit hook and the
  // watchdog then take the servers down.
  child.unref();
  child.stdin?.on('error', () => {});
  (child.stdin as unknown as { unref(): void } | null)?.unref();
  const proc: Proc = { name, child, log, done: false, exited: Promise.resolve() };
  proc.exited = new Promise((resolve) => {
    child.once('exit', () => {
      proc.done = true;
      resolve();
    });
    child.once('error', () => {
      proc.done = true;
      resolve();
    });
  });
  return proc;
}

async function stopProc(p: Proc): Promise<void> {
  // Unref'd children would let the event loop drain before 'exit' arrives.
  p.child.ref();
  if (!p.done && p.child.pid) tryKill(p.child.pid);
  await p.exited;
  p.child.stdin?.destroy();
}

async function logTail(p: Proc, lines = 30): Promise<string> {
  const text = await readFile(p.log, 'utf8').catch(() => '');
  return text.split('\n').slice(-lines).join('\n');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr && typeof addr === 'object') resolve(addr.port);
        else reject(new Error('no port'));
      });
    });
  });
}

function run(cmd: string, args: string[], opts: { input?: string; cwd?: string } = {}) {
  return new Promise<ExecResult>((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { cwd: opts.cwd, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') reject(new Error(`${cmd}: ${err.message}`));
        else resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const r = await run('openssl', args, { cwd });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

// Our own config, so leaf certificates don't inherit the system openssl.cnf's CA:TRUE default.
const OPENSSL_CNF = `[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

// P-256 keys for TLS: generating them is near-instant, unlike RSA, and startup time matters.
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

function subject(cn: string, orgs: string[]): string {
  const esc = (s: string) => s.replace(/[\\/+=,]/g, (c) => `\\${c}`);
  return `/CN=${esc(cn)}${orgs.map((o) => `/O=${esc(o)}`).join('')}`;
}

async function issueCert(certs: string, base: string, profile: string, subj: string) {
  await openssl(
    [
      'req',
      '-x509',
      '-config',
      'openssl.cnf',
      '-extensions',
      profile,
      '-subj',
      subj,
      ...EC_KEY,
      '-keyout',
      `${base}.key`,
      '-out',
      `${base}.crt`,
      '-days',
      '2',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
    ],
    certs,
  );
}

async function makeCerts(certs: string): Promise<void> {
  mkdirSync(certs, { recursive: true });
  await writeFile(join(certs, 'openssl.cnf'), OPENSSL_CNF);
  await openssl(
    [
      'req',
      '-x509',
      '-config',
      'openssl.cnf',
      '-extensions',
      'ca',
      '-subj',
      '/CN=sluice-test-ca',
      ...EC_KEY,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
    ],
    certs,
  );
  await Promise.all([
    issueCert(certs, 'serving', 'serving', '/CN=localhost'),
    issueCert(certs, 'admin', 'client', subject('admin', ['system:masters'])),
    // The apiserver derives the verification key from this private key file too.
    openssl(
      ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'sa.key'],
      certs,
    ),
  ]);
}

function kubeconfigJson(
  server: string,
  ca: string,
  user: { cert: string; key: string; as?: string },
) {
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'sluice-test', cluster: { server, 'certificate-authority-data': ca } }],
    users: [
      {
        name: 'user',
        user: {
          'client-certificate-data': user.cert,
          'client-key-data': user.key,
          ...(user.as ? { as: user.as } : {}),
        },
      },
    ],
    contexts: [{ name: 'sluice-test', context: { cluster: 'sluice-test', user: 'user' } }],
    'current-context': 'sluice-test',
  };
}

function kubeConfigFrom(json: object): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(JSON.stringify(json));
  return kc;
}

async function readyz(server: string, ca: Buffer, cert: Buffer, key: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const req = request(
      `${server}/readyz`,
      { ca, cert, key, agent: false, timeout: 2000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(res.statusCode === 200 ? 'ok' : `${res.statusCode}: ${body}`));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(e.message));
    req.end();
  });
}

// Ports are picked free and then handed to the servers, so a parallel test file can take one in
// between; such a start is simply retried.
class PortClash extends Error {}

export async function startKubeEnv(opts: KubeEnvOptions = {}): Promise<KubeEnv> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      if (!(err instanceof PortClash) || attempt >= 3) throw err;
    }
  }
}

async function startOnce(opts: KubeEnvOptions): Promise<KubeEnv> {
  const version = versions.kubernetes;
  const binDir = join(cacheRoot(), version);
  const apiserverBin = join(binDir, 'kube-apiserver');
  const etcdBin = join(binDir, 'etcd');
  const bin = {
    kubectl: join(cacheRoot(), 'bin', 'kubectl'),
    helm: join(cacheRoot(), 'bin', 'helm'),
  };
  for (const b of [apiserverBin, etcdBin, bin.kubectl, bin.helm]) {
    if (!existsSync(b)) {
      throw new Error(`${b} is missing: run \`node test/kube/setup.mjs\` first (builds it once)`);
    }
  }
  const keep = opts.keep ?? process.env.SLUICE_KUBE_KEEP === '1';
  const dir = mkdtempSync(join(tmpdir(), 'sluice-kube-'));
  const procs: Proc[] = [];
  const entry = { procs, dir, keep };
  live.add(entry);
  installExitHook();
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      // apiserver first so it doesn't log a storm of etcd errors into the kept logs.
      for (const p of [...procs].reverse()) await stopProc(p);
      live.delete(entry);
      if (keep) console.error(`kube env kept in ${dir}`);
      else rmSync(dir, { recursive: true, force: true });
    })());

  try {
    const certs = join(dir, 'certs');
    const [etcdPort, port] = await Promise.all([freePort(), freePort()]);
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    // etcd needs no certs, so it boots while openssl works.
    procs.push(
      startProc(
        'etcd',
        etcdBin,
        [
          `--data-dir=${join(dir, 'etcd')}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          '--listen-peer-urls=http://127.0.0.1:0',
          '--unsafe-no-fsync',
          '--log-level=warn',
        ],
        dir,
        keep ? '' : dir,
      ),
    );
    await makeCerts(certs);
    const server = `https://127.0.0.1:${port}`;
    const c = (f: string) => join(certs, f);
    procs.push(
      startProc(
        'kube-apiserver',
        apiserverBin,
        [
          `--etcd-servers=${etcdUrl}`,
          '--bind-address=127.0.0.1',
          '--advertise-address=127.0.0.1',
          `--secure-port=${port}`,
          `--cert-dir=${join(dir, 'apiserver')}`,
          `--tls-cert-file=${c('serving.crt')}`,
          `--tls-private-key-file=${c('serving.key')}`,
          `--client-ca-file=${c('ca.crt')}`,
          '--authorization-mode=RBAC',
          `--service-account-issuer=${server}`,
          `--service-account-key-file=${c('sa.key')}`,
          `--service-account-signing-key-file=${c('sa.key')}`,
          '--service-cluster-ip-range=10.0.0.0/24',
          '--allow-privileged=true',
          '--disable-admission-plugins=ServiceAccount',
          ...(opts.apiserverArgs ?? []),
        ],
        dir,
        '',
      ),
    );

    const [caPem, adminCrt, adminKey] = await Promise.all(
      ['ca.crt', 'admin.crt', 'admin.key'].map((f) => readFile(c(f))),
    );
    const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
    let last = '';
    for (;;) {
      const dead = procs.find((p) => p.done);
      if (dead) {
        const tail = await logTail(dead);
        const E = /address already in use/.test(tail) ? PortClash : Error;
        throw new E(`${dead.name} exited during startup:\n${tail}`);
      }
      last = await readyz(server, caPem!, adminCrt!, adminKey!);
      if (last === 'ok') break;
      if (Date.now() > deadline) {
        const tails = await Promise.all(
          procs.map(async (p) => `--- ${p.name}\n${await logTail(p)}`),
        );
        throw new Error(
          `kube-apiserver not ready after ${opts.startTimeoutMs ?? 60_000} ms (${last})\n${tails.join('\n')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }

    const b64 = (b: Buffer | undefined) => b!.toString('base64');
    const ca = b64(caPem);
    const admin = kubeconfigJson(server, ca, { cert: b64(adminCrt), key: b64(adminKey) });
    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeFile(kubeconfigPath, JSON.stringify(admin, null, 2), { mode: 0o600 });
    let minted = 0;

    return {
      server,
      version,
      kubeconfigPath,
      kubeConfig: kubeConfigFrom(admin),
      dir,
      bin,
      impersonate: (user) =>
        kubeConfigFrom(
          kubeconfigJson(server, ca, { cert: b64(adminCrt), key: b64(adminKey), as: user }),
        ),
      async authenticateAs(user, groups = []) {
        const base = `user-${++minted}`;
        await issueCert(certs, base, 'client', subject(user, groups));
        const [crt, key] = await Promise.all([
          readFile(c(`${base}.crt`)),
          readFile(c(`${base}.key`)),
        ]);
        const json = kubeconfigJson(server, ca, { cert: b64(crt), key: b64(key) });
        const path = join(dir, `kubeconfig-${base}`);
        await writeFile(path, JSON.stringify(json, null, 2), { mode: 0o600 });
        return { kubeConfig: kubeConfigFrom(json), kubeconfigPath: path };
      },
      kubectl: (args, o = {}) => {
        const withConfig = args.some((a) => a === '--kubeconfig' || a.startsWith('--kubeconfig='))
          ? args
          : [`--kubeconfig=${kubeconfigPath}`, ...args];
        return run(bin.kubectl, withConfig, o);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
