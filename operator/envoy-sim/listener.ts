// The listener's socket and downstream codec. Envoy's HTTP connection manager defaults to codec
// AUTO (HttpConnectionManager.codec_type): on a plaintext connection it reads the first bytes and
// speaks HTTP/2 when they are the client connection preface ("PRI * HTTP/2.0…", h2c with prior
// knowledge), else HTTP/1.1 (ConnectionManagerUtility::determineNextProtocol /
// autoCreateCodec in source/common/http/conn_manager_utility.cc). One port serves both here too:
// each accepted socket is peeked and handed to node:http or node:http2.
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import type { DownstreamRequest, DownstreamResponse } from './proxy.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type RequestHandler = (req: DownstreamRequest, res: DownstreamResponse) => void;

/** A plaintext listener that serves HTTP/1.1 and HTTP/2 (prior knowledge) on the same port. */
export class AutoCodecListener {
  private readonly tcp: net.Server;
  private readonly h1 = http.createServer();
  private readonly h2 = http2.createServer();
  private readonly sockets = new Set<net.Socket>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();

  constructor(onRequest: RequestHandler) {
    this.h2.on('session', (session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
    });
    this.h1.on('request', (req, res) => onRequest(req, res));
    this.h2.on('request', (req, res) => {
      const [a, b] = adaptH2(req, res);
      onRequest(a, b);
    });
    // TCP_NODELAY as node:http's own server sets it by default (and as Envoy sets it on the
    // connections its codecs drive, source/common/http/codec_client.cc): without it a reply
    // written as headers then body waits on the client's delayed ACK, ~40 ms on Linux.
    this.tcp = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.tcp.once('error', reject);
      this.tcp.listen(port, host, () => resolve(this.tcp.address() as AddressInfo));
    });
  }

  /**
   * Envoy's listener drain: stops accepting, lets requests in flight (streams included) finish,
   * and closes each connection once it is idle (HTTP/2: GOAWAY, then the session ends with its
   * last stream). Resolves when every connection has ended, or after `graceMs`, when what is left
   * is reset.
   */
  async drain(graceMs: number): Promise<void> {
    const closed = new Promise<void>((r) => this.tcp.close(() => r()));
    for (const s of this.sessions) s.close();
    const deadline = Date.now() + graceMs;
    while (this.sockets.size > 0 && Date.now() < deadline) {
      // A keep-alive connection becomes idle when its response ends: close it then.
      this.h1.closeIdleConnections();
      await new Promise((r) => setTimeout(r, 25));
    }
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** Stops accepting; resolves once the open connections ended (`force`: resets them now). */
  close(force = false): Promise<void> {
    const closed = new Promise<void>((r) => this.tcp.close(() => r()));
    if (force) for (const s of this.sockets) s.destroy();
    else this.h1.closeIdleConnections();
    return closed;
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    let seen = Buffer.alloc(0);
    const sniff = (chunk: Buffer): void => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const h2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      // Undecided until the bytes either diverge from the preface or complete it.
      if (h2 && n < PREFACE.length) return;
      socket.off('data', sniff);
      socket.pause();
      if (h2) {
        // node:http2 reads a net.Socket's handle natively, past anything unshifted: hand it a
        // stream that replays the sniffed bytes first (it wraps non-socket streams itself).
        this.h2.emit('connection', replaying(socket, seen));
        return;
      }
      socket.unshift(seen);
      this.h1.emit('connection', socket);
      socket.resume();
    };
    socket.on('data', sniff);
    socket.on('error', () => socket.destroy());
  }
}

/** A duplex over `socket` whose readable side starts with `head` (bytes already read). */
function replaying(socket: net.Socket, head: Buffer): Duplex {
  const d = new Duplex({
    read: () => {
      socket.resume();
    },
    write: (chunk: Buffer, _enc, cb) => {
      socket.write(chunk, cb);
    },
    final: (cb) => {
      socket.end();
      cb();
    },
    destroy: (err, cb) => {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  d.push(head);
  socket.on('data', (chunk: Buffer) => {
    if (!d.push(chunk)) socket.pause();
  });
  socket.on('end', () => d.push(null));
  socket.on('close', () => d.destroy());
  return d;
}

/** An HTTP/2 stream as the proxy reads requests and writes responses. */
function adaptH2(
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
): [DownstreamRequest, DownstreamResponse] {
  const raw: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (!req.rawHeaders[i]!.startsWith(':')) raw.push(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  }
  const h = req.headers;
  const request: DownstreamRequest = {
    method: req.method,
    url: req.url,
    rawHeaders: raw,
    headers: {
      'content-length': h['content-length'],
      'transfer-encoding': undefined,
    },
    h2: {
      authority: String(h[':authority'] ?? h.host ?? ''),
      endStream: req.stream.endAfterHeaders,
    },
    [Symbol.asyncIterator]: () => req[Symbol.asyncIterator]() as AsyncIterator<Buffer>,
  };
  const response: DownstreamResponse = {
    get statusCode() {
      return res.statusCode;
    },
    get headersSent() {
      return res.headersSent;
    },
    get destroyed() {
      return res.stream.destroyed || res.stream.closed;
    },
    writeHead: (status, headers) => res.writeHead(status, headers),
    // Present at run time, missing from @types/node's Http2ServerResponse.
    flushHeaders: () => (res as unknown as { flushHeaders(): void }).flushHeaders(),
    write: (chunk) => res.write(chunk),
    end: (chunk) => (chunk ? res.end(chunk) : res.end()),
    // A reset of the downstream stream (RST_STREAM INTERNAL_ERROR), as Envoy resets it.
    destroy: () => res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR),
    on: (event, fn) => res.on(event, fn),
  };
  return [request, response];
}
