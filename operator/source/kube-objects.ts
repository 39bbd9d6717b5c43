/**
 * Kubernetes objects → what the cluster source keeps: raw API objects (watch JSON or
 * client-node's typed list items) reduced and frozen — AIRoutes and AIPolicies as compilation
 * reads them, Secrets as a name and resourceVersion (their values only while referenced),
 * consumer Secrets as their key's digest, Services and EndpointSlices as the addresses behind a
 * port — and what the routes and policies reference. Pure: no apiserver calls here.
 */
import { isConsumerSecret, readConsumerSecret } from '../api/consumer-secret.js';
import {
  API_VERSION,
  type AIPolicy,
  type AIRoute,
  type ConsumerKey,
  type ObjectMeta,
  type ServiceEndpoints,
} from '../api/types.js';

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function stringRecord(v: unknown, drop?: string): Record<string, string> | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) if (typeof x === 'string' && k !== drop) out[k] = x;
  return out;
}

export function readMeta(raw: Record<string, unknown>): ObjectMeta | undefined {
  const m = raw.metadata as Record<string, unknown> | undefined;
  if (typeof m !== 'object' || m === null) return undefined;
  const name = str(m.name);
  if (!name) return undefined;
  const meta: ObjectMeta = { name, namespace: str(m.namespace) || 'default' };
  const uid = str(m.uid);
  if (uid) meta.uid = uid;
  if (typeof m.generation === 'number') meta.generation = m.generation;
  const rv = str(m.resourceVersion);
  if (rv) meta.resourceVersion = rv;
  const created: unknown = m.creationTimestamp;
  if (typeof created === 'string') meta.creationTimestamp = created;
  else if (created instanceof Date) meta.creationTimestamp = created.toISOString();
  const labels = stringRecord(m.labels);
  if (labels && Object.keys(labels).length > 0) meta.labels = labels;
  // The last-applied copy doubles each object's size and compilation never reads it.
  const annotations = stringRecord(m.annotations, LAST_APPLIED);
  if (annotations && Object.keys(annotations).length > 0) meta.annotations = annotations;
  return meta;
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

export function toRoute(raw: Record<string, unknown>): AIRoute | undefined {
  const metadata = readMeta(raw);
  if (!metadata || typeof raw.spec !== 'object' || raw.spec === null) return undefined;
  const route = {
    apiVersion: API_VERSION,
    kind: 'AIRoute',
    metadata,
    spec: structuredClone(raw.spec),
  } as AIRoute;
  if (typeof raw.status === 'object' && raw.status !== null) {
    route.status = structuredClone(raw.status);
  }
  return deepFreeze(route);
}

export function toPolicy(raw: Record<string, unknown>): AIPolicy | undefined {
  const metadata = readMeta(raw);
  if (!metadata || typeof raw.spec !== 'object' || raw.spec === null) return undefined;
  const policy = {
    apiVersion: API_VERSION,
    kind: 'AIPolicy',
    metadata,
    spec: structuredClone(raw.spec),
  } as AIPolicy;
  if (typeof raw.status === 'object' && raw.status !== null) {
    policy.status = structuredClone(raw.status);
  }
  return deepFreeze(policy);
}

/** A Secret as kept: its values only while some route references it. */
export interface SecretEntry {
  namespace: string;
  name: string;
  rv: string;
  data?: Readonly<Record<string, string>>;
}

/** Decodes a Secret's base64 `data` (stringData never reaches a reader: the apiserver merges it). */
export function decodeSecretData(raw: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  const data = raw.data;
  if (typeof data !== 'object' || data === null) return out;
  for (const [k, v] of Object.entries(data)) {
    if (typeof v === 'string') out[k] = Buffer.from(v, 'base64').toString('utf8');
    else if (v instanceof Uint8Array) out[k] = Buffer.from(v).toString('utf8');
  }
  return out;
}

/** A consumer Secret as kept: its key's digest, or why it is left out. Never the key. */
export interface ConsumerSecretEntry {
  namespace: string;
  name: string;
  key?: ConsumerKey;
  problem?: string;
}

export function toConsumerSecret(raw: Record<string, unknown>): ConsumerSecretEntry | undefined {
  const meta = readMeta(raw);
  // The watch is by label already; this only guards against a server that ignores it.
  if (!meta || !isConsumerSecret(meta)) return undefined;
  const read = readConsumerSecret(meta, decodeSecretData(raw));
  const entry: ConsumerSecretEntry = { namespace: meta.namespace, name: meta.name };
  if (read.ok) entry.key = Object.freeze(read.key);
  else entry.problem = read.message;
  return Object.freeze(entry);
}

export interface ServiceInfo {
  namespace: string;
  name: string;
  ports: { name: string; port: number }[];
}

export function toService(raw: Record<string, unknown>): ServiceInfo | undefined {
  const meta = readMeta(raw);
  if (!meta) return undefined;
  const spec = raw.spec as { ports?: unknown } | undefined;
  const ports = Array.isArray(spec?.ports) ? (spec.ports as Record<string, unknown>[]) : [];
  return deepFreeze({
    namespace: meta.namespace,
    name: meta.name,
    ports: ports
      .filter((p) => typeof p.port === 'number')
      .map((p) => ({ name: str(p.name) ?? '', port: p.port as number })),
  });
}

export interface SliceInfo {
  namespace: string;
  name: string;
  service: string;
  ports: { name: string; port: number }[];
  endpoints: { addresses: string[]; ready: boolean; zone?: string }[];
}

export function toSlice(raw: Record<string, unknown>): SliceInfo | undefined {
  const meta = readMeta(raw);
  const service = meta?.labels?.['kubernetes.io/service-name'];
  // FQDN slices name hosts, not addresses: nothing EDS could carry.
  if (!meta || !service || raw.addressType === 'FQDN') return undefined;
  const ports = (Array.isArray(raw.ports) ? (raw.ports as Record<string, unknown>[]) : [])
    .filter((p) => typeof p.port === 'number')
    .map((p) => ({ name: str(p.name) ?? '', port: p.port as number }));
  const endpoints = (
    Array.isArray(raw.endpoints) ? (raw.endpoints as Record<string, unknown>[]) : []
  ).map((e) => {
    const conditions = e.conditions as { ready?: unknown } | undefined;
    const addresses = Array.isArray(e.addresses)
      ? (e.addresses as unknown[]).filter((a): a is string => typeof a === 'string')
      : [];
    // The EndpointSlice API: an unset ready condition means ready.
    const out: SliceInfo['endpoints'][number] = {
      addresses,
      ready: conditions?.ready !== false,
    };
    const zone = str(e.zone);
    if (zone) out.zone = zone;
    return out;
  });
  return deepFreeze({ namespace: meta.namespace, name: meta.name, service, ports, endpoints });
}

/**
 * The addresses behind one Service port. A slice port carries the name of the Service port it
 * serves; a one-port Service and a one-port slice pair up whatever their names. Undefined when
 * the Service or that port does not exist, so compilation can say which.
 */
export function serviceEndpoints(
  ref: { namespace: string; service: string; port: number },
  service: ServiceInfo | undefined,
  slices: readonly SliceInfo[],
): ServiceEndpoints | undefined {
  const sp = service?.ports.find((p) => p.port === ref.port);
  if (!service) return undefined;
  if (!sp) {
    // Not "no Service": the Service is there and the route names a port it does not have.
    const ports = service.ports.map((p) => p.port).sort((a, b) => a - b);
    return {
      namespace: ref.namespace,
      service: ref.service,
      port: ref.port,
      addresses: [],
      portNotFound: { ports },
    };
  }
  const out: ServiceEndpoints = {
    namespace: ref.namespace,
    service: ref.service,
    port: ref.port,
    addresses: [],
  };
  const seen = new Set<string>();
  const ordered = [...slices].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const slice of ordered) {
    const only =
      slice.ports.length === 1 && service.ports.length === 1 ? slice.ports[0] : undefined;
    const target = slice.ports.find((p) => p.name === sp.name) ?? only;
    if (!target) continue;
    for (const ep of slice.endpoints) {
      for (const ip of ep.addresses) {
        const k = `${ip}:${target.port}`;
        if (seen.has(k)) continue;
        seen.add(k);
        const a: ServiceEndpoints['addresses'][number] = { ip, port: target.port, ready: ep.ready };
        if (ep.zone) a.zone = ep.zone;
        out.addresses.push(a);
      }
    }
  }
  return out;
}

