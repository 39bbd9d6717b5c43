// The emulator refuses what Envoy itself refuses on load: config that breaks the release's
// protoc-gen-validate rules is NACKed with the rule, before the emulator's own allowlist.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ALL_NODES, SnapshotCache } from '../xds/cache.js';
import type { EncodedAny } from '../xds/encode.js';
import { startAdsServer } from '../xds/server.js';
import { CLUSTER, LISTENER } from '../xds/type-urls.js';
import { envoyRelease } from '../envoy-api/index.js';
import { EnvoySim, type XdsEvent } from './index.js';
import { envoyRoot } from './protos.js';

function any(typeUrl: string, json: Record<string, unknown>): EncodedAny {
  const type = envoyRoot().lookupType(typeUrl.slice(typeUrl.lastIndexOf('/') + 1));
  return { type_url: typeUrl, value: type.encode(type.fromObject(json)).finish() };
}

async function cdsVerdict(clusters: Record<string, unknown>[]): Promise<XdsEvent> {
  const cache = new SnapshotCache();
  const byName = new Map(clusters.map((c) => [c['name'] as string, any(CLUSTER, c)]));
  cache.setSnapshot(ALL_NODES, {
    version: 'v1',
    resources: new Map([
      [CLUSTER, byName],
      [LISTENER, new Map()],
    ]),
  });
  const ads = await startAdsServer({ cache, listen: '127.0.0.1:0' });
  const events: XdsEvent[] = [];
  const sim = new EnvoySim({
    adsAddress: ads.address,
    nodeId: 'test/envoy',
    onXdsEvent: (e) => events.push(e),
  });
  try {
    const deadline = Date.now() + 5000;
    for (;;) {
      const cds = events.find((e) => e.typeUrl === CLUSTER);
      if (cds) return cds;
      if (Date.now() > deadline) throw new Error('no CDS verdict');
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    await sim.close();
    await ads.close(100);
  }
}

const good = {
  name: 'c',
  type: 'STATIC',
  connect_timeout: { seconds: 1 },
  load_assignment: { cluster_name: 'c' },
};

describe('envoy-sim xDS: what Envoy refuses on load', () => {
  it('ACKs a valid cluster', async () => {
    assert.equal((await cdsVerdict([good])).accepted, true);
  });

  it("NACKs a cluster that breaks the release's validation rules, naming resource and rule", async () => {
    const cds = await cdsVerdict([good, { ...good, name: 'zero', connect_timeout: {} }]);
    assert.equal(cds.accepted, false);
    assert.equal(
      cds.message,
      `Envoy ${envoyRelease()} refuses this config (proto constraint validation failed): ` +
        'Cluster["zero"].connect_timeout: 0 ns is not > 0s',
    );
  });

  it('ACKs a RING_HASH cluster and NACKs the hashing it does not implement (MAGLEV, murmur)', async () => {
    const ring = {
      ...good,
      lb_policy: 'RING_HASH',
      ring_hash_lb_config: { minimum_ring_size: { value: 1024 } },
    };
    const ok = await cdsVerdict([ring]);
    assert.equal(ok.accepted, true, ok.message);
    const maglev = await cdsVerdict([{ ...good, lb_policy: 'MAGLEV' }]);
    assert.equal(maglev.accepted, false);
    assert.match(maglev.message ?? '', /lb_policy/);
    const murmur = await cdsVerdict([
      { ...ring, ring_hash_lb_config: { hash_function: 'MURMUR_HASH_2' } },
    ]);
    assert.equal(murmur.accepted, false);
    assert.match(murmur.message ?? '', /hash_function/);
    const inverted = await cdsVerdict([
      {
        ...ring,
        ring_hash_lb_config: {
          minimum_ring_size: { value: 4096 },
          maximum_ring_size: { value: 1024 },
        },
      },
    ]);
    assert.equal(inverted.accepted, false);
    assert.match(inverted.message ?? '', /minimum_ring_size \(4096\) > maximum_ring_size \(1024\)/);
  });
});
