// The emulator accepts exactly what the operator emits (every golden case) and NACKs, naming
// the field, anything else.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { desiredState } from '../../operator/controller/snapshot.js';
import { loadResources } from '../../operator/source/yaml.js';
import { compile } from '../../operator/compile/index.js';
import { ALL_NODES, SnapshotCache, type Snapshot } from '../../operator/xds/cache.js';
import type { EncodedAny } from '../../operator/xds/encode.js';
import { ResourceEncoder } from '../../operator/xds/encode.js';
import { startAdsServer } from '../../operator/xds/server.js';
import { CLUSTER, LISTENER, ROUTE } from '../../operator/xds/type-urls.js';
import { EnvoySim, type XdsEvent } from '../../operator/envoy-sim/index.js';
import { LoadBalancer } from '../../operator/envoy-sim/lb.js';
import type { LocalityModel } from '../../operator/envoy-sim/model.js';
import { envoyRoot } from '../../operator/envoy-sim/protos.js';

const CASES = fileURLToPath(new URL('../golden/cases/', import.meta.url));
const encoder = ResourceEncoder.fromProtoTree();

async function snapshotOf(file: string): Promise<Snapshot> {
  const { resources } = await loadResources([file]);
  const t = compile(resources, { version: 'sim', listenerAddress: '127.0.0.1', listenerPort: 0 });
  return desiredState(t, encoder).snapshot;
}

/** Serves `snapshot`, runs an emulator until every subscribed type was answered, returns the verdicts. */
async function verdicts(snapshot: Snapshot, expectTypes: string[]): Promise<XdsEvent[]> {
  const cache = new SnapshotCache();
  cache.setSnapshot(ALL_NODES, snapshot);
  const ads = await startAdsServer({ cache, listen: '127.0.0.1:0' });
  const events: XdsEvent[] = [];
  const sim = new EnvoySim({
    adsAddress: ads.address,
    nodeId: 'test/envoy',
    onXdsEvent: (e) => events.push(e),
  });
  try {
    const deadline = Date.now() + 5000;
    while (!expectTypes.every((t) => events.some((e) => e.typeUrl === t))) {
      if (Date.now() > deadline) throw new Error(`no answer for ${expectTypes.join(', ')}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return events;
  } finally {
    await sim.close();
    await ads.close(100);
  }
}

/** Encodes with the official protos, which know every Envoy field (proto/ knows only ours). */
function officialAny(typeUrl: string, json: Record<string, unknown>): EncodedAny {
  const type = envoyRoot().lookupType(typeUrl.slice(typeUrl.lastIndexOf('/') + 1));
  return { type_url: typeUrl, value: type.encode(type.fromObject(json)).finish() };
}

describe('envoy-sim: config acceptance', () => {
  const inputs = readdirSync(CASES).filter((f) => f.endsWith('.in.yaml'));
  for (const f of inputs) {
    it(`ACKs everything the operator emits for ${f}`, async () => {
      const snapshot = await snapshotOf(join(CASES, f));
      const events = await verdicts(snapshot, [CLUSTER, LISTENER, ROUTE]);
      const refused = events.filter((e) => !e.accepted);
      assert.deepEqual(refused, []);
    });
  }

  it('NACKs an unimplemented field and names it; keeps serving the rest', async () => {
    const snapshot = await snapshotOf(join(CASES, 'openai-single.in.yaml'));
    const clusters = new Map(snapshot.resources.get(CLUSTER));
    clusters.set(
      'extra',
      officialAny(CLUSTER, {
        name: 'extra',
        type: 'STRICT_DNS',
        lb_policy: 'LEAST_REQUEST',
        circuit_breakers: { thresholds: [{ max_connections: { value: 1 } }] },
        connect_timeout: { seconds: 1 },
      }),
    );
    const resources = new Map(snapshot.resources);
    resources.set(CLUSTER, clusters);
    const events = await verdicts({ version: 'bad', resources }, [CLUSTER, LISTENER, ROUTE]);
    const cds = events.find((e) => e.typeUrl === CLUSTER);
    assert.equal(cds?.accepted, false);
    assert.match(cds?.message ?? '', /Cluster\.lb_policy/);
    assert.match(cds?.message ?? '', /circuit_breakers/);
    assert.ok(events.find((e) => e.typeUrl === LISTENER)?.accepted);
  });

  it('NACKs weighted_clusters and regex matching in routes', async () => {
    const snapshot = await snapshotOf(join(CASES, 'openai-single.in.yaml'));
    const routes = new Map<string, EncodedAny>();
    routes.set(
      'sluice',
      officialAny(ROUTE, {
        name: 'sluice',
        virtual_hosts: [
          {
            name: 'sluice',
            domains: ['*'],
            routes: [
              {
                match: { safe_regex: { regex: '.*' } },
                route: { weighted_clusters: { clusters: [{ name: 'a', weight: { value: 1 } }] } },
              },
            ],
          },
        ],
      }),
    );
    const resources = new Map(snapshot.resources);
    resources.set(ROUTE, routes);
    const events = await verdicts({ version: 'bad', resources }, [ROUTE]);
    const rds = events.find((e) => e.typeUrl === ROUTE);
    assert.equal(rds?.accepted, false);
    assert.match(rds?.message ?? '', /RouteMatch\.safe_regex/);
    assert.match(rds?.message ?? '', /RouteAction\.weighted_clusters/);
  });
});

describe('envoy-sim: host selection', () => {
  const host = (address: string) => ({
    address,
    port: 1,
    pipe: false,
    hostname: address,
    metadata: {},
  });
  const localities: LocalityModel[] = [
    { name: 'a', priority: 0, weight: 3, hosts: [host('a')] },
    { name: 'b', priority: 0, weight: 1, hosts: [host('b')] },
    { name: 'c', priority: 1, weight: 1, hosts: [host('c')] },
  ];

  it('splits by locality weight within the first priority', () => {
    const seq = [0.1, 0.5, 0.74, 0.76, 0.99];
    let i = 0;
    const lb = new LoadBalancer(() => seq[i++ % seq.length]!);
    const picked = seq.map(() => lb.pick(localities, true)!.host.address);
    assert.deepEqual(picked, ['a', 'a', 'a', 'b', 'b']);
  });

  it('previous_priorities moves a retry to the next priority, then starts over', () => {
    const lb = new LoadBalancer(() => 0);
    assert.equal(
      lb.pick(localities, true, { priorities: new Set([0]), tries: 1 })!.host.address,
      'c',
    );
    assert.equal(
      lb.pick(localities, true, { priorities: new Set([0, 1]), tries: 1 })!.host.address,
      'a',
    );
  });

  it('a level without hosts is skipped', () => {
    const lb = new LoadBalancer(() => 0);
    const empty = localities.map((l) => (l.priority === 0 ? { ...l, hosts: [] } : l));
    assert.equal(lb.pick(empty, true)!.host.address, 'c');
  });
});
