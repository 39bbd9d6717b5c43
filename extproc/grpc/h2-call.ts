/**
 * One gRPC call on an HTTP/2 stream, whichever HTTP/2 carries it (h2-transport-own.ts,
 * h2-transport-node.ts): the 5-byte message framing (Deframer), grpc-timeout deadlines, the
 * size limits, the status in trailers or a trailers-only answer (H2Call), and what a transport
 * gives the server (CallSink, StreamHead). The server and its services: h2-server.ts.
 */
import { describeError } from '../errors.js';
import type { WireResponse } from '../wire/messages.js';
import type { ProcessingRequest } from '../stream.js';

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

const EMPTY = Buffer.alloc(0);

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
  /** A prefix cut by a chunk's end: its first `prefixHave` bytes. */
  private readonly prefixBytes = Buffer.alloc(5);
  private prefixHave = 0;
  /** The body length of the message being read; -1 while its prefix is not complete. */
  private need = -1;
  /** A body cut by a chunk's end, copied here as it comes: one buffer, grown by doubling up to
   *  `need`. Not a list of the chunks: a body sent a few octets per DATA frame would keep a view
   *  object (~100 B) per frame, ~100× what the peer sent (an adversarial test measured it). */
  private body: Buffer | undefined;
  private have = 0;

  constructor(
    private readonly max: number,
    private readonly sink: DeframerSink,
  ) {}

  push(chunk: Buffer): void {
    let at = 0;
    const n = chunk.length;
    while (at < n) {
      if (this.need < 0) {
        let flag: number;
        let length: number;
        if (this.prefixHave === 0 && n - at >= 5) {
          flag = chunk[at]!;
          length = chunk.readUInt32BE(at + 1);
          at += 5;
        } else {
          const k = Math.min(5 - this.prefixHave, n - at);
          chunk.copy(this.prefixBytes, this.prefixHave, at, at + k);
          this.prefixHave += k;
          at += k;
          if (this.prefixHave < 5) return;
          this.prefixHave = 0;
          flag = this.prefixBytes[0]!;
          length = this.prefixBytes.readUInt32BE(1);
        }
        if (!this.prefix(flag, length)) return;
        // An empty message (all fields default) may be the last thing in the chunk.
        if (length === 0) {
          this.need = -1;
          this.sink.message(EMPTY);
          continue;
        }
      }
      const left = n - at;
      // The prefix ended the chunk: the body comes with the next.
      if (left === 0) return;
      if (this.have === 0 && left >= this.need) {
        // The common case, a body whole in the chunk: a view of it, no copy.
        const end = at + this.need;
        this.need = -1;
        this.sink.message(chunk.subarray(at, end));
        at = end;
        continue;
      }
      const k = Math.min(left, this.need - this.have);
      this.reserve(this.have + k);
      chunk.copy(this.body!, this.have, at, at + k);
      this.have += k;
      at += k;
      if (this.have === this.need) {
        const body = this.body!.subarray(0, this.have);
        this.body = undefined;
        this.have = 0;
        this.need = -1;
        this.sink.message(body);
      }
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

  /** Room for `size` body bytes: what the peer has sent, at most twice over (not `need` at once,
   *  which the peer only declares), and never past `need`. */
  private reserve(size: number): void {
    const cap = this.body?.length ?? 0;
    if (size <= cap) return;
    const grown = Buffer.allocUnsafe(Math.min(this.need, Math.max(size, cap * 2, 16 << 10)));
    if (this.body) this.body.copy(grown, 0, 0, this.have);
    this.body = grown;
  }
}

/** Encodes a message after 5 bytes left free for gRPC's message prefix (filled in by H2Call). */
export type Encode = (msg: object) => Buffer;

/** A call's end: grpc-status and, when not OK, grpc-message (and grpc-accept-encoding). */
export interface CallStatus {
  code: number;
  message?: string | undefined;
}
const OK_STATUS: CallStatus = { code: Status.OK };

/** A status as trailer fields (name, value pairs), the same for every transport. */
export function statusFields(status: CallStatus): [string, string][] {
  const fields: [string, string][] = [['grpc-status', String(status.code)]];
  if (status.message !== undefined)
    fields.push(['grpc-message', encodeGrpcMessage(status.message)]);
  if (status.code === Status.UNIMPLEMENTED) fields.push(['grpc-accept-encoding', 'identity']);
  return fields;
}

/**
 * What a call needs of its HTTP/2 stream, whichever transport carries it (node:http2 in
 * h2-transport-node.ts, Sluice's own in h2-transport-own.ts). The transport tells the call what
 * arrives through H2Call's stream* methods and cancel().
 */
export interface CallSink {
  /** Called once, by the call's constructor: the call the stream's events go to. */
  attach(call: H2Call<unknown>): void;
  /** The stream is closed or reset: nothing more can be sent. */
  readonly gone: boolean;
  /** :status 200 and content-type application/grpc. */
  sendHeaders(): void;
  /** One framed message (prefix included); false when the transport would rather not get more yet. */
  sendData(framed: Buffer): boolean;
  /** The status as trailers, after the headers and every message. */
  sendTrailers(status: CallStatus): void;
  /** The status as the only answer (trailers-only: :status 200 with the status fields). */
  sendTrailersOnly(status: CallStatus): void;
  /** Not a gRPC request: an HTTP status alone, the stream ended. */
  refuse(httpStatus: number): void;
}

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
  private timer: NodeJS.Timeout | undefined;
  private readonly deframer: Deframer;

  constructor(
    private readonly sink: CallSink,
    private readonly decode: (body: Buffer) => In,
    private readonly encode: Encode,
    private readonly maxMessageBytes: number,
    timeoutMs: number | undefined,
  ) {
    this.deframer = new Deframer(maxMessageBytes, this);
    sink.attach(this as H2Call<unknown>);
    if (timeoutMs !== undefined) {
      this.timer = setTimeout(() => {
        if (this.finished) return;
        this.end(Status.DEADLINE_EXCEEDED, 'Deadline exceeded');
        this.onCancelled?.();
      }, timeoutMs);
    }
  }

  /** A DATA payload (the transport's, not for other callers). */
  streamData(chunk: Buffer): void {
    if (!this.finished) this.deframer.push(chunk);
  }

  /** The client half-closed. */
  streamEnd(): void {
    if (!this.finished) this.onEnd?.();
  }

  /** The transport failed the stream. */
  streamError(err: Error): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
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
      this.sink.sendHeaders();
    }
    return this.sink.sendData(framed);
  }

  /** Ends the call with a status: trailers after what was sent, or a trailers-only answer. */
  end(code: number = Status.OK, message?: string): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.sink.gone) return;
    const status = code === Status.OK && message === undefined ? OK_STATUS : { code, message };
    if (!this.headersSent) {
      this.headersSent = true;
      this.sink.sendTrailersOnly(status);
    } else this.sink.sendTrailers(status);
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

