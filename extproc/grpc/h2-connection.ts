/**
 * The server side of one HTTP/2 connection (RFC 9113) over a node:net socket: h2c with prior
 * knowledge only (no TLS, no HTTP/1.1 upgrade), no server push, no priorities. Written for one
 * job, the ext_proc gRPC server (h2-server.ts), so that a request costs little allocation: no
 * EventEmitter or closure per stream, small stream objects dropped from the map once closed,
 * received DATA handed on as views of the socket's chunks, frames written once per tick.
 *
 * Why not node:http2: it turns every received header value outside HPACK's static table into an
 * external string allocated in V8's old generation, and its JS layer allocates ~31 KiB per
 * request; that intake drives the full collections behind our p99 (issue 16).
 *
 * Defences against a hostile peer (each bounded, each ends in a GOAWAY or a destroyed socket,
 * never an exception out of a socket event): frames above our SETTINGS_MAX_FRAME_SIZE; a header
 * block (HEADERS + CONTINUATION) above a size or frame-count bound (CONTINUATION flood); client
 * resets above a token bucket (rapid reset, CVE-2023-44487); frames, and control frames (PING and
 * SETTINGS ACKs, RST_STREAM), piling up while the peer does not read (outbound flood,
 * CVE-2019-9512/9514/9515); empty frames, PRIORITY and WINDOW_UPDATE floods (CVE-2019-9518; the
 * last two cost little here, bounded as Envoy bounds them all: MAX_OUTBOUND_FRAMES and below);
 * DATA held for windows the peer never opens (CVE-2019-9517); a preface, first SETTINGS or header
 * block left unfinished (handshakeTimeoutMs, slowloris). Not bounded here: the number of
 * open streams (the owner's maxConcurrentStreams) and what a stream's owner queues below
 * OUTBOUND_LIMIT (the contract leaves that bound to the owner).
 */
import type { Socket } from 'node:net';
import { TransientMap } from '../shared/transient-map.js';
import { HpackDecoder, HpackError } from './hpack.js';

/** What the connection tells the owner of one stream. */
export interface StreamEvents {
  /** A DATA payload (padding removed), a view the owner may keep. Flow-control credit for it is
   *  given back by the connection itself (WINDOW_UPDATE), so the owner must bound what it keeps. */
  data(chunk: Buffer): void;
  /** The client's END_STREAM (after its last DATA). Trailers from the client, if any, are ignored. */
  end(): void;
  /** The stream ended before our END_STREAM went out: the client's RST_STREAM, a connection error,
   *  the socket closing, destroy(). At most once; never after our side ended the stream. */
  aborted(): void;
}

export interface ServerStream {
  readonly id: number;
  /** HEADERS (+CONTINUATION) with a pre-encoded block; endStream for a trailers-only answer. */
  headers(block: Buffer, endStream: boolean): void;
  /** DATA, split to the peer's SETTINGS_MAX_FRAME_SIZE and held while the stream's or the
   *  connection's send window is short (sent as WINDOW_UPDATEs arrive). The chunk is not copied
   *  when long (4 KiB and more) or held: it must not change afterwards. */
  data(chunk: Buffer): void;
  /** HEADERS with END_STREAM, after every queued DATA frame. */
  trailers(block: Buffer): void;
  /** RST_STREAM with an error code (CANCEL = 8 ...); the stream is closed at once, its queue dropped. */
  reset(code: number): void;
  /** True once the stream is closed (both sides ended, reset, or the connection gone). */
  readonly closed: boolean;
}

export interface ConnectionOptions {
  /** A new stream whose request headers were decoded and validated (RFC 9113 §8.3: pseudo-headers
   *  first, no duplicates/unknown ones, :method :scheme :path present, lowercase names, no
   *  connection-specific fields). fields: name, value alternating, in order. Returns its handler. */
  onStream(stream: ServerStream, fields: readonly string[]): StreamEvents;
  /** A connection-level failure worth a debug log line (never with header values). */
  onError?(err: Error): void;
  /** Advertised; more open streams -> RST_STREAM REFUSED_STREAM. */
  maxConcurrentStreams: number;
  /** Advertised SETTINGS_INITIAL_WINDOW_SIZE (1 MiB). */
  initialWindowSize: number;
  /** The connection receive window raised to this at start (16 MiB). */
  connectionWindowSize: number;
  /** Advertised SETTINGS_MAX_HEADER_LIST_SIZE (e.g. 64 KiB); over: stream answered 431 / reset. */
  maxHeaderListSize: number;
  /** How long (ms) a new connection may take to send its preface and first SETTINGS frame, and a
   *  header block once begun (HEADERS without END_HEADERS) to end; then the connection is closed
   *  (default HANDSHAKE_TIMEOUT_MS; 0: never). Without it a peer that connects and sends
   *  nothing, part of the preface, or half a header block holds the socket and what it buffered
   *  for ever (slowloris). An established connection with no streams is not timed out: Envoy
   *  keeps its ext_proc connection pooled between requests. */
  handshakeTimeoutMs?: number;
  /** Off (0) by default: an established connection with no open stream and no new one for this
   *  long (between once and twice it) is closed gracefully (GOAWAY NO_ERROR). Envoy pools its
   *  ext_proc connection and reuses it; closing an idle one costs the next request a connect. */
  idleTimeoutMs?: number;
}

/** HTTP/2 error codes (RFC 9113 §7). */
export const ErrorCode = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  COMPRESSION_ERROR: 9,
  ENHANCE_YOUR_CALM: 11,
} as const;

const DATA = 0;
const HEADERS = 1;
const PRIORITY = 2;
const RST_STREAM = 3;
const SETTINGS = 4;
const PUSH_PROMISE = 5;
const PING = 6;
const GOAWAY = 7;
const WINDOW_UPDATE = 8;
const CONTINUATION = 9;

const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;

const SETTINGS_HEADER_TABLE_SIZE = 1;
const SETTINGS_ENABLE_PUSH = 2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 3;
const SETTINGS_INITIAL_WINDOW_SIZE = 4;
const SETTINGS_MAX_FRAME_SIZE = 5;
const SETTINGS_MAX_HEADER_LIST_SIZE = 6;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const MAX_WINDOW = 2 ** 31 - 1;
const DEFAULT_WINDOW = 65_535;
/** Our SETTINGS_MAX_FRAME_SIZE: the protocol's default, not advertised. */
const MAX_FRAME = 16_384;
const HEADER_TABLE_SIZE = 4096;

/** A header block (HEADERS + CONTINUATIONs) may hold at most this many CONTINUATION frames: a
 *  peer sending endless (empty) CONTINUATIONs is the CONTINUATION flood (CVE-2024-27316 et al.). */
const MAX_CONTINUATIONS = 64;
/** Rapid reset (CVE-2023-44487): a token bucket of the resets a client causes, its own
 *  RST_STREAMs and the streams we reset for its errors: a burst of 1,000 refilled at 33 a second,
 *  nghttp2's defaults ("burst and rate default to 1000 and 33", nghttp2's documentation of
 *  nghttp2_option_set_stream_reset_rate_limit, which counts incoming RST_STREAMs only). */
const RESET_BURST = 1000;
const RESET_RATE_PER_MS = 33 / 1000;
/** A client's RST_STREAM spends a token only when it cancels work: our answer not yet ended, and
 *  the stream younger than this (Envoy's own rule for its downstream connections: a
 *  reset stream is premature if it lived at most overload.premature_reset_min_stream_lifetime_seconds,
 *  default 1, and had no response code; source/common/http/conn_manager_impl.cc,
 *  isPrematureRstStream, since 1.27.1). A gRPC client resets
 *  a stream whose answer came before its own END_STREAM (grpc-go sends RST_STREAM NO_ERROR for
 *  each such call), and Envoy resets an ext_proc stream when its downstream request is cancelled,
 *  often seconds into an LLM's answer; counting those would end a busy, healthy connection with
 *  ENHANCE_YOUR_CALM (the bench's grpc-go load generator did, at 500 req/s). */
