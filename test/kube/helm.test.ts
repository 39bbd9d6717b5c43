// The Helm chart: lint, golden renders, values rejected with clear messages, the Envoy bootstrap
// read strictly against the targeted Envoy API, the drain hook run for real, every rendered
// object applied to a real kube-apiserver, RBAC proven with `kubectl auth can-i`, and the operator
// reconciling with exactly the chart's ServiceAccount permissions.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { parse, parseAllDocuments } from 'yaml';
import { GROUP, VERSION } from '../../operator/api/types.js';
import { envoyApiRoot } from '../../operator/envoy-api/index.js';
import { EXTPROC_ENV, EXTPROC_NODE_FLAGS } from '../../extproc/workers/node-flags.js';
import type { run as RunOperator } from '../../operator/run.js';
import { strictFromJson } from '../envoy-config/strict-json.js';
import { startKubeEnv, type KubeEnv } from './env.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const CHART = join(ROOT, 'charts/sluice');
const FIXTURES = join(ROOT, 'test/fixtures/helm');
const VALUES = ['default', 'production', 'minimal'] as const;
const RELEASE = 'sluice';
const UPDATE = process.env.UPDATE_GOLDEN === '1';
// Renders are pinned to one Kubernetes version so the goldens do not move with helm's default.
const KUBE_VERSION = 'v1.34.0';
/**
 * An operator log line about a refused call. 403 stands alone: a bare /403/ also matched every
 * line logged while the epoch milliseconds held "403" (e.g. 1796640309566), ~10 s in 10,000.
 */
const DENIED = /forbidden|\b403\b/i;

type Doc = Record<string, any>;

let env: KubeEnv;
let helmHome: string;

function exec(
  cmd: string,
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', env: opts.env ?? process.env },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') reject(new Error(`${cmd}: ${err.message}`));
        else resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

// Helm keeps caches and repository config under $HOME unless told otherwise; tests stay out of it.
function helm(args: string[]) {
  return exec(env.bin.helm, args, {
    env: {
      ...process.env,
      HELM_CACHE_HOME: join(helmHome, 'cache'),
      HELM_CONFIG_HOME: join(helmHome, 'config'),
      HELM_DATA_HOME: join(helmHome, 'data'),
    },
  });
}

