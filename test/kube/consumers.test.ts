// Consumers from labelled Secrets on a real kube-apiserver: the operator runs in-process with
// exactly the chart's RBAC (watchNamespaces set, consumer namespace left to its default, the
// release namespace), and only a Secret in that namespace declares a consumer. A tenant's Secret
// with the same label, in a namespace the operator watches for routes, declares nothing.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { parseAllDocuments } from 'yaml';
import { GROUP, VERSION } from '../../operator/api/types.js';
import { run, type RunningOperator } from '../../operator/run.js';
import { ResourceEncoder } from '../../operator/xds/encode.js';
import { decodeAny } from '../../operator/envoy-api/ads-client.js';
import { EXTPROC_CONFIG } from '../../operator/xds/type-urls.js';
import { startKubeEnv, type KubeEnv } from './env.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const TENANT_KEY = 'sk-tenant-minted-7c1e';
const ALICE_KEY = 'sk-kube-alice-first-3b9d';
const ALICE_ROTATED = 'sk-kube-alice-rotated-51aa';
const execFileAsync = promisify(execFile);
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

type Doc = Record<string, any>;

let env: KubeEnv;
const logs: string[] = [];

async function eventually<T>(what: string, fn: () => Promise<T> | T, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${ms} ms: ${(last as Error)?.message}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Right after a CRD is Established its storage may still answer 429 for a moment.
async function apply(docs: object[], args: string[] = []): Promise<void> {
  const input = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs });
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await env.kubectl(['apply', ...args, '-f', '-'], { input });
    if (r.code === 0) return;
    if (!/too many requests|429/i.test(r.stderr) || Date.now() > deadline) {
      throw new Error(`kubectl apply: ${r.stderr}`);
    }
    await new Promise((res) => setTimeout(res, 100));
  }
}

function consumerSecret(ns: string, name: string, data: Record<string, string>): object {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name,
      namespace: ns,
      labels: { 'sluice.dev/consumer': 'alice', 'sluice.dev/team': 'research' },
    },
    stringData: data,
  };
}

async function accepted(kind: 'AIRoute' | 'AIPolicy', ns: string, name: string) {
  const obj = (await env.kubeConfig.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural: kind === 'AIRoute' ? 'airoutes' : 'aipolicies',
    name,
  })) as Doc;
  const c = (obj.status?.conditions as Doc[] | undefined)?.find((x) => x.type === 'Accepted');
  assert.ok(c, `${kind} ${name} has no Accepted condition yet`);
  return c;
}

function extprocDoc(op: RunningOperator): Doc {
  const any = op.cache.snapshotFor('any-node')?.types.get(EXTPROC_CONFIG)?.resources.get('extproc');
  assert.ok(any, 'no extproc config in the snapshot');
  return JSON.parse(decodeAny(any).json as string) as Doc;
}

void before(async () => {
  env = await startKubeEnv();
  const crds = await env.kubectl(['apply', '-f', `${ROOT}crds/`]);
  assert.equal(crds.code, 0, crds.stderr);
  const established = await env.kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=30s',
    'crd/airoutes.sluice.dev',
    'crd/aipolicies.sluice.dev',
  ]);
  assert.equal(established.code, 0, established.stderr);
});

void after(async () => {
  await env?.stop();
});