/**
 * What the routes and policies point at: Secrets (ns/name; route credentials and masking hash
 * keys) and Service ports (ns/name:port).
 */
export function references(
  routes: Iterable<AIRoute>,
  policies: Iterable<AIPolicy> = [],
): {
  secrets: Set<string>;
  services: Map<string, { namespace: string; service: string; port: number }>;
  /** ns/name of every referenced Service, whatever the port. */
  serviceNames: Set<string>;
} {
  const secrets = new Set<string>();
  const serviceNames = new Set<string>();
  const services = new Map<string, { namespace: string; service: string; port: number }>();
  for (const r of routes) {
    const ns = r.metadata.namespace;
    const backends = Array.isArray(r.spec.backends) ? r.spec.backends : [];
    for (const b of backends) {
      const secret = b?.credential?.secretRef?.name;
      if (typeof secret === 'string' && secret !== '') secrets.add(`${ns}/${secret}`);
      const svc = b?.endpoint?.service;
      if (svc && typeof svc.name === 'string' && typeof svc.port === 'number') {
        services.set(`${ns}/${svc.name}:${svc.port}`, {
          namespace: ns,
          service: svc.name,
          port: svc.port,
        });
        serviceNames.add(`${ns}/${svc.name}`);
      }
    }
  }
  for (const p of policies) {
    const secret = p.spec?.masking?.hashKeySecretRef?.name;
    if (typeof secret === 'string' && secret !== '')
      secrets.add(`${p.metadata.namespace}/${secret}`);
  }
  return { secrets, services, serviceNames };
}
