// The reconcile loop without Kubernetes: a fake source and status API, the real ADS server and
// the official-proto test client as the data plane.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AIRoute, ResourceStatus, Resources } from '../api/types.js';
import type { Change } from '../source/kube.js';
import { StatusWriter, type StatusApi, type StatusTarget } from '../status/writer.js';
import { SnapshotCache } from '../xds/cache.js';
import { startAdsServer, type RunningAdsServer } from '../xds/server.js';
import { testEncoder } from '../xds/testing/fixtures.js';
import { OfficialAdsClient } from '../envoy-api/ads-client.js';
import { CLUSTER, EXTPROC_CONFIG, LISTENER, ROUTE } from '../xds/type-urls.js';
import { Controller, type ResourceSource } from './controller.js';

function route(name: string, secret: string, generation = 1): AIRoute {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'ns', generation, resourceVersion: '1' },
    spec: {
      models: [{ exact: name }],
      backends: [
        {
          name: 'openai',
          provider: 'openai',
          endpoint: { url: 'https://api.openai.com/v1' },
          credential: { secretRef: { name: secret } },
        },
      ],
    },
  };
}

class FakeSource implements ResourceSource {
  synced = true;
  failNext = 0;
  calls = 0;
  bundle: Resources = {
    routes: [route('good', 'keys'), route('bad', 'absent')],
    policies: [],
    secrets: [{ metadata: { name: 'keys', namespace: 'ns' }, data: { apiKey: 'k1' } }],
    endpoints: [],
  };
  private listener: ((c: Change) => void) | undefined;
  resources(): Promise<Resources> {
    this.calls++;
    if (this.failNext-- > 0) return Promise.reject(new Error('Secret read failed'));
    return Promise.resolve(this.bundle);
  }
  onChange(l: (c: Change) => void) {
    this.listener = l;
    return () => (this.listener = undefined);
  }
  /** Where written statuses land, so route() returns them as an informer would. */
  written = new Map<string, ResourceStatus>();
  route(_ns: string, name: string) {
    const r = this.bundle.routes.find((x) => x.metadata.name === name);
    const status = this.written.get(name);
    return r && status ? { ...r, status } : r;
  }
  policy() {
    return undefined;
  }
  change(): void {
    this.listener?.({ spec: true, status: new Set() });
  }
}

class MemoryStatus implements StatusApi {
  statuses = new Map<string, ResourceStatus>();
  get(_k: string, _ns: string, name: string): Promise<StatusTarget | undefined> {
    return Promise.resolve({
      metadata: { name, namespace: 'ns', resourceVersion: '1' },
      spec: {},
      status: this.statuses.get(name),
    });
  }
  history: string[] = [];
  writes: { name: string; status: ResourceStatus }[] = [];
  replaceStatus(_k: string, target: StatusTarget, status: ResourceStatus): Promise<void> {
    this.statuses.set(target.metadata.name, status);
    this.writes.push({ name: target.metadata.name, status });
    const p = status.conditions?.find((c) => c.type === 'Programmed');
    this.history.push(`${target.metadata.name} ${p?.reason}`);
    return Promise.resolve();
  }
  condition(name: string, type: string) {
    return this.statuses.get(name)?.conditions?.find((c) => c.type === type);
  }
}

/** One gateway: an Envoy and its extproc, as the chart names them. */
function gateway(address: string, name: string): { close(): void } {
  const envoy = new OfficialAdsClient(address, { nodeId: `${name}/envoy`, keep: false });
  envoy.subscribe(CLUSTER);
  envoy.subscribe(LISTENER);
  envoy.subscribe(ROUTE, ['sluice']);
  const extproc = new OfficialAdsClient(address, { nodeId: `${name}/extproc`, keep: false });
  extproc.subscribe(EXTPROC_CONFIG);
  return {
    close: () => {
      envoy.close();
      extproc.close();
    },
  };
}

async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

