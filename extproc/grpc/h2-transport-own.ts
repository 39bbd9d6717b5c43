/**
 * The ext_proc server's calls on Sluice's own HTTP/2 (`transport: 'own'`, h2-connection.ts):
 * a node:net server, one H2Connection per socket, one OwnSink per stream.
 *
 * Why not node:http2 (issue 16): node makes every received header value outside HPACK's static
 * table an external string, which V8 puts straight into the old generation (~90 B each, ~1.1 KiB
 * per Envoy request over its two streams); that intake, not our code, set the cadence of full
 * collections and their 7–16 ms pauses. Here a header Envoy's encoder indexed is the same string
 * every time (hpack.ts), and a stream is one small object instead of a Duplex stream.
 */
import * as net from 'node:net';
import { drainConnections, listenServer } from '../shared/grpc-server.js';
import { H2Connection, type ServerStream, type StreamEvents } from './h2-connection.js';
import { encodeHeaderBlock } from './hpack.js';
import {
  metadataValues,
  statusFields,
  type CallMetadata,
  type CallSink,
  type CallStatus,
  type H2Call,
  type Listening,
  type TransportOptions,
} from './h2-call.js';

const RESPONSE_FIELDS: [string, string][] = [
  [':status', '200'],
  ['content-type', 'application/grpc'],
];
/** The blocks every call sends, encoded once (literal fields without indexing: no HPACK state). */
const RESPONSE_BLOCK = encodeHeaderBlock(RESPONSE_FIELDS);
const OK_TRAILERS_BLOCK = encodeHeaderBlock([['grpc-status', '0']]);
const OK_TRAILERS_ONLY_BLOCK = encodeHeaderBlock([...RESPONSE_FIELDS, ['grpc-status', '0']]);
const isOk = (s: CallStatus): boolean => s.code === 0 && s.message === undefined;

/** RST_STREAM's CANCEL (RFC 9113 §7). */
const CANCEL = 0x8;

/** One stream: the call's sink and the connection's listener for the stream. */
class OwnSink implements CallSink, StreamEvents {
  private call: H2Call<unknown> | undefined;

  constructor(private readonly stream: ServerStream) {}

  attach(call: H2Call<unknown>): void {
    this.call = call;
  }

  get gone(): boolean {
    return this.stream.closed;
  }

  sendHeaders(): void {
    this.stream.headers(RESPONSE_BLOCK, false);
  }

  sendData(framed: Buffer): boolean {
    this.stream.data(framed);
    return true;
  }

  sendTrailers(status: CallStatus): void {
    this.stream.trailers(
      isOk(status) ? OK_TRAILERS_BLOCK : encodeHeaderBlock(statusFields(status)),
    );
    this.detachIfClosed();
  }

  sendTrailersOnly(status: CallStatus): void {
    this.stream.headers(
      isOk(status)
        ? OK_TRAILERS_ONLY_BLOCK
        : encodeHeaderBlock([...RESPONSE_FIELDS, ...statusFields(status)]),
      true,
    );
    this.detachIfClosed();
  }

  refuse(httpStatus: number): void {
    this.stream.headers(encodeHeaderBlock([[':status', String(httpStatus)]]), true);
  }

  // StreamEvents, from the connection.
  data(chunk: Buffer): void {
    this.call?.streamData(chunk);
  }

  end(): void {
    this.call?.streamEnd();
    this.detachIfClosed();
  }

  aborted(): void {
    const call = this.call;
    this.call = undefined;
    call?.cancel();
  }

  /** Both sides ended: nothing more reaches the call, so the connection's stream map (until it
   *  drops the stream) does not keep the handler's state alive. */
  private detachIfClosed(): void {
    if (this.stream.closed) this.call = undefined;
  }
}

/** A stream's fields (name, value alternating) as gRPC metadata. */
class FieldMetadata implements CallMetadata {
  constructor(private readonly fields: readonly string[]) {}

  get(key: string): (string | Buffer)[] {
    const name = key.toLowerCase();
    const values: string[] = [];
    for (let i = 0; i < this.fields.length; i += 2)
      if (this.fields[i] === name) values.push(this.fields[i + 1]!);
    return values.length === 0 ? values : metadataValues(name, values);
  }
}

/** The server's limits, as advertised in SETTINGS. */
const CONNECTION = {
  // Envoy opens at most 1,024 streams to the ext_proc cluster at once unless its circuit breakers
  // say otherwise (max_requests defaults to 1024; the operator sets none), and its HTTP/2 pool
  // honours a peer's SETTINGS_MAX_CONCURRENT_STREAMS (1.22 changelog: the limit follows the
  // SETTINGS frame). The same number here never refuses Envoy, and bounds what one connection
  // can hold open (each stream's messages are bounded by the Deframer).
  maxConcurrentStreams: 1024,
  // Buffered bodies arrive as one message: windows that take one whole save round trips.
  initialWindowSize: 1 << 20,
  connectionWindowSize: 16 << 20,
  maxHeaderListSize: 64 << 10,
};

export async function listen(opts: TransportOptions): Promise<Listening> {
  const connections = new Set<H2Connection>();
  const onError = opts.connectionError;
  const onStream = (stream: ServerStream, fields: readonly string[]): StreamEvents => {
    const sink = new OwnSink(stream);
    let method: string | undefined;
    let path: string | undefined;
    let contentType: string | undefined;
    let timeout: string | undefined;
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i];
      const value = fields[i + 1];
      if (name === ':method') method = value;
      else if (name === ':path') path = value;
      else if (name === 'content-type') contentType ??= value;
      else if (name === 'grpc-timeout') timeout ??= value;
    }
    try {
      opts.open(sink, { method, path, contentType, timeout, metadata: new FieldMetadata(fields) });
    } catch (err) {
      // A throw from a handler must not take the connection down with it.
      onError(err as Error);
      if (!stream.closed) stream.reset(CANCEL);
    }
    return sink;
  };
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    const conn = new H2Connection(socket, { ...CONNECTION, onStream, onError });
    connections.add(conn);
    conn.onClose(() => connections.delete(conn));
  });

  const address = await listenServer(server, opts.listen, opts.serverError);
  return {
    address,
    shutdown: (deadlineMs) => {
      server.close();
      return drainConnections(
        deadlineMs,
        [...connections].filter((c) => !c.closed),
        // GOAWAY: no new streams on this connection; the ones open may finish.
        (c, closed) => {
          c.onClose(closed);
          c.close();
        },
        // Past the deadline: what is still open is cancelled.
        () => {
          for (const c of connections) c.destroy();
        },
      );
    },
  };
}
