/**
 * The standalone source: Sluice resources and the Kubernetes objects they reference, read from
 * multi-document YAML files and directories instead of the cluster, into the same immutable
 * Resources bundle the informers build.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LineCounter, parseAllDocuments } from 'yaml';
import type { Tags } from 'yaml';
import { groupConsumerKeys, isConsumerSecret, readConsumerSecret } from '../api/consumer-secret.js';
import { API_VERSION } from '../api/types.js';
import type {
  AIPolicy,
  AIRoute,
  ConsumerKey,
  ObjectMeta,
  Resources,
  SecretData,
  ServiceEndpoints,
} from '../api/types.js';
import { validateDocument, validateDocuments, type DocumentResult } from '../validate/validate.js';

export interface Problem {
  /** file:line of the document, or the file alone. */
  source: string;
  message: string;
  /**
   * `error`: something the operator must fix now, because what is served is not what the files
   * say (a file held at its last good state, or left out whole). Otherwise a warning.
   */
  level?: 'error';
}

/**
 * What a long-running reader (`sluice run`) remembers from one load to the next, so that a bad
 * edit never opens the gate: a file that no longer reads or parses keeps the last good state of
 * everything it declared, and an AIRoute or AIPolicy the cluster would refuse keeps its last
 * valid version, as a refused `kubectl apply` would. One-shot readers (validate, render) pass
 * none.
 */
export class SourceMemory {
  /** By file: its documents the last time it was read and parsed whole. */
  readonly files = new Map<string, SourcedDocument[]>();
  /** By `Kind/namespace/name`: the last valid version of a Sluice object. */
  readonly objects = new Map<string, SourcedDocument>();
}

export interface SourcedDocument {
  source: string;
  doc: unknown;
}

const EXTENSIONS = /\.(ya?ml|json)$/i;

/**
 * Every document in `paths` (files, directories searched recursively for .yaml/.yml/.json,
 * or "-" for stdin), in order. Files that cannot be read or parsed become problems.
 */
export async function readDocuments(
  paths: readonly string[],
  stdin: () => Promise<string> = readStdin,
  memory?: SourceMemory,
): Promise<{ documents: SourcedDocument[]; problems: Problem[] }> {
  const documents: SourcedDocument[] = [];
  const problems: Problem[] = [];
  const seen = new Set<string>();
  // With a memory, a file is taken whole or not at all: a file that fails to read or parse
  // falls back to its last good documents, or contributes nothing, never just the documents
  // before its syntax error (the policy after it would silently stop governing its routes).
  const take = (file: string, parsed: FileParse): void => {
    seen.add(file);
    problems.push(...parsed.problems);
    if (!memory) {
      documents.push(...parsed.documents);
      return;
    }
    const last = memory.files.get(file);
    // A file of policies that now declares nothing is more likely an editor between truncating
    // and writing it than a decision, and taking it would leave the policies' routes ungoverned:
    // removing the file removes what it declared. Emptying other files closes (a route is no
    // longer served, a revoked key's Secret is gone), so that is taken as written.
    const emptied =
      parsed.documents.length === 0 && last !== undefined && last.some((d) => isPolicy(d.doc));
    if (parsed.problems.length === 0 && !emptied) {
      memory.files.set(file, parsed.documents);
      documents.push(...parsed.documents);
      return;
    }
    if (emptied && parsed.problems.length === 0) {
      documents.push(...last);
      problems.push({
        source: file,
        level: 'error',
        message:
          'is empty: its last good state stays in force; delete the file to remove what it declared',
      });
      return;
    }
    if (last) documents.push(...last);
    problems.push({
      source: file,
      level: 'error',
      message: last
        ? 'does not read or parse: its last good state stays in force (every resource it declared, as it was) until it is fixed'
        : 'does not read or parse, and has no earlier good state: nothing it declares is served until it is fixed',
    });
  };
  for (const path of paths) {
    if (path === '-') {
      take('<stdin>', parseFile('<stdin>', await stdin()));
      continue;
    }
    let files: string[];
    try {
      files = await expand(path);
    } catch (err) {
      take(path, { documents: [], problems: [{ source: path, message: (err as Error).message }] });
      continue;
    }
    for (const file of files) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        take(file, {
          documents: [],
          problems: [{ source: file, message: (err as Error).message }],
        });
        continue;
      }
      take(file, parseFile(file, text));
    }
  }
  // A file no longer listed was removed: what it declared goes with it.
  if (memory) for (const f of [...memory.files.keys()]) if (!seen.has(f)) memory.files.delete(f);
  return { documents, problems };
}

