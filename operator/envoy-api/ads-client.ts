/**
 * An ADS client that speaks the wire protocol as a data plane does and decodes every resource
 * with the targeted Envoy release's own message definitions (./index.ts), so what the operator
 * encodes with proto/ is judged by the real API. The emulator's xDS connection; tests and the
 * bench use it as a data plane too.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { protoRoot } from '../../extproc/shared/proto.js';
import { newEnvoyApiRoot } from './index.js';

let official: protobuf.Root | undefined;

/**
 * The targeted release's API plus Sluice's own proto/sluice messages (ExtprocConfig, sent to the
 * extproc node), which are not Envoy's and have no official copy.
 */
export function officialRoot(): protobuf.Root {
  if (official) return official;
  const root = newEnvoyApiRoot();
  root.loadSync(join(protoRoot(), 'sluice/extproc/v1/config.proto'), { keepCase: true });
  root.resolveAll();
  official = root;
  return root;
}

let adsClient: grpc.ServiceClientConstructor | undefined;

// As @grpc/proto-loader would decode: enums and 64-bit numbers as strings, bytes as Buffers.
const TO_OBJECT: protobuf.IConversionOptions = {
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
};

/** The ADS client class, built from the release's service descriptor (path, streaming, types). */
function officialAdsClient(): grpc.ServiceClientConstructor {
  if (adsClient) return adsClient;
  const service = officialRoot().lookupService(
    'envoy.service.discovery.v3.AggregatedDiscoveryService',
  );
  const method = service.methods['StreamAggregatedResources'];
  if (!method?.resolvedRequestType || !method.resolvedResponseType) {
    throw new Error('the Envoy API has no resolved StreamAggregatedResources method');
  }
  const req = method.resolvedRequestType;
  const res = method.resolvedResponseType;
  adsClient = grpc.makeGenericClientConstructor(
    {
      [method.name]: {
        path: `/${service.fullName.slice(1)}/${method.name}`,
        requestStream: method.requestStream === true,
        responseStream: method.responseStream === true,
        requestSerialize: (m: object) => Buffer.from(req.encode(req.fromObject(m)).finish()),
        requestDeserialize: (b: Buffer) => req.toObject(req.decode(b), TO_OBJECT),
        responseSerialize: (m: object) => Buffer.from(res.encode(res.fromObject(m)).finish()),
        responseDeserialize: (b: Buffer) => res.toObject(res.decode(b), TO_OBJECT),
      },
    },
    service.name,
  );
  return adsClient;
}

/** Decodes an Any with the official definitions; throws when the type is not Envoy's (or ours). */
export function decodeAny(any: { type_url: string; value: Uint8Array }): Record<string, unknown> {
  const name = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
  const type = officialRoot().lookupType(name);
  return type.toObject(type.decode(any.value), {
    longs: String,
    enums: String,
    bytes: String,
    oneofs: true,
    json: true,
  });
}

export interface Received {
  typeUrl: string;
  version: string;
  nonce: string;
  controlPlane?: string;
  /** Resource name → decoded message (official types). */
  resources: Map<string, Record<string, unknown>>;
  raw: { type_url: string; value: Uint8Array }[];
}

interface RawResponse {
  version_info?: string;
  resources?: { type_url: string; value: Buffer }[];
  type_url?: string;
  nonce?: string;
  control_plane?: { identifier?: string };
}

export interface ClientOptions {
  nodeId: string;
  /** Answer every response with an ACK as soon as it is decoded (default true). */
  autoAck?: boolean;
  /** Called with each decoded response; returning a string NACKs it with that message. */
  judge?: (r: Received) => string | undefined;
  /** Queue responses for next() (default true); off for long runs that only count ACKs. */
  keep?: boolean;
}

/** One ADS stream, as a data plane holds it. */
export class OfficialAdsClient {
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<unknown, RawResponse>;
  private readonly queue: Received[] = [];
  private readonly waiters: ((r: Received) => void)[] = [];
  private readonly accepted = new Map<string, string>();
  private readonly names = new Map<string, string[]>();
  private sentNode = false;
  readonly nodeId: string;
  /** Resolves when the stream ends, with its final status. */
  readonly ended: Promise<grpc.StatusObject>;