async function render(namespace: string, extra: string[] = [], release = RELEASE): Promise<string> {
  const r = await helm([
    'template',
    release,
    CHART,
    '--namespace',
    namespace,
    '--kube-version',
    KUBE_VERSION,
    ...extra,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

function valuesFile(name: string): string {
  return join(FIXTURES, 'values', `${name}.yaml`);
}

function docs(text: string): Doc[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Doc | null)
    .filter((d): d is Doc => d !== null);
}

function find(all: Doc[], kind: string, nameSuffix = ''): Doc {
  const d = all.find((x) => x.kind === kind && String(x.metadata?.name).endsWith(nameSuffix));
  assert.ok(d, `no ${kind} *${nameSuffix} in the render`);
  return d;
}

async function expectRenderFailure(args: string[], ...messages: RegExp[]): Promise<void> {
  const r = await helm(['template', RELEASE, CHART, '--kube-version', KUBE_VERSION, ...args]);
  assert.notEqual(r.code, 0, `rendered although it should not: ${args.join(' ')}`);
  for (const m of messages) assert.match(r.stderr, m);
}

async function kubectl(args: string[], input?: string): Promise<string> {
  const r = await env.kubectl(args, input === undefined ? {} : { input });
  assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function ensureNamespace(name: string): Promise<void> {
  const r = await env.kubectl(['create', 'namespace', name]);
  assert.ok(r.code === 0 || /AlreadyExists/.test(r.stderr), r.stderr);
}

async function eventually<T>(what: string, fn: () => Promise<T>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Right after a CRD is Established its storage may answer 429 for a moment; retry that only.
async function serverSideApply(input: string): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await env.kubectl(
      ['apply', '--server-side', '--field-manager=sluice-helm-test', '-f', '-'],
      { input },
    );
    if (r.code === 0) return r.stdout;
    if (!/too many requests|429|could not find the requested resource/i.test(r.stderr)) {
      assert.fail(`server-side apply refused:\n${r.stderr}`);
    }
    if (Date.now() > deadline) assert.fail(`server-side apply kept failing:\n${r.stderr}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

void before(async () => {
  helmHome = mkdtempSync(join(tmpdir(), 'sluice-helm-'));
  env = await startKubeEnv();
});

void after(async () => {
  await env?.stop();
  if (helmHome) rmSync(helmHome, { recursive: true, force: true });
});

void describe('chart: lint and render', () => {
  it('passes helm lint --strict with every values file', async () => {
    for (const v of VALUES) {
      const r = await helm(['lint', '--strict', CHART, '-f', valuesFile(v)]);
      assert.equal(r.code, 0, `${v}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  it('prints next steps after install (NOTES.txt)', async () => {
    const r = await helm(['install', '--dry-run=client', 'sluice', CHART, '-n', 'sluice-system']);
    assert.equal(r.code, 0, r.stderr);
    const notes = r.stdout.slice(r.stdout.indexOf('NOTES:'));
    assert.match(notes, /rollout status deploy\/sluice-operator deploy\/sluice-gateway/);
    assert.match(notes, /kubectl wait .* --for=condition=Programmed/);
    assert.match(notes, /http:\/\/sluice-gateway\.sluice-system\.svc\/v1/);
    assert.match(notes, /set redis\.url/);
  });

  for (const v of VALUES) {
    it(`renders ${v} values as its golden file`, async () => {
      const out = await render('sluice-system', ['-f', valuesFile(v)]);
      const golden = join(FIXTURES, 'golden', `${v}.yaml.golden`);
      if (UPDATE) writeFileSync(golden, out);
      assert.equal(out, readFileSync(golden, 'utf8'), `UPDATE_GOLDEN=1 rewrites ${golden}`);
    });
  }

  it('ships CRDs identical to crds/', () => {
    const want = readdirSync(join(ROOT, 'crds')).filter((f) => f.endsWith('.yaml'));
    const have = readdirSync(join(CHART, 'crds')).filter((f) => f.endsWith('.yaml'));
    assert.deepEqual(have.sort(), want.sort(), 'run node test/fixtures/helm/sync-crds.mjs');
    for (const f of want) {
      assert.equal(
        readFileSync(join(CHART, 'crds', f), 'utf8'),
        readFileSync(join(ROOT, 'crds', f), 'utf8'),
        `charts/sluice/crds/${f} is stale: run node test/fixtures/helm/sync-crds.mjs`,
      );
    }
  });

  it('runs every container under the restricted profile, gateway pods without an API token', async () => {
    for (const v of VALUES) {
      const all = docs(await render('sluice-system', ['-f', valuesFile(v)]));
      for (const d of all.filter((x) => x.kind === 'Deployment')) {
        const pod = d.spec.template.spec;
        assert.equal(pod.securityContext.runAsNonRoot, true);
        assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
        for (const c of pod.containers) {
          const sc = c.securityContext;
          assert.equal(sc.readOnlyRootFilesystem, true, `${v} ${c.name}`);
          assert.equal(sc.allowPrivilegeEscalation, false, `${v} ${c.name}`);
          assert.deepEqual(sc.capabilities.drop, ['ALL'], `${v} ${c.name}`);
          assert.ok(c.resources?.requests, `${v} ${c.name} has resource requests`);
          assert.ok(c.readinessProbe, `${v} ${c.name} has a readiness probe`);
        }
      }
      const gw = find(all, 'Deployment', '-gateway').spec.template.spec;
      assert.equal(gw.automountServiceAccountToken, false);
      assert.equal(find(all, 'ServiceAccount', '-gateway').automountServiceAccountToken, false);
      assert.ok(!all.some((x) => /Binding$/.test(x.kind) && /-gateway/.test(x.metadata.name)));
    }
  });

  it('wires the gateway: ADS at the operator Service, node ids from the pod name, shared socket', async () => {
    const all = docs(await render('sluice-system', ['-f', valuesFile('production')]));
    const pod = find(all, 'Deployment', '-gateway').spec.template.spec;
    const envoy = pod.containers.find((c: Doc) => c.name === 'envoy');
    const extproc = pod.containers.find((c: Doc) => c.name === 'extproc');
    assert.ok(envoy.args.includes('--service-node=$(POD_NAME)/envoy'));
    assert.deepEqual(envoy.env[0], {
      name: 'POD_NAME',
      valueFrom: { fieldRef: { fieldPath: 'metadata.name' } },
    });
    assert.deepEqual(extproc.args.slice(0, 4), [
      'extproc',
      '--xds=sluice-operator.sluice-system.svc.cluster.local:18000',
      '--node-id=$(POD_NAME)/extproc',
      '--listen=unix:/var/run/sluice/extproc.sock',
    ]);
    for (const c of [envoy, extproc]) {
      assert.ok(
        c.volumeMounts.some((m: Doc) => m.name === 'sockets' && m.mountPath === '/var/run/sluice'),
      );
    }
    assert.ok(pod.volumes.some((v: Doc) => v.name === 'sockets' && Boolean(v.emptyDir)));
    assert.deepEqual(
      extproc.env.find((e: Doc) => e.name === 'SLUICE_REDIS_URL').valueFrom.secretKeyRef,
      { name: 'sluice-redis', key: 'url' },
    );
    // The vault key arrives as a read-only file, never as an env value.
    assert.equal(
      extproc.env.find((e: Doc) => e.name === 'SLUICE_VAULT_KEY_FILE').value,
      '/etc/sluice/vault/key',
    );
    assert.ok(
      extproc.volumeMounts.some(
        (m: Doc) =>
          m.name === 'vault-key' && m.mountPath === '/etc/sluice/vault' && m.readOnly === true,
      ),
    );
    assert.deepEqual(pod.volumes.find((v: Doc) => v.name === 'vault-key').secret.items, [
      { key: 'key', path: 'key' },
    ]);
    assert.equal(envoy.readinessProbe.httpGet.path, '/ready');
    assert.equal(extproc.readinessProbe.httpGet.path, '/readyz');
    assert.equal(pod.terminationGracePeriodSeconds, 75);
    assert.equal(envoy.lifecycle.preStop.sleep.seconds, 30);

    const operator = find(all, 'Deployment', '-operator').spec.template.spec.containers[0];
    assert.ok(operator.args.includes('--leader-elect'));
    assert.ok(operator.args.includes('--xds-listen=0.0.0.0:18000'));
    assert.equal(operator.readinessProbe.httpGet.path, '/readyz');
    assert.equal(operator.livenessProbe.httpGet.path, '/healthz');

    const minimal = docs(await render('sluice-system', ['-f', valuesFile('minimal')]));
    const url = find(minimal, 'Deployment', '-gateway')
      .spec.template.spec.containers.find((c: Doc) => c.name === 'extproc')
      .env.find((e: Doc) => e.name === 'SLUICE_REDIS_URL');
    assert.equal(url.value, 'redis://redis.sluice-system.svc:6379/0');

    // Mesh identity behind a sidecar is opt-in: the default never trusts a forwarded XFCC.
    assert.ok(!operator.args.some((a: string) => a.startsWith('--client-cert-trust')));
    const sidecar = docs(
      await render('sluice-system', ['--set', 'gateway.meshIdentity.clientCertTrust=sidecar']),
    );
    const sidecarArgs = find(sidecar, 'Deployment', '-operator').spec.template.spec.containers[0]
      .args as string[];
    assert.ok(sidecarArgs.includes('--client-cert-trust=sidecar'));
  });

  it('starts the extproc with its node flags (extproc/workers/node-flags.ts), or none when told, and two malloc arenas', async () => {
    const command = async (extra: string[]): Promise<string[]> =>
      (
        docs(await render('sluice-system', extra)).find(
          (d) => d.kind === 'Deployment' && d.metadata.name.endsWith('-gateway'),
        )!.spec.template.spec.containers as Doc[]
      ).find((x) => x.name === 'extproc')!.command as string[];
    // The image's entry point (Dockerfile) with the flags between node and the script.
    const entry = /^ENTRYPOINT \["node", "([^"]+)"\]$/m.exec(
      readFileSync(join(ROOT, 'Dockerfile'), 'utf8'),
    )?.[1];
    assert.ok(entry);
    assert.deepEqual(await command([]), ['node', ...EXTPROC_NODE_FLAGS, entry]);
    const env = (
      docs(await render('sluice-system')).find(
        (d) => d.kind === 'Deployment' && d.metadata.name.endsWith('-gateway'),
      )!.spec.template.spec.containers as Doc[]
    ).find((x) => x.name === 'extproc')!.env as Doc[];
    for (const [name, value] of Object.entries(EXTPROC_ENV)) {
      assert.deepEqual(
        env.find((e) => e.name === name),
        { name, value },
      );
    }
    assert.deepEqual(await command(['--set', 'gateway.extproc.nodeFlags=null']), ['node', entry]);
    await expectRenderFailure(
      ['--set', 'gateway.extproc.nodeFlags={--x; rm -rf /}'],
      /gateway\/extproc\/nodeFlags/,
    );
  });

  it('sets the extproc --workers from its CPU limit, or as given', async () => {
    const workers = async (args: string[]) => {
      const all = docs(await render('sluice-system', args));
      const c = find(all, 'Deployment', '-gateway').spec.template.spec.containers.find(
        (x: Doc) => x.name === 'extproc',
      );
      return (c.args as string[]).filter((a) => a.startsWith('--workers='));
    };
    assert.deepEqual(await workers([]), ['--workers=1'], 'no CPU limit: one');
    const cpu = (q: string) => ['--set-string', `gateway.extproc.resources.limits.cpu=${q}`];
    assert.deepEqual(await workers(cpu('1500m')), ['--workers=2']);
    assert.deepEqual(await workers(cpu('500m')), ['--workers=1']);
    assert.deepEqual(await workers(cpu('4')), ['--workers=4']);
    assert.deepEqual(await workers(cpu('2.5')), ['--workers=3']);
    assert.deepEqual(await workers([...cpu('4'), '--set', 'gateway.extproc.workers=2']), [
      '--workers=2',
    ]);
    assert.deepEqual(await workers(['-f', valuesFile('production')]), ['--workers=2']);
    await expectRenderFailure(['--set', 'gateway.extproc.workers=65'], /gateway\/extproc\/workers/);
  });

  it("configures Envoy's own tracing through the operator only when a collector is given", async () => {
    const args = async (extra: string[]) =>
      find(docs(await render('sluice-system', extra)), 'Deployment', '-operator').spec.template.spec
        .containers[0].args as string[];
    assert.ok(!(await args([])).some((a) => a.startsWith('--envoy-')), 'off by default');
    const on = await args([
      '--set',
      'gateway.tracing.otlpCollector=otel.observability.svc:4317',
      '--set',
      'gateway.tracing.samplingPercent=5',
    ]);
    assert.ok(on.includes('--envoy-otlp-collector=otel.observability.svc:4317'));
    assert.ok(on.includes('--envoy-trace-percent=5'));
    await expectRenderFailure(
      ['--set', 'gateway.tracing.otlpCollector=http://otel:4317'],
      /gateway\/tracing\/otlpCollector/,
    );
  });

  it('takes alert thresholds from values', async () => {
    const rules = async (args: string[]) => {
      const all = docs(
        await render('sluice-system', ['--set', 'metrics.prometheusRule.enabled=true', ...args]),
      );
      const out: Record<string, string> = {};
      for (const g of find(all, 'PrometheusRule').spec.groups as Doc[]) {
        for (const r of g.rules as Doc[]) out[r.alert as string] = r.expr as string;
      }
      return out;
    };
    const file = parse(readFileSync(join(CHART, 'rules/sluice.rules.yaml'), 'utf8')) as Doc;
    const plain: Record<string, string> = {};
    for (const g of file.groups as Doc[]) {
      for (const r of g.rules as Doc[]) plain[r.alert as string] = r.expr as string;
    }
    // The values' defaults are the rule file's own thresholds: the default render is the file.
    assert.deepEqual(await rules([]), plain);
    const set = (k: string, v: string) => [
      '--set-json',
      `metrics.prometheusRule.thresholds.${k}=${v}`,
    ];
    const tuned = await rules([
      ...set('budgetNearlySpent', '0.9'),
      ...set('providerErrorRate', '0.1'),
      ...set('providerRateLimited', '0.2'),
      ...set('extprocP99Seconds', '0.25'),
      ...set('extprocEventLoopLagSeconds', '1'),
    ]);
    const ends = (alert: string, tail: string) =>
      assert.ok(tuned[alert]!.endsWith(tail), `${alert}: ${tuned[alert]}`);
    ends('SluiceBudgetNearlySpent', '> 0.9');
    ends('SluiceProviderErrorRate', '> 0.1');
    ends('SluiceProviderRateLimited', '> 0.2');
    ends('SluiceExtprocSlow', '> 0.25');
    ends('SluiceExtprocSaturated', '> 1');
    // Only the threshold moved.
    for (const [alert, expr] of Object.entries(tuned)) {
      assert.equal(expr.replace(/[0-9.]+$/, ''), plain[alert]!.replace(/[0-9.]+$/, ''), alert);
    }
    await expectRenderFailure(
      ['--set-json', 'metrics.prometheusRule.thresholds.budgetNearlySpent=1.5'],
      /thresholds\/budgetNearlySpent/,
    );
  });

  it("renders an Envoy bootstrap that the targeted release's API reads strictly", async () => {
    const root = envoyApiRoot();
    for (const v of VALUES) {
      const all = docs(await render('sluice-system', ['-f', valuesFile(v)]));
      const cm = find(all, 'ConfigMap', '-gateway-bootstrap');
      const bootstrap = parse(cm.data['bootstrap.yaml'] as string) as Doc;
      strictFromJson(root, 'envoy.config.bootstrap.v3.Bootstrap', bootstrap);
      const xds = bootstrap.static_resources.clusters.find((c: Doc) => c.name === 'sluice-xds');
      const addr = xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address;
      assert.equal(addr.socket_address.address, 'sluice-operator.sluice-system.svc.cluster.local');
      // Admin stays on loopback: its mutating endpoints must not be reachable from the network.
      assert.equal(bootstrap.admin.address.socket_address.address, '127.0.0.1');
    }
  });

  it("drains on shutdown: the preStop hook fails Envoy's health, then drains its listeners", async () => {
    const all = docs(await render('sluice-system'));
    const pod = find(all, 'Deployment', '-gateway').spec.template.spec;
    const extproc = pod.containers.find((c: Doc) => c.name === 'extproc');
    const [cmd, ...args] = extproc.lifecycle.preStop.exec.command as string[];
    assert.equal(cmd, 'node');
    const seen: string[] = [];
    const admin = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.end('OK\n');
    });
    await new Promise<void>((r) => admin.listen(0, '127.0.0.1', r));
    try {
      const port = (admin.address() as AddressInfo).port;
      // The same script with this test's admin port and no wait.
      const r = await exec(process.execPath, [...args.slice(0, -2), String(port), '0']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(seen, ['POST /healthcheck/fail', 'POST /drain_listeners?graceful']);
    } finally {
      admin.close();
    }
    assert.deepEqual(args.slice(-2), ['19000', '20']);
    assert.ok(pod.terminationGracePeriodSeconds > 20 + 15);
  });
});

