/**
 * The ext_proc server on node:http2 with gRPC's framing written out (`--grpc-server h2`), for
 * the one hot service, ExternalProcessor/Process, plus grpc.health.v1.Health (Check, Watch). The
 * ADS client and every other gRPC party keep grpc-js.
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
import * as http2 from 'node:http2';
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import { decodeProcessingRequest } from '../wire/decode.js';
import type { WireResponse } from '../wire/messages.js';
import { encodeProcessingResponse } from '../wire/encode.js';
import { responseEncoder } from '../wire/proto.js';
import { dialAddress, parseListen, prepareSocket, stopWithin } from '../shared/grpc-server.js';
import type { DuplexCall, ProcessingRequest } from '../stream.js';

export const PROCESS_PATH = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';
const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';
const HEALTH_WATCH_PATH = '/grpc.health.v1.Health/Watch';

/** gRPC status codes used here. */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** What onStream reads of the call's request headers (grpc-js's Metadata has the same get). */
export interface CallMetadata {
  get(key: string): (string | Buffer)[];
}

export type ServingStatus = 'SERVING' | 'NOT_SERVING';

export interface HealthStatus {
  setStatus(service: string, status: ServingStatus): void;
}

export interface H2ServerOptions {
  /** `unix:/path/to.sock` or `host:port` (port 0 picks one). */
  listen: string;
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

const RESPONSE_HEADERS = {
  [http2.constants.HTTP2_HEADER_STATUS]: 200,
  [http2.constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
};
const OK_TRAILERS = { 'grpc-status': '0' };
const EMPTY = Buffer.alloc(0);
// endStream is spelled out although false is node's default: respond() copies its options and
// sets endStream on the copy, and adding that property made V8 create a hidden class (in the old
// generation) on every call: two per request, about a fifth of what went straight into the old
// generation and drove its mark-compacts (test/bench/hidden-classes.test.ts).
const RESPOND_OPTIONS = { endStream: false, waitForTrailers: true };

/**
 * grpc-timeout: at most 8 digits and a unit (Hours, Minutes, Seconds, milli, micro, nano);
 * undefined when absent or malformed (no deadline, as grpc-js does).
 */
export function parseTimeoutMs(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 }[m[2] as 'H'];
  return n * unit;
}

/** grpc-message is percent-encoded UTF-8 (everything outside printable ASCII, and '%'). */
export function encodeGrpcMessage(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Where a Deframer hands what it read: each message's bytes, or why the call must end. */
export interface DeframerSink {
  message(body: Buffer): void;
  fail(code: number, message: string): void;
}

/** The gRPC message reader of one call: 5-byte prefixes and bodies, however DATA frames cut them. */
export class Deframer {
  /** Chunks not yet read; the first from `offset` on. */
  private parts: Buffer[] = [];
  private offset = 0;
  private have = 0;
  /** The body length of the message being read; -1 while its prefix is not complete. */
  private need = -1;

  constructor(
    private readonly max: number,
    private readonly sink: DeframerSink,
  ) {}

  push(chunk: Buffer): void {
    // The common case, a chunk holding whole messages and nothing left from before: each body is
    // one view of the chunk (no prefix copy, no view per prefix, nothing queued).
    let at = 0;
    if (this.have === 0 && this.need < 0) {
      while (chunk.length - at >= 5) {
        const length = chunk.readUInt32BE(at + 1);
        if (!this.prefix(chunk[at]!, length)) return;
        if (chunk.length - at - 5 < length) {
          // The prefix is read (need set); the body's first bytes wait below.
          at += 5;
          break;
        }
        this.sink.message(length === 0 ? EMPTY : chunk.subarray(at + 5, at + 5 + length));
        at += 5 + length;
        this.need = -1;
      }
      if (at === chunk.length) return;
    }
    this.parts.push(at === 0 ? chunk : chunk.subarray(at));
    this.have += chunk.length - at;
    for (;;) {
      if (this.need < 0) {
        if (this.have < 5) return;
        const prefix = this.take(5);
        if (!this.prefix(prefix[0]!, prefix.readUInt32BE(1))) return;
      }
      if (this.have < this.need) return;
      const body = this.take(this.need);
      this.need = -1;
      this.sink.message(body);
    }
  }

  /** A message prefix read: false when the call must end (compressed, or over the limit). */
  private prefix(flag: number, length: number): boolean {
    this.need = length;
    if (flag !== 0) {
      this.sink.fail(Status.UNIMPLEMENTED, 'compressed messages are not supported');
      return false;
    }
    if (length > this.max) {
      this.sink.fail(
        Status.RESOURCE_EXHAUSTED,
        `received message larger than max (${length} vs. ${this.max})`,
      );
      return false;
    }
    return true;
  }

  /** The first n buffered bytes: a view when one chunk holds them, else one copy. */
  private take(n: number): Buffer {
    // An empty message (all fields default) may follow a prefix that ended its chunk.
    if (n === 0) return EMPTY;
    const first = this.parts[0]!;
    let out: Buffer;
    if (first.length - this.offset >= n) {
      out = first.subarray(this.offset, this.offset + n);
      this.offset += n;
      if (this.offset === first.length) this.next();
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const p = this.parts[0]!;
        const k = Math.min(p.length - this.offset, n - at);
        p.copy(out, at, this.offset, this.offset + k);
        at += k;
        this.offset += k;
        if (this.offset === p.length) this.next();
      }
    }
    this.have -= n;
    return out;
  }

  private next(): void {
    this.parts.shift();
    this.offset = 0;
  }
}

/** Encodes a message after 5 bytes left free for gRPC's message prefix (filled in by H2Call). */
type Encode = (msg: object) => Buffer;

/**
 * The server side of one gRPC call on an HTTP/2 stream. As a DuplexCall it is what the ext_proc
 * state machine (stream.ts) drives; the health service uses it too with its own codec.
 */
export class H2Call<In = ProcessingRequest> {
  private onData: ((msg: In) => void) | undefined;
  private onEnd: (() => void) | undefined;
  private onCancelled: (() => void) | undefined;
  private onError: ((err: Error) => void) | undefined;
  private headersSent = false;
  /** Our side is done (trailers queued or the stream gone): nothing more is written. */
  private finished = false;
  private trailers: Record<string, string> = OK_TRAILERS;
  private timer: NodeJS.Timeout | undefined;
  private readonly deframer: Deframer;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    private readonly decode: (body: Buffer) => In,
    private readonly encode: Encode,
    private readonly maxMessageBytes: number,
    timeoutMs: number | undefined,
  ) {
    this.deframer = new Deframer(maxMessageBytes, this);
    // One listener function per event for every call (module level; `this` is the stream), not
    // five closures per call: the call is found on the stream.
    (stream as OwnedStream)[CALL] = this as H2Call<unknown>;
    stream.on('data', onStreamData);
    stream.on('end', onStreamEnd);
    stream.on('wantTrailers', onWantTrailers);
    stream.on('error', onStreamError);
    stream.on('close', onStreamClose);
    if (timeoutMs !== undefined) {
      this.timer = setTimeout(() => {
        if (this.finished) return;
        this.end(Status.DEADLINE_EXCEEDED, 'Deadline exceeded');
        this.onCancelled?.();
      }, timeoutMs);
    }
  }