  constructor(
    address: string,
    private readonly opts: ClientOptions,
  ) {
    this.nodeId = opts.nodeId;
    const Ctor = officialAdsClient();
    this.client = new Ctor(address, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
    });
    const method = (
      this.client as unknown as Record<string, () => grpc.ClientDuplexStream<unknown, RawResponse>>
    )['StreamAggregatedResources']!;
    this.call = method.call(this.client);
    this.ended = new Promise((resolve) => {
      this.call.on('status', resolve);
      this.call.on('error', () => undefined);
    });
    this.call.on('data', (raw: RawResponse) => this.receive(raw));
  }

  /** Subscribes (or changes the subscription) to a type; names empty = wildcard. */
  subscribe(typeUrl: string, names: string[] = []): void {
    this.names.set(typeUrl, names);
    this.send({
      type_url: typeUrl,
      resource_names: names,
      version_info: this.accepted.get(typeUrl) ?? '',
    });
  }

  /** Sends a raw request (for stale nonces and other protocol corners). */
  send(req: {
    type_url: string;
    resource_names?: string[];
    version_info?: string;
    response_nonce?: string;
    error_detail?: { code: number; message: string };
  }): void {
    const withNode = this.sentNode
      ? req
      : { ...req, node: { id: this.opts.nodeId, user_agent_name: 'sluice-test' } };
    this.sentNode = true;
    this.call.write(withNode);
  }

  ack(r: Received, names?: string[]): void {
    this.accepted.set(r.typeUrl, r.version);
    if (names) this.names.set(r.typeUrl, names);
    this.send({
      type_url: r.typeUrl,
      version_info: r.version,
      response_nonce: r.nonce,
      resource_names: this.names.get(r.typeUrl) ?? [],
    });
  }

  nack(r: Received, message: string): void {
    this.send({
      type_url: r.typeUrl,
      version_info: this.accepted.get(r.typeUrl) ?? '',
      response_nonce: r.nonce,
      resource_names: this.names.get(r.typeUrl) ?? [],
      error_detail: { code: grpc.status.INVALID_ARGUMENT, message },
    });
  }

  /** The next response, in arrival order; rejects after `timeoutMs`. */
  next(timeoutMs = 2000): Promise<Received> {
    const ready = this.queue.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i !== -1) this.waiters.splice(i, 1);
        reject(new Error(`no DiscoveryResponse within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (r: Received): void => {
        clearTimeout(timer);
        resolve(r);
      };
      this.waiters.push(waiter);
    });
  }

  /** Resolves true if nothing arrives within `ms` (for "no push" assertions). */
  async quiet(ms: number): Promise<Received | undefined> {
    try {
      return await this.next(ms);
    } catch {
      return undefined;
    }
  }

  close(): void {
    this.call.end();
    this.client.close();
  }

  private receive(raw: RawResponse): void {
    const resources = new Map<string, Record<string, unknown>>();
    for (const any of raw.resources ?? []) {
      const msg = decodeAny(any);
      const name = (msg['name'] ?? msg['cluster_name']) as string | undefined;
      resources.set(name ?? `#${resources.size}`, msg);
    }
    const r: Received = {
      typeUrl: raw.type_url ?? '',
      version: raw.version_info ?? '',
      nonce: raw.nonce ?? '',
      resources,
      raw: raw.resources ?? [],
    };
    if (raw.control_plane?.identifier) r.controlPlane = raw.control_plane.identifier;
    const verdict = this.opts.judge?.(r);
    if (verdict !== undefined) this.nack(r, verdict);
    else if (this.opts.autoAck ?? true) this.ack(r);
    const waiter = this.waiters.shift();
    if (waiter) waiter(r);
    else if (this.opts.keep ?? true) this.queue.push(r);
  }
}