void describe('chart: values that are refused', () => {
  const schemaCases: [string, string[], RegExp[]][] = [
    [
      'an image tag with a space',
      ['--set', 'image.tag=bad tag'],
      [/at '\/image\/tag'/, /does not match pattern/],
    ],
    ['a malformed digest', ['--set', 'image.digest=sha256:abc'], [/at '\/image\/digest'/]],
    [
      'an Envoy image without a tag',
      ['--set', 'gateway.envoy.image.tag='],
      [/at '\/gateway\/envoy\/image\/tag'/],
    ],
    [
      'zero operator replicas',
      ['--set', 'operator.replicas=0'],
      [/at '\/operator\/replicas': minimum: got 0, want 1/],
    ],
    [
      'replicas as text',
      ['--set-string', 'gateway.replicas=two'],
      [/at '\/gateway\/replicas': got string, want integer/],
    ],
    [
      'a memory limit that is not a quantity',
      ['--set', 'gateway.envoy.resources.limits.memory=lots'],
      [/at '\/gateway\/envoy\/resources\/limits\/memory': 'lots' does not match pattern/],
    ],
    [
      'an unknown resource name',
      ['--set', 'operator.resources.limits.gpu=1'],
      [/additional properties 'gpu' not allowed/],
    ],
    [
      'a port out of range',
      ['--set', 'operator.xdsPort=70000'],
      [/at '\/operator\/xdsPort': maximum: got 70,000, want 65,535/],
    ],
    [
      'a Service type the chart does not offer',
      ['--set', 'gateway.service.type=NodePort'],
      [/at '\/gateway\/service\/type': value must be one of 'ClusterIP', 'LoadBalancer'/],
    ],
    [
      'an unknown log level',
      ['--set', 'operator.logLevel=verbose'],
      [/at '\/operator\/logLevel': value must be one of/],
    ],
    [
      'a misspelt key',
      ['--set', 'operator.replica=3'],
      [/at '\/operator': additional properties 'replica' not allowed/],
    ],
    [
      'a Redis URL that is not redis://',
      ['--set', 'redis.url=http://redis:6379'],
      [/at '\/redis\/url'/],
    ],
    [
      'a scrape interval without a unit',
      ['--set', 'metrics.serviceMonitor.interval=30'],
      [/at '\/metrics\/serviceMonitor\/interval'/],
    ],
    [
      'running as root',
      ['--set', 'podSecurity.runAsUser=0'],
      [/at '\/podSecurity\/runAsUser': minimum: got 0, want 1/],
    ],
  ];
  for (const [what, args, messages] of schemaCases) {
    it(`schema: ${what}`, () =>
      expectRenderFailure(args, /values don't meet the specifications/, ...messages));
  }

  const crossCases: [string, string[], RegExp][] = [
    [
      'several operators without leader election',
      ['--set', 'operator.leaderElection.enabled=false'],
      /operator.replicas > 1 needs operator.leaderElection.enabled=true/,
    ],
    [
      'both a Redis URL and a Secret',
      ['--set', 'redis.url=redis://r:6379', '--set', 'redis.existingSecret.name=r'],
      /set either redis.url or redis.existingSecret.name, not both/,
    ],
    [
      'autoscaling min above max',
      [
        '--set',
        'gateway.autoscaling.enabled=true',
        '--set',
        'gateway.autoscaling.minReplicas=5',
        '--set',
        'gateway.autoscaling.maxReplicas=3',
      ],
      /minReplicas \(5\) must not exceed maxReplicas \(3\)/,
    ],
    [
      'a grace period shorter than the drain',
      ['--set', 'gateway.terminationGracePeriodSeconds=30'],
      /terminationGracePeriodSeconds \(30\) must exceed drain.drainSeconds \+ extproc.shutdownGraceSeconds \(35\)/,
    ],
    [
      'two gateway ports on one number',
      ['--set', 'gateway.extproc.adminPort=19001'],
      /must all differ/,
    ],
  ];
  for (const [what, args, message] of crossCases) {
    it(`chart: ${what}`, () => expectRenderFailure(args, message));
  }
});

const SERVICE_MONITOR_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'servicemonitors.monitoring.coreos.com' },
  spec: {
    group: 'monitoring.coreos.com',
    scope: 'Namespaced',
    names: { plural: 'servicemonitors', singular: 'servicemonitor', kind: 'ServiceMonitor' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        // A stand-in for the Prometheus Operator's CRD: these tests check the chart, not it.
        schema: {
          openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
        },
      },
    ],
  },
};