const PREMATURE_RESET_MS = 1000;
/** Flood limits, each with Envoy's default for its own HTTP/2 connections
 *  (Http2ProtocolOptions in api/envoy/config/core/v3/protocol.proto; the defaults in
 *  source/common/http/utility.h, Http2::Utility::OptionsLimits; the checks in
 *  source/common/http/http2/protocol_constraints.cc, ProtocolConstraints). Envoy ends the
 *  connection on any of them (conn_manager_impl.cc, handleCodecError: "HTTP/2 codec has
 *  already sent GOAWAY"); here an inbound one is a GOAWAY ENHANCE_YOUR_CALM (RFC 9113 §7: the
 *  peer "might be generating excessive load"), an outbound one a destroyed socket (the peer is
 *  not reading: a GOAWAY would queue behind the rest).
 *
 *  Frames we queued while the peer does not read (the socket's own buffer above BACKED_UP when
 *  a batch is written; the count restarts when it drains): past MAX_OUTBOUND_FRAMES of any
 *  type (max_outbound_frames, 10000), or MAX_OUTBOUND_CONTROL_FRAMES of the ones a peer makes
 *  us send without asking for data, PING and SETTINGS ACKs and RST_STREAMs
 *  (max_outbound_control_frames, 1000), the socket is destroyed (CVE-2019-9512, -9514, -9515).
 *  Envoy counts every frame not yet written; counting only behind a backed-up socket keeps a
 *  burst this side makes at once (RST_STREAMs for 1,024 early answers, resetAnswered) from
 *  counting as a flood while the peer reads. */
const BACKED_UP = 64 * 1024;
const MAX_OUTBOUND_FRAMES = 10_000;
const MAX_OUTBOUND_CONTROL_FRAMES = 1000;
/** HEADERS, CONTINUATION and DATA frames with nothing in them (padding aside) and no
 *  END_STREAM, in a row: more than this is a flood (max_consecutive_inbound_frames_with_
 *  empty_payload, 1; CVE-2019-9518). An empty DATA with END_STREAM is how gRPC clients and
 *  Envoy half-close, and does not count. */
const MAX_EMPTY_FRAMES = 1;
/** PRIORITY frames (which we ignore) over the connection's life: more than this many per
 *  stream opened, plus one stream's worth, is a flood (max_inbound_priority_frames_per_stream,
 *  100; "max_inbound_priority_frames_per_stream * (1 + opened_streams)"). */
const MAX_PRIORITY_PER_STREAM = 100;
/** WINDOW_UPDATE frames over the connection's life: more than 5 + 2 * (streams opened + this
 *  many per DATA frame we sent) is a flood (max_inbound_window_update_frames_per_data_frame_
 *  sent, 10; the formula is ProtocolConstraints::checkInboundFrameLimits'). A client gives
 *  credit for what it received, at most one stream and one connection update per DATA frame,
 *  and may raise each stream's and the connection's window once. */
const MAX_WINDOW_UPDATES_PER_DATA = 10;
/** What the socket holds plus the DATA streams hold for the peer's windows: past this the peer
 *  is not reading, or grants no window while it keeps asking (CVE-2019-9517), and the socket is
 *  destroyed. */
const OUTBOUND_LIMIT = 64 * 1024 * 1024;
/** Recently closed stream ids remembered: late frames on one we reset are ignored (RFC 9113
 *  §5.4.2: the peer may have sent them before our RST_STREAM arrived); frames on one closed
 *  otherwise are STREAM_CLOSED. Older ids: DATA is ignored (counted and credited; it may be late
 *  DATA for a stream reset long ago, and an error would cost every stream on the connection), a
 *  HEADERS is PROTOCOL_ERROR (it may be an id the client never opened, §5.1.1). A table indexed
 *  by id (a power of two slots; client ids are consecutive odd numbers): a closed stream is
 *  forgotten once the one RECENT ids later closes, and a lookup is one read, not a scan (a
 *  scan of 512 cost ~600 ns per frame a peer repeats on a closed stream). */
const RECENT = 512;
/** A DATA payload at least this long is written as its own buffer, not copied into the batch. */
const COPY_LIMIT = 4096;
/** After a connection error the socket is ended; it is destroyed if the peer has not closed by then. */
const LINGER_MS = 1000;
/** A stream answered in full before its request ended is reset (RST_STREAM NO_ERROR) once this
 *  long (up to twice it) after our END_STREAM, unless the client ended or reset it meanwhile
 *  (localSent). */
const ANSWERED_GRACE_MS = 100;
/** ConnectionOptions.handshakeTimeoutMs by default: what an HTTP/2 client on a pod network
 *  sends in one round trip, with a wide margin for a loaded node. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Connection-specific fields a request must not carry (RFC 9113 §8.2.2). */
const CONNECTION_FIELDS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
]);
/** A field value with NUL, CR or LF, or leading or trailing whitespace (RFC 9113 §8.2.1). */
const BAD_VALUE = /[\0\r\n]|^[\t ]|[\t ]$/;

/** ":status: 431" as HPACK: literal without indexing, name index 8 (:status), 3 raw octets. */
const STATUS_431 = Buffer.from([0x08, 0x03, 0x34, 0x33, 0x31]);
/** HPACK dynamic table size update to 0, put before our next block after the peer lowered its
 *  SETTINGS_HEADER_TABLE_SIZE (RFC 7541 §4.2); we never index, so 0 always fits. */
const TABLE_SIZE_ZERO = 0x20;

// Header-block validation state (bits).
const H_METHOD = 1;
const H_SCHEME = 2;
const H_PATH = 4;
const H_AUTHORITY = 8;
const H_REGULAR = 16;
const H_MALFORMED = 32;
const H_TOO_BIG = 64;
const H_CONNECT = 128;
/** Blocks whose fields are only checked and dropped (trailers, refused streams). */
const KIND_REQUEST = 0;
const KIND_TRAILERS = 1;
const KIND_DISCARD = 2;

// How a remembered stream closed (recentlyClosed). After CLOSED (both sides ended, or the
// client's RST_STREAM) a frame on it is STREAM_CLOSED; after our RST_STREAM late frames are
// ignored (RFC 9113 §5.1: the client may have sent them before ours arrived): RESET_BY_US for a
// stream error, ANSWERED for the NO_ERROR reset after a complete answer (localSent), whose
// crossing RST_STREAM from the client cancelled nothing and spends no reset token.
const CLOSED = 1;
const RESET_BY_US = 2;
const ANSWERED = 3;

// Stream state (bits).
const S_REMOTE_ENDED = 1;
/** The owner ended our side (trailers, or headers with endStream); it may still be queued. */
const S_LOCAL_ENDED = 2;
/** Our END_STREAM went out (into the batch). */
const S_LOCAL_SENT = 4;
const S_CLOSED = 8;

class H2Stream implements ServerStream {
  events: StreamEvents | null = null;
  state = 0;
  /** The stream's send window less the peer's SETTINGS_INITIAL_WINDOW_SIZE: a new initial size
   *  moves every stream's window (RFC 9113 §6.9.2) without a walk over the open streams. */
  sendDelta = 0;
  /** Received octets not yet given back with a WINDOW_UPDATE. */
  recvUsed = 0;
  /** The request's content-length less the DATA received; -1 without one. */
  contentLeft = -1;
  /** DATA waiting for send window; the first from queueAt on. */
  queue: Buffer[] | null = null;
  queueAt = 0;
  /** Trailers waiting behind the queue. */
  pendingTrailers: Buffer | null = null;
  /** In the connection's list of streams owed a WINDOW_UPDATE after this read. */
  creditDue = false;
  /** Date.now() when the stream opened (PREMATURE_RESET_MS). */
  readonly openedAt = Date.now();
  /** The connection's answeredTick when our answer ended before the request did: a small
   *  integer, where a Date.now() in a field that held a small one boxes a number per stream
   *  (every ext_proc stream in the bench is answered before the client's END_STREAM). */
  answeredGen = 0;

  constructor(
    readonly id: number,
    private readonly conn: H2Connection,
  ) {}

  get closed(): boolean {
    return (this.state & S_CLOSED) !== 0;
  }

  headers(block: Buffer, endStream: boolean): void {
    if (this.state & (S_CLOSED | S_LOCAL_ENDED)) return;
    if (endStream) {
      this.trailers(block);
      return;
    }
    this.conn.writeHeaders(this.id, block, false);
  }

  data(chunk: Buffer): void {
    if (this.state & (S_CLOSED | S_LOCAL_ENDED) || chunk.length === 0) return;
    if (this.queue !== null) {
      this.queue.push(chunk);
      this.conn.queued(chunk.length);
      return;
    }
    this.conn.sendData(this, chunk);
  }

  trailers(block: Buffer): void {
    if (this.state & (S_CLOSED | S_LOCAL_ENDED)) return;
    this.state |= S_LOCAL_ENDED;
    if (this.queue !== null) {
      this.pendingTrailers = block;
      return;
    }
    this.conn.writeHeaders(this.id, block, true);
    this.conn.localSent(this);
  }