void describe('Controller', () => {
  let ads: RunningAdsServer;
  let cache: SnapshotCache;
  let source: FakeSource;
  let status: MemoryStatus;
  let leader = false;
  let controller: Controller;
  let writer: StatusWriter;

  before(async () => {
    cache = new SnapshotCache();
    ads = await startAdsServer({ cache, listen: '127.0.0.1:0' });
    source = new FakeSource();
    source.failNext = 1;
    status = new MemoryStatus();
    source.written = status.statuses;
    writer = new StatusWriter(status);
    controller = new Controller({
      source,
      cache,
      encoder: testEncoder(),
      tracker: ads.tracker,
      status: { writer, isLeader: () => leader },
      now: () => Date.UTC(2025, 0, 1),
      debounceMs: 1,
      dataPlanePollMs: 20,
      backoff: { initialMs: 5, maxMs: 20 },
    });
    controller.start();
  });

  after(async () => {
    await controller.close();
    await ads.close(10);
  });

  it('retries a transient failure and then serves the snapshot', async () => {
    await until('snapshot', () => cache.snapshotFor('x') !== undefined);
    assert.ok(source.calls >= 2);
    const clusters = cache.snapshotFor('x')!.types.get(CLUSTER)!.resources;
    assert.ok(clusters.has('route/ns/good/rule/0'));
    assert.ok(!clusters.has('route/ns/bad/rule/0'));
  });

  it('writes no status while not the leader', async () => {
    await controller.idle();
    assert.equal(writer.writes, 0);
  });

  it('writes conditions once leading, and Programmed follows the ACKs', async () => {
    leader = true;
    controller.statusAll(0);
    await until('status', () => status.condition('bad', 'Accepted') !== undefined);
    assert.equal(status.condition('bad', 'Accepted')?.reason, 'SecretNotFound');
    assert.equal(status.condition('good', 'Programmed')?.reason, 'NoDataPlane');
    assert.equal(
      status.condition('good', 'Programmed')?.lastTransitionTime,
      '2025-01-01T00:00:00Z',
    );

    const envoy = gateway(ads.address, 'gw-1');
    try {
      await until('programmed', () => status.condition('good', 'Programmed')?.status === 'True');
    } finally {
      envoy.close();
    }
    await until('disconnected', () => status.condition('good', 'Programmed')?.status === 'Unknown');
  });

  it('serves a changed bundle after a change signal', async () => {
    const before = cache.snapshotFor('x')!.version;
    source.bundle = {
      ...source.bundle,
      routes: [route('good', 'keys', 2), route('other', 'keys')],
    };
    source.change();
    await until('new snapshot', () => cache.snapshotFor('x')!.version !== before);
    assert.ok(cache.snapshotFor('x')!.types.get(CLUSTER)!.resources.has('route/ns/other/rule/0'));
    await until('generation 2', () => status.statuses.get('good')?.observedGeneration === 2);
  });

  it('does not flap Programmed through Pending when data planes ACK a new snapshot quickly', async () => {
    const envoy = gateway(ads.address, 'gw-2');
    try {
      await until('programmed', () => status.condition('good', 'Programmed')?.status === 'True');
      status.history.length = 0;
      const before = cache.snapshotFor('x')!.version;
      source.bundle = {
        ...source.bundle,
        routes: [...source.bundle.routes, route('third', 'keys')],
      };
      source.change();
      await until('new snapshot', () => cache.snapshotFor('x')!.version !== before);
      await until(
        'third programmed',
        () => status.condition('third', 'Programmed')?.status === 'True',
      );
      await controller.idle();
      assert.deepEqual(
        status.history.filter((h) => h.startsWith('good ')),
        [],
        'good was rewritten',
      );
    } finally {
      envoy.close();
    }
  });
  it('makes a new generation Unknown/Pending at once, until the data planes ACK it', async () => {
    const envoy = new OfficialAdsClient(ads.address, {
      nodeId: 'gw-3/envoy',
      autoAck: false,
    });
    const extproc = new OfficialAdsClient(ads.address, { nodeId: 'gw-3/extproc', keep: false });
    extproc.subscribe(EXTPROC_CONFIG);
    envoy.subscribe(CLUSTER);
    envoy.subscribe(LISTENER);
    envoy.subscribe(ROUTE, ['sluice']);
    let acking = true;
    const held: Awaited<ReturnType<typeof envoy.next>>[] = [];
    const pump = (async () => {
      while (acking) {
        const r = await envoy.next(200).catch(() => undefined);
        if (r && acking) envoy.ack(r);
        else if (r) held.push(r);
      }
    })();
    try {
      await until('programmed', () => status.condition('good', 'Programmed')?.status === 'True');
      const generation = (status.statuses.get('good')?.observedGeneration ?? 0) + 1;
      acking = false;
      await pump;
      const routes = source.bundle.routes.map((r) =>
        r.metadata.name === 'good'
          ? {
              ...r,
              metadata: { ...r.metadata, generation },
              spec: { ...r.spec, models: [{ exact: 'good' }, { exact: 'good-2' }] },
            }
          : r,
      );
      source.bundle = { ...source.bundle, routes };
      source.change();
      const firstWrite = () =>
        status.writes.find((w) => w.name === 'good' && w.status.observedGeneration === generation)
          ?.status;
      await until('new generation written', () => firstWrite() !== undefined);
      // The very write that reports the new generation says Pending: no True left over from
      // the generation before.
      const pending = firstWrite()!.conditions!.find((c) => c.type === 'Programmed')!;
      assert.equal(pending.observedGeneration, generation);
      assert.deepEqual([pending.status, pending.reason], ['Unknown', 'Pending']);
      assert.match(pending.message, /gw-3\/envoy/);
      // Unchanged objects keep their True through the grace period.
      assert.equal(status.condition('other', 'Programmed')?.status, 'True');
      for (;;) {
        const r = held.shift() ?? (await envoy.next(2000));
        envoy.ack(r);
        if (status.condition('good', 'Programmed')?.status === 'True') break;
        await new Promise((res) => setTimeout(res, 100));
        if (status.condition('good', 'Programmed')?.status === 'True') break;
      }
      assert.equal(status.condition('good', 'Programmed')?.observedGeneration, generation);
    } finally {
      acking = false;
      envoy.close();
      extproc.close();
    }
  });
});