/** The same stand-in for the PrometheusRule CRD (production values turn the rules on). */
const PROMETHEUS_RULE_CRD = {
  ...SERVICE_MONITOR_CRD,
  metadata: { name: 'prometheusrules.monitoring.coreos.com' },
  spec: {
    ...SERVICE_MONITOR_CRD.spec,
    names: { plural: 'prometheusrules', singular: 'prometheusrule', kind: 'PrometheusRule' },
  },
};

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

async function httpStatus(url: string): Promise<number> {
  try {
    return (await fetch(url)).status;
  } catch {
    return 0;
  }
}

/** `sluice …` from source, as the image's ENTRYPOINT runs it. */
function sluice(args: string[], extraEnv: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'operator/cli.ts'), ...args],
    {
      cwd: ROOT,
      env: { ...process.env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const out: string[] = [];
  child.stdout?.on('data', (c: Buffer) => out.push(c.toString('utf8')));
  child.stderr?.on('data', (c: Buffer) => out.push(c.toString('utf8')));
  (child as ChildProcess & { output: string[] }).output = out;
  return child;
}

function output(child: ChildProcess): string {
  return (child as ChildProcess & { output?: string[] }).output?.join('').slice(-2000) ?? '';
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

void describe('chart on kube-apiserver', () => {
  before(async () => {
    await serverSideApply(JSON.stringify(SERVICE_MONITOR_CRD));
    await serverSideApply(JSON.stringify(PROMETHEUS_RULE_CRD));
    await kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=30s',
      'crd/servicemonitors.monitoring.coreos.com',
      'crd/prometheusrules.monitoring.coreos.com',
    ]);
    // Namespaces the values files name besides the release's own.
    for (const ns of ['team-a', 'team-b', 'monitoring']) await ensureNamespace(ns);
  });

  for (const v of VALUES) {
    it(`${v}: every rendered object is accepted by server-side apply`, async () => {
      const ns = `helm-${v}`;
      await ensureNamespace(ns);
      // A release per values file, so their cluster-scoped objects do not overwrite each other.
      const out = await render(ns, ['-f', valuesFile(v), '--include-crds'], `sluice-${v}`);
      const all = docs(out);
      const crds = all.filter((d) => d.kind === 'CustomResourceDefinition');
      assert.equal(crds.length, 2);
      // CRDs go first, as helm installs them; the rest follows once they are served.
      await serverSideApply(crds.map((d) => JSON.stringify(d)).join('\n'));
      await kubectl([
        'wait',
        '--for=condition=Established',
        '--timeout=30s',
        'crd/airoutes.sluice.dev',
        'crd/aipolicies.sluice.dev',
      ]);
      const rest = all.filter((d) => d.kind !== 'CustomResourceDefinition');
      const applied = await serverSideApply(
        JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rest }),
      );
      const lines = applied.trim().split('\n');
      assert.equal(lines.length, rest.length, applied);
      for (const l of lines) assert.match(l, /serverside-applied$/);
    });
  }

  void describe('RBAC of the operator ServiceAccount (default values)', () => {
    const ns = 'helm-default';
    const sa = `system:serviceaccount:${ns}:sluice-default-operator`;
    const gatewaySa = `system:serviceaccount:${ns}:sluice-default-gateway`;

    async function can(as: string, ...args: string[]): Promise<boolean> {
      const r = await env.kubectl(['auth', 'can-i', `--as=${as}`, ...args]);
      const answer = r.stdout.trim();
      assert.ok(answer === 'yes' || answer === 'no', `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      return answer === 'yes';
    }

    before(async () => {
      // The install test creates these; when this block runs alone it must still find them.
      await ensureNamespace(ns);
      const all = docs(await render(ns, ['--include-crds'], 'sluice-default'));
      await serverSideApply(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: all }));
    });

    const allowed: string[][] = [
      ['list', 'airoutes.sluice.dev', '-A'],
      ['watch', 'aipolicies.sluice.dev', '-A'],
      ['get', 'airoutes.sluice.dev', '-n', 'team-a'],
      ['update', 'airoutes.sluice.dev', '--subresource=status', '-n', 'team-a'],
      ['patch', 'aipolicies.sluice.dev', '--subresource=status', '-n', 'team-a'],
      ['list', 'secrets', '-A'],
      ['watch', 'services', '-A'],
      ['list', 'endpointslices.discovery.k8s.io', '-A'],
      ['create', 'events', '-n', 'team-a'],
      ['create', 'leases.coordination.k8s.io', '-n', ns],
      ['get', 'leases.coordination.k8s.io/sluice-operator-status', '-n', ns],
      ['update', 'leases.coordination.k8s.io/sluice-operator-status', '-n', ns],
      // Each replica's data plane report, and the leader reading them all.
      ['list', 'leases.coordination.k8s.io', '-n', ns],
      ['watch', 'leases.coordination.k8s.io', '-n', ns],
      ['update', 'leases.coordination.k8s.io/sluice-operator-planes-0123456789ab', '-n', ns],
      ['delete', 'leases.coordination.k8s.io/sluice-operator-planes-0123456789ab', '-n', ns],
    ];
    const denied: string[][] = [
      ['create', 'secrets', '-n', 'team-a'],
      ['update', 'secrets', '-n', 'team-a'],
      ['delete', 'secrets', '-n', 'team-a'],
      ['create', 'airoutes.sluice.dev', '-n', 'team-a'],
      ['update', 'airoutes.sluice.dev', '-n', 'team-a'],
      ['patch', 'airoutes.sluice.dev', '-n', 'team-a'],
      ['delete', 'airoutes.sluice.dev', '-n', 'team-a'],
      ['delete', 'aipolicies.sluice.dev', '-n', 'team-a'],
      ['list', 'pods', '-A'],
      ['get', 'configmaps', '-n', ns],
      ['create', 'pods', '-n', ns],
      ['update', 'services', '-n', 'team-a'],
      ['list', 'leases.coordination.k8s.io', '-n', 'team-a'],
      ['update', 'leases.coordination.k8s.io/some-other-lease', '-n', 'kube-system'],
      ['get', 'leases.coordination.k8s.io/sluice-operator-status', '-n', 'team-a'],
      ['update', 'customresourcedefinitions.apiextensions.k8s.io'],
      ['create', 'clusterrolebindings.rbac.authorization.k8s.io'],
      ['impersonate', 'users'],
      ['*', '*'],
    ];
    it('may do exactly what the operator needs', async () => {
      for (const a of allowed) assert.equal(await can(sa, ...a), true, `should: ${a.join(' ')}`);
    });
    it('may not write what it does not need, nor read pods or ConfigMaps', async () => {
      for (const a of denied)
        assert.equal(await can(sa, ...a), false, `should not: ${a.join(' ')}`);
    });
    it('the gateway ServiceAccount has no API access at all', async () => {
      for (const a of [
        ['list', 'airoutes.sluice.dev', '-A'],
        ['get', 'secrets', '-n', ns],
        ['list', 'services', '-n', ns],
        ['get', 'leases.coordination.k8s.io/sluice-operator-status', '-n', ns],
      ]) {
        assert.equal(await can(gatewaySa, ...a), false, `gateway should not: ${a.join(' ')}`);
      }
    });
    it('with watchNamespaces, only those namespaces and nothing cluster-wide', async () => {
      const mns = 'helm-minimal';
      await ensureNamespace(mns);
      const all = docs(await render(mns, ['-f', valuesFile('minimal')], 'sluice-minimal'));
      await serverSideApply(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: all }));
      const msa = `system:serviceaccount:${mns}:sluice-minimal-operator`;
      assert.equal(await can(msa, 'list', 'airoutes.sluice.dev', '-n', 'team-a'), true);
      assert.equal(
        await can(msa, 'update', 'airoutes.sluice.dev', '--subresource=status', '-n', 'team-b'),
        true,
      );
      assert.equal(await can(msa, 'list', 'secrets', '-n', 'team-b'), true);
      assert.equal(await can(msa, 'list', 'airoutes.sluice.dev', '-A'), false);
      assert.equal(await can(msa, 'list', 'secrets', '-n', ns), false);
      assert.equal(await can(msa, 'list', 'airoutes.sluice.dev', '-n', 'default'), false);
      // No leader election in these values: no Lease rights either.
      assert.equal(await can(msa, 'create', 'leases.coordination.k8s.io', '-n', mns), false);
    });
  });

  void describe('the containers started with exactly the rendered arguments', () => {
    const ns = 'helm-args';
    const children: ChildProcess[] = [];
    after(async () => {
      for (const c of children) await stopChild(c);
    });

    it('operator becomes ready with the chart ServiceAccount; the extproc gets its config from it', async () => {
      await ensureNamespace(ns);
      const [xdsPort, adminPort, extprocAdmin] = await Promise.all([
        freePort(),
        freePort(),
        freePort(),
      ]);
      const all = docs(
        await render(
          ns,
          [
            '--include-crds',
            '--set',
            `operator.xdsPort=${xdsPort}`,
            '--set',
            `operator.adminPort=${adminPort}`,
            '--set',
            `gateway.extproc.adminPort=${extprocAdmin}`,
          ],
          'sluice-args',
        ),
      );
      await serverSideApply(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: all }));
      await kubectl([
        'wait',
        '--for=condition=Established',
        '--timeout=30s',
        'crd/airoutes.sluice.dev',
        'crd/aipolicies.sluice.dev',
      ]);

      // In-cluster config is not available here: the same identity through a kubeconfig file.
      const kc = JSON.parse(readFileSync(env.kubeconfigPath, 'utf8')) as Doc;
      kc.users[0].user.as = `system:serviceaccount:${ns}:sluice-args-operator`;
      const kubeconfig = join(helmHome, 'operator-kubeconfig.json');
      writeFileSync(kubeconfig, JSON.stringify(kc), { mode: 0o600 });

      const operator = find(all, 'Deployment', '-operator').spec.template.spec.containers[0];
      const op = sluice([...(operator.args as string[]), `--kubeconfig=${kubeconfig}`], {
        POD_NAME: 'sluice-args-operator-0',
        POD_NAMESPACE: ns,
      });
      children.push(op);
      await eventually(
        'operator /readyz',
        async () => {
          assert.equal(op.exitCode, null, output(op));
          assert.equal(await httpStatus(`http://127.0.0.1:${adminPort}/readyz`), 200);
        },
        30_000,
      );
      const lease = await eventually('status Lease', () =>
        kubectl([
          'get',
          'lease',
          'sluice-operator-status',
          '-n',
          ns,
          '-o',
          'jsonpath={.spec.holderIdentity}',
        ]),
      );
      assert.equal(lease, 'sluice-args-operator-0');

      const pod = find(all, 'Deployment', '-gateway').spec.template.spec;
      const extproc = pod.containers.find((c: Doc) => c.name === 'extproc');
      const sock = join(helmHome, 'run', 'extproc.sock');
      // What kubelet does to $(POD_NAME); then the cluster-only addresses pointed at this host.
      const args = (extproc.args as string[]).map((a) =>
        a
          .replace('$(POD_NAME)', 'sluice-args-gateway-0')
          .replace(/^--xds=.*$/, `--xds=127.0.0.1:${xdsPort}`)
          .replace(/^--listen=.*$/, `--listen=unix:${sock}`)
          .replace(/^--admin=0\.0\.0\.0:/, '--admin=127.0.0.1:'),
      );
      const ep = sluice(args, { POD_NAME: 'sluice-args-gateway-0', POD_NAMESPACE: ns });
      children.push(ep);
      await eventually(
        'extproc /readyz (config received over ADS)',
        async () => {
          assert.equal(ep.exitCode, null, output(ep));
          assert.equal(await httpStatus(`http://127.0.0.1:${extprocAdmin}/readyz`), 200);
        },
        30_000,
      );
    });
  });

  void describe('the operator with exactly the chart ServiceAccount permissions', () => {
    const ns = 'helm-default';
    const appNs = 'helm-app';
    let runOperator: typeof RunOperator | undefined;
    const logs: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        logs.push(chunk.toString('utf8'));
        cb();
      },
    });

    before(async () => {
      // Loaded at run time so this file still typechecks and runs its other tests while the
      // operator is being written.
      runOperator = await import('../../operator/run.js').then(
        (m) => m.run,
        () => undefined,
      );
      await ensureNamespace(ns);
      await ensureNamespace(appNs);
      const all = docs(await render(ns, ['--include-crds'], 'sluice-default'));
      await serverSideApply(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: all }));
      await kubectl([
        'wait',
        '--for=condition=Established',
        '--timeout=30s',
        'crd/airoutes.sluice.dev',
        'crd/aipolicies.sluice.dev',
      ]);
      await serverSideApply(
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'List',
          items: [
            {
              apiVersion: 'v1',
              kind: 'Secret',
              metadata: { name: 'openai', namespace: appNs },
              stringData: { apiKey: 'sk-test-helm-5c1e' },
            },
            {
              apiVersion: `${GROUP}/${VERSION}`,
              kind: 'AIRoute',
              metadata: { name: 'gpt', namespace: appNs, labels: { team: 'a' } },
              spec: {
                models: [{ exact: 'gpt-4o-mini' }],
                backends: [
                  {
                    name: 'openai',
                    provider: 'openai',
                    endpoint: { url: 'https://api.openai.com/v1' },
                    credential: { secretRef: { name: 'openai' } },
                  },
                ],
              },
            },
            {
              apiVersion: `${GROUP}/${VERSION}`,
              kind: 'AIPolicy',
              metadata: { name: 'team-a', namespace: appNs },
              spec: { selector: { matchLabels: { team: 'a' } }, mode: 'shadow' },
            },
          ],
        }),
      );
    });

    it('reconciles an AIRoute and an AIPolicy to Accepted=True, holding the status Lease', async (t) => {
      if (!runOperator) {
        t.skip('operator/run.ts is not available yet');
        return;
      }
      const op = await runOperator({
        kubeConfig: env.impersonate(`system:serviceaccount:${ns}:sluice-default-operator`),
        xdsListen: '127.0.0.1:0',
        leaderElection: {
          namespace: ns,
          identity: 'helm-test-replica',
          leaseDurationMs: 3000,
          renewDeadlineMs: 2000,
          retryPeriodMs: 200,
        },
        logger: pino({ level: 'debug' }, sink),
        registry: new Registry(),
        now: () => Date.now(),
        debounceMs: 10,
        dataPlanePollMs: 100,
        backoff: { initialMs: 50, maxMs: 1000 },
        shutdownGraceMs: 100,
      });
      try {
        // A ServiceAccount missing a permission shows as informers that never sync.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          op.ready,
          new Promise((_, reject) => {
            timer = setTimeout(() => {
              const denied = logs.filter((l) => DENIED.test(l)).slice(0, 3);
              reject(new Error(`operator not ready within 30 s: ${denied.join('') || 'no log'}`));
            }, 30_000);
          }),
        ]).finally(() => clearTimeout(timer));
        const custom = env.kubeConfig.makeApiClient(CustomObjectsApi);
        for (const [plural, name] of [
          ['airoutes', 'gpt'],
          ['aipolicies', 'team-a'],
        ] as const) {
          await eventually(`${plural}/${name} Accepted=True`, async () => {
            const obj: any = await custom.getNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace: appNs,
              plural,
              name,
            });
            const c = (obj.status?.conditions ?? []).find((x: Doc) => x.type === 'Accepted');
            assert.equal(c?.status, 'True', JSON.stringify(obj.status));
          });
        }
        assert.equal(op.isLeader(), true);
        const lease = await kubectl([
          'get',
          'lease',
          'sluice-operator-status',
          '-n',
          ns,
          '-o',
          'jsonpath={.spec.holderIdentity}',
        ]);
        assert.equal(lease, 'helm-test-replica');
        // Its data plane report, published with the chart's Lease rights.
        const report = await eventually('data plane report Lease', async () => {
          const got = await kubectl([
            'get',
            'lease',
            '-n',
            ns,
            '-l',
            'sluice.dev/report=data-planes',
            '-o',
            'jsonpath={.items[*].spec.holderIdentity}',
          ]);
          assert.equal(got, 'helm-test-replica');
          return got;
        });
        assert.ok(report);
        // Nothing it did was refused by the apiserver.
        const forbidden = logs.filter((l) => DENIED.test(l));
        assert.deepEqual(forbidden, []);
      } finally {
        await op.close();
      }
      const core = env.kubeConfig.makeApiClient(CoreV1Api);
      const sa = await core.readNamespacedServiceAccount({
        namespace: ns,
        name: 'sluice-default-operator',
      });
      assert.equal(sa.automountServiceAccountToken, true);
    });
  });
});
