/**
 * The ext_proc server with gRPC's framing written out (`--grpc-server h2`), for the one hot
 * service, ExternalProcessor/Process, plus grpc.health.v1.Health (Check, Watch), on Sluice's own
 * HTTP/2 (h2-transport-own.ts, the default) or on node:http2 (h2-transport-node.ts,
 * `--grpc-server node-http2`). The ADS client and every other gRPC party keep grpc-js.
 *
 * Why: a do-nothing grpc-js server allocates ~75 KiB and ~100 µs of CPU per request (two
 * streams, five messages) before any of our work, most of it in grpc-js's per-call layers
 * (interceptor chain, metadata copies, a stream decoder and a Readable per call, per-message
 * promise chains). Envoy's ext_proc client needs none of that: length-prefixed messages on one
 * HTTP/2 stream, grpc-status in trailers. `npm run bench` (section lean) prints both floors.
 *
 * What is implemented of gRPC over HTTP/2 (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
 * content-type application/grpc[+proto] (anything else: HTTP 415), the 5-byte message prefix,
 * messages split across or packed into DATA frames, uncompressed messages only (a compressed one
 * is refused with UNIMPLEMENTED and grpc-accept-encoding: identity), grpc-timeout (the call ends
 * with DEADLINE_EXCEEDED), the receive and send size limits (RESOURCE_EXHAUSTED), a
 * trailers-only answer when nothing was sent, grpc-message percent-encoded, unknown methods
 * UNIMPLEMENTED, a client's RST_STREAM as a cancel, and on shutdown a GOAWAY that lets open
 * streams finish until the deadline, then cancels them.
 */
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import { decodeProcessingRequest } from '../wire/decode.js';
import { encodeProcessingResponse } from '../wire/encode.js';
import { responseEncoder } from '../wire/proto.js';
import type { DuplexCall, ProcessingRequest } from '../stream.js';
import {
  H2Call,
  parseTimeoutMs,
  Status,
  type CallMetadata,
  type CallSink,
  type Encode,
  type StreamHead,
} from './h2-call.js';
import { listen as listenOwn } from './h2-transport-own.js';

export const PROCESS_PATH = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';
const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';
const HEALTH_WATCH_PATH = '/grpc.health.v1.Health/Watch';

export type ServingStatus = 'SERVING' | 'NOT_SERVING';

export interface HealthStatus {
  setStatus(service: string, status: ServingStatus): void;
}

/** Which HTTP/2 implementation carries the calls: node:http2 or Sluice's own (h2-connection.ts). */
export type H2Transport = 'node' | 'own';

export interface H2ServerOptions {
  /** `unix:/path/to.sock` or `host:port` (port 0 picks one). */
  listen: string;
  /** Default own. */
  transport?: H2Transport | undefined;
  maxMessageBytes: number;
  logger: Logger;
  onStream(call: DuplexCall, metadata: CallMetadata): void;
}

export interface RunningH2Server {
  /** What clients dial: `unix:/path` or `host:port` with the port actually bound. */
  address: string;
  health: HealthStatus;
  /** Stops accepting (GOAWAY), lets open streams finish until the deadline, then cancels the rest. */
  shutdown(deadlineMs: number): Promise<void>;
}

// grpc.health.v1: HealthCheckRequest { string service = 1; }, HealthCheckResponse
// { ServingStatus status = 1; } with UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3.
const SERVING_NUMBER: Record<ServingStatus | 'SERVICE_UNKNOWN', number> = {
  SERVING: 1,
  NOT_SERVING: 2,
  SERVICE_UNKNOWN: 3,
};

/** The service name of a HealthCheckRequest (field 1, the only one). */
export function decodeHealthRequest(b: Buffer): string {
  let pos = 0;
  let service = '';
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (;;) {
      if (pos >= b.length) throw new Error('truncated varint');
      const x = b[pos++]!;
      v += (x & 0x7f) * mul;
      if (x < 0x80) return v;
      mul *= 128;
      if (mul > 2 ** 49) throw new Error('varint too long');
    }
  };
  while (pos < b.length) {
    const tag = varint();
    const wt = tag & 7;
    if (wt === 2) {
      const len = varint();
      if (pos + len > b.length) throw new Error('truncated field');
      if (tag >>> 3 === 1) service = b.toString('utf8', pos, pos + len);
      pos += len;
    } else if (wt === 0) varint();
    else if (wt === 1) pos += 8;
    else if (wt === 5) pos += 4;
    else throw new Error(`unsupported wire type ${wt}`);
  }
  if (pos > b.length) throw new Error('truncated field');
  return service;
}

