/**
 * Per-node snapshots of encoded xDS resources, with a default for every node. Versions are
 * content hashes, per type: the same resources always get the same version, whatever the
 * snapshot is called and whenever it was built, so a restarted operator and the one before it
 * agree, and a type whose content did not change is never pushed again.
 */
import { createHash } from 'node:crypto';
import type { EncodedAny, ResourceEncoder } from './encode.js';
import { EncodeError } from './encode.js';
import { nameField } from './type-urls.js';

export interface Snapshot {
  /** The caller's name for this snapshot (e.g. a generation); reported with ACKs, never sent. */
  version: string;
  resources: ReadonlyMap<string, ReadonlyMap<string, EncodedAny>>;
}

/** One type of one snapshot, prepared for serving. */
export interface TypeContent {
  /** Content hash of every resource of the type: the version_info of a wildcard response. */
  version: string;
  resources: ReadonlyMap<string, EncodedAny>;
  /** Content hash per resource name. */
  hashes: ReadonlyMap<string, string>;
}

export interface PreparedSnapshot {
  version: string;
  types: ReadonlyMap<string, TypeContent>;
}

/** The snapshot key that applies to every node without a snapshot of its own. */
export const ALL_NODES = '*';

const resourceHashes = new WeakMap<EncodedAny, string>();

function hashResource(any: EncodedAny): string {
  let h = resourceHashes.get(any);
  if (h === undefined) {
    h = createHash('sha256').update(any.type_url).update('\0').update(any.value).digest('hex');
    resourceHashes.set(any, h);
  }
  return h;
}

/** The version of a set of resources: the same names with the same bytes give the same string. */
export function contentVersion(
  names: Iterable<string>,
  hashes: ReadonlyMap<string, string>,
): string {
  const parts: string[] = [];
  for (const name of [...names].sort()) {
    const r = hashes.get(name);
    if (r !== undefined) parts.push(`${name}\0${r}\n`);
  }
  // One update: thousands of small ones cost more than the hashing itself.
  return createHash('sha256').update(parts.join('')).digest('hex').slice(0, 16);
}

function prepare(snapshot: Snapshot): PreparedSnapshot {
  const types = new Map<string, TypeContent>();
  for (const [typeUrl, resources] of snapshot.resources) {
    const hashes = new Map<string, string>();
    for (const [name, any] of resources) {
      if (any.type_url !== typeUrl) {
        throw new Error(`resource "${name}" is a ${any.type_url}, not a ${typeUrl}`);
      }
      hashes.set(name, hashResource(any));
    }
    types.set(typeUrl, {
      version: contentVersion(hashes.keys(), hashes),
      resources: new Map(resources),
      hashes,
    });
  }
  return { version: snapshot.version, types };
}

export type SnapshotListener = (nodeId: string) => void;

export class SnapshotCache {
  private readonly snapshots = new Map<string, PreparedSnapshot>();
  private readonly listeners = new Set<SnapshotListener>();

  /** Replaces the snapshot of one node, or of every node without its own (`'*'`). */
  setSnapshot(nodeId: string, snapshot: Snapshot): void {
    this.snapshots.set(nodeId, prepare(snapshot));
    this.emit(nodeId);
  }

  /** The node falls back to the `'*'` snapshot. */
  clearSnapshot(nodeId: string): void {
    if (this.snapshots.delete(nodeId)) this.emit(nodeId);
  }

  /** What a node is served: its own snapshot, else the default, else nothing yet. */
  snapshotFor(nodeId: string): PreparedSnapshot | undefined {
    return this.snapshots.get(nodeId) ?? this.snapshots.get(ALL_NODES);
  }

  /** Whether a change under `changedKey` changes what `nodeId` is served. */
  affects(changedKey: string, nodeId: string): boolean {
    return changedKey === nodeId || (changedKey === ALL_NODES && !this.snapshots.has(nodeId));
  }

  /** Called synchronously after every change, with the node id or `'*'`. */
  onChange(listener: SnapshotListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(nodeId: string): void {
    for (const l of this.listeners) l(nodeId);
  }
}

/**
 * Builds a snapshot from resources in Envoy's JSON form. A list names each resource by its own
 * `name` (`cluster_name` for endpoints); an object gives the names as keys. Every resource must
 * carry `"@type"` equal to its type URL.
 */
export function buildSnapshot(
  encoder: ResourceEncoder,
  version: string,
  byType: Readonly<Record<string, readonly unknown[] | Readonly<Record<string, unknown>>>>,
): Snapshot {
  const resources = new Map<string, Map<string, EncodedAny>>();
  for (const [typeUrl, list] of Object.entries(byType)) {
    const named = new Map<string, EncodedAny>();
    const entries: [string | undefined, unknown, string][] = Array.isArray(list)
      ? list.map((r, i) => [undefined, r, `${typeUrl}[${i}]`])
      : Object.entries(list).map(([n, r]) => [n, r, `${typeUrl}[${JSON.stringify(n)}]`]);
    for (const [given, json, path] of entries) {
      const at = (json as { '@type'?: unknown } | null)?.['@type'];
      if (at !== typeUrl) {
        throw new EncodeError(path, `"@type" must be ${typeUrl}, got ${JSON.stringify(at)}`);
      }
      const field = nameField(typeUrl);
      const name = given ?? (json as Record<string, unknown>)[field];
      if (typeof name !== 'string' || name === '') {
        throw new EncodeError(path, `needs a non-empty "${field}" to be named by`);
      }
      if (named.has(name)) throw new EncodeError(path, `duplicate resource name "${name}"`);
      named.set(name, encoder.encodeAny(json, path));
    }
    resources.set(typeUrl, named);
  }
  return { version, resources };
}