function isPolicy(doc: unknown): boolean {
  return (doc as { kind?: unknown } | null)?.kind === 'AIPolicy';
}

interface FileParse {
  documents: SourcedDocument[];
  problems: Problem[];
}

async function expand(path: string): Promise<string[]> {
  const info = await stat(path);
  if (!info.isDirectory()) return [path];
  const out: string[] = [];
  const entries = (await readdir(path, { withFileTypes: true })).sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
  );
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = join(path, entry.name);
    if (entry.isDirectory()) out.push(...(await expand(full)));
    else if (EXTENSIONS.test(entry.name)) out.push(full);
  }
  return out;
}

// YAML 1.1 as kubectl and helm read manifests (go-yaml v2), so a file means here exactly what
// it would mean once applied: an unquoted `on`, `yes` or `off` is a boolean, `0755` is octal.
// go-yaml leaves date-like scalars as strings and has no base-60 numbers, so neither do we.
function kubectlTags(tags: Tags): Tags {
  return tags.filter((t) => {
    const tag = typeof t === 'string' ? t : t.tag;
    const format = typeof t === 'string' ? undefined : (t as { format?: string }).format;
    return tag !== 'tag:yaml.org,2002:timestamp' && format !== 'TIME';
  });
}

function parseFile(file: string, text: string): FileParse {
  const documents: SourcedDocument[] = [];
  const problems: Problem[] = [];
  const lines = new LineCounter();
  const parsed = parseAllDocuments(text, {
    version: '1.1',
    customTags: kubectlTags,
    lineCounter: lines,
  });
  const docs = Array.isArray(parsed) ? parsed : [parsed];
  for (const doc of docs) {
    const line = lines.linePos(doc.contents?.range[0] ?? doc.range[0]).line;
    const source = `${file}:${line}`;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) problems.push({ source, message: e.message.split('\n')[0]! });
      continue;
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) continue; // empty document, e.g. a trailing ---
    if (isList(value)) {
      for (const item of value.items) documents.push({ source, doc: item });
    } else {
      documents.push({ source, doc: value });
    }
  }
  return { documents, problems };
}

