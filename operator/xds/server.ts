/**
 * The ADS server: envoy.service.discovery.v3.AggregatedDiscoveryService, State of the World.
 *
 * Per stream and type it remembers the last nonce sent and what that response carried, so a
 * request is read as the protocol defines it: a nonce other than the last one is stale and
 * ignored; the last nonce without error_detail is an ACK of that response; with error_detail a
 * NACK (the client keeps its previous config, so nothing is resent until the content changes);
 * no nonce is a new subscription, answered at once.
 */
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import protobuf from 'protobufjs';
import { bindGrpcServer, shutdownGrpcServer } from '../../extproc/shared/grpc-server.js';
import { adsService } from '../../extproc/shared/proto.js';
import { contentVersion, type SnapshotCache } from './cache.js';
import type { EncodedAny } from './encode.js';
import { AckTracker, type Applied } from './tracker.js';
import { isWildcardType, sendRank } from './type-urls.js';

/** DiscoveryRequest as @grpc/proto-loader decodes it with LOADER_OPTIONS (absent = default). */
export interface DiscoveryRequest {
  version_info?: string;
  node?: { id?: string; cluster?: string };
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string };
}

export interface DiscoveryResponse {
  version_info: string;
  resources: EncodedAny[];
  type_url: string;
  nonce: string;
  control_plane?: { identifier: string };
}

let serviceDef: grpc.ServiceDefinition | undefined;

/**
 * The ADS service definition the server adds: shared/proto.ts's (the extproc's client uses the
 * same), with responses encoded by hand (encodeResponse).
 */
export function adsServiceDefinition(): grpc.ServiceDefinition {
  if (serviceDef) return serviceDef;
  const method = adsService().service['StreamAggregatedResources']!;
  serviceDef = {
    StreamAggregatedResources: { ...method, responseSerialize: encodeResponse },
  };
  return serviceDef;
}

const anyBytes = new WeakMap<EncodedAny, Uint8Array>();

/**
 * DiscoveryResponse by hand: a response repeats mostly unchanged resources, and the generic
 * path (fromObject, then encode) re-copies every one of them each time. Each Any is encoded
 * once and reused. Field numbers are DiscoveryResponse's and Any's; the tests decode the result
 * with the official protos.
 */
export function encodeResponse(r: DiscoveryResponse): Buffer {
  const w = protobuf.Writer.create();
  if (r.version_info) w.uint32((1 << 3) | 2).string(r.version_info);
  for (const any of r.resources) {
    let bytes = anyBytes.get(any);
    if (!bytes) {
      bytes = protobuf.Writer.create()
        .uint32((1 << 3) | 2)
        .string(any.type_url)
        .uint32((2 << 3) | 2)
        .bytes(any.value)
        .finish();
      anyBytes.set(any, bytes);
    }
    w.uint32((2 << 3) | 2).bytes(bytes);
  }
  if (r.type_url) w.uint32((4 << 3) | 2).string(r.type_url);
  if (r.nonce) w.uint32((5 << 3) | 2).string(r.nonce);
  if (r.control_plane) {
    w.uint32((6 << 3) | 2)
      .fork()
      .uint32((1 << 3) | 2)
      .string(r.control_plane.identifier)
      .ldelim();
  }
  const out = w.finish();
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}

interface Sent extends Applied {
  nonce: string;
}

interface Subscription {
  wildcard: boolean;
  names: Set<string>;
  lastNonce?: string;
  sent?: Sent;
}

type Call = grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;

export interface AdsOptions {
  cache: SnapshotCache;
  logger?: Logger;
  /** Sent as control_plane.identifier, so a data plane's config dump names its source. */
  identifier?: string;
  /** How long the first answers on a new stream wait for the rest of its opening burst (10). */
  initialCoalesceMs?: number;
}

let streamSeq = 0;

export class AdsService {
  readonly tracker: AckTracker;
  private readonly streams = new Set<AdsStream>();
  private readonly log: Logger;
  private readonly unsubscribe: () => void;