void describe('Controller: consumer key expiry', () => {
  it('compiles again when a key expires, with nothing else changing', async () => {
    const cache = new SnapshotCache();
    const ads = await startAdsServer({ cache, listen: '127.0.0.1:0' });
    const source = new FakeSource();
    const expiring = 'a'.repeat(64);
    const lasting = 'b'.repeat(64);
    const key = { namespace: 'sluice-system', consumer: 'alice' };
    source.bundle = {
      ...source.bundle,
      consumerKeys: [
        {
          ...key,
          secret: 'alice-old',
          keyHash: expiring,
          expiresAt: new Date(Date.now() + 100).toISOString(),
        },
        { ...key, secret: 'alice-new', keyHash: lasting },
      ],
    };
    const controller = new Controller({
      source,
      cache,
      encoder: testEncoder(),
      tracker: ads.tracker,
      now: () => Date.now(),
      debounceMs: 1,
      dataPlanePollMs: 20,
    });
    controller.start();
    try {
      await until('first snapshot', () => controller.desired !== undefined);
      const first = controller.desired!.extproc.consumers?.[0]?.keyHashes;
      // Unless the machine stalled past the expiry already, the old key starts out served.
      if (source.calls === 1) assert.deepEqual(first, [expiring, lasting]);
      await until(
        'expired key dropped',
        () => controller.desired?.extproc.consumers?.[0]?.keyHashes?.join() === lasting,
      );
      assert.ok(source.calls >= 2, 'a second translation, without a change signal');
    } finally {
      await controller.close();
      await ads.close(10);
    }
  });
});
