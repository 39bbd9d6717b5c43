import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { buildSnapshot, SnapshotCache } from './cache.js';
import { startAdsServer, type RunningAdsServer } from './server.js';
import type { DataPlane } from './tracker.js';
import { CLUSTER, ENDPOINT, LISTENER, ROUTE } from './type-urls.js';
import { EXT_PROC, HCM, resourcesFor, testEncoder, type Shape } from './testing/fixtures.js';
import { OfficialAdsClient, officialRoot, type Received } from '../envoy-api/ads-client.js';

/** A tracker state without its stream id (which the server makes up). */
function withoutStream<T extends { streamId: string }>(
  s: T | undefined,
): Omit<T, 'streamId'> | undefined {
  if (!s) return s;
  const { streamId: _streamId, ...rest } = s;
  return rest;
}

const encoder = testEncoder();

const BASE: Shape = {
  clusters: { 'backend-a': '1s', 'backend-b': '2.5s' },
  routes: { main: ['*'], side: ['side.example'] },
};

function snapshot(version: string, shape: Shape = BASE): ReturnType<typeof buildSnapshot> {
  return buildSnapshot(encoder, version, resourcesFor(shape));
}

describe('ADS server', () => {
  let dir: string;
  let cache: SnapshotCache;
  let ads: RunningAdsServer;
  const clients: OfficialAdsClient[] = [];

  const connect = (
    nodeId: string,
    opts: Partial<ConstructorParameters<typeof OfficialAdsClient>[1]> = {},
  ): OfficialAdsClient => {
    const c = new OfficialAdsClient(ads.address, { nodeId, ...opts });
    clients.push(c);
    return c;
  };

  /** Subscribes to all four types at once, LDS and RDS first, to prove the server reorders. */
  const subscribeAll = (c: OfficialAdsClient): void => {
    c.subscribe(LISTENER);
    c.subscribe(ROUTE, ['main']);
    c.subscribe(ENDPOINT, ['backend-a', 'backend-b']);
    c.subscribe(CLUSTER);
  };

  /** The initial four responses, once the server has recorded the client's ACK of each. */
  const initial = async (c: OfficialAdsClient): Promise<Map<string, Received>> => {
    const acks = [CLUSTER, ENDPOINT, LISTENER, ROUTE].map((t) =>
      ads.tracker.whenAcked((e) => e.nodeId === c.nodeId && e.typeUrl === t, 3000),
    );
    subscribeAll(c);
    const got = new Map<string, Received>();
    for (let i = 0; i < 4; i++) {
      const r = await c.next();
      got.set(r.typeUrl, r);
    }
    await Promise.all(acks);
    return got;
  };

  before(async () => {
    // Loading the official API takes a while; do it before any client is measured on ordering.
    officialRoot();
    dir = await mkdtemp(join(tmpdir(), 'sluice-ads-'));
    cache = new SnapshotCache();
    cache.setSnapshot('*', snapshot('gen-1'));
    ads = await startAdsServer({
      cache,
      listen: `unix:${join(dir, 'ads.sock')}`,
      // The opening burst's four subscriptions leave the client in one turn, but a loaded machine
      // (the suite at concurrency 2 on 2 cores) delivered them over more than the default 10 ms:
      // a fresh-clone CI run got EDS, LDS and RDS answered before CDS. The reordering is what the
      // ordering test checks, so the burst gets time to arrive whole.
      initialCoalesceMs: 250,
    });
  });

  after(async () => {
    for (const c of clients) c.close();
    await ads.close(200);
    await rm(dir, { recursive: true, force: true });
  });

  it('sends the initial snapshot in CDS, EDS, LDS, RDS order, decodable with the official protos', async () => {
    const c = connect('envoy-order');
    subscribeAll(c);
    const order: string[] = [];
    const got: Received[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await c.next();
      order.push(r.typeUrl);
      got.push(r);
    }
    assert.deepEqual(order, [CLUSTER, ENDPOINT, LISTENER, ROUTE]);
    const [cds, eds, lds, rds] = got as [Received, Received, Received, Received];
    assert.deepEqual([...cds.resources.keys()], ['backend-a', 'backend-b']);
    assert.deepEqual(cds.resources.get('backend-b')!['connect_timeout'], {
      seconds: '2',
      nanos: 500000000,
    });
    assert.equal(cds.resources.get('backend-a')!['type'], 'EDS');
    const eps = eds.resources.get('backend-a') as any;
    assert.deepEqual(eps.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, {
      address: '10.0.0.1',
      port_value: 8000,
      port_specifier: 'port_value',
    });
    // Any inside Any inside Any: listener → HCM → ext_proc, each read with Envoy's own types.
    const hcm = (lds.resources.get('sluice-http') as any).filter_chains[0].filters[0].typed_config;
    assert.equal(hcm['@type'], HCM);
    assert.equal(hcm.rds.route_config_name, 'main');
    const extProc = hcm.http_filters[0].typed_config;
    assert.equal(extProc['@type'], EXT_PROC);
    assert.equal(extProc.grpc_service.envoy_grpc.cluster_name, 'sluice-extproc');
    assert.equal(extProc.processing_mode.request_body_mode, 'BUFFERED');
    assert.deepEqual(extProc.message_timeout, { seconds: '2', nanos: 0 });
    // RDS names what it wants: "side" exists but was not asked for.
    assert.deepEqual([...rds.resources.keys()], ['main']);
    assert.equal(cds.controlPlane, 'sluice-operator');
    const nonces = new Set(got.map((r) => r.nonce));
    assert.equal(nonces.size, 4, 'a fresh nonce per response');
    const plane = (): DataPlane | undefined =>
      ads.tracker.dataPlanes().find((p) => p.nodeId === 'envoy-order');
    await waitUntil(() => Object.values(plane()!.types).every((t) => t.ackedVersion));
    const types = plane()!.types;
    for (const r of got) assert.equal(types[r.typeUrl]!.ackedVersion, r.version);
    assert.equal(types[CLUSTER]!.ackedSnapshot, 'gen-1');
  });

  it('derives versions from content, so the same content has the same version on every stream', async () => {
    const a = connect('envoy-v1');
    const b = connect('envoy-v2');
    const ra = await initial(a);
    const rb = await initial(b);
    for (const t of [CLUSTER, ENDPOINT, LISTENER, ROUTE])
      assert.equal(ra.get(t)!.version, rb.get(t)!.version);
    assert.notEqual(ra.get(CLUSTER)!.nonce, rb.get(CLUSTER)!.nonce);
  });

  it('pushes only the types whose content changed, and nothing for a renamed snapshot', async () => {
    const c = connect('envoy-push');
    const first = await initial(c);

    cache.setSnapshot(
      '*',
      snapshot('gen-2', { ...BASE, routes: { ...BASE.routes, main: ['*', 'api.example'] } }),
    );
    const pushed = await c.next();
    assert.equal(pushed.typeUrl, ROUTE);
    assert.notEqual(pushed.version, first.get(ROUTE)!.version);
    assert.deepEqual((pushed.resources.get('main') as any).virtual_hosts[0].domains, [
      '*',
      'api.example',
    ]);
    assert.equal(await c.quiet(150), undefined, 'nothing else was pushed');

    // An unsubscribed route changes: the stream's view of RDS is unchanged.
    cache.setSnapshot(
      '*',
      snapshot('gen-3', {
        ...BASE,
        routes: { main: ['*', 'api.example'], side: ['other.example'] },
      }),
    );
    assert.equal(await c.quiet(150), undefined);

    // Same content, new snapshot name: no push at all.
    cache.setSnapshot(
      '*',
      snapshot('gen-4', {
        ...BASE,
        routes: { main: ['*', 'api.example'], side: ['other.example'] },
      }),
    );
    assert.equal(await c.quiet(150), undefined);
    cache.setSnapshot('*', snapshot('gen-1'));
    assert.equal((await c.next()).typeUrl, ROUTE);
  });

  it('pushes a change that touches every type in make-before-break order', async () => {
    const c = connect('envoy-push-order');
    await initial(c);
    cache.setSnapshot(
      '*',
      snapshot('gen-all', {
        clusters: { 'backend-a': '6s', 'backend-b': '2.5s' },
        routes: { main: ['z.example'] },
        listener: 'sluice-http-2',
        endpointIp: '10.0.0.2',
      }),
    );
    const order: string[] = [];
    for (let i = 0; i < 4; i++) order.push((await c.next()).typeUrl);
    assert.deepEqual(order, [CLUSTER, ENDPOINT, LISTENER, ROUTE]);
    cache.setSnapshot('*', snapshot('gen-1'));
  });

  it('records a NACK with its message, keeps the ACKed version, and clears it once a later version is ACKed', async () => {
    const c = connect('envoy-nack', {
      judge: (r) =>
        r.typeUrl === CLUSTER &&
        [...r.resources.values()].some(
          (m) => (m['connect_timeout'] as { seconds: string }).seconds === '9',
        )
          ? 'cluster backend-a: connect_timeout too long'
          : undefined,
    });
    const first = await initial(c);

    const nacked = ads.tracker.whenNacked((e) => e.nodeId === 'envoy-nack', 2000);
    cache.setSnapshot(
      '*',
      snapshot('gen-bad', { ...BASE, clusters: { 'backend-a': '9s', 'backend-b': '2.5s' } }),
    );
    const bad = await c.next();
    const e = await nacked;
    assert.equal(e.typeUrl, CLUSTER);
    assert.equal(e.version, bad.version);
    assert.equal(e.snapshotVersion, 'gen-bad');
    assert.equal(e.message, 'cluster backend-a: connect_timeout too long');
    assert.equal(e.code, grpc.status.INVALID_ARGUMENT);

    const status = ads.tracker.dataPlanes().find((p) => p.nodeId === 'envoy-nack')!.types[CLUSTER]!;
    assert.equal(
      status.ackedVersion,
      first.get(CLUSTER)!.version,
      'the last good version stays ACKed',
    );
    assert.equal(status.nackedVersion, bad.version);
    assert.equal(status.nackMessage, 'cluster backend-a: connect_timeout too long');
    assert.deepEqual(
      withoutStream(
        ads.tracker.resourceStatus(CLUSTER, 'backend-a').find((s) => s.nodeId === 'envoy-nack'),
      ),
      {
        nodeId: 'envoy-nack',
        state: 'nacked',
        message: 'cluster backend-a: connect_timeout too long',
      },
    );
    // backend-b did not change: the client runs it as it ACKed it, so one bad cluster does not
    // hold back the status of another.
    assert.deepEqual(
      withoutStream(
        ads.tracker.resourceStatus(CLUSTER, 'backend-b').find((s) => s.nodeId === 'envoy-nack'),
      ),
      { nodeId: 'envoy-nack', state: 'acked' },
    );
    assert.equal(await c.quiet(100), undefined, 'a NACKed version is not resent');

    const acked = ads.tracker.whenAcked(
      (x) => x.nodeId === 'envoy-nack' && x.typeUrl === CLUSTER,
      2000,
    );
    cache.setSnapshot(
      '*',
      snapshot('gen-fixed', { ...BASE, clusters: { 'backend-a': '3s', 'backend-b': '2.5s' } }),
    );
    assert.equal((await acked).snapshotVersion, 'gen-fixed');
    const fixed = ads.tracker.dataPlanes().find((p) => p.nodeId === 'envoy-nack')!.types[CLUSTER]!;
    assert.equal(fixed.nackedVersion, undefined);
    assert.equal(fixed.nackMessage, undefined);
    assert.deepEqual(
      withoutStream(
        ads.tracker.resourceStatus(CLUSTER, 'backend-a').find((s) => s.nodeId === 'envoy-nack'),
      ),
      { nodeId: 'envoy-nack', state: 'acked' },
    );
    cache.setSnapshot('*', snapshot('gen-1'));
  });

  it('answers RDS with the named resources and follows changes of resource_names', async () => {
    const c = connect('envoy-rds', { autoAck: false });
    c.subscribe(ROUTE, ['main']);
    const r1 = await c.next();
    assert.deepEqual([...r1.resources.keys()], ['main']);
    c.ack(r1, ['main', 'side', 'missing']);
    const r2 = await c.next();
    assert.deepEqual([...r2.resources.keys()], ['main', 'side'], 'unknown names are left out');
    assert.notEqual(r2.version, r1.version);
    c.ack(r2);
    assert.equal(await c.quiet(100), undefined, 'an ACK alone gets no answer');

    // A request carrying an older nonce is stale: ignored, even though it asks for other names.
    c.send({
      type_url: ROUTE,
      resource_names: ['main'],
      version_info: r1.version,
      response_nonce: r1.nonce,
    });
    assert.equal(await c.quiet(150), undefined);
    const plane = ads.tracker.dataPlanes().find((p) => p.nodeId === 'envoy-rds')!;
    assert.equal(plane.types[ROUTE]!.ackedVersion, r2.version);
  });

  it('serves a node its own snapshot, unaffected by the default', async () => {
    cache.setSnapshot('envoy-own', snapshot('own-1', { ...BASE, clusters: { solo: '4s' } }));
    const c = connect('envoy-own');
    c.subscribe(CLUSTER);
    const r = await c.next();
    assert.deepEqual([...r.resources.keys()], ['solo']);
    cache.setSnapshot('*', snapshot('gen-5', { ...BASE, clusters: { 'backend-a': '7s' } }));
    assert.equal(await c.quiet(150), undefined);
    cache.clearSnapshot('envoy-own');
    assert.deepEqual([...(await c.next()).resources.keys()], ['backend-a']);
    cache.setSnapshot('*', snapshot('gen-1'));
    await c.next();
  });

  it('waits for a snapshot before answering a node that has none', async () => {
    const lone = new SnapshotCache();
    const server = await startAdsServer({ cache: lone, listen: '127.0.0.1:0' });
    const c = new OfficialAdsClient(server.address, { nodeId: 'early' });
    try {
      c.subscribe(CLUSTER);
      assert.equal(await c.quiet(150), undefined);
      lone.setSnapshot('*', snapshot('late'));
      assert.equal((await c.next()).typeUrl, CLUSTER);
    } finally {
      c.close();
      await server.close(100);
    }
  });

  it('drops a closed stream from the connected set, and a reconnecting client gets everything again', async () => {
    const c = connect('envoy-re');
    const first = await initial(c);
    assert.ok(ads.tracker.dataPlanes().some((p) => p.nodeId === 'envoy-re'));
    c.close();
    await waitUntil(() => !ads.tracker.dataPlanes().some((p) => p.nodeId === 'envoy-re'));

    const again = connect('envoy-re');
    // A reconnecting Envoy sends the versions it runs, with no nonce.
    again.send({ type_url: CLUSTER, version_info: first.get(CLUSTER)!.version });
    const r = await again.next();
    assert.equal(r.typeUrl, CLUSTER);
    assert.equal(r.version, first.get(CLUSTER)!.version);
    await waitUntil(
      () =>
        ads.tracker.dataPlanes().find((p) => p.nodeId === 'envoy-re')?.types[CLUSTER]
          ?.ackedVersion === r.version,
    );
    assert.equal(ads.tracker.dataPlanes().filter((p) => p.nodeId === 'envoy-re').length, 1);
  });

  it('refuses a stream whose first request has no node id', async () => {
    const c = new OfficialAdsClient(ads.address, { nodeId: '' });
    c.subscribe(CLUSTER);
    const status = await c.ended;
    c.close();
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
    assert.match(status.details, /node\.id/);
  });
});

async function waitUntil(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
