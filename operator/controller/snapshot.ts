/**
 * From a compilation to what the ADS server serves: the Envoy resources by type URL plus the
 * extproc config, each version derived from content alone, and per AIRoute/AIPolicy the served
 * resources that carry it (its footprint), which is what `Programmed` is judged on.
 */
import { createHash } from 'node:crypto';
import type { ExtprocConfigInput } from '../../extproc/config/contract.js';
import type { Footprint, ResourceRef } from '../status/footprint.js';
import type { Compilation } from '../compile/index.js';
import { buildSnapshot, type Snapshot } from '../xds/cache.js';
import type { ResourceEncoder } from '../xds/encode.js';
import { EXTPROC_RESOURCE_NAME, extprocConfigResource } from '../xds/extproc-resource.js';
import { CLUSTER, ENDPOINT, EXTPROC_CONFIG, LISTENER, ROUTE } from '../xds/type-urls.js';

export interface Desired {
  /** Content hash of everything served: the snapshot's name, reported back with ACKs. */
  version: string;
  snapshot: Snapshot;
  /** The extproc document as served, `version` set to its content hash. */
  extproc: ExtprocConfigInput;
  compilation: Compilation;
  /** By `Kind/namespace/name`; absent for objects that are not in the config (not accepted). */
  footprints: ReadonlyMap<string, Footprint>;
}

/** JSON with object keys sorted at every level: the same content always gives the same text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}

export function contentHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, 16);
}

export function objectKey(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

function typed(typeUrl: string, list: readonly Record<string, unknown>[]): unknown[] {
  // Compilation may leave "@type" off top-level resources: the list they are in says the type.
  return list.map((r) => (r['@type'] === undefined ? { '@type': typeUrl, ...r } : r));
}

/** Builds the snapshot for `compilation`. Throws EncodeError if a resource does not encode. */
export function desiredState(compilation: Compilation, encoder: ResourceEncoder): Desired {
  const { version: _ignored, ...unversioned } = compilation.extproc;
  const extprocVersion = contentHash(unversioned);
  const extproc: ExtprocConfigInput = { ...compilation.extproc, version: extprocVersion };
  const envoy = compilation.envoy;
  const byType: Record<string, unknown[] | Record<string, unknown>> = {
    [CLUSTER]: typed(CLUSTER, envoy.clusters),
    [ENDPOINT]: typed(ENDPOINT, envoy.endpoints),
    [LISTENER]: typed(LISTENER, envoy.listeners),
    [ROUTE]: typed(ROUTE, envoy.routes),
    [EXTPROC_CONFIG]: { [EXTPROC_RESOURCE_NAME]: extprocConfigResource(extproc) },
  };
  const version = contentHash({ envoy, extproc: extprocVersion });
  const snapshot = buildSnapshot(encoder, version, byType);
  return { version, snapshot, extproc, compilation, footprints: footprints(compilation) };
}

/**
 * An accepted route is carried by its rule clusters, their ClusterLoadAssignments (EDS rules
 * only), the listener and route configuration every route shares (its route entries live there),
 * and the extproc config. An accepted policy lives in the extproc config alone: nothing of it
 * reaches Envoy.
 */
export function footprints(compilation: Compilation): Map<string, Footprint> {
  const out = new Map<string, Footprint>();
  const envoy = compilation.envoy;
  const shared: ResourceRef[] = [
    ...envoy.listeners.map((l) => ({ typeUrl: LISTENER, name: l['name'] as string })),
    ...envoy.routes.map((r) => ({ typeUrl: ROUTE, name: r['name'] as string })),
  ];
  const assignments = new Set(envoy.endpoints.map((e) => e['cluster_name'] as string));
  const extproc: ResourceRef[] = [{ typeUrl: EXTPROC_CONFIG, name: EXTPROC_RESOURCE_NAME }];
  for (const route of compilation.ir.routes) {
    const clusters = [...new Set(route.rules.map((r) => r.cluster))];
    const refs: ResourceRef[] = clusters.map((name) => ({ typeUrl: CLUSTER, name }));
    for (const c of clusters) if (assignments.has(c)) refs.push({ typeUrl: ENDPOINT, name: c });
    out.set(objectKey('AIRoute', route.namespace, route.name), {
      envoy: [...refs, ...shared],
      extproc,
    });
  }
  for (const s of compilation.statuses) {
    if (s.kind !== 'AIPolicy') continue;
    const accepted = s.conditions.some((c) => c.type === 'Accepted' && c.status === 'True');
    if (!accepted) continue;
    const footprint: Footprint = { envoy: [], extproc };
    const idle = compilation.ir.idlePolicies?.get(`${s.namespace}/${s.name}`);
    if (idle !== undefined) footprint.idle = idle;
    out.set(objectKey('AIPolicy', s.namespace, s.name), footprint);
  }
  return out;
}