  reset(code: number): void {
    if (this.state & S_CLOSED) return;
    // The owner asked for it: no aborted() back.
    this.state |= S_LOCAL_ENDED;
    this.conn.resetStream(this, code);
  }
}

export class H2Connection {
  private readonly opts: ConnectionOptions;
  private readonly decoder = new HpackDecoder(HEADER_TABLE_SIZE);
  /** Open streams by id: they come and go, so a TransientMap (shared/transient-map.ts). */
  private readonly streams = new TransientMap<number, H2Stream>();
  /** Streams with DATA waiting for send window, in the order they became blocked. */
  private blocked: H2Stream[] = [];
  private readonly closeFns: (() => void)[] = [];
  /** Streams owed a WINDOW_UPDATE once the current read is processed. */
  private readonly credit: H2Stream[] = [];
  /** Streams answered in full before the request ended (S_LOCAL_SENT, still in the map) are
   *  found by a walk of the map when this timer fires, every ANSWERED_GRACE_MS while some
   *  wait. No list of them: in the bench every ext_proc stream is answered before the client's
   *  END_STREAM and ended by it within a round trip, and a list held for the grace outlived
   *  scavenges. Made on first use. */
  private answeredTimer: NodeJS.Timeout | null = null;
  private answeredArmed = false;
  /** Times the answered timer fired: a stream answered at tick k is reset at tick k + 2, between
   *  one and two ANSWERED_GRACE_MS after its answer. */
  private answeredTick = 0;
  private connCreditDue = false;

  // Input.
  private prefaceAt = 0;
  private gotSettings = false;
  /** A frame that straddles reads: its header (9 octets) then its payload. */
  private readonly head = Buffer.alloc(9);
  private headHave = 0;
  private part: Buffer | null = null;
  private partHave = 0;
  /** The header block being assembled from HEADERS + CONTINUATION (stream, flags, fragments). */
  private blockStream = 0;
  private blockFlags = 0;
  private blockBuf: Buffer | null = null;
  private blockLen = 0;
  private blockFrames = 0;
  private readonly maxBlock: number;
  /** Date.now() when the header block being assembled began (handshakeTimeoutMs). */
  private blockSince = 0;
  /** One timer per connection, for the preface and for a header block left unfinished: created
   *  once and re-armed (refresh), checked when it fires; null when handshakeTimeoutMs is 0. */
  private readonly timer: NodeJS.Timeout | null = null;
  private timerArmed = false;
  private readonly timeoutMs: number;
  /** idleTimeoutMs: one timer, re-armed each period; openedStreams when it last fired. */
  private readonly idleTimer: NodeJS.Timeout | null = null;
  private idleMark = -1;
  /** The highest client stream id seen (streams at or below it are not idle). */
  private lastStreamId = 0;
  private readonly recent = new Uint32Array(RECENT);
  private resetTokens = RESET_BURST;
  private resetStamp = Date.now();

  // Header-block decoding state (the field callback is one bound method, not a closure per block).
  private hState = 0;
  private hKind = KIND_REQUEST;
  private hSize = 0;
  private hFields: string[] | null = null;
  /** hFields for a request: one array reused (written by index, never shortened: setting its
   *  length to 0 frees the backing store), copied out at its exact length per stream. A new array
   *  grown by push reallocated its backing store twice for a dozen fields: ~530 B per request. */
  private readonly fieldScratch: string[] = [];
  private hCount = 0;
  private hContentLength = -1;
  private readonly onField: (name: string, value: string) => void;

  // Flow control.
  private readonly recvWindow: number;
  private connRecvUsed = 0;
  private connSendWindow = DEFAULT_WINDOW;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = MAX_FRAME;
  private tableSizeUpdate = false;

  // Output: frames gathered into `out` and written once per tick; long DATA payloads as their
  // own buffers (bigs), placed before offset bigAt[i] of `out`.
  private out = Buffer.allocUnsafe(16 * 1024);
  private outLen = 0;
  private readonly bigs: Buffer[] = [];
  private readonly bigAt: number[] = [];
  private flushScheduled = false;
  private readonly flushFn: () => void;
  /** Frames, and control frames, in `out` since the last flush (MAX_OUTBOUND_FRAMES). */
  private batchFrames = 0;
  private batchControl = 0;
  /** Frames, and control frames, written while the socket was backed up, until it drains. */
  private outboundBacklog = 0;
  private controlBacklog = 0;
  // Inbound flood counters (MAX_EMPTY_FRAMES, MAX_PRIORITY_PER_STREAM, MAX_WINDOW_UPDATES_PER_DATA).
  private emptyFrames = 0;
  private priorityFrames = 0;
  private windowUpdates = 0;
  private openedStreams = 0;
  private dataFramesSent = 0;
  /** DATA octets in the streams' queues. */
  private queuedBytes = 0;

  /** GOAWAY sent (close() or an error): new streams are refused. */
  private goawaySent = false;
  private goawayReceived = false;
  /** A connection error: input is ignored, the socket ends once the GOAWAY is out. */
  private failed = false;
  private socketClosed = false;
  /** The socket was ended (after the last GOAWAY'd stream, or an error). */
  private ending = false;
  private destroyed = false;

  constructor(
    private readonly socket: Socket,
    opts: ConnectionOptions,
  ) {
    this.opts = opts;
    this.recvWindow = Math.max(opts.initialWindowSize, DEFAULT_WINDOW);
    // A compressed block is never much longer than the header list it decodes to (each field
    // adds 32 to the list size and costs at least one octet); the slack covers table size
    // updates. A longer block cannot be a list we accept, and we must not hold it to decode it.
    this.maxBlock = opts.maxHeaderListSize + 16 * 1024;
    this.onField = this.field.bind(this);
    this.flushFn = this.flush.bind(this);
    this.timeoutMs = opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    if (this.timeoutMs > 0) {
      this.timer = setTimeout(this.onTimer.bind(this), this.timeoutMs).unref();
      this.timerArmed = true;
    }
    const idleMs = opts.idleTimeoutMs ?? 0;
    if (idleMs > 0) this.idleTimer = setTimeout(this.onIdleTimer.bind(this), idleMs).unref();
    socket.setNoDelay(true);
    socket.on('data', this.onData.bind(this));
    socket.on('error', this.onSocketError.bind(this));
    socket.on('close', this.onSocketClose.bind(this));
    socket.on('drain', this.onDrain.bind(this));
    this.writeSettings();
  }

  get closed(): boolean {
    return this.goawaySent || this.failed || this.socketClosed || this.destroyed;
  }

  onClose(fn: () => void): void {
    if (this.socketClosed) process.nextTick(fn);
    else this.closeFns.push(fn);
  }

  /** Graceful: GOAWAY(NO_ERROR, last stream id); open streams may finish; the socket closes when none is left. */
  close(): void {
    if (this.goawaySent || this.failed || this.socketClosed || this.destroyed) return;
    this.goawaySent = true;
    this.writeGoaway(ErrorCode.NO_ERROR);
    this.maybeFinish();
  }

