/**
 * How long a changed resource takes to reach an ACKing data plane: from setSnapshot to the
 * server having the client's ACK of the version that carries the change. The client decodes
 * every resource with the official Envoy protos before ACKing, as a data plane parses its config.
 * Used by `npm run bench` and by a smoke test.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { SnapshotCache, type Snapshot } from '../cache.js';
import type { EncodedAny } from '../encode.js';
import { startAdsServer } from '../server.js';
import { CLUSTER, ENDPOINT, LISTENER, ROUTE } from '../type-urls.js';
import { testEncoder } from './fixtures.js';
import { OfficialAdsClient, officialRoot } from '../../envoy-api/ads-client.js';

export interface PropagationOptions {
  /** Sequential changes measured (default 200). */
  changes?: number;
  /** Clusters in the snapshot; each change edits one, and CDS is sent whole (default 2000). */
  clusters?: number;
  /** Route configurations (RDS, unchanged by the changes; default 1). */
  routes?: number;
  /** Per change (default 5000). */
  timeoutMs?: number;
}

export interface PropagationResult {
  changes: number;
  clusters: number;
  /** Milliseconds, setSnapshot → ACK received, sorted ascending. */
  samples: number[];
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /**
   * Milliseconds spent inside setSnapshot (hashing, diffing, encoding and writing the response
   * to every affected stream), p50 and p99: the server's share of the total.
   */
  serverP50: number;
  serverP99: number;
  /** Bytes of the CDS response payload (sum of encoded clusters). */
  cdsBytes: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

export async function measurePropagation(
  opts: PropagationOptions = {},
): Promise<PropagationResult> {
  const changes = opts.changes ?? 200;
  const clusterCount = opts.clusters ?? 2000;
  const routeCount = opts.routes ?? 1;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const encoder = testEncoder();
  officialRoot();

  // Shaped like the operator's external backend clusters: DNS, one endpoint, a timeout.
  const cluster = (i: number, timeoutMillis: number): EncodedAny =>
    encoder.encodeAny({
      '@type': CLUSTER,
      name: `backend-${i}`,
      type: 'STRICT_DNS',
      dns_lookup_family: 'V4_PREFERRED',
      connect_timeout: `${(timeoutMillis / 1000).toFixed(3)}s`,
      load_assignment: {
        cluster_name: `backend-${i}`,
        endpoints: [
          {
            lb_endpoints: [
              {
                endpoint: {
                  address: {
                    socket_address: { address: `api-${i}.provider.example`, port_value: 443 },
                  },
                },
              },
            ],
          },
        ],
      },
    });
  const clusters = new Map<string, EncodedAny>();
  for (let i = 0; i < clusterCount; i++) clusters.set(`backend-${i}`, cluster(i, 1000));
  const endpoints = new Map<string, EncodedAny>([
    ['backend-0', encoder.encodeAny({ '@type': ENDPOINT, cluster_name: 'backend-0' })],
  ]);
  const listeners = new Map<string, EncodedAny>([
    ['sluice-http', encoder.encodeAny({ '@type': LISTENER, name: 'sluice-http' })],
  ]);
  const routes = new Map<string, EncodedAny>();
  for (let i = 0; i < routeCount; i++) {
    routes.set(`routes-${i}`, encoder.encodeAny({ '@type': ROUTE, name: `routes-${i}` }));
  }
  const snapshot = (version: string): Snapshot => ({
    version,
    resources: new Map<string, ReadonlyMap<string, EncodedAny>>([
      [CLUSTER, new Map(clusters)],
      [ENDPOINT, endpoints],
      [LISTENER, listeners],
      [ROUTE, routes],
    ]),
  });

  const dir = await mkdtemp(join(tmpdir(), 'sluice-xds-bench-'));
  const cache = new SnapshotCache();
  cache.setSnapshot('*', snapshot('v0'));
  const ads = await startAdsServer({ cache, listen: `unix:${join(dir, 'ads.sock')}` });
  const client = new OfficialAdsClient(ads.address, { nodeId: 'bench-envoy', keep: false });
  try {
    const ready = ads.tracker.whenAcked((e) => e.typeUrl === CLUSTER, timeoutMs * 4);
    client.subscribe(CLUSTER);
    client.subscribe(ENDPOINT, ['backend-0']);
    client.subscribe(LISTENER);
    client.subscribe(ROUTE, [...routes.keys()]);
    await ready;
    const samples: number[] = [];
    const server: number[] = [];
    {
      for (let n = 1; n <= changes; n++) {
        const i = n % clusterCount;
        clusters.set(`backend-${i}`, cluster(i, 1000 + n));
        const version = `v${n}`;
        const acked = ads.tracker.whenAcked(
          (e) => e.typeUrl === CLUSTER && e.snapshotVersion === version,
          timeoutMs,
        );
        const t0 = performance.now();
        cache.setSnapshot('*', snapshot(version));
        server.push(performance.now() - t0);
        await acked;
        samples.push(performance.now() - t0);
      }
    }
    const sorted = [...samples].sort((a, b) => a - b);
    const serverSorted = server.sort((a, b) => a - b);
    let cdsBytes = 0;
    for (const any of clusters.values()) cdsBytes += any.value.length;
    return {
      changes,
      clusters: clusterCount,
      samples: sorted,
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      p99: percentile(sorted, 99),
      max: sorted.at(-1) ?? Number.NaN,
      serverP50: percentile(serverSorted, 50),
      serverP99: percentile(serverSorted, 99),
      cdsBytes,
    };
  } finally {
    client.close();
    await ads.close(200);
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const r = await measurePropagation({
    changes: Number(process.env['CHANGES'] ?? 200),
    clusters: Number(process.env['CLUSTERS'] ?? 2000),
  });
  process.stdout.write(
    `xDS propagation (setSnapshot → ACK), ${r.changes} changes, ${r.clusters} clusters (${r.cdsBytes} B CDS): ` +
      `p50 ${r.p50.toFixed(2)} ms, p90 ${r.p90.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, max ${r.max.toFixed(2)} ms; ` +
      `inside setSnapshot p50 ${r.serverP50.toFixed(2)} ms, p99 ${r.serverP99.toFixed(2)} ms\n`,
  );
}