  constructor(private readonly opts: AdsOptions) {
    this.tracker = new AckTracker(opts.cache);
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.unsubscribe = opts.cache.onChange((changed) => {
      for (const s of this.streams) if (s.nodeId && opts.cache.affects(changed, s.nodeId)) s.push();
    });
  }

  addTo(server: grpc.Server): void {
    server.addService(adsServiceDefinition(), {
      StreamAggregatedResources: (call: Call) => this.open(call),
    });
  }

  /** How many streams are open (with or without a node id yet). */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Ends every stream (clients reconnect elsewhere) and stops listening to the cache. */
  close(): void {
    this.unsubscribe();
    for (const s of [...this.streams]) s.end();
  }

  private open(call: Call): void {
    const stream = new AdsStream(
      call,
      this.opts.cache,
      this.tracker,
      this.log,
      this.opts.identifier ?? 'sluice-operator',
      this.opts.initialCoalesceMs ?? 10,
      () => this.streams.delete(stream),
    );
    this.streams.add(stream);
  }
}

class AdsStream {
  readonly id = `${process.pid.toString(36)}.${(++streamSeq).toString(36)}`;
  nodeId: string | undefined;
  private readonly subs = new Map<string, Subscription>();
  private nonceSeq = 0;
  /** Types waiting to be answered, and whether an answer is due even without a change. */
  private readonly pending = new Map<string, boolean>();
  private flushQueued = false;
  private closed = false;

  constructor(
    private readonly call: Call,
    private readonly cache: SnapshotCache,
    private readonly tracker: AckTracker,
    private readonly log: Logger,
    private readonly identifier: string,
    private readonly coalesceMs: number,
    private readonly onClose: () => void,
  ) {
    call.on('data', (req: DiscoveryRequest) => this.request(req));
    call.on('end', () => this.end());
    call.on('error', () => this.finish());
    call.on('cancelled', () => this.finish());
  }

  /** Re-evaluates every subscription after a snapshot change; sends only what changed. */
  push(): void {
    for (const typeUrl of this.subs.keys()) {
      if (!this.pending.has(typeUrl)) this.pending.set(typeUrl, false);
    }
    this.flush();
  }

  end(): void {
    if (this.closed) return;
    this.call.end();
    this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.tracker.disconnected(this.id);
    this.onClose();
    if (this.nodeId)
      this.log.info(
        { event: 'xds_disconnected', node: this.nodeId, stream: this.id },
        'data plane disconnected',
      );
  }

  private fail(code: grpc.status, details: string): void {
    if (this.closed) return;
    this.log.warn(
      { event: 'xds_stream_refused', node: this.nodeId, stream: this.id, details },
      'ADS stream refused',
    );
    this.call.emit('error', { code, details });
    this.finish();
  }

  private request(req: DiscoveryRequest): void {
    if (this.closed) return;
    if (this.nodeId === undefined) {
      const id = req.node?.id;
      if (!id)
        return this.fail(
          grpc.status.INVALID_ARGUMENT,
          'the first DiscoveryRequest must carry node.id',
        );
      this.nodeId = id;
      this.tracker.connected(this.id, id);
      this.log.info({ event: 'xds_connected', node: id, stream: this.id }, 'data plane connected');
    }
    const typeUrl = req.type_url ?? '';
    if (typeUrl === '')
      return this.fail(grpc.status.INVALID_ARGUMENT, 'type_url is required on an ADS stream');

    let sub = this.subs.get(typeUrl);
    const nonce = req.response_nonce ?? '';
    if (sub && nonce !== '' && sub.lastNonce !== undefined && nonce !== sub.lastNonce) return;

    const answersLast = sub?.sent !== undefined && nonce === sub.sent.nonce;
    if (sub?.sent && answersLast) {
      if (req.error_detail) {
        const message = req.error_detail.message ?? '';
        this.log.warn(
          {
            event: 'xds_nack',
            node: this.nodeId,
            type: typeUrl,
            version: sub.sent.version,
            message,
          },
          'data plane refused a config',
        );
        this.tracker.nacked(this.id, typeUrl, sub.sent, message, req.error_detail.code ?? 0);
      } else {
        this.tracker.acked(this.id, typeUrl, sub.sent);
      }
    }

    const names = req.resource_names ?? [];
    const wildcard = isWildcardType(typeUrl)
      ? names.length === 0 || names.includes('*')
      : names.includes('*');
    const nameSet = new Set(names.filter((n) => n !== '*'));
    const changed = !sub || sub.wildcard !== wildcard || !sameSet(sub.names, nameSet);
    if (!sub) {
      sub = { wildcard, names: nameSet };
      this.subs.set(typeUrl, sub);
    } else {
      sub.wildcard = wildcard;
      sub.names = nameSet;
    }
    if (changed) this.tracker.subscribed(this.id, typeUrl, wildcard, nameSet);
    // A request that answers nothing we sent is a (re)subscription: it always gets an answer,
    // even with content the client may already have, so the tracker learns what it runs.
    if (!answersLast || changed) {
      this.pending.set(typeUrl, true);
      this.scheduleFlush();
    }
  }