  /** The stream's events (the listeners below), not for other callers. */
  streamData(chunk: Buffer): void {
    if (!this.finished) this.deframer.push(chunk);
  }

  streamEnd(): void {
    if (this.finished) return;
    // A destroyed stream (its connection gone) ends its readable side too: not a half-close.
    if (this.stream.destroyed) this.cancel();
    else this.onEnd?.();
  }

  streamWantsTrailers(): void {
    this.stream.sendTrailers(this.trailers);
  }

  streamError(err: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.onError?.(err);
  }

  /** Closed before our trailers went out: the client reset the stream or the connection died. */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.finished) return;
    this.finished = true;
    this.onCancelled?.();
  }

  on(event: 'data', fn: (msg: In) => void): this;
  on(event: 'end' | 'cancelled', fn: () => void): this;
  on(event: 'error', fn: (err: Error) => void): this;
  on(event: string, fn: (arg: never) => void): this {
    if (event === 'data') this.onData = fn as (msg: In) => void;
    else if (event === 'end') this.onEnd = fn as () => void;
    else if (event === 'cancelled') this.onCancelled = fn as () => void;
    else if (event === 'error') this.onError = fn as (err: Error) => void;
    return this;
  }

  get ended(): boolean {
    return this.finished;
  }

  write(msg: WireResponse | object): boolean {
    if (this.finished) return false;
    const framed = this.encode(msg);
    const length = framed.length - 5;
    if (length > this.maxMessageBytes) {
      this.fail(
        Status.RESOURCE_EXHAUSTED,
        `sent message larger than max (${length} vs. ${this.maxMessageBytes})`,
      );
      return false;
    }
    framed[0] = 0;
    framed.writeUInt32BE(length, 1);
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond(RESPONSE_HEADERS, RESPOND_OPTIONS);
    }
    return this.stream.write(framed);
  }

  /** Ends the call with a status: trailers after what was sent, or a trailers-only answer. */
  end(code: number = Status.OK, message?: string): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.stream.destroyed || this.stream.closed) return;
    const status: Record<string, string> =
      code === Status.OK && message === undefined
        ? OK_TRAILERS
        : {
            'grpc-status': String(code),
            ...(message !== undefined && { 'grpc-message': encodeGrpcMessage(message) }),
            ...(code === Status.UNIMPLEMENTED && { 'grpc-accept-encoding': 'identity' }),
          };
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond({ ...RESPONSE_HEADERS, ...status }, { endStream: true });
    } else {
      this.trailers = status;
      this.stream.end();
    }
  }

  /** Ends the call with an error status and tells the handler it is over (DeframerSink). */
  fail(code: number, message: string): void {
    if (this.finished) return;
    this.end(code, message);
    this.onError?.(new Error(message));
  }

  /** A whole message read (DeframerSink). */
  message(body: Buffer): void {
    if (this.finished) return;
    let msg: In;
    try {
      msg = this.decode(body);
    } catch (err) {
      this.fail(Status.INTERNAL, `could not parse the request: ${describeError(err).message}`);
      return;
    }
    this.onData?.(msg);
  }
}