function encodeHealthResponse(msg: object): Buffer {
  return Buffer.from([0, 0, 0, 0, 0, 0x08, (msg as { status: number }).status]);
}

class Health implements HealthStatus {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Map<string, Set<H2Call<string>>>();

  constructor(initial: Record<string, ServingStatus>) {
    for (const [k, v] of Object.entries(initial)) this.statuses.set(k, v);
  }

  setStatus(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    for (const w of this.watchers.get(service) ?? []) w.write({ status: SERVING_NUMBER[status] });
  }

  check(call: H2Call<string>): void {
    let service: string | undefined;
    call.on('data', (s) => (service = s));
    call.on('end', () => {
      const status = service === undefined ? undefined : this.statuses.get(service);
      if (status === undefined) {
        call.end(Status.NOT_FOUND, 'NOT_FOUND');
        return;
      }
      call.write({ status: SERVING_NUMBER[status] });
      call.end();
    });
  }

  watch(call: H2Call<string>): void {
    call.on('data', (service) => {
      const set = this.watchers.get(service) ?? new Set();
      this.watchers.set(service, set);
      set.add(call);
      const forget = (): void => void set.delete(call);
      call.on('cancelled', forget);
      call.on('error', forget);
      const status = this.statuses.get(service);
      call.write({ status: status ? SERVING_NUMBER[status] : SERVING_NUMBER.SERVICE_UNKNOWN });
    });
  }

  /**
   * Every service NOT_SERVING (watchers hear it), then every Watch stream ended: a graceful
   * shutdown waits for open streams, and a Watch never ends by itself.
   */
  stopServing(): void {
    for (const service of this.statuses.keys()) this.setStatus(service, 'NOT_SERVING');
    for (const set of this.watchers.values()) {
      for (const call of set) call.end(Status.UNAVAILABLE, 'server shutting down');
      set.clear();
    }
  }
}

export async function startH2Server(
  opts: H2ServerOptions,
  initialHealth: Record<string, ServingStatus> = {},
): Promise<RunningH2Server> {
  // encode.ts writes every answer wire/messages.ts builds, immediate responses included, so
  // protobufjs (loaded on first use, ~30 ms) is only the fallback for a shape it does not know.
  const reference = responseEncoder();
  const encode: Encode = (msg) => encodeProcessingResponse(msg, 5, reference);
  const health = new Health(initialHealth);
  const max = opts.maxMessageBytes;
  const open = (sink: CallSink, head: StreamHead): void => {
    const type = head.contentType;
    if (
      head.method !== 'POST' ||
      type === undefined ||
      !/^application\/grpc(?:[+;]|$)/.test(type)
    ) {
      sink.refuse(415);
      return;
    }
    const path = head.path;
    const timeout = parseTimeoutMs(head.timeout);
    if (path === PROCESS_PATH) {
      const call = new H2Call<ProcessingRequest>(
        sink,
        decodeProcessingRequest,
        encode,
        max,
        timeout,
      );
      opts.onStream(call, head.metadata);
    } else if (path === HEALTH_CHECK_PATH || path === HEALTH_WATCH_PATH) {
      const call = new H2Call<string>(
        sink,
        decodeHealthRequest,
        encodeHealthResponse,
        max,
        timeout,
      );
      if (path === HEALTH_CHECK_PATH) health.check(call);
      else health.watch(call);
    } else {
      const call = new H2Call(sink, () => undefined, encode, max, undefined);
      call.end(Status.UNIMPLEMENTED, `unknown method ${String(path)}`);
    }
  };
  const transport = opts.transport ?? 'own';
  // node:http2 is loaded only when asked for (--grpc-server node-http2).
  const listen = transport === 'own' ? listenOwn : (await import('./h2-transport-node.js')).listen;
  const listening = await listen({
    listen: opts.listen,
    serverError: (err) =>
      opts.logger.error(
        { event: 'grpc_server_error', err: describeError(err) },
        'ext_proc server error',
      ),
    connectionError: (err) =>
      opts.logger.debug(
        { event: 'grpc_session_error', err: describeError(err) },
        'ext_proc connection error',
      ),
    open,
  });
  opts.logger.info(
    {
      event: 'grpc_listening',
      address: listening.address,
      transport: transport === 'own' ? 'h2' : 'node-http2',
    },
    'ext_proc server listening',
  );

  let stopping: Promise<void> | undefined;
  return {
    address: listening.address,
    health,
    shutdown: (deadlineMs) => {
      if (stopping) return stopping;
      health.stopServing();
      return (stopping = listening.shutdown(deadlineMs));
    },
  };
}