void describe('consumer Secrets on kube-apiserver', () => {
  const keysNs = `keys-${process.pid}`;
  const tenantNs = `tenant-${process.pid}`;
  let op: RunningOperator;

  before(async () => {
    const core = env.kubeConfig.makeApiClient(CoreV1Api);
    for (const name of [keysNs, tenantNs]) {
      await core.createNamespace({ body: { metadata: { name } } });
    }
    // The chart's RBAC for an operator confined to the tenant namespace, released in keysNs.
    const { stdout: rendered } = await execFileAsync(
      env.bin.helm,
      [
        'template',
        'sluice',
        `${ROOT}charts/sluice`,
        '--namespace',
        keysNs,
        '--kube-version',
        'v1.34.0',
        '--set',
        `operator.watchNamespaces={${tenantNs}}`,
        '--set',
        'operator.leaderElection.enabled=false',
        '--set',
        'operator.replicas=1',
      ],
      // Helm keeps caches under $HOME unless told otherwise; the test stays out of it.
      {
        env: {
          ...process.env,
          HELM_CACHE_HOME: `${env.dir}/helm/cache`,
          HELM_CONFIG_HOME: `${env.dir}/helm/config`,
          HELM_DATA_HOME: `${env.dir}/helm/data`,
        },
      },
    );
    const rbac = parseAllDocuments(rendered)
      .map((d) => d.toJS() as Doc | null)
      .filter((d): d is Doc => d !== null)
      .filter((d) =>
        ['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding'].includes(
          d.kind,
        ),
      );
    const sa = rbac.find((d) => d.kind === 'ServiceAccount' && /-operator$/.test(d.metadata.name));
    assert.ok(sa, 'the chart renders an operator ServiceAccount');
    await apply(rbac);

    await apply([
      {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'AIRoute',
        metadata: { name: 'chat', namespace: tenantNs },
        spec: {
          models: [{ exact: 'llama-3' }],
          backends: [
            {
              name: 'vllm',
              provider: 'openai-compatible',
              endpoint: { url: 'https://llm.example.com' },
            },
          ],
        },
      },
      {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'AIPolicy',
        metadata: { name: 'identity', namespace: tenantNs },
        spec: {
          selector: {},
          consumers: {
            keys: {},
            mesh: { consumers: { 'spiffe://cluster.local/ns/app/sa/agent': 'alice' } },
          },
        },
      },
      // A tenant minting "alice" in its own namespace, which the operator does watch.
      consumerSecret(tenantNs, 'alice-minted', { key: TENANT_KEY }),
    ]);

    op = await run({
      kubeConfig: env.impersonate(`system:serviceaccount:${keysNs}:${sa.metadata.name}`),
      namespaces: [tenantNs],
      consumerNamespaces: [keysNs],
      xdsListen: '127.0.0.1:0',
      logger: pino(
        { level: 'debug' },
        new Writable({
          write(chunk: Buffer, _enc, cb) {
            logs.push(chunk.toString('utf8'));
            cb();
          },
        }),
      ),
      registry: new Registry(),
      now: () => Date.now(),
      debounceMs: 10,
      backoff: { initialMs: 50, maxMs: 1000 },
      shutdownGraceMs: 100,
      encoder: ResourceEncoder.fromProtoTree(),
    });
    await op.ready;
  });

  after(async () => {
    await op?.close();
  });

  it('does not let a Secret outside the consumer namespaces declare a consumer', async () => {
    const policy = await eventually('policy refused', async () => {
      const c = await accepted('AIPolicy', tenantNs, 'identity');
      assert.equal(c.reason, 'InvalidPolicy', c.message);
      return c;
    });
    assert.match(policy.message, /no consumer "alice"/);
    const route = await accepted('AIRoute', tenantNs, 'chat');
    assert.equal(route.reason, 'PolicyNotReady');
    const doc = extprocDoc(op);
    assert.equal(doc.consumers, undefined);
    // Refused, not withheld: its models stay its own.
    assert.deepEqual(
      (doc.routes as Doc[]).map((r): unknown[] => [r.name, r.refuse]),
      [[`${tenantNs}/chat`, 'policy_invalid']],
    );
  });

  it('makes a labelled Secret in the consumer namespace a consumer, by digest only', async () => {
    await apply([consumerSecret(keysNs, 'alice-1', { key: ALICE_KEY })]);
    await eventually('route served', async () => {
      assert.equal((await accepted('AIRoute', tenantNs, 'chat')).status, 'True');
    });
    assert.equal((await accepted('AIPolicy', tenantNs, 'identity')).status, 'True');
    const doc = extprocDoc(op);
    assert.deepEqual(doc.consumers, [
      { name: 'alice', team: 'research', keyHashes: [sha(ALICE_KEY)] },
    ]);
    assert.equal(doc.routes[0].governance, `${tenantNs}/identity`);
    assert.ok(!JSON.stringify(doc).includes(sha(TENANT_KEY)), "the tenant's key is not a key");
  });

  it('follows a rotation: a second key, then the first one deleted', async () => {
    await apply([consumerSecret(keysNs, 'alice-2', { keyHash: sha(ALICE_ROTATED) })]);
    await eventually('both keys served', () => {
      assert.deepEqual(
        extprocDoc(op).consumers[0].keyHashes,
        [sha(ALICE_KEY), sha(ALICE_ROTATED)].sort(),
      );
    });
    const del = await env.kubectl(['delete', 'secret', 'alice-1', '-n', keysNs]);
    assert.equal(del.code, 0, del.stderr);
    await eventually('first key gone', () => {
      assert.deepEqual(extprocDoc(op).consumers[0].keyHashes, [sha(ALICE_ROTATED)]);
    });
  });

  it('never logged a key or a digest', () => {
    const all = logs.join('');
    assert.ok(all.length > 0);
    for (const v of [TENANT_KEY, ALICE_KEY, ALICE_ROTATED, sha(ALICE_KEY), sha(ALICE_ROTATED)]) {
      assert.ok(!all.includes(v));
    }
  });
});