// kubectl accepts `kind: List` wrappers (what `kubectl get -o yaml` prints); so do we.
function isList(v: unknown): v is { items: unknown[] } {
  const o = v as { apiVersion?: unknown; kind?: unknown; items?: unknown };
  return (
    typeof v === 'object' &&
    v !== null &&
    o.apiVersion === 'v1' &&
    typeof o.kind === 'string' &&
    o.kind.endsWith('List') &&
    Array.isArray(o.items)
  );
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Reads `paths` into a Resources bundle. AIRoutes and AIPolicies are validated exactly as the
 * cluster would; an invalid one is reported without blocking the others. With a memory it keeps
 * its last valid version (as the cluster keeps the stored object when an apply is refused).
 * Without one, an invalid AIRoute is left out, and an invalid AIPolicy is still handed to
 * compilation, which refuses the routes it targets (fail closed: a typo in a policy must not
 * leave its routes ungoverned).
 * Secrets and discovery.k8s.io/v1 EndpointSlices (plus v1 Services, when present, to map a
 * Service port to the slice port) are read; other kinds are ignored. Every Secret labelled
 * sluice.dev/consumer is also a consumer key (the files are as trusted as the operator's
 * consumer namespaces); a malformed one is reported and left out.
 */
export async function loadResources(
  paths: readonly string[],
  memory?: SourceMemory,
): Promise<{ resources: Resources; problems: Problem[] }> {
  const { documents, problems } = await readDocuments(paths, readStdin, memory);
  const results = validateDocuments(documents.map((d) => d.doc));
  const current = new Map<string, SourcedDocument>();
  const routes: AIRoute[] = [];
  const policies: AIPolicy[] = [];
  const secrets: SecretData[] = [];
  const consumerKeys: ConsumerKey[] = [];
  const keySources = new Map<string, string>();
  const slices: { source: string; slice: Record<string, unknown> }[] = [];
  const services = new Map<string, ServicePort[]>();
  const seen = new Map<string, string>();

  const unique = (source: string, key: string): boolean => {
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, source);
      return true;
    }
    problems.push({ source, message: `${key} is also defined at ${first}; that one is used` });
    return false;
  };

  const accept = (source: string, id: string, object: AIRoute | AIPolicy): void => {
    if (!unique(source, id)) return;
    if (object.kind === 'AIRoute') routes.push(object);
    else policies.push(object);
  };
  results.forEach((result, i) => {
    const { source, doc } = documents[i]!;
    const id = `${result.kind ?? '?'}/${result.namespace ?? 'default'}/${result.name ?? '?'}`;
    if (result.outcome === 'invalid') {
      const detail = result.errors.map((e) => e.detail).join('; ');
      const last = memory?.objects.get(id);
      const kept = last ? validateDocument(last.doc) : undefined;
      if (last && kept?.outcome === 'valid' && kept.object) {
        problems.push({
          source,
          level: 'error',
          message: `${id}: ${detail}; its last valid version (${last.source}) stays in force until it is fixed`,
        });
        current.set(id, last);
        accept(source, id, kept.object);
        return;
      }
      const policy = result.kind === 'AIPolicy' ? invalidPolicy(result, doc) : undefined;
      if (policy) {
        problems.push({
          source,
          level: 'error',
          message: `${id}: ${detail}; the routes it targets refuse requests until it is fixed`,
        });
        accept(source, id, policy);
        return;
      }
      for (const e of result.errors) problems.push({ source, message: `${id}: ${e.detail}` });
      return;
    }
    if (result.outcome === 'valid' && result.object) {
      current.set(id, { source, doc });
      accept(source, id, result.object);
      return;
    }
    const d = doc as Record<string, unknown>;
    const gvk = `${result.apiVersion}/${result.kind}`;
    try {
      if (gvk === 'v1/Secret') {
        const secret = readSecret(d);
        if (unique(source, id)) {
          secrets.push(secret);
          if (isConsumerSecret(secret.metadata)) {
            const key = readConsumerSecret(secret.metadata, secret.data);
            if (key.ok) {
              consumerKeys.push(key.key);
              keySources.set(`${key.key.namespace}/${key.key.secret}`, source);
            } else {
              problems.push({ source, message: `${id}: not a consumer key: ${key.message}` });
            }
          }
        }
      } else if (gvk === 'discovery.k8s.io/v1/EndpointSlice') {
        if (unique(source, id)) slices.push({ source, slice: d });
      } else if (gvk === 'v1/Service') {
        const meta = readMeta(d);
        if (unique(source, id)) services.set(`${meta.namespace}/${meta.name}`, servicePorts(d));
      }
    } catch (err) {
      problems.push({ source, message: `${id}: ${(err as Error).message}` });
    }
  });

  if (memory) {
    // Only objects still declared are remembered: one deleted and re-added invalid stays out.
    memory.objects.clear();
    for (const [id, d] of current) memory.objects.set(id, d);
  }
  for (const p of groupConsumerKeys(consumerKeys).problems) {
    problems.push({ source: keySources.get(p.secrets[0]!) ?? '', message: p.message });
  }
  const endpoints = groupEndpoints(slices, services, problems);
  const resources: Resources = deepFreeze({ routes, policies, secrets, endpoints, consumerKeys });
  return { resources, problems };
}

/**
 * An AIPolicy the cluster would refuse, as compilation reads it: its name, namespace and labels,
 * and its spec as written, which compilation marks Invalid while refusing the routes it targets.
 * Undefined when it has no usable name (such a policy could not exist in a cluster either).
 */
function invalidPolicy(result: DocumentResult, doc: unknown): AIPolicy | undefined {
  const d = doc as Record<string, unknown>;
  let metadata: ObjectMeta;
  try {
    metadata = readMeta(d);
  } catch {
    return undefined;
  }
  if (result.name === undefined) return undefined;
  const spec = typeof d.spec === 'object' && d.spec !== null ? d.spec : {};
  return {
    apiVersion: API_VERSION,
    kind: 'AIPolicy',
    metadata,
    spec: structuredClone(spec),
  };
}

function readMeta(d: Record<string, unknown>): ObjectMeta {
  const m = d.metadata as Record<string, unknown> | undefined;
  if (typeof m !== 'object' || m === null || typeof m.name !== 'string' || m.name === '') {
    throw new Error('metadata.name is required');
  }
  const meta: ObjectMeta = {
    name: m.name,
    namespace: typeof m.namespace === 'string' && m.namespace !== '' ? m.namespace : 'default',
  };
  for (const key of ['labels', 'annotations'] as const) {
    const v = m[key];
    if (v && typeof v === 'object') meta[key] = stringMap(v, `metadata.${key}`);
  }
  return meta;
}