/** gRPC metadata from header values: -bin values are base64, the rest strings; a value holding
 *  commas is several (node:http2 joins repeated fields with ', '). */
export function metadataValues(key: string, values: readonly string[]): (string | Buffer)[] {
  const out: (string | Buffer)[] = [];
  const bin = key.endsWith('-bin');
  for (const v of values)
    for (const s of v.split(',')) out.push(bin ? Buffer.from(s.trim(), 'base64') : s.trim());
  return out;
}

/** What a transport hands the server for each new stream: the request's fields gRPC reads. */
export interface StreamHead {
  method: string | undefined;
  path: string | undefined;
  contentType: string | undefined;
  timeout: string | undefined;
  metadata: CallMetadata;
}

/** A transport's running listener (h2-transport-node.ts, h2-transport-own.ts). */
export interface Listening {
  address: string;
  /** Stops accepting (GOAWAY on each connection), lets open streams finish until the deadline,
   *  then cancels the rest. */
  shutdown(deadlineMs: number): Promise<void>;
}

/** Where a transport listens and what it does with each stream. */
export interface TransportOptions {
  listen: string;
  /** The listening socket failed after its bind (logged as an error). */
  serverError: (err: Error) => void;
  /** One connection failed (logged at debug: a client's broken connection is not ours). */
  connectionError: (err: Error) => void;
  /** A stream's head: it gets a call (or is refused) here, synchronously. */
  open(sink: CallSink, head: StreamHead): void;
}
