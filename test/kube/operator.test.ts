// The operator in-process against a real kube-apiserver: informers, translation, the ADS
// snapshot, status conditions written through the status subresource, and leader election.
// Data planes are the official-proto xDS test client, connected as Envoy or extproc nodes.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { GROUP, VERSION } from '../../operator/api/types.js';
import { run, type RunningOperator } from '../../operator/run.js';
import { leaseApi } from '../../operator/status/leader.js';
import { ResourceEncoder } from '../../operator/xds/encode.js';
import { OfficialAdsClient, decodeAny } from '../../operator/envoy-api/ads-client.js';
import {
  CLUSTER,
  ENDPOINT,
  EXTPROC_CONFIG,
  LISTENER,
  ROUTE,
} from '../../operator/xds/type-urls.js';
import { startKubeEnv, type KubeEnv } from './env.js';

const CRDS = new URL('../../crds/', import.meta.url).pathname;
const SECRET_V1 = 'sk-test-first-4f1d';
const SECRET_V2 = 'sk-test-rotated-9a2c';

let env: KubeEnv;
let encoder: ResourceEncoder;
const logs: string[] = [];
const logSink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    logs.push(chunk.toString('utf8'));
    cb();
  },
});

async function eventually<T>(
  what: string,
  fn: () => Promise<T> | T,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${timeoutMs} ms: ${(last as Error)?.message}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Right after a CRD is Established its storage may still answer 429 for a moment.
async function apply(namespace: string, docs: object[]): Promise<void> {
  const input = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs });
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await env.kubectl(['apply', '-n', namespace, '-f', '-'], { input });
    if (r.code === 0) return;
    if (!/too many requests|429/i.test(r.stderr) || Date.now() > deadline) {
      throw new Error(`kubectl apply: ${r.stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function kubectl(args: string[]): Promise<void> {
  const r = await env.kubectl(args);
  assert.equal(r.code, 0, r.stderr);
}

async function namespace(name: string): Promise<string> {
  await env.kubeConfig.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
  return name;
}

interface Cond {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

async function getObject(kind: 'AIRoute' | 'AIPolicy', ns: string, name: string): Promise<any> {
  const api = env.kubeConfig.makeApiClient(CustomObjectsApi);
  return api.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural: kind === 'AIRoute' ? 'airoutes' : 'aipolicies',
    name,
  });
}

async function condition(
  kind: 'AIRoute' | 'AIPolicy',
  ns: string,
  name: string,
  type: string,
): Promise<Cond | undefined> {
  const obj = await getObject(kind, ns, name);
  return (obj.status?.conditions as Cond[] | undefined)?.find((c) => c.type === type);
}

/** Waits until the condition has `status` (and `reason`, when given); returns it. */
function waitCondition(
  kind: 'AIRoute' | 'AIPolicy',
  ns: string,
  name: string,
  type: string,
  status: string,
  reason?: string,
): Promise<Cond> {
  return eventually(`${kind} ${ns}/${name} ${type}=${status} ${reason ?? ''}`, async () => {
    const c = await condition(kind, ns, name, type);
    assert.ok(c, `no ${type} condition`);
    assert.equal(c.status, status, `${c.status} ${c.reason}: ${c.message}`);
    if (reason !== undefined) assert.equal(c.reason, reason, c.message);
    return c;
  });
}

function secret(name: string, apiKey: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name },
    stringData: { apiKey },
  };
}

function externalRoute(name: string, model: string, secretName: string): object {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'AIRoute',
    metadata: { name, labels: { team: 'a' } },
    spec: {
      models: [{ exact: model }],
      backends: [
        {
          name: 'openai',
          provider: 'openai',
          endpoint: { url: 'https://api.openai.com/v1' },
          credential: { secretRef: { name: secretName } },
        },
      ],
    },
  };
}

function serviceRoute(name: string, model: string, service: string): object {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'AIRoute',
    metadata: { name },
    spec: {
      models: [{ prefix: model }],
      backends: [
        {
          name: 'vllm',
          provider: 'openai-compatible',
          endpoint: { service: { name: service, port: 80 } },
        },
      ],
    },
  };
}

function routeTo(name: string, prefix: string, service: string, port: number): object {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'AIRoute',
    metadata: { name },
    spec: {
      models: [{ prefix }],
      backends: [
        {
          name: 'vllm',
          provider: 'openai-compatible',
          endpoint: { service: { name: service, port } },
        },
      ],
    },
  };
}

function slice(name: string, service: string, ips: string[]): object {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8000, protocol: 'TCP' }],
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
  };
}

async function startOperator(
  namespaces: string[],
  leader?: { identity: string; namespace: string },
): Promise<RunningOperator> {
  return run({
    kubeConfig: env.kubeConfig,
    namespaces,
    xdsListen: '127.0.0.1:0',
    admin: '127.0.0.1:0',
    leaderElection: leader
      ? {
          ...leader,
          leaseDurationMs: 3000,
          renewDeadlineMs: 2000,
          retryPeriodMs: 200,
          reportRenewMs: 500,
          reportDurationMs: 3000,
        }
      : undefined,
    logger: pino({ level: 'debug' }, logSink),
    registry: new Registry(),
    now: () => Date.now(),
    debounceMs: 10,
    dataPlanePollMs: 100,
    incompleteGraceMs: 300,
    backoff: { initialMs: 50, maxMs: 1000 },
    shutdownGraceMs: 100,
    encoder,
  });
}

/** One gateway pod's data planes: an Envoy and its extproc, named as the chart names them. */
function gateway(
  op: RunningOperator,
  name: string,
  judge?: (r: any) => string | undefined,
): { close(): void } {
  const envoy = envoyClient(op, `${name}/envoy`, judge);
  const extproc = new OfficialAdsClient(op.xdsAddress, { nodeId: `${name}/extproc`, keep: false });
  extproc.subscribe(EXTPROC_CONFIG);
  return {
    close: () => {
      envoy.close();
      extproc.close();
    },
  };
}

function snapshotType(op: RunningOperator, typeUrl: string) {
  return op.cache.snapshotFor('any-node')?.types.get(typeUrl);
}

function extprocDoc(op: RunningOperator): any {
  const any = snapshotType(op, EXTPROC_CONFIG)?.resources.get('extproc');
  assert.ok(any, 'no extproc config in the snapshot');
  return JSON.parse(decodeAny(any).json as string);
}

/** An Envoy-like client: CDS and LDS wildcard, RDS for the listener's route, EDS for EDS clusters. */
function envoyClient(op: RunningOperator, nodeId: string, judge?: (r: any) => string | undefined) {
  const eds = new Set<string>();
  const client = new OfficialAdsClient(op.xdsAddress, {
    nodeId,
    keep: false,
    judge: (r) => {
      const verdict = judge?.(r);
      if (verdict === undefined && r.typeUrl === CLUSTER) {
        const names = [...r.resources.values()]
          .filter((c: any) => c.type === 'EDS')
          .map((c: any) => c.name as string)
          .sort();
        if (names.join() !== [...eds].sort().join()) {
          eds.clear();
          for (const n of names) eds.add(n);
          // Envoy asks for the assignments of the clusters it just learnt.
          setImmediate(() => client.subscribe(ENDPOINT, names));
        }
      }
      return verdict;
    },
  });
  client.subscribe(CLUSTER);
  client.subscribe(LISTENER);
  client.subscribe(ROUTE, ['sluice']);
  return client;
}

void before(async () => {
  encoder = ResourceEncoder.fromProtoTree();
  env = await startKubeEnv();
  const applied = await env.kubectl(['apply', '-f', CRDS]);
  assert.equal(applied.code, 0, applied.stderr);
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

void describe('operator on kube-apiserver', () => {
  let ns: string;
  let op: RunningOperator;
  const clients: OfficialAdsClient[] = [];

  before(async () => {
    ns = await namespace(`op-${process.pid}`);
    await apply(ns, [
      secret('keys', SECRET_V1),
      externalRoute('good', 'gpt-4o', 'keys'),
      externalRoute('missing-secret', 'gpt-4o-mini', 'nope'),
      {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'AIPolicy',
        metadata: { name: 'team-a' },
        spec: { selector: { matchLabels: { team: 'a' } }, mode: 'shadow' },
      },
    ]);
    op = await startOperator([ns]);
    await op.ready;
  });

  after(async () => {
    for (const c of clients) c.close();
    await op?.close();
  });

  it('accepts valid objects and names the missing reference of an invalid one', async () => {
    const good = await waitCondition('AIRoute', ns, 'good', 'Accepted', 'True', 'Accepted');
    assert.equal(good.observedGeneration, 1);
    const bad = await waitCondition('AIRoute', ns, 'missing-secret', 'Accepted', 'False');
    assert.equal(bad.reason, 'SecretNotFound');
    assert.match(bad.message, /nope/);
    await waitCondition('AIPolicy', ns, 'team-a', 'Accepted', 'True', 'Accepted');
    const obj = await getObject('AIRoute', ns, 'good');
    assert.equal(obj.status.observedGeneration, 1);
    // In the served config: the valid route's cluster, not the invalid one's.
    const clusters = snapshotType(op, CLUSTER)!.resources;
    assert.ok(clusters.has(`route/${ns}/good/rule/0`));
    assert.ok(!clusters.has(`route/${ns}/missing-secret/rule/0`));
    assert.equal(extprocDoc(op).backends[0].credential.value, SECRET_V1);
  });

  it('reports NoDataPlane while nothing is connected, and NotAccepted for a rejected route', async () => {
    await waitCondition('AIRoute', ns, 'good', 'Programmed', 'Unknown', 'NoDataPlane');
    await waitCondition('AIRoute', ns, 'missing-secret', 'Programmed', 'False', 'NotAccepted');
  });

  it('is not Programmed by an Envoy whose extproc is missing: the route cannot be served', async () => {
    const envoy = envoyClient(op, 'gw-1/envoy');
    clients.push(envoy);
    const c = await waitCondition('AIRoute', ns, 'good', 'Programmed', 'False', 'Incomplete');
    assert.match(c.message, /gateway gw-1 has an Envoy but no extproc connected/);
  });

  it('turns Programmed True once the Envoy and the extproc of the gateway ACKed', async () => {
    const extproc = new OfficialAdsClient(op.xdsAddress, { nodeId: 'gw-1/extproc', keep: false });
    extproc.subscribe(EXTPROC_CONFIG);
    clients.push(extproc);
    const c = await waitCondition('AIRoute', ns, 'good', 'Programmed', 'True', 'Programmed');
    assert.match(c.message, /1 gateway\(s\) \(1 Envoy, 1 extproc\)/);
    await waitCondition('AIPolicy', ns, 'team-a', 'Programmed', 'True', 'Programmed');
  });

  it('turns Programmed False with the NACK message when a data plane refuses', async () => {
    const before = await condition('AIRoute', ns, 'good', 'Programmed');
    const nacker = gateway(op, 'gw-nacks', (r) =>
      r.typeUrl === CLUSTER ? 'cluster rejected by test: no TLS' : undefined,
    );
    try {
      const c = await waitCondition('AIRoute', ns, 'good', 'Programmed', 'False', 'NACKed');
      assert.match(
        c.message,
        /gw-nacks\/envoy rejected Cluster .*cluster rejected by test: no TLS/,
      );
      assert.notEqual(c.lastTransitionTime, undefined);
      assert.ok(before);
    } finally {
      nacker.close();
    }
    // The refusing node gone, every connected data plane has the config again.
    await waitCondition('AIRoute', ns, 'good', 'Programmed', 'True', 'Programmed');
  });

  it('keeps lastTransitionTime while a condition keeps its status', async () => {
    const first = await waitCondition('AIRoute', ns, 'good', 'Accepted', 'True');
    await kubectl(['annotate', '-n', ns, 'airoute/good', 'touched=yes', '--overwrite']);
    await new Promise((r) => setTimeout(r, 300));
    const again = await condition('AIRoute', ns, 'good', 'Accepted');
    assert.equal(again?.lastTransitionTime, first.lastTransitionTime);
  });

  it('follows a Secret rotation into the extproc config, without logging the value', async () => {
    const before = snapshotType(op, EXTPROC_CONFIG)!.version;
    await apply(ns, [secret('keys', SECRET_V2)]);
    await eventually('rotated credential served', () => {
      assert.equal(extprocDoc(op).backends[0].credential.value, SECRET_V2);
    });
    assert.notEqual(snapshotType(op, EXTPROC_CONFIG)!.version, before);
    const doc = extprocDoc(op);
    assert.equal(doc.version, op.controller.desired!.extproc.version);
    // The ACKing Envoy and extproc take the new version: Programmed True again.
    await waitCondition('AIRoute', ns, 'good', 'Programmed', 'True', 'Programmed');
  });

  it('fixes a route once its missing Secret appears', async () => {
    await apply(ns, [secret('nope', 'sk-late')]);
    await waitCondition('AIRoute', ns, 'missing-secret', 'Accepted', 'True', 'Accepted');
  });

  it('serves EndpointSlice changes as new EDS resources', async () => {
    await apply(ns, [
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'vllm' },
        spec: { ports: [{ name: 'http', port: 80, targetPort: 8000 }] },
      },
      slice('vllm-abc', 'vllm', ['10.0.0.5']),
      serviceRoute('local', 'llama-', 'vllm'),
    ]);
    const cluster = `route/${ns}/local/rule/0`;
    const addresses = (): string[] => {
      const any = snapshotType(op, ENDPOINT)?.resources.get(cluster);
      assert.ok(any, 'no assignment yet');
      type Address = { socket_address: { address: string; port_value: number } };
      const cla = decodeAny(any) as {
        endpoints: { lb_endpoints: { endpoint: { address: Address } }[] }[];
      };
      return cla.endpoints.flatMap((l) =>
        l.lb_endpoints.map(
          ({ endpoint: { address: a } }) =>
            `${a.socket_address.address}:${a.socket_address.port_value}`,
        ),
      );
    };
    await eventually('first endpoints', () => assert.deepEqual(addresses(), ['10.0.0.5:8000']));
    const before = snapshotType(op, ENDPOINT)!.hashes.get(cluster);
    await apply(ns, [slice('vllm-abc', 'vllm', ['10.0.0.6', '10.0.0.7'])]);
    await eventually('changed endpoints', () =>
      assert.deepEqual(addresses().sort(), ['10.0.0.6:8000', '10.0.0.7:8000']),
    );
    assert.notEqual(snapshotType(op, ENDPOINT)!.hashes.get(cluster), before);
    await waitCondition('AIRoute', ns, 'local', 'EndpointsReady', 'True');
    // The Envoy client asked for this EDS cluster and ACKed it.
    await waitCondition('AIRoute', ns, 'local', 'Programmed', 'True', 'Programmed');
  });

  it('tracks observedGeneration through spec changes', async () => {
    await kubectl([
      'patch',
      '-n',
      ns,
      'airoute/good',
      '--type=merge',
      '-p',
      JSON.stringify({ spec: { models: [{ exact: 'gpt-4o' }, { exact: 'gpt-4.1' }] } }),
    ]);
    await eventually('observedGeneration 2', async () => {
      const obj = await getObject('AIRoute', ns, 'good');
      assert.equal(obj.metadata.generation, 2);
      assert.equal(obj.status.observedGeneration, 2);
      for (const c of obj.status.conditions as Cond[])
        assert.equal(c.observedGeneration, 2, c.type);
    });
  });

  it('removes a deleted route from the snapshot', async () => {
    const cluster = `route/${ns}/local/rule/0`;
    assert.ok(snapshotType(op, CLUSTER)!.resources.has(cluster));
    await kubectl(['delete', '-n', ns, 'airoute/local']);
    await eventually('cluster gone', () => {
      assert.ok(!snapshotType(op, CLUSTER)!.resources.has(cluster));
      assert.ok(!snapshotType(op, ENDPOINT)?.resources.has(cluster));
      assert.equal(
        extprocDoc(op).routes.some((r: any) => r.name === `${ns}/local`),
        false,
        'route still in the extproc config',
      );
    });
  });

  it('summarises every model, backend and selected route into status for kubectl get', async () => {
    await eventually('summaries', async () => {
      const route = await getObject('AIRoute', ns, 'missing-secret');
      assert.equal(route.status?.models, 'gpt-4o-mini');
      assert.equal(route.status?.backends, 'openai (openai)');
      // A selector policy: the routes its labels select right now.
      const policy = await getObject('AIPolicy', ns, 'team-a');
      assert.equal(policy.status?.targets, 'good, missing-secret');
    });
    const r = await env.kubectl(['get', 'airoutes', '-n', ns, 'good']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ENDPOINTSREADY/);
  });

  it('EndpointsReady is False without ready endpoints, and PortNotFound for a missing port', async () => {
    await apply(ns, [
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'no-pods' },
        spec: { ports: [{ name: 'http', port: 8080, targetPort: 8000 }] },
      },
      routeTo('empty', 'empty-', 'no-pods', 8080),
      routeTo('wrong-port', 'wrong-', 'no-pods', 80),
    ]);
    await waitCondition('AIRoute', ns, 'empty', 'EndpointsReady', 'False', 'NoReadyEndpoints');
    const wrong = await waitCondition(
      'AIRoute',
      ns,
      'wrong-port',
      'EndpointsReady',
      'False',
      'PortNotFound',
    );
    assert.match(wrong.message, /has no port 80 \(its ports: 8080\)/);
  });

  it('says a policy whose every target is withdrawn applies to nothing', async () => {
    await apply(ns, [
      {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'AIPolicy',
        metadata: { name: 'on-broken' },
        spec: { targetRefs: [{ name: 'broken-target' }], mode: 'shadow' },
      },
      externalRoute('broken-target', 'broken-model', 'no-such-secret'),
    ]);
    await waitCondition('AIRoute', ns, 'broken-target', 'Accepted', 'False', 'SecretNotFound');
    await waitCondition('AIPolicy', ns, 'on-broken', 'Accepted', 'True');
    const c = await waitCondition('AIPolicy', ns, 'on-broken', 'Programmed', 'False', 'NotApplied');
    assert.match(c.message, new RegExp(`${ns}/broken-target`));
  });

  it('never logged a credential', () => {
    const all = logs.join('');
    assert.ok(all.length > 0);
    for (const value of [SECRET_V1, SECRET_V2, 'sk-late']) assert.ok(!all.includes(value));
  });
});

void describe('a Lease the operator may not use', () => {
  it('is a warning naming the namespace and the 403, not silence', async () => {
    const ns = await namespace(`lease403-${process.pid}`);
    const before = logs.length;
    const op = await run({
      kubeConfig: env.kubeConfig,
      namespaces: [ns],
      xdsListen: '127.0.0.1:0',
      leaderElection: { identity: 'forbidden', namespace: ns, retryPeriodMs: 200 },
      // A ServiceAccount with no rights at all, for the Lease calls only.
      leaseApi: leaseApi(env.impersonate(`system:serviceaccount:${ns}:nobody`)),
      logger: pino({ level: 'info' }, logSink),
      registry: new Registry(),
      now: () => Date.now(),
      shutdownGraceMs: 100,
      encoder,
    });
    try {
      await op.ready;
      const line = await eventually('lease warning', () => {
        const found = logs
          .slice(before)
          .map(
            (l) =>
              JSON.parse(l) as {
                level: number;
                event?: string;
                reason?: string;
                namespace?: string;
              },
          )
          .find((l) => l.event === 'lease_error');
        assert.ok(found, 'no lease_error line');
        return found;
      });
      assert.equal(line.level, 40);
      assert.equal(line.namespace, ns);
      assert.match(line.reason!, /403 Forbidden/);
      assert.equal(op.isLeader(), false);
    } finally {
      await op.close();
    }
  });
});

void describe('two replicas: status covers the whole fleet', () => {
  let ns: string;
  const ops: RunningOperator[] = [];
  const planes: { close(): void }[] = [];

  before(async () => {
    ns = await namespace(`le-${process.pid}`);
    await apply(ns, [secret('keys', 'sk-le'), externalRoute('r', 'gpt-4o', 'keys')]);
  });

  after(async () => {
    for (const p of planes) p.close();
    for (const o of ops) await o.close();
  });

  async function events(
    name: string,
  ): Promise<{ type: string; reason: string; message: string }[]> {
    const list = await env.kubeConfig.makeApiClient(CoreV1Api).listNamespacedEvent({
      namespace: ns,
      fieldSelector: `involvedObject.name=${name},involvedObject.kind=AIRoute`,
    });
    return list.items.map((e) => ({ type: e.type!, reason: e.reason!, message: e.message! }));
  }

  async function reportLeases(): Promise<string[]> {
    const leases = await env.kubeConfig
      .makeApiClient(CoordinationV1Api)
      .listNamespacedLease({ namespace: ns, labelSelector: 'sluice.dev/report=data-planes' });
    return leases.items.map((l) => l.spec?.holderIdentity ?? '').sort();
  }

  it('counts the data planes of the replica that does not lead, and its NACKs', async () => {
    const a = await startOperator([ns], { identity: 'replica-a', namespace: ns });
    ops.push(a);
    await a.ready;
    await eventually('a leads', () => assert.equal(a.isLeader(), true));
    const b = await startOperator([ns], { identity: 'replica-b', namespace: ns });
    ops.push(b);
    await b.ready;
    await waitCondition('AIRoute', ns, 'r', 'Accepted', 'True');
    const leases = env.kubeConfig.makeApiClient(CoordinationV1Api);
    const lease = await leases.readNamespacedLease({
      name: 'sluice-operator-status',
      namespace: ns,
    });
    assert.equal(lease.spec?.holderIdentity, 'replica-a');
    assert.equal(b.controller.desired?.version, a.controller.desired?.version);
    await eventually('both replicas report', async () =>
      assert.deepEqual(await reportLeases(), ['replica-a', 'replica-b']),
    );

    // One gateway on each replica: the leader counts both.
    planes.push(gateway(a, 'gw-a'), gateway(b, 'gw-b'));
    await eventually('both gateways counted', async () => {
      const c = await waitCondition('AIRoute', ns, 'r', 'Programmed', 'True', 'Programmed');
      assert.match(c.message, /2 gateway\(s\) \(2 Envoy, 2 extproc\)/);
    });

    // A gateway that refuses the config, connected to the standby only.
    const nacker = gateway(b, 'gw-n', (r) =>
      r.typeUrl === CLUSTER ? 'cluster rejected on b: no TLS' : undefined,
    );
    try {
      const c = await waitCondition('AIRoute', ns, 'r', 'Programmed', 'False', 'NACKed');
      assert.match(c.message, /gw-n\/envoy rejected Cluster .*cluster rejected on b: no TLS/);
      // The leader wrote it; the standby never writes.
      assert.equal(a.isLeader(), true);
      assert.equal(b.isLeader(), false);
      assert.equal(b.statusWriter.writes, 0);
      // An Event on the route, and the NACK counted where it happened.
      await eventually('NACKed Event', async () => {
        const e = (await events('r')).find((x) => x.reason === 'NACKed');
        assert.ok(e, 'no NACKed Event');
        assert.equal(e.type, 'Warning');
        assert.match(e.message, /cluster rejected on b: no TLS/);
      });
      const metrics = await (await fetch(`http://${b.adminAddress}/metrics`)).text();
      assert.match(metrics, /sluice_xds_nacks_total\{type="Cluster",node="gw-n\/envoy"\} [1-9]/);
    } finally {
      nacker.close();
    }
    await waitCondition('AIRoute', ns, 'r', 'Programmed', 'True', 'Programmed');
    await eventually('recovery Event', async () => {
      const e = (await events('r')).find((x) => x.reason === 'Programmed');
      assert.equal(e?.type, 'Normal');
    });

    // An Envoy on the standby whose extproc never connected: that gateway cannot serve.
    const halfGateway = envoyClient(b, 'gw-half/envoy');
    try {
      const c = await waitCondition('AIRoute', ns, 'r', 'Programmed', 'False', 'Incomplete');
      assert.match(c.message, /gateway gw-half has an Envoy but no extproc/);
    } finally {
      halfGateway.close();
    }
    await waitCondition('AIRoute', ns, 'r', 'Programmed', 'True', 'Programmed');
  });

  it('hands status over on shutdown; the stopped replica withdraws its report', async () => {
    const [a, b] = ops as [RunningOperator, RunningOperator];
    const leases = env.kubeConfig.makeApiClient(CoordinationV1Api);
    await a.close();
    await eventually('b takes over', async () => {
      const l = await leases.readNamespacedLease({ name: 'sluice-operator-status', namespace: ns });
      assert.equal(l.spec?.holderIdentity, 'replica-b');
      assert.equal(b.isLeader(), true);
    });
    assert.deepEqual(await reportLeases(), ['replica-b']);
    // gw-a went with replica a; the new leader counts what is left: its own gateway.
    await eventually('one gateway left', async () => {
      const c = await waitCondition('AIRoute', ns, 'r', 'Programmed', 'True', 'Programmed');
      assert.match(c.message, /1 gateway\(s\) \(1 Envoy, 1 extproc\)/);
    });
    assert.ok(b.statusWriter.writes > 0, 'the new leader wrote status');

    // The last replica going away (helm uninstall) leaves no claim about data planes behind.
    await b.close();
    const c = await condition('AIRoute', ns, 'r', 'Programmed');
    assert.deepEqual([c?.status, c?.reason], ['Unknown', 'OperatorStopped']);
    assert.match(c!.message, /No Sluice operator is running.*It was: True Programmed/);
  });
});