function stringMap(v: unknown, field: string): Record<string, string> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new Error(`${field} must be a map of strings`);
  }
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw new Error(`${field}[${k}] must be a string`);
    out[k] = x;
  }
  return out;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function readSecret(d: Record<string, unknown>): SecretData {
  const data: Record<string, string> = {};
  if (d.data !== undefined && d.data !== null) {
    for (const [k, v] of Object.entries(stringMap(d.data, 'data'))) {
      const compact = v.replace(/\s+/g, '');
      if (compact.length % 4 !== 0 || !BASE64.test(compact)) {
        throw new Error(`data[${k}] is not base64; use stringData for plain text`);
      }
      data[k] = Buffer.from(compact, 'base64').toString('utf8');
    }
  }
  // As the apiserver does on write: stringData is merged over data.
  if (d.stringData !== undefined && d.stringData !== null) {
    Object.assign(data, stringMap(d.stringData, 'stringData'));
  }
  return { metadata: readMeta(d), data };
}

interface ServicePort {
  port: number;
  name: string;
}

function servicePorts(d: Record<string, unknown>): ServicePort[] {
  const spec = d.spec as { ports?: unknown } | undefined;
  const ports = Array.isArray(spec?.ports) ? (spec.ports as Record<string, unknown>[]) : [];
  return ports
    .filter((p) => typeof p.port === 'number')
    .map((p) => ({ port: p.port as number, name: typeof p.name === 'string' ? p.name : '' }));
}

interface SlicePort {
  name: string;
  port: number;
}

interface SliceEndpoint {
  addresses?: unknown;
  conditions?: { ready?: unknown };
  zone?: unknown;
}

function groupEndpoints(
  slices: { source: string; slice: Record<string, unknown> }[],
  services: Map<string, ServicePort[]>,
  problems: Problem[],
): ServiceEndpoints[] {
  const byKey = new Map<string, ServiceEndpoints>();
  for (const { source, slice } of slices) {
    let meta: ObjectMeta;
    try {
      meta = readMeta(slice);
    } catch (err) {
      problems.push({ source, message: `EndpointSlice: ${(err as Error).message}` });
      continue;
    }
    const id = `EndpointSlice/${meta.namespace}/${meta.name}`;
    const service = meta.labels?.['kubernetes.io/service-name'];
    if (!service) {
      problems.push({ source, message: `${id}: no kubernetes.io/service-name label; ignored` });
      continue;
    }
    if (slice.addressType === 'FQDN') {
      problems.push({ source, message: `${id}: FQDN slices are not supported; ignored` });
      continue;
    }
    const ports: SlicePort[] = (Array.isArray(slice.ports) ? slice.ports : [])
      .filter((p: Record<string, unknown>) => typeof p.port === 'number')
      .map((p: Record<string, unknown>) => ({
        name: typeof p.name === 'string' ? p.name : '',
        port: p.port as number,
      }));
    // Which Service port each slice port serves: the slice port carries the Service port's
    // name; a one-port Service and a one-port slice pair up whatever their names. Without the
    // Service, assume the Service port equals the target port.
    const svcPorts = services.get(`${meta.namespace}/${service}`);
    const pairs: [number, number][] = svcPorts
      ? svcPorts.flatMap((sp): [number, number][] => {
          const only = ports.length === 1 && svcPorts.length === 1 ? ports[0] : undefined;
          const match = ports.find((p) => p.name === sp.name) ?? only;
          return match ? [[sp.port, match.port]] : [];
        })
      : ports.map((p): [number, number] => [p.port, p.port]);
    if (pairs.length === 0) {
      problems.push({ source, message: `${id}: no port matches Service ${service}; ignored` });
      continue;
    }
    const eps = (Array.isArray(slice.endpoints) ? slice.endpoints : []) as SliceEndpoint[];
    for (const [servicePort, targetPort] of pairs) {
      const key = `${meta.namespace}/${service}:${servicePort}`;
      let entry = byKey.get(key);
      if (!entry) {
        entry = { namespace: meta.namespace, service, port: servicePort, addresses: [] };
        byKey.set(key, entry);
      }
      for (const ep of eps) {
        // The EndpointSlice API says an unknown ready condition is to be read as ready.
        const ready = ep.conditions?.ready !== false;
        const zone = typeof ep.zone === 'string' ? ep.zone : undefined;
        const ips = Array.isArray(ep.addresses) ? (ep.addresses as unknown[]) : [];
        for (const ip of ips) {
          if (typeof ip !== 'string') continue;
          if (entry.addresses.some((a) => a.ip === ip && a.port === targetPort)) continue;
          entry.addresses.push({ ip, port: targetPort, ready, ...(zone ? { zone } : {}) });
        }
      }
    }
  }
  return [...byKey.values()];
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