const CALL = Symbol('sluice.h2call');
/** The call, until the stream closes (onStreamClose). */
type OwnedStream = http2.ServerHttp2Stream & { [CALL]: H2Call<unknown> | undefined };

function onStreamData(this: OwnedStream, chunk: Buffer): void {
  this[CALL]?.streamData(chunk);
}
function onStreamEnd(this: OwnedStream): void {
  this[CALL]?.streamEnd();
}
function onWantTrailers(this: OwnedStream): void {
  this[CALL]?.streamWantsTrailers();
}
function onStreamError(this: OwnedStream, err: Error): void {
  this[CALL]?.streamError(err);
}
/**
 * The stream closed: the call is cancelled if it was still open, and cut loose from the stream.
 * node:http2 keeps a closed stream's objects until a full collection, as young collections treat
 * its native handle as a root; whatever the stream still points at (the handler's closures, the
 * request's parsed body and state) outlived two young collections and was promoted, to die in the
 * old generation. Measured (--trace-gc-nvp, 2 in flight): what survives each young collection
 * fell from 1.7 to 0.44 MB plain, 1.5 to 0.24 masking + budget (issue 16).
 */
function onStreamClose(this: OwnedStream): void {
  this[CALL]?.cancel();
  this[CALL] = undefined;
}
const ignore = (): void => undefined;

/** http2 request headers as gRPC metadata: -bin values are base64, the rest strings. */
class H2Metadata implements CallMetadata {
  constructor(private readonly headers: http2.IncomingHttpHeaders) {}

