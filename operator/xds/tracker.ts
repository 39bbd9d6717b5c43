/**
 * Which connected data plane ACKed or NACKed what: the source of truth for the `Programmed`
 * condition (DESIGN §5). Kept per stream, not per node id, because a restarting Envoy can hold
 * two streams with one id for a moment, and each must be judged on what it actually applied.
 */
import type { SnapshotCache } from './cache.js';

/** What one response carried, as the client later ACKs or NACKs it. */
export interface Applied {
  /** The version_info of the response: a content hash. */
  version: string;
  /** The snapshot the response was cut from (the caller's name in setSnapshot). */
  snapshotVersion: string;
  /** Content hash per resource name in the response. */
  hashes: ReadonlyMap<string, string>;
}

export interface AckEvent {
  nodeId: string;
  streamId: string;
  typeUrl: string;
  version: string;
  snapshotVersion: string;
  resourceNames: string[];
}

export interface NackEvent extends AckEvent {
  message: string;
  /** The google.rpc.Code the client reported. */
  code: number;
}

export interface TypeStatus {
  ackedVersion?: string;
  ackedSnapshot?: string;
  nackedVersion?: string;
  nackMessage?: string;
}

export interface DataPlane {
  nodeId: string;
  streamId: string;
  connectedAt: Date;
  types: Record<string, TypeStatus>;
}

export type ResourceState =
  | { nodeId: string; streamId: string; state: 'acked' }
  | { nodeId: string; streamId: string; state: 'pending' }
  | { nodeId: string; streamId: string; state: 'nacked'; message: string };

interface TypeRecord {
  wildcard: boolean;
  names: ReadonlySet<string>;
  acked?: Applied;
  nacked?: Applied & { message: string };
}

interface StreamRecord {
  nodeId: string;
  streamId: string;
  connectedAt: Date;
  types: Map<string, TypeRecord>;
}

type Listener<E> = (event: E) => void;

export class AckTracker {
  private readonly streams = new Map<string, StreamRecord>();
  private readonly ackListeners = new Set<Listener<AckEvent>>();
  private readonly nackListeners = new Set<Listener<NackEvent>>();
  private readonly planeListeners = new Set<() => void>();

  constructor(private readonly cache: SnapshotCache) {}

  onAck(listener: Listener<AckEvent>): () => void {
    this.ackListeners.add(listener);
    return () => this.ackListeners.delete(listener);
  }

  onNack(listener: Listener<NackEvent>): () => void {
    this.nackListeners.add(listener);
    return () => this.nackListeners.delete(listener);
  }

  /** Called after a data plane connects, disconnects or changes what it subscribes to. */
  onPlanesChanged(listener: () => void): () => void {
    this.planeListeners.add(listener);
    return () => this.planeListeners.delete(listener);
  }

  /** Every connected stream, oldest first. */
  dataPlanes(): DataPlane[] {
    return [...this.streams.values()].map((s) => {
      const types: Record<string, TypeStatus> = {};
      for (const [typeUrl, t] of s.types) {
        const status: TypeStatus = {};
        if (t.acked) {
          status.ackedVersion = t.acked.version;
          status.ackedSnapshot = t.acked.snapshotVersion;
        }
        if (t.nacked) {
          status.nackedVersion = t.nacked.version;
          status.nackMessage = t.nacked.message;
        }
        types[typeUrl] = status;
      }
      return { nodeId: s.nodeId, streamId: s.streamId, connectedAt: s.connectedAt, types };
    });
  }

  /**
   * Where one resource stands on every connected stream that is subscribed to it and is served
   * a snapshot holding it: ACKed only when the stream ACKed the resource's current content.
   */
  resourceStatus(typeUrl: string, name: string): ResourceState[] {
    const out: ResourceState[] = [];
    for (const s of this.streams.values()) {
      const t = s.types.get(typeUrl);
      if (!t || !(t.wildcard || t.names.has(name))) continue;
      const current = this.cache.snapshotFor(s.nodeId)?.types.get(typeUrl)?.hashes.get(name);
      if (current === undefined) continue;
      const ids = { nodeId: s.nodeId, streamId: s.streamId };
      if (t.acked?.hashes.get(name) === current) out.push({ ...ids, state: 'acked' });
      else if (t.nacked?.hashes.get(name) === current) {
        out.push({ ...ids, state: 'nacked', message: t.nacked.message });
      } else out.push({ ...ids, state: 'pending' });
    }
    return out;
  }

  /** Resolves with the first ACK from now on that matches; rejects after `timeoutMs`. */
  whenAcked(predicate: (e: AckEvent) => boolean, timeoutMs: number): Promise<AckEvent> {
    return waitFor(this.ackListeners, predicate, timeoutMs, 'ACK');
  }

  whenNacked(predicate: (e: NackEvent) => boolean, timeoutMs: number): Promise<NackEvent> {
    return waitFor(this.nackListeners, predicate, timeoutMs, 'NACK');
  }

  // The server's side of the tracker.

  connected(streamId: string, nodeId: string): void {
    this.streams.set(streamId, { nodeId, streamId, connectedAt: new Date(), types: new Map() });
    this.planesChanged();
  }

  disconnected(streamId: string): void {
    if (this.streams.delete(streamId)) this.planesChanged();
  }

  subscribed(
    streamId: string,
    typeUrl: string,
    wildcard: boolean,
    names: ReadonlySet<string>,
  ): void {
    const t = this.record(streamId, typeUrl);
    if (!t) return;
    t.wildcard = wildcard;
    t.names = names;
    this.planesChanged();
  }

  acked(streamId: string, typeUrl: string, applied: Applied): void {
    const s = this.streams.get(streamId);
    const t = this.record(streamId, typeUrl);
    if (!s || !t) return;
    t.acked = applied;
    // A later version that took supersedes an earlier refusal.
    t.nacked = undefined;
    const e = event(s, typeUrl, applied);
    for (const l of [...this.ackListeners]) l(e);
  }

  nacked(streamId: string, typeUrl: string, applied: Applied, message: string, code: number): void {
    const s = this.streams.get(streamId);
    const t = this.record(streamId, typeUrl);
    if (!s || !t) return;
    t.nacked = { ...applied, message };
    const e: NackEvent = { ...event(s, typeUrl, applied), message, code };
    for (const l of [...this.nackListeners]) l(e);
  }

  private planesChanged(): void {
    for (const l of [...this.planeListeners]) l();
  }

  private record(streamId: string, typeUrl: string): TypeRecord | undefined {
    const s = this.streams.get(streamId);
    if (!s) return undefined;
    let t = s.types.get(typeUrl);
    if (!t) {
      t = { wildcard: false, names: new Set() };
      s.types.set(typeUrl, t);
    }
    return t;
  }
}

function event(s: StreamRecord, typeUrl: string, applied: Applied): AckEvent {
  return {
    nodeId: s.nodeId,
    streamId: s.streamId,
    typeUrl,
    version: applied.version,
    snapshotVersion: applied.snapshotVersion,
    resourceNames: [...applied.hashes.keys()],
  };
}

function waitFor<E>(
  listeners: Set<Listener<E>>,
  predicate: (e: E) => boolean,
  timeoutMs: number,
  what: string,
): Promise<E> {
  return new Promise<E>((resolve, reject) => {
    const listener = (e: E): void => {
      if (!predicate(e)) return;
      listeners.delete(listener);
      clearTimeout(timer);
      resolve(e);
    };
    const timer = setTimeout(() => {
      listeners.delete(listener);
      reject(new Error(`no matching ${what} within ${timeoutMs} ms`));
    }, timeoutMs);
    listeners.add(listener);
  });
}