  /**
   * Requests that arrive together are answered together, in make-before-break order. grpc-js
   * hands over each message of a burst in its own turn of the event loop, and a reconnecting
   * Envoy sends its CDS, EDS, LDS and RDS requests as one burst, so the first answers on a
   * stream wait a few milliseconds to see the whole burst; later ones only for the current turn.
   */
  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    const run = (): void => {
      this.flushQueued = false;
      this.flush();
    };
    if (this.nonceSeq === 0 && this.coalesceMs > 0) setTimeout(run, this.coalesceMs);
    else setImmediate(run);
  }

  private flush(): void {
    if (this.closed || this.nodeId === undefined || this.pending.size === 0) return;
    const snapshot = this.cache.snapshotFor(this.nodeId);
    // Nothing to serve yet: pending requests are answered when a snapshot arrives.
    if (!snapshot) return;
    const order = [...this.pending.entries()].sort(([a], [b]) => sendRank(a) - sendRank(b));
    this.pending.clear();
    for (const [typeUrl, force] of order) {
      const sub = this.subs.get(typeUrl)!;
      const content = snapshot.types.get(typeUrl);
      const names: string[] = [];
      if (content) {
        if (sub.wildcard) names.push(...content.resources.keys());
        else for (const n of sub.names) if (content.resources.has(n)) names.push(n);
      }
      names.sort();
      const hashes = new Map<string, string>();
      for (const n of names) hashes.set(n, content!.hashes.get(n)!);
      const version = contentVersion(names, hashes);
      if (!force && sub.sent?.version === version) continue;
      const nonce = `${this.id}.${(++this.nonceSeq).toString(36)}`;
      sub.lastNonce = nonce;
      sub.sent = { version, snapshotVersion: snapshot.version, hashes, nonce };
      this.call.write({
        version_info: version,
        resources: names.map((n) => content!.resources.get(n)!),
        type_url: typeUrl,
        nonce,
        control_plane: { identifier: this.identifier },
      });
    }
  }
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

export interface RunningAdsServer {
  /** What clients dial: `unix:/path` or `host:port` with the port actually bound. */
  address: string;
  service: AdsService;
  tracker: AckTracker;
  /** Stops accepting, ends open streams, and waits up to `graceMs` before cutting them. */
  close(graceMs?: number): Promise<void>;
}

/** A gRPC server serving ADS alone on `listen` (`unix:/path` or `host:port`; port 0 picks one). */
export async function startAdsServer(
  opts: AdsOptions & { listen: string; maxMessageBytes?: number },
): Promise<RunningAdsServer> {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': opts.maxMessageBytes ?? 16 * 1024 * 1024,
    'grpc.max_send_message_length': opts.maxMessageBytes ?? 256 * 1024 * 1024,
  });
  const service = new AdsService(opts);
  service.addTo(server);
  const target = await bindGrpcServer(server, opts.listen);
  opts.logger?.info({ event: 'xds_listening', address: target }, 'ADS server listening');
  let closing: Promise<void> | undefined;
  return {
    address: target,
    service,
    tracker: service.tracker,
    close: (graceMs = 1000) => (closing ??= (service.close(), shutdownGrpcServer(server, graceMs))),
  };
}
