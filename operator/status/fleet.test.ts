import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PreparedSnapshot } from '../xds/cache.js';
import type { DataPlane, ResourceState } from '../xds/tracker.js';
import { CLUSTER, EXTPROC_CONFIG, LISTENER } from '../xds/type-urls.js';
import {
  buildReport,
  gatewayOf,
  remotePlanes,
  ReplicaReportSchema,
  reportLeaseName,
  type DataPlaneView,
} from './fleet.js';

function snapshot(version: string, byType: Record<string, string[]>): PreparedSnapshot {
  return {
    version,
    types: new Map(
      Object.entries(byType).map(([t, names]) => [
        t,
        {
          version: 'v',
          resources: new Map(names.map((n) => [n, { type_url: t, value: new Uint8Array() }])),
          hashes: new Map(names.map((n) => [n, 'h'])),
        },
      ]),
    ),
  };
}

function plane(nodeId: string, types: string[]): DataPlane {
  return {
    nodeId,
    streamId: `s-${nodeId}`,
    connectedAt: new Date(0),
    types: Object.fromEntries(types.map((t) => [t, {}])),
  };
}

/** `states[node][name]`: acked, pending, or a NACK message; absent: not subscribed. */
function view(planes: DataPlane[], states: Record<string, Record<string, string>>): DataPlaneView {
  return {
    dataPlanes: () => planes,
    resourceStatus: (_t, name) =>
      Object.entries(states).flatMap(([nodeId, byName]): ResourceState[] => {
        const s = byName[name];
        const ids = { nodeId, streamId: `s-${nodeId}` };
        if (s === undefined) return [];
        if (s === 'acked' || s === 'pending') return [{ ...ids, state: s }];
        return [{ ...ids, state: 'nacked', message: s }];
      }),
  };
}

void describe('fleet reports', () => {
  const snap = snapshot('v7', {
    [CLUSTER]: ['c1', 'c2'],
    [LISTENER]: ['sluice'],
    [EXTPROC_CONFIG]: ['extproc'],
  });

  it('pairs the halves of a gateway by node id', () => {
    assert.equal(gatewayOf('sluice-gateway-abc/envoy'), 'sluice-gateway-abc');
    assert.equal(gatewayOf('sluice-gateway-abc/extproc'), 'sluice-gateway-abc');
    assert.equal(gatewayOf('a/b/envoy'), 'a/b');
    assert.equal(gatewayOf('envoy-1'), 'envoy-1');
  });

  it('lists only what a data plane has not applied, and nothing once all is ACKed', () => {
    const r = buildReport(
      'replica-b',
      view([plane('gw/envoy', [CLUSTER, LISTENER]), plane('gw/extproc', [EXTPROC_CONFIG])], {
        'gw/envoy': { c1: 'no TLS', c2: 'no TLS' },
        'gw/extproc': { extproc: 'acked' },
      }),
      snap,
    );
    assert.deepEqual(ReplicaReportSchema.parse(JSON.parse(JSON.stringify(r))), r);
    assert.equal(r.snapshot, 'v7');
    const [envoy, extproc] = r.planes;
    assert.deepEqual(envoy!.nacked, { [CLUSTER]: { names: ['c1', 'c2'], message: 'no TLS' } });
    // Not subscribed to the listener yet, and no EDS or RDS resources in this snapshot.
    assert.deepEqual(envoy!.pending, { [LISTENER]: ['sluice'] });
    assert.deepEqual([envoy!.envoy, envoy!.extproc], [true, false]);
    assert.deepEqual([extproc!.pending, extproc!.nacked], [{}, {}]);
  });

  it('reads a report back as the planes it describes, pending for everything when behind', () => {
    const r = buildReport(
      'replica-b',
      view([plane('gw/envoy', [CLUSTER, LISTENER])], {
        'gw/envoy': { c1: 'acked', c2: 'no TLS', sluice: 'acked' },
      }),
      snap,
    );
    const [p] = remotePlanes(r, 'v7');
    assert.equal(p!.replica, 'replica-b');
    assert.equal(p!.gateway, 'gw');
    assert.deepEqual(p!.state({ typeUrl: CLUSTER, name: 'c2' }), {
      state: 'nacked',
      message: 'no TLS',
    });
    assert.deepEqual(p!.state({ typeUrl: LISTENER, name: 'sluice' }), { state: 'acked' });
    const [old] = remotePlanes(r, 'v8');
    assert.equal(old!.state({ typeUrl: LISTENER, name: 'sluice' }).state, 'pending');
  });

  it('widens long lists to every resource of the type, never narrows them', () => {
    const names = Array.from({ length: 150 }, (_, i) => `c${i}`);
    const big = snapshot('v1', { [CLUSTER]: names });
    const r = buildReport('b', view([plane('gw/envoy', [CLUSTER])], { 'gw/envoy': {} }), big);
    assert.equal(r.planes[0]!.pending[CLUSTER], '*');
    const [p] = remotePlanes(r, 'v1');
    assert.equal(p!.state({ typeUrl: CLUSTER, name: 'c149' }).state, 'pending');
  });

  it('names each replica’s Lease by a hash of its identity', () => {
    assert.match(
      reportLeaseName('sluice-operator-7d9f-abcde'),
      /^sluice-operator-planes-[0-9a-f]{12}$/,
    );
    assert.notEqual(reportLeaseName('a'), reportLeaseName('b'));
  });
});
