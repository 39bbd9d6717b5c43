/**
 * The ext_proc server's calls on node:http2 (`transport: 'node'`): one CallSink per
 * ServerHttp2Stream, and the server's listener, sessions and graceful stop.
 */
import * as http2 from 'node:http2';
import { drainConnections, listenServer } from '../shared/grpc-server.js';
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

const RESPONSE_HEADERS = {
  [http2.constants.HTTP2_HEADER_STATUS]: 200,
  [http2.constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
};
const OK_TRAILERS = { 'grpc-status': '0' };
// endStream is spelled out although false is node's default: respond() copies its options and
// sets endStream on the copy, and adding that property made V8 create a hidden class (in the old
// generation) on every call: two per request, about a fifth of what went straight into the old
// generation and drove its mark-compacts (test/bench/hidden-classes.test.ts).
const RESPOND_OPTIONS = { endStream: false, waitForTrailers: true };
const END_OPTIONS = { endStream: true };

function trailerRecord(status: CallStatus): Record<string, string> {
  if (status.code === 0 && status.message === undefined) return OK_TRAILERS;
  return Object.fromEntries(statusFields(status));
}

/** A node:http2 stream as a call's sink. */
export class NodeSink implements CallSink {
  private trailers: Record<string, string> = OK_TRAILERS;

  constructor(private readonly stream: http2.ServerHttp2Stream) {}

  attach(call: H2Call<unknown>): void {
    // One listener function per event for every call (module level; `this` is the stream), not
    // five closures per call: the call is found on the stream.
    const stream = this.stream as OwnedStream;
    stream[CALL] = call;
    stream[SINK] = this;
    stream.on('data', onStreamData);
    stream.on('end', onStreamEnd);
    stream.on('wantTrailers', onWantTrailers);
    stream.on('error', onStreamError);
    stream.on('close', onStreamClose);
  }

  get gone(): boolean {
    return this.stream.destroyed || this.stream.closed;
  }

  sendHeaders(): void {
    this.stream.respond(RESPONSE_HEADERS, RESPOND_OPTIONS);
  }

  sendData(framed: Buffer): boolean {
    return this.stream.write(framed);
  }

  sendTrailers(status: CallStatus): void {
    // node asks for them ('wantTrailers') once the data before them is out.
    this.trailers = trailerRecord(status);
    this.stream.end();
  }

  sendTrailersOnly(status: CallStatus): void {
    this.stream.respond({ ...RESPONSE_HEADERS, ...trailerRecord(status) }, END_OPTIONS);
  }

  refuse(httpStatus: number): void {
    this.stream.on('error', ignore);
    this.stream.respond({ ':status': httpStatus }, END_OPTIONS);
  }

  /** 'wantTrailers' (the listener below). */
  wantsTrailers(): void {
    this.stream.sendTrailers(this.trailers);
  }
}

const CALL = Symbol('sluice.h2call');
const SINK = Symbol('sluice.h2sink');
/** The call, until the stream closes (onStreamClose). */
type OwnedStream = http2.ServerHttp2Stream & {
  [CALL]: H2Call<unknown> | undefined;
  [SINK]: NodeSink | undefined;
};

function onStreamData(this: OwnedStream, chunk: Buffer): void {
  this[CALL]?.streamData(chunk);
}
function onStreamEnd(this: OwnedStream): void {
  // A destroyed stream (its connection gone) ends its readable side too: not a half-close.
  if (this.destroyed) this[CALL]?.cancel();
  else this[CALL]?.streamEnd();
}
function onWantTrailers(this: OwnedStream): void {
  this[SINK]?.wantsTrailers();
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
  this[SINK] = undefined;
}
const ignore = (): void => undefined;

/** http2 request headers as gRPC metadata. */
class NodeMetadata implements CallMetadata {
  constructor(private readonly headers: http2.IncomingHttpHeaders) {}

  get(key: string): (string | Buffer)[] {
    const v = this.headers[key.toLowerCase()];
    if (v === undefined) return [];
    return metadataValues(key, Array.isArray(v) ? v : [String(v)]);
  }
}

const header = (v: string | string[] | undefined): string | undefined =>
  typeof v === 'string' ? v : undefined;

export async function listen(opts: TransportOptions): Promise<Listening> {
  const server = http2.createServer({
    // Message size is bounded per call; nghttp2's session memory cap would instead fail whole
    // connections under load (grpc-js turns it off for the same reason).
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
    session.on('error', opts.connectionError);
    try {
      session.setLocalWindowSize(16 << 20);
    } catch {
      // the session closed before its settings went out
    }
  });
  server.on('stream', (stream, headers) => {
    // Every stream given a call gets its 'error' listener from the sink (a second listener would
    // make the stream keep an array of them).
    opts.open(new NodeSink(stream), {
      method: header(headers[':method']),
      path: header(headers[':path']),
      contentType: header(headers['content-type']),
      timeout: header(headers['grpc-timeout']),
      metadata: new NodeMetadata(headers),
    });
  });

  const address = await listenServer(server, opts.listen, opts.serverError);
  return {
    address,
    shutdown: (deadlineMs) => {
      server.close();
      return drainConnections(
        deadlineMs,
        [...sessions].filter((s) => !s.closed && !s.destroyed),
        // GOAWAY: no new streams on this connection; the ones open may finish.
        (s, closed) => {
          s.once('close', closed);
          s.close();
        },
        // Past the deadline: what is still open is cancelled.
        () => {
          for (const s of sessions) s.destroy();
        },
      );
    },
  };
}