  /** Now: every open stream aborted(), the socket destroyed. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.abortAll();
    this.socket.destroy();
  }

  /** handshakeTimeoutMs passed since the timer was armed: the preface or a header block stalled. */
  private onTimer(): void {
    this.timerArmed = false;
    if (this.failed || this.destroyed || this.socketClosed || this.ending) return;
    if (!this.gotSettings) {
      if (this.prefaceAt < PREFACE.length) {
        // Not HTTP/2 yet (no whole preface): no GOAWAY, as for a bad preface (RFC 9113 §3.4).
        this.report(new Error('HTTP/2 connection preface not received in time'));
        this.destroy();
      } else {
        // The preface must be followed by a SETTINGS frame (RFC 9113 §3.4).
        this.connectionError(ErrorCode.PROTOCOL_ERROR, 'first SETTINGS not received in time');
      }
      return;
    }
    if (this.blockBuf === null) return;
    if (Date.now() - this.blockSince >= this.timeoutMs) {
      // A header block must be sent whole (RFC 9113 §4.3): nothing else can use the connection
      // meanwhile, and the partial block is held. A slow CONTINUATION flood, bounded in time.
      this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'header block not completed in time');
      return;
    }
    // The handshake's firing, with a block begun since: it gets a whole period of its own.
    this.armTimer();
  }

  /** idleTimeoutMs: closes the connection if no stream was open or opened for a whole period. */
  private onIdleTimer(): void {
    if (this.closed || this.ending) return;
    if (this.streams.size === 0 && this.openedStreams === this.idleMark && this.gotSettings) {
      this.close();
      return;
    }
    this.idleMark = this.streams.size === 0 ? this.openedStreams : -1;
    this.idleTimer!.refresh();
  }

  private armTimer(): void {
    if (this.timer === null || this.timerArmed) return;
    this.timerArmed = true;
    this.timer.refresh();
  }

  // ---- input ----

  private onData(chunk: Buffer): void {
    if (this.failed || this.destroyed) return;
    try {
      this.read(chunk);
      if (!this.failed && !this.destroyed) this.giveCredit();
    } catch (err) {
      // An owner's handler threw, or a bug here: the connection cannot be trusted to be in step.
      this.report(err);
      this.connectionError(ErrorCode.INTERNAL_ERROR, 'internal error');
    }
  }

  private read(chunk: Buffer): void {
    let at = 0;
    const n = chunk.length;
    if (this.prefaceAt < PREFACE.length) {
      while (at < n && this.prefaceAt < PREFACE.length) {
        if (chunk[at++] !== PREFACE[this.prefaceAt++]) {
          this.connectionError(ErrorCode.PROTOCOL_ERROR, 'bad connection preface');
          return;
        }
      }
      if (at === n) return;
    }
    // The rest of a frame begun in an earlier read.
    if (this.headHave > 0) {
      while (this.headHave < 9 && at < n) this.head[this.headHave++] = chunk[at++]!;
      if (this.headHave < 9) return;
      if (this.part === null) {
        const length = this.head.readUIntBE(0, 3);
        if (length > MAX_FRAME) {
          this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'frame too large');
          return;
        }
        this.part = Buffer.allocUnsafe(length);
        this.partHave = 0;
      }
      const part = this.part;
      const k = Math.min(part.length - this.partHave, n - at);
      chunk.copy(part, this.partHave, at, at + k);
      this.partHave += k;
      at += k;
      if (this.partHave < part.length) return;
      this.part = null;
      this.headHave = 0;
      const h = this.head;
      this.frame(part, 0, part.length, h[3]!, h[4]!, h.readUInt32BE(5) & MAX_WINDOW);
      if (this.failed || this.destroyed) return;
    }
    while (n - at >= 9) {
      const length = (chunk[at]! << 16) | (chunk[at + 1]! << 8) | chunk[at + 2]!;
      if (length > MAX_FRAME) {
        this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'frame too large');
        return;
      }
      if (n - at - 9 < length) break;
      const type = chunk[at + 3]!;
      const flags = chunk[at + 4]!;
      const id = chunk.readUInt32BE(at + 5) & MAX_WINDOW;
      at += 9;
      this.frame(chunk, at, at + length, type, flags, id);
      if (this.failed || this.destroyed) return;
      at += length;
    }
    if (at < n) {
      // Only a frame that straddles reads is copied, into one buffer of its size.
      const k = Math.min(9, n - at);
      chunk.copy(this.head, 0, at, at + k);
      this.headHave = k;
      at += k;
      if (k === 9) {
        const length = this.head.readUIntBE(0, 3);
        if (length > MAX_FRAME) {
          this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'frame too large');
          return;
        }
        this.part = Buffer.allocUnsafe(length);
        this.partHave = n - at;
        chunk.copy(this.part, 0, at, n);
      }
    }
  }

  /** One whole frame, payload bytes [start, end) of buf. */
  private frame(
    buf: Buffer,
    start: number,
    end: number,
    type: number,
    flags: number,
    id: number,
  ): void {
    if (!this.gotSettings) {
      if (type !== SETTINGS || flags & ACK) {
        this.connectionError(ErrorCode.PROTOCOL_ERROR, 'first frame is not SETTINGS');
        return;
      }
      this.gotSettings = true;
    }
    if (this.blockBuf !== null && type !== CONTINUATION) {
      this.connectionError(ErrorCode.PROTOCOL_ERROR, 'frame inside a header block');
      return;
    }
    switch (type) {
      case DATA:
        this.onDataFrame(buf, start, end, flags, id);
        return;
      case HEADERS:
        this.onHeaders(buf, start, end, flags, id);
        return;
      case PRIORITY:
        if (++this.priorityFrames > MAX_PRIORITY_PER_STREAM * (1 + this.openedStreams))
          this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'PRIORITY flood');
        else if (id === 0) this.connectionError(ErrorCode.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        else if (end - start !== 5) this.streamError(id, ErrorCode.FRAME_SIZE_ERROR);
        else if ((buf.readUInt32BE(start) & MAX_WINDOW) === id)
          this.streamError(id, ErrorCode.PROTOCOL_ERROR);
        return;
      case RST_STREAM:
        this.onRstStream(buf, start, end, id);
        return;
      case SETTINGS:
        this.onSettings(buf, start, end, flags, id);
        return;
      case PUSH_PROMISE:
        this.connectionError(ErrorCode.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
        return;
      case PING:
        if (id !== 0) this.connectionError(ErrorCode.PROTOCOL_ERROR, 'PING on a stream');
        else if (end - start !== 8) this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'PING length');
        else if (!(flags & ACK)) {
          this.batchControl++;
          this.frameHead(8, PING, ACK, 0);
          this.copyOut(buf, start, end);
        }
        return;
      case GOAWAY:
        if (id !== 0) this.connectionError(ErrorCode.PROTOCOL_ERROR, 'GOAWAY on a stream');
        else if (end - start < 8) this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'GOAWAY length');
        else {
          // We start no streams, so the client's last stream id tells us nothing; its open
          // streams may finish, and it opens no more.
          this.goawayReceived = true;
          this.maybeFinish();
        }
        return;
      case WINDOW_UPDATE:
        this.onWindowUpdate(buf, start, end, id);
        return;
      case CONTINUATION:
        this.onContinuation(buf, start, end, flags, id);
        return;
      default:
        // Unknown frame types are ignored (RFC 9113 §4.1).
        return;
    }
  }

  private onDataFrame(buf: Buffer, start: number, end: number, flags: number, id: number): void {
    if (id === 0) {
      this.connectionError(ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
      return;
    }
    const length = end - start;
    let from = start;
    let to = end;
    if (flags & PADDED) {
      if (length < 1 || buf[start]! >= length) {
        this.connectionError(ErrorCode.PROTOCOL_ERROR, 'bad padding');
        return;
      }
      to -= buf[start]!;
      from++;
    }
    if (to === from && !(flags & END_STREAM)) {
      if (this.emptyFrame()) return;
    } else this.emptyFrames = 0;
    // Every DATA frame counts against the connection window, whatever its stream's state.
    this.connRecvUsed += length;
    if (this.connRecvUsed > this.opts.connectionWindowSize) {
      this.connectionError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window exceeded');
      return;
    }
    if (this.connRecvUsed >= this.opts.connectionWindowSize >>> 1) this.connCreditDue = true;
    const s = this.streams.get(id);
    if (s === undefined) {
      if (this.isIdle(id)) this.connectionError(ErrorCode.PROTOCOL_ERROR, 'DATA on an idle stream');
      else if (this.recentlyClosed(id) === CLOSED) {
        this.connectionError(ErrorCode.STREAM_CLOSED, 'DATA on a closed stream');
      }
      return;
    }
    if (s.state & S_REMOTE_ENDED) {
      this.streamError(id, ErrorCode.STREAM_CLOSED);
      return;
    }
    s.recvUsed += length;
    if (s.recvUsed > this.recvWindow) {
      this.streamError(id, ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    if (s.contentLeft >= 0) {
      s.contentLeft -= to - from;
      if (s.contentLeft < 0 || (flags & END_STREAM && s.contentLeft !== 0)) {
        // A body that disagrees with its content-length is malformed (RFC 9113 §8.1.1).
        this.streamError(id, ErrorCode.PROTOCOL_ERROR);
        return;
      }
    }
    if (to > from && s.events !== null && !(s.state & S_CLOSED))
      s.events.data(buf.subarray(from, to));
    if (s.state & S_CLOSED) return;
    if (flags & END_STREAM) {
      this.remoteEnd(s);
    } else if (s.recvUsed >= this.recvWindow >>> 1 && !s.creditDue) {
      // Credit back once half the window is used, after this read: one WINDOW_UPDATE per half
      // window at most, not per frame, and a peer overrunning its window within a read is seen.
      s.creditDue = true;
      this.credit.push(s);
    }
  }

  private onHeaders(buf: Buffer, start: number, end: number, flags: number, id: number): void {
    if (id === 0) {
      this.connectionError(ErrorCode.PROTOCOL_ERROR, 'HEADERS on stream 0');
      return;
    }
    let from = start;
    let to = end;
    if (flags & PADDED) {
      if (to - from < 1) {
        this.connectionError(ErrorCode.PROTOCOL_ERROR, 'bad padding');
        return;
      }
      to -= buf[from]!;
      from++;
    }
    if (flags & PRIORITY_FLAG) {
      from += 5;
    }
    if (to < from) {
      this.connectionError(ErrorCode.PROTOCOL_ERROR, 'bad padding');
      return;
    }
    if (to === from && !(flags & END_STREAM)) {
      if (this.emptyFrame()) return;
    } else this.emptyFrames = 0;
    if (flags & PRIORITY_FLAG && (buf.readUInt32BE(from - 5) & MAX_WINDOW) === id) {
      // A stream depending on itself (RFC 9113 §5.3.1): the block is still decoded below.
      flags |= 0x100;
    }
    if (flags & END_HEADERS) {
      this.headerBlock(buf, from, to, flags, id);
      return;
    }
    if (to - from > this.maxBlock) {
      this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'header block too large');
      return;
    }
    this.blockStream = id;
    this.blockFlags = flags;
    this.blockBuf = Buffer.allocUnsafe(Math.max(to - from, 1024));
    buf.copy(this.blockBuf, 0, from, to);
    this.blockLen = to - from;
    this.blockFrames = 0;
    // Only here (a block split over frames, rare: Envoy's blocks fit in one frame), not per frame.
    this.blockSince = Date.now();
    this.armTimer();
  }

  private onContinuation(buf: Buffer, start: number, end: number, flags: number, id: number): void {
    const block = this.blockBuf;
    if (block === null || id !== this.blockStream) {
      this.connectionError(ErrorCode.PROTOCOL_ERROR, 'CONTINUATION without HEADERS');
      return;
    }
    const len = end - start;
    if (len === 0) {
      if (this.emptyFrame()) return;
    } else this.emptyFrames = 0;
    if (++this.blockFrames > MAX_CONTINUATIONS || this.blockLen + len > this.maxBlock) {
      this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'header block too large');
      return;
    }
    let b = block;
    if (this.blockLen + len > b.length) {
      b = Buffer.allocUnsafe(Math.min(Math.max(b.length * 2, this.blockLen + len), this.maxBlock));
      block.copy(b, 0, 0, this.blockLen);
      this.blockBuf = b;
    }
    buf.copy(b, this.blockLen, start, end);
    this.blockLen += len;
    if (flags & END_HEADERS) {
      this.blockBuf = null;
      this.headerBlock(b, 0, this.blockLen, this.blockFlags, id);
    }
  }

  /** A complete header block: a new stream's request, a client's trailers, or one to drop. */
  private headerBlock(buf: Buffer, start: number, end: number, flags: number, id: number): void {
    const s = this.streams.get(id);
    let kind: number;
    if (s !== undefined) {
      kind = KIND_TRAILERS;
    } else if (id > this.lastStreamId) {
      if ((id & 1) === 0) {
        this.connectionError(ErrorCode.PROTOCOL_ERROR, 'even stream id from a client');
        return;
      }
      this.lastStreamId = id;
      this.openedStreams++;
      const refuse =
        this.goawaySent ||
        this.goawayReceived ||
        this.streams.size >= this.opts.maxConcurrentStreams;
      kind = refuse ? KIND_DISCARD : KIND_REQUEST;
      if (refuse) {
        // Decoded all the same: the HPACK table must stay in step.
        if (!this.decodeBlock(buf, start, end, KIND_DISCARD)) return;
        this.streamError(id, ErrorCode.REFUSED_STREAM);
        return;
      }
    } else {
      // A closed stream: decoded all the same (HPACK state), then dropped if we reset it lately.
      if (!this.decodeBlock(buf, start, end, KIND_DISCARD)) return;
      const closed = this.recentlyClosed(id);
      if (closed === CLOSED)
        this.connectionError(ErrorCode.STREAM_CLOSED, 'HEADERS on a closed stream');
      else if (closed === 0)
        this.connectionError(ErrorCode.PROTOCOL_ERROR, 'HEADERS on an old stream id');
      return;
    }
    if (!this.decodeBlock(buf, start, end, kind)) return;
    if (kind === KIND_TRAILERS) {
      const st = s!;
      if (st.state & S_REMOTE_ENDED) {
        this.streamError(id, ErrorCode.STREAM_CLOSED);
      } else if (!(flags & END_STREAM) || this.hState & H_MALFORMED || flags & 0x100) {
        this.streamError(id, ErrorCode.PROTOCOL_ERROR);
      } else if (st.contentLeft > 0) {
        this.streamError(id, ErrorCode.PROTOCOL_ERROR);
      } else {
        this.remoteEnd(st);
      }
      return;
    }
    const state = this.hState;
    if (state & H_TOO_BIG) {
      // Fields over our advertised limit: answered 431 (RFC 6585), and the rest of the request,
      // if any is coming, refused with RST_STREAM NO_ERROR (RFC 9113 §8.1).
      this.writeHeaders(id, STATUS_431, true);
      if (!(flags & END_STREAM)) this.streamError(id, ErrorCode.NO_ERROR);
      return;
    }
    const required = state & H_CONNECT ? H_AUTHORITY : H_METHOD | H_SCHEME | H_PATH;
    if (
      state & H_MALFORMED ||
      (state & required) !== required ||
      (state & H_CONNECT && state & (H_SCHEME | H_PATH)) ||
      flags & 0x100 ||
      (flags & END_STREAM && this.hContentLength > 0)
    ) {
      this.streamError(id, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    const fields = this.fieldScratch.slice(0, this.hCount);
    this.hFields = null;
    const stream = new H2Stream(id, this);
    stream.contentLeft = this.hContentLength;
    // The client's END_STREAM is part of the state the owner answers in: a trailers-only answer
    // from inside onStream then closes the stream (not an early answer reset with NO_ERROR,
    // whose late frames would be let through: h2spec 5.1/5, 5.1/11, 6.1/2).
    if (flags & END_STREAM) stream.state |= S_REMOTE_ENDED;
    this.streams.set(id, stream);
    const events = this.opts.onStream(stream, fields);
    if (stream.state & S_CLOSED) return;
    stream.events = events;
    if (flags & END_STREAM) events.end();
  }

  /** Decodes a block into hState/hFields; false after a connection error (HPACK). */
  private decodeBlock(buf: Buffer, start: number, end: number, kind: number): boolean {
    this.hState = 0;
    this.hKind = kind;
    this.hSize = 0;
    this.hContentLength = -1;
    this.hCount = 0;
    this.hFields = kind === KIND_REQUEST ? this.fieldScratch : null;
    try {
      this.decoder.decode(buf, start, end, this.onField);
    } catch (err) {
      if (!(err instanceof HpackError)) throw err;
      this.hFields = null;
      this.connectionError(ErrorCode.COMPRESSION_ERROR, 'HPACK: ' + err.message);
      return false;
    }
    return true;
  }

  /** One decoded field: checked (RFC 9113 §8.2, §8.3) and, for a request, kept. */
  private field(name: string, value: string): void {
    if (this.hKind === KIND_DISCARD || this.hState & (H_MALFORMED | H_TOO_BIG)) return;
    this.hSize += name.length + value.length + 32;
    if (this.hSize > this.opts.maxHeaderListSize) {
      this.hState |= H_TOO_BIG;
      this.hFields = null;
      return;
    }
    if (name.length === 0) {
      this.hState |= H_MALFORMED;
      return;
    }
    if (name.charCodeAt(0) === 0x3a) {
      let bit: number;
      if (this.hKind === KIND_TRAILERS || this.hState & H_REGULAR) bit = 0;
      else if (name === ':method') bit = H_METHOD;
      else if (name === ':scheme') bit = H_SCHEME;
      else if (name === ':path') bit = H_PATH;
      else if (name === ':authority') bit = H_AUTHORITY;
      else bit = 0;
      if (bit === 0 || this.hState & bit) {
        this.hState |= H_MALFORMED;
        return;
      }
      if (bit === H_PATH && value.length === 0) {
        this.hState |= H_MALFORMED;
        return;
      }
      if (bit === H_METHOD && value === 'CONNECT') this.hState |= H_CONNECT;
      this.hState |= bit;
    } else {
      this.hState |= H_REGULAR;
      for (let i = 0; i < name.length; i++) {
        const c = name.charCodeAt(i);
        if (c <= 0x20 || (c >= 0x41 && c <= 0x5a) || c >= 0x7f || c === 0x3a) {
          this.hState |= H_MALFORMED;
          return;
        }
      }
      if (CONNECTION_FIELDS.has(name) || (name === 'te' && value !== 'trailers')) {
        this.hState |= H_MALFORMED;
        return;
      }
      if (name === 'content-length' && this.hKind === KIND_REQUEST) {
        const n = /^\d{1,15}$/.test(value) ? Number(value) : -1;
        if (n < 0 || (this.hContentLength >= 0 && n !== this.hContentLength)) {
          this.hState |= H_MALFORMED;
          return;
        }
        this.hContentLength = n;
      }
    }
    if (BAD_VALUE.test(value)) {
      this.hState |= H_MALFORMED;
      return;
    }
    const f = this.hFields;
    if (f !== null) {
      f[this.hCount++] = name;
      f[this.hCount++] = value;
    }
  }

  private onRstStream(buf: Buffer, start: number, end: number, id: number): void {
    if (end - start !== 4) {
      this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'RST_STREAM length');
      return;
    }
    if (id === 0 || this.isIdle(id)) {
      this.connectionError(ErrorCode.PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
      return;
    }
    const s = this.streams.get(id);
    if (s === undefined) {
      // Our RST_STREAM and the client's crossed; after its own, nothing more may come from it on
      // the stream (h2spec 5.1/8, 5.1/9). After a stream error or the owner's reset it still
      // counts as a reset (an owner resetting from onStream must not take a rapid reset past the
      // bucket); after our NO_ERROR reset of a complete answer it cancelled nothing (the rule
      // for an open stream below: our answer had ended).
      if (this.forgetResetByUs(id) === RESET_BY_US) this.spendResetToken();
      return;
    }
    if (
      (s.state & S_LOCAL_ENDED) === 0 &&
      Date.now() - s.openedAt < PREMATURE_RESET_MS &&
      !this.spendResetToken()
    )
      return;
    this.streams.delete(id);
    this.remember(id, CLOSED);
    this.dropStream(s);
  }

  /** A remembered stream we reset becomes one closed by the client: how we had reset it
   *  (RESET_BY_US, ANSWERED), or 0 if it was not remembered so. */
  private forgetResetByUs(id: number): number {
    const how = this.recentlyClosed(id);
    if (how !== RESET_BY_US && how !== ANSWERED) return 0;
    this.remember(id, CLOSED);
    return how;
  }

  private onSettings(buf: Buffer, start: number, end: number, flags: number, id: number): void {
    if (id !== 0) {
      this.connectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
      return;
    }
    if (flags & ACK) {
      if (end !== start)
        this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if ((end - start) % 6 !== 0) {
      this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS length');
      return;
    }
    // Applied once per frame, its last value: a frame of thousands of entries must not walk
    // every open stream for each.
    let initialWindow = -1;
    for (let at = start; at < end; at += 6) {
      const key = buf.readUInt16BE(at);
      const value = buf.readUInt32BE(at + 2);
      switch (key) {
        case SETTINGS_HEADER_TABLE_SIZE:
          if (value < HEADER_TABLE_SIZE) this.tableSizeUpdate = true;
          break;
        case SETTINGS_ENABLE_PUSH:
          if (value > 1) {
            this.connectionError(ErrorCode.PROTOCOL_ERROR, 'bad SETTINGS_ENABLE_PUSH');
            return;
          }
          break;
        case SETTINGS_INITIAL_WINDOW_SIZE:
          if (value > MAX_WINDOW) {
            this.connectionError(ErrorCode.FLOW_CONTROL_ERROR, 'bad SETTINGS_INITIAL_WINDOW_SIZE');
            return;
          }
          initialWindow = value;
          break;
        case SETTINGS_MAX_FRAME_SIZE:
          if (value < MAX_FRAME || value > 0xffffff) {
            this.connectionError(ErrorCode.PROTOCOL_ERROR, 'bad SETTINGS_MAX_FRAME_SIZE');
            return;
          }
          this.peerMaxFrame = value;
          break;
        default:
          // MAX_CONCURRENT_STREAMS (we start none), MAX_HEADER_LIST_SIZE (advisory), unknown ones.
          break;
      }
    }
    let grew = false;
    if (initialWindow >= 0) {
      // Every stream's window moves by the difference (H2Stream.sendDelta), and may go negative
      // (§6.9.2). One pushed past 2^31-1 by it is not looked for (that would walk every open
      // stream per SETTINGS frame, a peer's to repeat): what we send stays within the window,
      // and the stream's next WINDOW_UPDATE finds the overflow.
      grew = initialWindow > this.peerInitialWindow;
      this.peerInitialWindow = initialWindow;
    }
    this.batchControl++;
    this.frameHead(0, SETTINGS, ACK, 0);
    // Only a larger window can unblock a stream: a flood of other SETTINGS must not walk them.
    if (grew && this.blocked.length > 0) this.pumpAll();
  }

  private onWindowUpdate(buf: Buffer, start: number, end: number, id: number): void {
    if (end - start !== 4) {
      this.connectionError(ErrorCode.FRAME_SIZE_ERROR, 'WINDOW_UPDATE length');
      return;
    }
    if (
      ++this.windowUpdates >
      5 + 2 * (this.openedStreams + MAX_WINDOW_UPDATES_PER_DATA * this.dataFramesSent)
    ) {
      this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'WINDOW_UPDATE flood');
      return;
    }
    const inc = buf.readUInt32BE(start) & MAX_WINDOW;
    if (id === 0) {
      if (inc === 0) {
        this.connectionError(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
        return;
      }
      this.connSendWindow += inc;
      if (this.connSendWindow > MAX_WINDOW) {
        this.connectionError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window overflow');
        return;
      }
      // After a pass over the blocked streams, the connection window is spent or each of them
      // waits for its own: only credit to a spent connection window can unblock one (a flood of
      // small connection WINDOW_UPDATEs must not walk them all).
      if (this.blocked.length > 0 && this.connSendWindow - inc <= 0) this.pumpAll();
      return;
    }
    const s = this.streams.get(id);
    if (s === undefined) {
      if (this.isIdle(id))
        this.connectionError(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE on an idle stream');
      return;
    }
    if (inc === 0) {
      this.streamError(id, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    s.sendDelta += inc;
    if (this.peerInitialWindow + s.sendDelta > MAX_WINDOW) {
      this.streamError(id, ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    if (s.queue !== null) {
      this.pump(s);
      if (s.queue === null) this.unblock(s);
    }
  }

  /** WINDOW_UPDATEs for what the last read consumed past half a window. */
  private giveCredit(): void {
    if (this.connCreditDue) {
      this.connCreditDue = false;
      this.writeWindowUpdate(0, this.connRecvUsed);
      this.connRecvUsed = 0;
    }
    const list = this.credit;
    if (list.length === 0) return;
    for (let i = 0; i < list.length; i++) {
      const s = list[i]!;
      s.creditDue = false;
      if (s.state & (S_CLOSED | S_REMOTE_ENDED)) continue;
      this.writeWindowUpdate(s.id, s.recvUsed);
      s.recvUsed = 0;
    }
    list.length = 0;
  }

  /** One more empty HEADERS, CONTINUATION or DATA frame without END_STREAM in a row; true
   *  (after a GOAWAY) past MAX_EMPTY_FRAMES. */
  private emptyFrame(): boolean {
    if (++this.emptyFrames <= MAX_EMPTY_FRAMES) return false;
    this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'empty frames flood');
    return true;
  }

  private isIdle(id: number): boolean {
    return id > this.lastStreamId || (id & 1) === 0;
  }

  /** CLOSED, RESET_BY_US, ANSWERED, or 0 when the id is not remembered. A slot holds a client
   *  (odd) id's half, times 4, plus how it closed: 30 + 2 bits, one Uint32Array entry. */
  private recentlyClosed(id: number): number {
    const v = this.recent[(id >>> 1) & (RECENT - 1)]!;
    return (id & 1) === 1 && v >>> 2 === id >>> 1 ? v & 3 : 0;
  }

  private spendResetToken(): boolean {
    const now = Date.now();
    this.resetTokens = Math.min(
      RESET_BURST,
      this.resetTokens + (now - this.resetStamp) * RESET_RATE_PER_MS,
    );
    this.resetStamp = now;
    if (this.resetTokens < 1) {
      this.connectionError(ErrorCode.ENHANCE_YOUR_CALM, 'too many stream resets');
      return false;
    }
    this.resetTokens--;
    return true;
  }

  private remoteEnd(s: H2Stream): void {
    s.state |= S_REMOTE_ENDED;
    // end() after the state is settled: the owner may answer from inside it.
    s.events?.end();
    if ((s.state & (S_LOCAL_SENT | S_CLOSED)) === S_LOCAL_SENT) this.closeStream(s);
  }

  // ---- streams ----

  /** A stream error (RFC 9113 §5.4.2): RST_STREAM, the stream closed, its owner told. */
  private streamError(id: number, code: number): void {
    if (code !== ErrorCode.NO_ERROR && !this.spendResetToken()) return;
    this.writeRst(id, code);
    this.remember(id, RESET_BY_US);
    const s = this.streams.get(id);
    if (s !== undefined) {
      this.streams.delete(id);
      this.dropStream(s);
    }
  }

  /** The owner's reset(). */
  resetStream(s: H2Stream, code: number): void {
    this.streams.delete(s.id);
    s.state |= S_CLOSED;
    this.clearQueue(s);
    if (this.socketClosed || this.destroyed || this.failed) return;
    this.writeRst(s.id, code);
    this.remember(s.id, RESET_BY_US);
    this.maybeFinish();
  }

  private remember(id: number, how: number): void {
    this.recent[(id >>> 1) & (RECENT - 1)] = (id >>> 1) * 4 + how;
  }

  /** Closed by the peer or an error: the owner hears aborted() unless it had ended our side. */
  private dropStream(s: H2Stream): void {
    const owed = !(s.state & S_LOCAL_ENDED);
    s.state |= S_CLOSED;
    this.clearQueue(s);
    if (owed && s.events !== null) s.events.aborted();
    s.events = null;
    this.maybeFinish();
  }

  private clearQueue(s: H2Stream): void {
    if (s.queue !== null) {
      let left = -s.queueAt;
      for (const c of s.queue) left += c.length;
      this.queuedBytes -= left;
      s.queue = null;
      s.pendingTrailers = null;
      this.unblock(s);
    }
  }

  private unblock(s: H2Stream): void {
    const i = this.blocked.indexOf(s);
    if (i >= 0) this.blocked.splice(i, 1);
  }

  private closeStream(s: H2Stream): void {
    s.state |= S_CLOSED;
    s.events = null;
    this.streams.delete(s.id);
    this.remember(s.id, CLOSED);
    this.maybeFinish();
  }

  /** Our END_STREAM is in the batch. */
  localSent(s: H2Stream): void {
    s.state |= S_LOCAL_SENT;
    if (s.state & S_REMOTE_ENDED) {
      this.closeStream(s);
      return;
    }
    // A complete answer before the request's end. The server may then ask the client to stop
    // with RST_STREAM NO_ERROR (RFC 9113 §8.1), as grpc-go's server does at once
    // (internal/transport/http2_server.go, writeStatus, v1.85: "Send a RST_STREAM after the
    // trailers if the client has not already half-closed"). Here the stream stays half-closed
    // (local) for ANSWERED_GRACE_MS first, so what the client sent with its request is still
    // checked and handed on: a content-length mismatch, trailers without END_STREAM, a
    // WINDOW_UPDATE of 0 stay stream errors (h2spec 6.9/2, 6.9.1/3, 8.1/1, 8.1.2.1/3, 8.1.2.6
    // against the ext_proc server's early 415), which after our RST_STREAM they could not be
    // (RFC 9113 §5.1: frames after it are discarded). A client that ends or resets the stream
    // on our answer (grpc-go resets it) closes it within the grace, and no reset of ours goes
    // out. Otherwise the reset (resetAnswered): the stream stops holding a slot of
    // maxConcurrentStreams, its object and its owner's state until the client ends it, which a
    // stuck or hostile one never does.
    s.answeredGen = this.answeredTick;
    if (!this.answeredArmed) {
      this.answeredArmed = true;
      if (this.answeredTimer === null)
        this.answeredTimer = setTimeout(this.sweepAnswered.bind(this), ANSWERED_GRACE_MS).unref();
      else this.answeredTimer.refresh();
    }
  }

  /** ANSWERED_GRACE_MS after an early answer: resets those due, re-arms while others wait. */
  private sweepAnswered(): void {
    this.answeredArmed = false;
    if (this.failed || this.destroyed || this.socketClosed) return;
    const tick = ++this.answeredTick;
    let waiting = false;
    // At most maxConcurrentStreams, once per period while early answers wait (deleting the
    // entry being visited is safe in a Map's iteration).
    for (const s of this.streams.values()) {
      if (!(s.state & S_LOCAL_SENT)) continue;
      if (tick - s.answeredGen < 2) {
        waiting = true;
        continue;
      }
      this.resetAnswered(s);
      if (this.failed || this.destroyed) return;
    }
    if (waiting) {
      this.answeredArmed = true;
      this.answeredTimer!.refresh();
    }
  }

  /** RST_STREAM NO_ERROR for a stream answered in full; late frames on it are then ignored
   *  (ANSWERED), the DATA among them still counted against and credited to the connection
   *  window (onDataFrame counts every DATA frame before it looks the stream up). */
  private resetAnswered(s: H2Stream): void {
    s.state |= S_CLOSED;
    s.events = null;
    this.streams.delete(s.id);
    this.writeRst(s.id, ErrorCode.NO_ERROR);
    this.remember(s.id, ANSWERED);
    this.maybeFinish();
  }

  /** DATA from a stream with nothing queued: sent as far as the windows allow, the rest queued. */
  sendData(s: H2Stream, chunk: Buffer): void {
    if (this.socketClosed || this.destroyed || this.failed) return;
    let at = 0;
    const n = chunk.length;
    while (at < n) {
      const k = Math.min(
        n - at,
        this.peerInitialWindow + s.sendDelta,
        this.connSendWindow,
        this.peerMaxFrame,
      );
      if (k <= 0) break;
      this.writeData(s.id, chunk, at, at + k);
      s.sendDelta -= k;
      this.connSendWindow -= k;
      at += k;
    }
    if (at < n) {
      s.queue = [at === 0 ? chunk : chunk.subarray(at)];
      s.queueAt = 0;
      this.blocked.push(s);
      this.queued(n - at);
    }
  }

  /** DATA octets held for the peer's windows, counted against OUTBOUND_LIMIT. */
  queued(n: number): void {
    this.queuedBytes += n;
    if (n > 0 && this.socket.writableLength + this.queuedBytes > OUTBOUND_LIMIT) {
      this.report(new Error('HTTP/2 peer does not read or grant window'));
      this.destroy();
    }
  }

  /** Sends what the windows allow of a stream's queue; the queue goes when empty. */
  private pump(s: H2Stream): void {
    const q = s.queue!;
    while (q.length > 0) {
      const chunk = q[0]!;
      const k = Math.min(
        chunk.length - s.queueAt,
        this.peerInitialWindow + s.sendDelta,
        this.connSendWindow,
        this.peerMaxFrame,
      );
      if (k <= 0) return;
      this.writeData(s.id, chunk, s.queueAt, s.queueAt + k);
      s.sendDelta -= k;
      this.connSendWindow -= k;
      this.queuedBytes -= k;
      s.queueAt += k;
      if (s.queueAt === chunk.length) {
        q.shift();
        s.queueAt = 0;
      }
    }
    s.queue = null;
    const trailers = s.pendingTrailers;
    if (trailers !== null) {
      s.pendingTrailers = null;
      this.writeHeaders(s.id, trailers, true);
      this.localSent(s);
    }
  }

  private pumpAll(): void {
    const list = this.blocked;
    this.blocked = [];
    for (let i = 0; i < list.length; i++) {
      const s = list[i]!;
      if (s.queue === null) continue;
      if (this.connSendWindow > 0) this.pump(s);
      if (s.queue !== null) this.blocked.push(s);
    }
  }

  // ---- the end ----

  /** A connection error: GOAWAY, every stream aborted, the socket ended once the GOAWAY is out. */
  private connectionError(code: number, why: string): void {
    if (this.failed || this.destroyed) return;
    this.failed = true;
    this.report(new Error(`HTTP/2 connection error ${code}: ${why}`));
    this.blockBuf = null;
    this.part = null;
    if (!this.socketClosed) this.writeGoaway(code);
    this.abortAll();
    this.finish();
  }

  private abortAll(): void {
    const list = [...this.streams.values()];
    this.streams.clear();
    this.blocked = [];
    this.queuedBytes = 0;
    for (const s of list) {
      const owed = !(s.state & S_LOCAL_ENDED);
      s.state |= S_CLOSED;
      s.queue = null;
      s.pendingTrailers = null;
      const events = s.events;
      s.events = null;
      if (owed && events !== null) {
        try {
          events.aborted();
        } catch (err) {
          this.report(err);
        }
      }
    }
  }

  /** After a GOAWAY (ours or the client's): the socket ends once no stream is left. */
  private maybeFinish(): void {
    if ((this.goawaySent || this.goawayReceived) && this.streams.size === 0) {
      if (!this.goawaySent && !this.failed && !this.socketClosed && !this.destroyed) {
        // The client's GOAWAY and no stream left: ours before closing (RFC 9113 §6.8, "SHOULD
        // always send a GOAWAY frame before closing a connection"), naming the last stream we
        // took (the ones refused after its GOAWAY got REFUSED_STREAM, safe to retry, §8.7).
        this.goawaySent = true;
        this.writeGoaway(ErrorCode.NO_ERROR);
      }
      this.finish();
    }
  }

  private finish(): void {
    if (this.ending || this.socketClosed || this.destroyed) return;
    this.ending = true;
    this.flush();
    this.socket.end();
    // A peer that never closes its side is not waited for.
    setTimeout(this.destroyLater.bind(this), LINGER_MS).unref();
  }

  private destroyLater(): void {
    if (!this.socketClosed) this.destroy();
  }

  /** The owner's onError, which must not throw into a socket event either. */
  private report(err: unknown): void {
    try {
      this.opts.onError?.(err instanceof Error ? err : new Error(String(err)));
    } catch {
      // nothing more to tell
    }
  }

  private onSocketError(err: Error): void {
    this.report(err);
  }

  private onSocketClose(): void {
    if (this.socketClosed) return;
    this.socketClosed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.answeredTimer !== null) clearTimeout(this.answeredTimer);
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.abortAll();
    this.outLen = 0;
    this.bigs.length = 0;
    this.bigAt.length = 0;
    for (const fn of this.closeFns.splice(0)) {
      try {
        fn();
      } catch (err) {
        this.report(err);
      }
    }
  }

  private onDrain(): void {
    this.outboundBacklog = 0;
    this.controlBacklog = 0;
  }

  // ---- output ----

  private writeSettings(): void {
    const o = this.opts;
    this.frameHead(24, SETTINGS, 0, 0);
    this.setting(SETTINGS_HEADER_TABLE_SIZE, HEADER_TABLE_SIZE);
    this.setting(SETTINGS_MAX_CONCURRENT_STREAMS, Math.min(o.maxConcurrentStreams, 2 ** 32 - 1));
    this.setting(SETTINGS_INITIAL_WINDOW_SIZE, o.initialWindowSize);
    this.setting(SETTINGS_MAX_HEADER_LIST_SIZE, o.maxHeaderListSize);
    if (o.connectionWindowSize > DEFAULT_WINDOW) {
      this.writeWindowUpdate(0, o.connectionWindowSize - DEFAULT_WINDOW);
    }
  }

  private setting(key: number, value: number): void {
    this.reserve(6);
    this.out.writeUInt16BE(key, this.outLen);
    this.out.writeUInt32BE(value, this.outLen + 2);
    this.outLen += 6;
  }

  /** HEADERS, split into CONTINUATIONs past the peer's frame size. */
  writeHeaders(id: number, block: Buffer, endStream: boolean): void {
    if (this.socketClosed || this.destroyed) return;
    let src = block;
    if (this.tableSizeUpdate) {
      this.tableSizeUpdate = false;
      src = Buffer.concat([Buffer.of(TABLE_SIZE_ZERO), block]);
    }
    const max = this.peerMaxFrame;
    let at = 0;
    let type = HEADERS;
    do {
      const k = Math.min(src.length - at, max);
      const last = at + k === src.length;
      let flags = last ? END_HEADERS : 0;
      if (type === HEADERS && endStream) flags |= END_STREAM;
      this.frameHead(k, type, flags, id);
      this.copyOut(src, at, at + k);
      at += k;
      type = CONTINUATION;
    } while (at < src.length);
  }

  private writeData(id: number, chunk: Buffer, start: number, end: number): void {
    this.dataFramesSent++;
    this.frameHead(end - start, DATA, 0, id);
    if (end - start < COPY_LIMIT) {
      this.copyOut(chunk, start, end);
    } else {
      this.bigAt.push(this.outLen);
      this.bigs.push(start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end));
    }
  }

  private writeRst(id: number, code: number): void {
    this.batchControl++;
    this.frameHead(4, RST_STREAM, 0, id);
    this.out.writeUInt32BE(code, this.outLen);
    this.outLen += 4;
  }

  private writeWindowUpdate(id: number, inc: number): void {
    this.frameHead(4, WINDOW_UPDATE, 0, id);
    this.out.writeUInt32BE(inc, this.outLen);
    this.outLen += 4;
  }

  private writeGoaway(code: number): void {
    this.frameHead(8, GOAWAY, 0, 0);
    this.out.writeUInt32BE(this.lastStreamId, this.outLen);
    this.out.writeUInt32BE(code, this.outLen + 4);
    this.outLen += 8;
  }

  /** A frame header, with room reserved for a payload of up to 8 octets after it. */
  private frameHead(length: number, type: number, flags: number, id: number): void {
    this.reserve(17);
    const o = this.out;
    let at = this.outLen;
    o[at++] = length >>> 16;
    o[at++] = (length >>> 8) & 0xff;
    o[at++] = length & 0xff;
    o[at++] = type;
    o[at++] = flags;
    o.writeUInt32BE(id, at);
    this.outLen = at + 4;
    this.batchFrames++;
    this.schedule();
  }

  private copyOut(src: Uint8Array, start: number, end: number): void {
    const n = end - start;
    this.reserve(n);
    const o = this.out;
    // No view per copy (subarray, and Buffer#copy of a part, allocate one): a whole buffer is
    // set as it is, a short part copied by hand, only a long part through a view.
    if (start === 0 && end === src.length) o.set(src, this.outLen);
    else if (n <= 64) for (let i = 0, at = this.outLen; i < n; i++) o[at + i] = src[start + i]!;
    else o.set(src.subarray(start, end), this.outLen);
    this.outLen += n;
  }

  private reserve(n: number): void {
    if (this.outLen + n <= this.out.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.out.length * 2, this.outLen + n));
    this.out.copy(grown, 0, 0, this.outLen);
    this.out = grown;
  }

  private schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(this.flushFn);
  }

  /** Everything queued this tick, in one write (or one corked writev with long DATA payloads). */
  private flush(): void {
    this.flushScheduled = false;
    const len = this.outLen;
    if (len === 0 && this.bigs.length === 0) return;
    this.outLen = 0;
    const frames = this.batchFrames;
    const control = this.batchControl;
    this.batchFrames = 0;
    this.batchControl = 0;
    const socket = this.socket;
    if (this.socketClosed || this.destroyed || socket.destroyed || !socket.writable) {
      this.bigs.length = 0;
      this.bigAt.length = 0;
      return;
    }
    if (socket.writableLength >= BACKED_UP) {
      // The peer is not reading what we sent before: this batch waits behind it.
      this.outboundBacklog += frames;
      this.controlBacklog += control;
      if (
        this.outboundBacklog > MAX_OUTBOUND_FRAMES ||
        this.controlBacklog > MAX_OUTBOUND_CONTROL_FRAMES
      ) {
        this.bigs.length = 0;
        this.bigAt.length = 0;
        this.report(
          new Error(
            this.controlBacklog > MAX_OUTBOUND_CONTROL_FRAMES
              ? 'HTTP/2 peer does not read its control frames'
              : 'HTTP/2 peer does not read its frames',
          ),
        );
        this.destroy();
        return;
      }
    }
    // A copy: the socket may hold the buffer until it is written, and `out` is reused.
    const batch = Buffer.allocUnsafe(len);
    this.out.copy(batch, 0, 0, len);
    const bigs = this.bigs;
    if (bigs.length === 0) {
      socket.write(batch);
    } else {
      socket.cork();
      let prev = 0;
      for (let i = 0; i < bigs.length; i++) {
        const cut = this.bigAt[i]!;
        if (cut > prev) socket.write(batch.subarray(prev, cut));
        socket.write(bigs[i]!);
        prev = cut;
      }
      if (len > prev) socket.write(batch.subarray(prev, len));
      bigs.length = 0;
      this.bigAt.length = 0;
      socket.uncork();
    }
    if (socket.writableLength > OUTBOUND_LIMIT) {
      this.report(new Error('HTTP/2 peer does not read'));
      this.destroy();
    }
  }
}