  get(key: string): (string | Buffer)[] {
    const v = this.headers[key.toLowerCase()];
    if (v === undefined) return [];
    const list = Array.isArray(v) ? v : String(v).split(',');
    return key.endsWith('-bin')
      ? list.map((s) => Buffer.from(s.trim(), 'base64'))
      : list.map((s) => s.trim());
  }
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
  const server = http2.createServer({
    // Message size is bounded per call above; nghttp2's session memory cap would instead fail
    // whole connections under load (grpc-js turns it off for the same reason).
    maxSessionMemory: Number.MAX_SAFE_INTEGER,
    settings: {
      // Buffered bodies arrive as one message: windows that take one whole save round trips.
      initialWindowSize: 1 << 20,
      maxConcurrentStreams: 2 ** 32 - 1,
    },
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', (err) =>
      opts.logger.debug(
        { event: 'grpc_session_error', err: describeError(err) },
        'ext_proc connection error',
      ),
    );
    try {
      session.setLocalWindowSize(16 << 20);
    } catch {
      // the session closed before its settings went out
    }
  });
  server.on('stream', (stream, headers) => {
    const type = headers['content-type'];
    if (
      headers[':method'] !== 'POST' ||
      typeof type !== 'string' ||
      !/^application\/grpc(?:[+;]|$)/.test(type)
    ) {
      stream.on('error', ignore);
      stream.respond({ ':status': 415 }, { endStream: true });
      return;
    }
    // Every other stream gets an H2Call, whose own 'error' listener is the stream's only one (a
    // second listener would make the stream keep an array of them).
    const path = headers[':path'];
    const timeout = parseTimeoutMs(headers['grpc-timeout'] as string | undefined);
    if (path === PROCESS_PATH) {
      const call = new H2Call<ProcessingRequest>(
        stream,
        decodeProcessingRequest,
        encode,
        max,
        timeout,
      );
      opts.onStream(call, new H2Metadata(headers));
    } else if (path === HEALTH_CHECK_PATH || path === HEALTH_WATCH_PATH) {
      const call = new H2Call<string>(
        stream,
        decodeHealthRequest,
        encodeHealthResponse,
        max,
        timeout,
      );
      if (path === HEALTH_CHECK_PATH) health.check(call);
      else health.watch(call);
    } else {
      const call = new H2Call(stream, () => undefined, encode, max, undefined);
      call.end(Status.UNIMPLEMENTED, `unknown method ${String(path)}`);
    }
  });

  const where = parseListen(opts.listen);
  await prepareSocket(opts.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if ('path' in where) server.listen(where.path, done);
    else server.listen(where.port, where.host, done);
  });
  server.on('error', (err) =>
    opts.logger.error(
      { event: 'grpc_server_error', err: describeError(err) },
      'ext_proc server error',
    ),
  );
  const bound = server.address();
  const address = dialAddress(
    opts.listen,
    typeof bound === 'object' && bound ? bound.port : 'port' in where ? where.port : 0,
  );
  opts.logger.info(
    { event: 'grpc_listening', address, transport: 'h2' },
    'ext_proc server listening',
  );

  let stopping: Promise<void> | undefined;
  return {
    address,
    health,
    shutdown: (deadlineMs) => {
      if (stopping) return stopping;
      health.stopServing();
      server.close();
      return (stopping = stopWithin(
        deadlineMs,
        (done) => {
          const open = [...sessions].filter((s) => !s.closed && !s.destroyed);
          let left = open.length;
          if (left === 0) done();
          for (const s of open) {
            s.once('close', () => {
              if (--left === 0) done();
            });
            // GOAWAY: no new streams on this connection; the ones open may finish.
            s.close();
          }
        },
        // Past the deadline: what is still open is cancelled (RST_STREAM to each stream).
        () => {
          for (const s of sessions) s.destroy();
        },
      ));
    },
  };
}
