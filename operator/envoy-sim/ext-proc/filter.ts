// One ext_proc HTTP filter instance (one HTTP request), modelled on Envoy's ext_proc filter:
// the per-direction state machine of processor_state.cc and the stream handling of
// ext_proc.cc. Envoy's filter-manager effects (StopIteration, buffering, continue) are folded
// into "release" events: what the next filter (router / downstream codec) would receive.
import * as grpc from '@grpc/grpc-js';
import {
  PROCESS_METHOD,
  bodyModeName,
  extProcCodec,
  headerModeName,
  type BodySendMode,
  type HeaderSendMode,
  type PbBodyMutation,
  type PbCommonResponse,
  type PbHeaderMutation,
  type PbHttpBody,
  type PbHttpHeaders,
  type PbProcessingMode,
  type PbProtocolConfiguration,
  type PbStruct,
  type PbValue,
  type ProcessingRequest,
  type ProcessingResponse,
} from './codec.js';
import {
  applyHeaderMutation,
  getHeader,
  removeHeader,
  setHeader,
  toHeaderMap,
  type HeaderList,
  type MutationContext,
} from './headers.js';
import { releaseBehaviour, type ReleaseBehaviour } from './release.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

export interface ProcessingModeConfig {
  requestHeaderMode?: HeaderSendMode;
  responseHeaderMode?: HeaderSendMode;
  requestBodyMode?: BodySendMode;
  responseBodyMode?: BodySendMode;
  requestTrailerMode?: HeaderSendMode;
  responseTrailerMode?: HeaderSendMode;
}

export interface Timing {
  phase: Phase;
  /** Round trip from writing the message to receiving its answer. */
  ms: number;
}

export type Phase =
  | 'request_headers'
  | 'request_body'
  | 'request_trailers'
  | 'response_headers'
  | 'response_body'
  | 'response_trailers';

export interface FilterConfig {
  processingMode?: ProcessingModeConfig;
  allowModeOverride?: boolean;
  failureModeAllow?: boolean;
  /** Per-direction message timeout (Envoy default 200 ms). */
  messageTimeoutMs?: number;
  /** max_message_timeout; 0 (default) makes Envoy ignore override_message_timeout. */
  maxMessageTimeoutMs?: number;
  statusOnError?: number;
  /** The listener/cluster buffer limit that bounds BUFFERED bodies (1 MiB default). */
  bufferLimitBytes?: number;
  /** Evaluated attribute values, sent as attributes["envoy.filters.http.ext_proc"]. */
  requestAttributes?: Record<string, JsonValue>;
  responseAttributes?: Record<string, JsonValue>;
  /** Forwarded dynamic metadata: namespace → struct, sent on every message. */
  metadataContext?: Record<string, Record<string, JsonValue>>;
  /** metadata_options.receiving_namespaces.untyped */
  receivingNamespaces?: string[];
  /** grpc_service.initial_metadata: arrives as gRPC call metadata. */
  initialMetadata?: Record<string, string>;
  /** The filter runs in an upstream (cluster) filter chain. */
  upstream?: boolean;
  /**
   * The Envoy release modelled (`1.<minor>`, default: the newest, release.ts). It decides what an
   * upstream filter does with a local reply (the server's immediate_response, or a fail-closed
   * error: gRPC error, message timeout, spurious or invalid answer): up to 1.36
   * Filter::sendImmediateResponse returns early when the filter is upstream, counting
   * `send_immediate_resp_upstream_ignored`; processing is over but the paused request is never
   * resumed, so the attempt hangs until the router's timeout or a reset (`stalled`). From 1.37
   * (PR #41231) the reply goes downstream through UpstreamFilterManager::sendLocalReply, as for
   * a downstream filter. It also decides whether a spurious answer fails the request
   * (ext_proc_fail_close_spurious_resp, 1.35+), whether `status_on_error` is honoured (1.36+)
   * and whether the stream is closed right after the last expected answer (1.37+).
   */
  envoyRelease?: string;
  observabilityMode?: boolean;
  /** Reject run*()/result() promises with a ViolationError at the first violation. */
  strict?: boolean;
  /** Called for every answered message; timings are also collected on the filter. */
  onTiming?: (t: Timing) => void;
}

export interface LocalReply {
  kind: 'local-reply';
  status: number;
  /** The reply as Envoy without a local_reply_config sends it. */
  headers: HeaderList;
  /**
   * The headers the reply's modify_headers produced (`:status` and the immediate response's
   * header mutation), before the content headers: the input of the HCM's local_reply_config.
   */
  modifiedHeaders: HeaderList;
  body: Buffer;
  details: string;
  grpcStatus?: number;
  /** The response direction had already released headers: Envoy would reset the stream. */
  responseStarted: boolean;
  violations: string[];
  timings: Timing[];
}

export interface Continued {
  kind: 'continue';
  /** Headers as released to the next filter (after mutations and content-length rules). */
  headers: HeaderList;
  body: Buffer;
  /** False when the message ended with its headers and no body was created. */
  hasBody: boolean;
  trailers?: HeaderList;
  /** A clear_route_cache that Envoy honoured while the router had not seen the headers. */
  routeCacheCleared: boolean;
  /** The processor was dropped (closed OK, failure_mode_allow, spurious with fail-open). */
  processorBypassed: boolean;
  violations: string[];
  timings: Timing[];
}

export type PhaseResult = Continued | LocalReply;

export interface ReleasedChunk {
  data: Buffer;
  endStream: boolean;
}

export interface DirectionObserver {
  headers?(headers: HeaderList, endStream: boolean): void;
  data?(chunk: Buffer, endStream: boolean): void;
  trailers?(trailers: HeaderList): void;
}

export class ViolationError extends Error {
  constructor(readonly violations: string[]) {
    super(`ext_proc violation: ${violations.join('; ')}`);
    this.name = 'ViolationError';
  }
}

export interface ClientOptions {
  channelOptions?: grpc.ChannelOptions;
  /** Delay between half-close and cancel of a stream the server keeps open (default 20 ms). */
  closeGraceMs?: number;
  credentials?: grpc.ChannelCredentials;
}

/** One gRPC channel to an ext_proc server, shared by any number of filters. */
export class ExtProcClient {
  readonly grpc: grpc.Client;
  /** How long after the half-close a still-open stream is cancelled. */
  readonly closeGraceMs: number;
  constructor(target: string, options: ClientOptions = {}) {
    this.closeGraceMs = options.closeGraceMs ?? 20;
    this.grpc = new grpc.Client(target, options.credentials ?? grpc.credentials.createInsecure(), {
      // BUFFERED bodies up to the buffer limit plus protobuf framing must fit in one message.
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
      ...options.channelOptions,
    });
  }
  /** Resolves once the channel is connected, so the first message timers measure the server. */
  connect(timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) =>
      this.grpc.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())),
    );
  }
  close(): void {
    this.grpc.close();
  }
}

const FILTER_NAME = 'envoy.filters.http.ext_proc';
const DEFAULT_LIMIT = 1024 * 1024;
const EMPTY = Buffer.alloc(0);

interface CompiledConfig {
  mode: Required<ProcessingModeConfig>;
  allowModeOverride: boolean;
  failureModeAllow: boolean;
  messageTimeoutMs: number;
  maxMessageTimeoutMs: number;
  statusOnError: number;
  bufferLimit: number;
  requestAttributes: Record<string, PbStruct> | undefined;
  responseAttributes: Record<string, PbStruct> | undefined;
  metadataContext: { filter_metadata?: Record<string, PbStruct> };
  receiving: ReadonlySet<string>;
  metadata: grpc.Metadata;
  upstream: boolean;
  release: ReleaseBehaviour;
  observability: boolean;
  strict: boolean;
  onTiming: ((t: Timing) => void) | undefined;
}

function toValue(v: JsonValue): PbValue {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}

function toStruct(o: Record<string, JsonValue>): PbStruct {
  const fields: Record<string, PbValue> = {};
  for (const [k, v] of Object.entries(o)) fields[k] = toValue(v);
  return { fields };
}

const compiledConfigs = new WeakMap<FilterConfig, CompiledConfig>();

// Filters are created per request; the config object is usually shared, so compile it once.
function compile(config: FilterConfig): CompiledConfig {
  const hit = compiledConfigs.get(config);
  if (hit) return hit;
  const m = config.processingMode ?? {};
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(config.initialMetadata ?? {})) metadata.set(k, v);
  const mc = config.metadataContext;
  const release = releaseBehaviour(config.envoyRelease);
  const c: CompiledConfig = {
    mode: {
      requestHeaderMode: m.requestHeaderMode ?? 'DEFAULT',
      responseHeaderMode: m.responseHeaderMode ?? 'DEFAULT',
      requestBodyMode: m.requestBodyMode ?? 'NONE',
      responseBodyMode: m.responseBodyMode ?? 'NONE',
      requestTrailerMode: m.requestTrailerMode ?? 'DEFAULT',
      responseTrailerMode: m.responseTrailerMode ?? 'DEFAULT',
    },
    allowModeOverride: config.allowModeOverride ?? false,
    failureModeAllow: config.failureModeAllow ?? false,
    messageTimeoutMs: config.messageTimeoutMs ?? 200,
    maxMessageTimeoutMs: config.maxMessageTimeoutMs ?? 0,
    // Before 1.36 gRPC and mutation errors always answer 500.
    statusOnError: release.statusOnError ? (config.statusOnError ?? 500) : 500,
    bufferLimit: config.bufferLimitBytes ?? DEFAULT_LIMIT,
    requestAttributes: config.requestAttributes
      ? { [FILTER_NAME]: toStruct(config.requestAttributes) }
      : undefined,
    responseAttributes: config.responseAttributes
      ? { [FILTER_NAME]: toStruct(config.responseAttributes) }
      : undefined,
    metadataContext: mc
      ? {
          filter_metadata: Object.fromEntries(
            Object.entries(mc).map(([ns, s]) => [ns, toStruct(s)]),
          ),
        }
      : {},
    receiving: new Set(config.receivingNamespaces ?? []),
    metadata,
    upstream: config.upstream ?? false,
    release,
    observability: config.observabilityMode ?? false,
    strict: config.strict ?? false,
    onTiming: config.onTiming,
  };
  compiledConfigs.set(config, c);
  return c;
}

type CallbackState =
  'idle' | 'headers' | 'bufferedBody' | 'streamedBody' | 'partialBody' | 'trailers';

interface QueuedChunk {
  data: Buffer;
  end: boolean;
  sentAt: number;
}

interface Waiter {
  resolve(r: PhaseResult): void;
  reject(e: Error): void;
}

/**
 * Envoy's effectiveModeOverride (PR #38254, 1.34): a header or trailer mode left DEFAULT in the
 * override keeps the filter's configured mode; body modes are always copied (unset = NONE).
 */
function effectiveModeOverride(
  o: PbProcessingMode,
  configured: Required<ProcessingModeConfig>,
): Required<ProcessingModeConfig> {
  const keep = (v: unknown, base: HeaderSendMode): HeaderSendMode => {
    const name = headerModeName(v as PbProcessingMode['request_header_mode']);
    return name === 'DEFAULT' ? base : name;
  };
  return {
    requestHeaderMode: keep(o.request_header_mode, configured.requestHeaderMode),
    responseHeaderMode: keep(o.response_header_mode, configured.responseHeaderMode),
    requestTrailerMode: keep(o.request_trailer_mode, configured.requestTrailerMode),
    responseTrailerMode: keep(o.response_trailer_mode, configured.responseTrailerMode),
    requestBodyMode: bodyModeName(o.request_body_mode),
    responseBodyMode: bodyModeName(o.response_body_mode),
  };
}

function bodyOf(m: PbBodyMutation): Buffer {
  return m.mutation === 'body' || m.body !== undefined ? (m.body ?? EMPTY) : EMPTY;
}

/** One direction (request = decoding, response = encoding) of a filter. */
export class Direction {
  readonly phaseHeaders: Phase;
  readonly phaseBody: Phase;
  readonly phaseTrailers: Phase;
  sendHeaders = true;
  bodyMode: BodySendMode = 'NONE';
  sendTrailers = false;

  private cb: CallbackState = 'idle';
  private hdrs: HeaderList | null = null;
  private headersReleased = false;
  private paused = false;
  private noBody = false;
  private completeBody = false;
  private trailersAvailable = false;
  private trailersList: HeaderList | undefined;
  private trailersReleased = false;
  private bodyReplaced = false;
  private partialDone = false;
  /** Data the filter manager holds for this filter (Envoy's bufferedData()). */
  private fm: Buffer[] | null = null;
  private fmLen = 0;
  /** Streamed chunks sent and awaiting their answers, in order. */
  private queue: QueuedChunk[] = [];
  private queueLen = 0;
  private partialLeftover: Buffer[] = [];
  private attributesSent = false;
  private evaluated: Record<string, PbStruct> | undefined;
  private sentAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerMs = 0;
  private timerArmed = false;
  private timerOverridden = false;
  private fdHeadersAnswered = false;
  private fdEndSeen = false;
  private fdTrailersPending = false;
  private out: Buffer[] = [];
  private outHasBody = false;
  private done = false;
  private waiters: Waiter[] = [];
  private headerWaiters: (() => void)[] = [];
  private observers: DirectionObserver[] = [];

  constructor(
    private readonly f: ExtProcFilter,
    readonly isRequest: boolean,
  ) {
    this.phaseHeaders = isRequest ? 'request_headers' : 'response_headers';
    this.phaseBody = isRequest ? 'request_body' : 'response_body';
    this.phaseTrailers = isRequest ? 'request_trailers' : 'response_trailers';
  }

  /**
   * Attribute values for this direction that depend on the message, in place of the config's:
   * Envoy evaluates them when it sends the direction's first message (`response.code_details` is
   * `via_upstream` for a backend's response, the reason for a local reply).
   */
  setAttributes(values: Record<string, JsonValue>): void {
    if (this.attributesSent) throw new Error('attributes set after they were sent');
    this.evaluated = { [FILTER_NAME]: toStruct(values) };
  }

  /** Receives what this filter passes on (downstream of it), as it happens. */
  observe(observer: DirectionObserver): void {
    this.observers.push(observer);
  }

  get headersSeen(): boolean {
    return this.hdrs !== null;
  }
  get finished(): boolean {
    return this.done;
  }

  setMode(mode: PbProcessingMode | Required<ProcessingModeConfig>): void {
    if ('requestHeaderMode' in mode) {
      const m = mode;
      this.sendHeaders = (this.isRequest ? m.requestHeaderMode : m.responseHeaderMode) !== 'SKIP';
      this.bodyMode = this.isRequest ? m.requestBodyMode : m.responseBodyMode;
      this.sendTrailers =
        (this.isRequest ? m.requestTrailerMode : m.responseTrailerMode) === 'SEND';
      return;
    }
    const hm = headerModeName(
      this.isRequest ? mode.request_header_mode : mode.response_header_mode,
    );
    const tm = headerModeName(
      this.isRequest ? mode.request_trailer_mode : mode.response_trailer_mode,
    );
    this.sendHeaders = hm !== 'SKIP';
    this.bodyMode = bodyModeName(this.isRequest ? mode.request_body_mode : mode.response_body_mode);
    this.sendTrailers = tm === 'SEND';
  }

  get awaitingHeaders(): boolean {
    return this.cb === 'headers';
  }

  /** The headers ended this direction's stream (Envoy's hasNoBody()). */
  get hasNoBody(): boolean {
    return this.noBody;
  }

  /** Nothing of this direction is sent to the processor (Envoy's noExternalProcess()). */
  get noExternalProcess(): boolean {
    return !this.sendHeaders && this.bodyMode === 'NONE' && !this.sendTrailers;
  }

  /** The headers as they are now, mutations applied (undefined before they arrived). */
  get currentHeaders(): HeaderList | undefined {
    return this.hdrs ?? undefined;
  }

  /**
   * Envoy's isLastBodyResponse, evaluated before the answer is handled: the chunk it answers
   * ended the stream (STREAMED), or the answer ends it (FULL_DUPLEX_STREAMED); always false in
   * BUFFERED and BUFFERED_PARTIAL.
   */
  isLastBodyAnswer(common: PbCommonResponse): boolean {
    if (this.bodyMode === 'STREAMED') {
      return this.cb === 'streamedBody' && this.queue.length > 0 && this.queue[0]!.end;
    }
    if (this.bodyMode === 'FULL_DUPLEX_STREAMED') {
      const bm = common.body_mutation;
      return bm?.mutation === 'streamed_response' && bm.streamed_response?.end_of_stream === true;
    }
    return false;
  }

  private shouldRemoveContentLength(): boolean {
    const b = this.bodyMode;
    return (
      (b === 'BUFFERED' && !this.sendHeaders) ||
      b === 'STREAMED' ||
      b === 'BUFFERED_PARTIAL' ||
      b === 'FULL_DUPLEX_STREAMED'
    );
  }

  // ---- input: what the previous filter / codec delivers -------------------------------------

  headers(headers: HeaderList, endStream: boolean): void {
    if (this.hdrs) throw new Error('headers delivered twice');
    // Envoy's filter owns its header map: mutations never reach the caller's array.
    headers = headers.map(([k, v]) => [k, v]);
    this.hdrs = headers;
    if (endStream) {
      this.noBody = true;
      this.completeBody = true;
    }
    const f = this.f;
    if (f.ended) return;
    if (f.cfg.observability) {
      if (this.sendHeaders) this.sendHeadersMessage(endStream, true);
      this.releaseHeaders();
      return;
    }
    if (f.processingComplete || !this.sendHeaders) {
      if (!f.processingComplete && this.shouldRemoveContentLength()) {
        removeHeader(headers, 'content-length');
      }
      this.releaseHeaders();
      return;
    }
    this.sendHeadersMessage(endStream, false);
    this.cb = 'headers';
    this.arm();
    this.paused = true;
    // Envoy built the message first: the server sees content-length, the next filter does not.
    if (this.shouldRemoveContentLength()) removeHeader(headers, 'content-length');
  }

  data(chunk: Buffer, endStream: boolean): void {
    if (!this.hdrs) throw new Error('data before headers');
    if (endStream) this.completeBody = true;
    const f = this.f;
    if (f.ended) return;
    if (f.cfg.observability) {
      if (this.bodyMode === 'STREAMED') this.sendBodyMessage(chunk, endStream, true);
      this.release(chunk, endStream);
      return;
    }
    if (f.processingComplete) {
      this.release(chunk, endStream);
      return;
    }
    if (this.bodyReplaced) {
      // CONTINUE_AND_REPLACE discarded the original body; only its end matters.
      if (endStream) this.release(EMPTY, true);
      return;
    }
    if (this.bodyMode === 'FULL_DUPLEX_STREAMED') {
      this.sendBodyMessage(chunk, endStream, false);
      this.arm();
      return;
    }
    if (this.cb === 'headers') {
      this.hold(chunk);
      return;
    }
    switch (this.bodyMode) {
      case 'BUFFERED': {
        if (!this.hold(chunk)) return;
        if (endStream) {
          this.sendBodyMessage(this.fmBody(), true, false);
          this.cb = 'bufferedBody';
          this.arm();
          this.paused = true;
        }
        return;
      }
      case 'STREAMED': {
        this.sendStreamedChunk(chunk, endStream);
        return;
      }
      case 'BUFFERED_PARTIAL': {
        if (this.partialDone) {
          this.release(chunk, endStream);
          return;
        }
        if (this.cb === 'partialBody') {
          this.partialLeftover.push(chunk);
          return;
        }
        this.queue.push({ data: chunk, end: endStream, sentAt: 0 });
        this.queueLen += chunk.length;
        const over = this.queueLen >= f.cfg.bufferLimit;
        if (endStream || over) this.sendPartial(endStream && !over);
        return;
      }
      default:
        this.release(chunk, endStream);
    }
  }

  trailers(trailers: HeaderList): void {
    if (!this.hdrs) throw new Error('trailers before headers');
    const bodyDelivered = this.completeBody;
    this.trailersList = trailers;
    this.completeBody = true;
    this.trailersAvailable = true;
    const f = this.f;
    if (f.ended) return;
    if (f.cfg.observability) {
      if (this.sendTrailers) this.sendTrailersMessage(true);
      this.releaseTrailers();
      return;
    }
    if (f.processingComplete) {
      this.releaseTrailers();
      return;
    }
    if (this.bodyMode === 'FULL_DUPLEX_STREAMED') {
      if (this.sendTrailers) {
        this.sendTrailersMessage(false);
        this.fdTrailersPending = true;
        this.arm();
      } else if (this.fdEndSeen) {
        this.releaseTrailers();
      }
      return;
    }
    if (this.cb !== 'idle') {
      this.paused = true;
      return;
    }
    if (!bodyDelivered && this.fm !== null && this.bodyMode === 'BUFFERED') {
      this.sendBodyMessage(this.fmBody(), false, false);
      this.cb = 'bufferedBody';
      this.arm();
      this.paused = true;
      return;
    }
    if (!bodyDelivered && this.queue.length > 0 && this.bodyMode === 'BUFFERED_PARTIAL') {
      this.sendPartial(false);
      this.paused = true;
      return;
    }
    if (!this.sendTrailers) {
      this.paused = true;
      this.continue();
      return;
    }
    this.sendTrailersMessage(false);
    this.cb = 'trailers';
    this.arm();
    this.paused = true;
  }

  /** Resolves when this direction has passed its end of stream on, or on a local reply. */
  result(): Promise<PhaseResult> {
    const f = this.f;
    if (f.strictError) return Promise.reject(f.strictError);
    if (f.reply) return Promise.resolve(f.reply);
    if (this.done) return Promise.resolve(this.continued());
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Resolves once the headers message (if any) was answered or processing stopped. */
  headersAnswered(): Promise<void> {
    if (this.cb !== 'headers' || this.f.ended) return Promise.resolve();
    return new Promise((resolve) => this.headerWaiters.push(resolve));
  }

  // ---- sending --------------------------------------------------------------------------------

  private baseRequest(observability: boolean): ProcessingRequest {
    const f = this.f;
    const msg: ProcessingRequest = { metadata_context: f.cfg.metadataContext };
    if (!this.attributesSent) {
      this.attributesSent = true;
      const attrs =
        this.evaluated ?? (this.isRequest ? f.cfg.requestAttributes : f.cfg.responseAttributes);
      if (attrs) msg.attributes = attrs;
    }
    if (observability) msg.observability_mode = true;
    return msg;
  }

  private sendHeadersMessage(endStream: boolean, observability: boolean): void {
    const msg = this.baseRequest(observability);
    const h: PbHttpHeaders = { headers: toHeaderMap(this.hdrs!) };
    // proto3 C++ never writes default values; protobufjs writes whatever is set.
    if (endStream) h.end_of_stream = true;
    if (this.isRequest) msg.request_headers = h;
    else msg.response_headers = h;
    this.f.write(msg);
  }

  private sendBodyMessage(body: Buffer, endStream: boolean, observability: boolean): void {
    const msg = this.baseRequest(observability);
    const b: PbHttpBody = body.length > 0 ? { body } : {};
    if (endStream) b.end_of_stream = true;
    if (this.isRequest) msg.request_body = b;
    else msg.response_body = b;
    this.f.write(msg);
  }

  private sendTrailersMessage(observability: boolean): void {
    const msg = this.baseRequest(observability);
    const t = { trailers: toHeaderMap(this.trailersList!) };
    if (this.isRequest) msg.request_trailers = t;
    else msg.response_trailers = t;
    this.f.write(msg);
  }

  private sendStreamedChunk(chunk: Buffer, end: boolean): void {
    this.sendBodyMessage(chunk, end, false);
    this.queue.push({ data: chunk, end, sentAt: performance.now() });
    this.queueLen += chunk.length;
    this.cb = 'streamedBody';
    this.arm();
  }

  private sendPartial(end: boolean): void {
    const data =
      this.queue.length === 1 ? this.queue[0]!.data : Buffer.concat(this.queue.map((q) => q.data));
    this.queue.length = 0;
    this.queueLen = 0;
    this.queue.push({ data, end, sentAt: 0 });
    this.sendBodyMessage(data, end, false);
    this.cb = 'partialBody';
    this.arm();
    this.paused = true;
  }

  /** Returns false when the buffer limit was exceeded and a local reply went out. */
  private hold(chunk: Buffer): boolean {
    if (this.fm === null) this.fm = [];
    this.fm.push(chunk);
    this.fmLen += chunk.length;
    if (this.bodyMode === 'BUFFERED' && this.fmLen > this.f.cfg.bufferLimit) {
      this.f.localReply(
        this.isRequest ? 413 : 500,
        this.isRequest ? 'request_payload_too_large' : 'response_payload_too_large',
      );
      return false;
    }
    return true;
  }

  private fmBody(): Buffer {
    const fm = this.fm ?? [];
    return fm.length === 1 ? fm[0]! : Buffer.concat(fm, this.fmLen);
  }

  // ---- timers ---------------------------------------------------------------------------------

  private arm(): void {
    const f = this.f;
    this.sentAt = performance.now();
    this.timerArmed = true;
    this.timerOverridden = false;
    const ms = f.cfg.messageTimeoutMs;
    if (this.timer && this.timerMs === ms) {
      this.timer.refresh();
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timerMs = ms;
    this.timer = setTimeout(() => this.onTimer(), ms);
    this.timer.unref();
  }

  private onTimer(): void {
    if (!this.timerArmed) return;
    this.timerArmed = false;
    this.f.onMessageTimeout(this);
  }

  /** Envoy stops the direction's timer whenever an answer is processed. */
  stopTimer(): void {
    this.timerArmed = false;
  }

  dispose(): void {
    this.timerArmed = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  overrideTimeout(ms: number): boolean {
    if (!this.timerArmed || this.timerOverridden) return false;
    if (this.timer) clearTimeout(this.timer);
    this.timerMs = ms;
    this.timer = setTimeout(() => this.onTimer(), ms);
    this.timer.unref();
    this.timerOverridden = true;
    return true;
  }

  private answered(phase: Phase, sentAt: number): void {
    this.f.timing(phase, performance.now() - sentAt);
  }

  // ---- answers --------------------------------------------------------------------------------

  /** Returns an error for a mutation failure, 'spurious' for an unexpected answer. */
  onHeadersAnswer(common: PbCommonResponse): string | undefined {
    if (this.cb !== 'headers') return 'spurious';
    const f = this.f;
    const replace = common.status === 'CONTINUE_AND_REPLACE' || common.status === 1;
    if (common.header_mutation) {
      const err = this.mutate(this.hdrs!, common.header_mutation, replace, this.phaseHeaders);
      if (err) return err;
    }
    this.clearRouteCache(common, this.phaseHeaders);
    this.stopTimer();
    this.answered(this.phaseHeaders, this.sentAt);
    this.cb = 'idle';
    this.notifyHeaders();
    if (replace) {
      if (common.body_mutation) {
        if (common.body_mutation.mutation === 'streamed_response') {
          f.violation(`${this.phaseHeaders}: streamed_response is not a body replacement`);
        }
        removeHeader(this.hdrs!, 'content-length');
        this.bodyReplaced = true;
        const nb = bodyOf(common.body_mutation);
        this.fm = [nb];
        this.fmLen = nb.length;
      }
      this.queue.length = 0;
      this.queueLen = 0;
      this.bodyMode = 'NONE';
      this.sendTrailers = false;
    } else {
      if (common.body_mutation) {
        f.violation(
          `${this.phaseHeaders}: body_mutation in a headers answer without CONTINUE_AND_REPLACE is ignored`,
        );
      }
      if (this.bodyMode === 'FULL_DUPLEX_STREAMED') {
        this.fdHeadersAnswered = true;
        this.releaseHeaders();
        this.paused = false;
        if (this.queue.length > 0 || !this.noBody) return undefined;
      } else if (this.noBody) {
        // nothing to send: continue below
      } else if (this.completeBody && this.bodyMode !== 'NONE') {
        if (this.fm !== null) {
          // The whole body came in while the headers were out: one message, whatever the mode.
          this.sendBodyMessage(this.fmBody(), !this.trailersAvailable, false);
          this.cb = 'bufferedBody';
          this.arm();
          return undefined;
        }
      } else if (this.bodyMode === 'BUFFERED') {
        return undefined;
      } else if (this.bodyMode === 'STREAMED') {
        if (this.fm !== null && this.fmLen > 0) {
          const data = this.fmBody();
          this.fm = null;
          this.fmLen = 0;
          this.sendStreamedChunk(data, false);
        } else {
          this.fm = null;
          this.fmLen = 0;
        }
        this.continue();
        return undefined;
      } else if (this.bodyMode === 'BUFFERED_PARTIAL') {
        if (this.fm !== null && this.fmLen > 0) {
          this.queue.push({ data: this.fmBody(), end: false, sentAt: 0 });
          this.queueLen += this.fmLen;
        }
        this.fm = null;
        this.fmLen = 0;
        if (this.queueLen >= f.cfg.bufferLimit) this.sendPartial(false);
        return undefined;
      }
      if (this.sendTrailers && this.trailersAvailable && !this.trailersReleased) {
        this.sendTrailersMessage(false);
        this.cb = 'trailers';
        this.arm();
        return undefined;
      }
    }
    this.continue();
    return undefined;
  }

  onBodyAnswer(common: PbCommonResponse): string | undefined {
    const f = this.f;
    const replace = common.status === 'CONTINUE_AND_REPLACE' || common.status === 1;
    const bm = common.body_mutation;
    if (this.bodyMode === 'FULL_DUPLEX_STREAMED' && this.cb !== 'bufferedBody') {
      return this.onFullDuplexBody(common);
    }
    if (bm?.mutation === 'streamed_response') {
      f.violation(`${this.phaseBody}: streamed_response outside FULL_DUPLEX_STREAMED is ignored`);
    }
    const applies = bm && bm.mutation !== 'streamed_response';
    let shouldContinue: boolean;
    if (this.cb === 'bufferedBody') {
      if (common.header_mutation) {
        if (!this.headersReleased) {
          const err = this.mutate(this.hdrs!, common.header_mutation, replace, this.phaseBody);
          if (err) return err;
        } else {
          f.violation(`${this.phaseBody}: header_mutation ignored, headers were already sent on`);
        }
      }
      if (applies) {
        const nb = bodyOf(bm);
        const cl = this.headersReleased ? undefined : getHeader(this.hdrs!, 'content-length');
        if (cl !== undefined && /^\d+$/.test(cl) && Number(cl) !== nb.length) {
          f.violation(
            `${this.phaseBody}: content-length ${cl} does not match the mutated body (${nb.length} bytes)`,
          );
          return 'mismatch between content length and the length of the mutated body';
        }
        this.fm = [nb];
        this.fmLen = nb.length;
      }
      this.stopTimer();
      this.answered(this.phaseBody, this.sentAt);
      this.cb = 'idle';
      shouldContinue = true;
    } else if (this.cb === 'streamedBody') {
      if (common.header_mutation) {
        f.violation(`${this.phaseBody}: header_mutation in a STREAMED body answer is ignored`);
      }
      const chunk = this.queue.shift()!;
      this.queueLen -= chunk.data.length;
      const data = applies ? bodyOf(bm) : chunk.data;
      this.stopTimer();
      this.answered(this.phaseBody, chunk.sentAt);
      if (this.queue.length === 0) this.cb = 'idle';
      if (data.length > 0 || chunk.end) this.release(data, chunk.end);
      shouldContinue = chunk.end || (this.queue.length === 0 && this.trailersAvailable);
    } else if (this.cb === 'partialBody') {
      const chunk = this.queue.shift()!;
      this.queueLen = 0;
      if (common.header_mutation) {
        if (!this.headersReleased) {
          const err = this.mutate(this.hdrs!, common.header_mutation, replace, this.phaseBody);
          if (err) return err;
        } else {
          f.violation(`${this.phaseBody}: header_mutation ignored, headers were already sent on`);
        }
      }
      const data = applies ? bodyOf(bm) : chunk.data;
      this.stopTimer();
      this.answered(this.phaseBody, this.sentAt);
      this.cb = 'idle';
      this.partialDone = true;
      this.releaseHeaders();
      this.paused = false;
      const left = this.partialLeftover;
      this.partialLeftover = [];
      const endNow =
        chunk.end || (left.length === 0 && this.completeBody && !this.trailersAvailable);
      if (data.length > 0 || endNow) this.release(data, endNow);
      for (let i = 0; i < left.length; i++) {
        const last = i === left.length - 1 && this.completeBody && !this.trailersAvailable;
        this.release(left[i]!, last);
      }
      shouldContinue = true;
    } else {
      return 'spurious';
    }
    this.clearRouteCache(common, this.phaseBody);
    if (
      this.sendTrailers &&
      this.trailersAvailable &&
      this.queue.length === 0 &&
      !this.trailersReleased
    ) {
      this.sendTrailersMessage(false);
      this.cb = 'trailers';
      this.arm();
      return undefined;
    }
    if (shouldContinue) this.continue();
    return undefined;
  }

  onTrailersAnswer(mutation: PbHeaderMutation | null | undefined): string | undefined {
    if (this.bodyMode === 'FULL_DUPLEX_STREAMED' && this.fdTrailersPending) {
      this.fdTrailersPending = false;
      if (mutation) {
        const err = this.mutate(this.trailersList!, mutation, false, this.phaseTrailers);
        if (err) return err;
      }
      this.stopTimer();
      this.answered(this.phaseTrailers, this.sentAt);
      if (this.fdEndSeen) this.releaseTrailers();
      return undefined;
    }
    if (this.cb !== 'trailers') return 'spurious';
    if (mutation) {
      const err = this.mutate(this.trailersList!, mutation, false, this.phaseTrailers);
      if (err) return err;
    }
    this.stopTimer();
    this.answered(this.phaseTrailers, this.sentAt);
    this.cb = 'idle';
    this.continue();
    return undefined;
  }

  private onFullDuplexBody(common: PbCommonResponse): string | undefined {
    const f = this.f;
    if (!this.fdHeadersAnswered) return 'spurious';
    const bm = common.body_mutation;
    if (common.header_mutation) {
      f.violation(
        `${this.phaseBody}: header_mutation in a FULL_DUPLEX_STREAMED body answer is ignored`,
      );
    }
    if (!bm || bm.mutation !== 'streamed_response') {
      f.violation(`${this.phaseBody}: FULL_DUPLEX_STREAMED answers must use streamed_response`);
      return 'spurious';
    }
    const sr = bm.streamed_response ?? {};
    const data = sr.body ?? EMPTY;
    if (data.length > 64 * 1024) {
      f.violation(
        `${this.phaseBody}: streamed_response chunk of ${data.length} bytes exceeds 64 KiB`,
      );
    }
    if (this.fdEndSeen) return 'spurious';
    this.answered(this.phaseBody, this.sentAt);
    const end = sr.end_of_stream === true;
    if (end) {
      this.fdEndSeen = true;
      if (!this.fdTrailersPending) this.stopTimer();
    }
    const endStream = end && !this.trailersAvailable;
    if (data.length > 0 || endStream) this.release(data, endStream);
    if (end && this.trailersAvailable && !this.fdTrailersPending) this.releaseTrailers();
    return undefined;
  }

  private mutate(
    target: HeaderList,
    mutation: PbHeaderMutation,
    replacing: boolean,
    where: Phase,
  ): string | undefined {
    const ctx = this.f.mutationCtx;
    ctx.replacingMessage = replacing;
    ctx.removeContentLength = target === this.hdrs && this.shouldRemoveContentLength();
    ctx.where = where;
    return applyHeaderMutation(target, mutation, ctx);
  }

  private clearRouteCache(common: PbCommonResponse, where: Phase): void {
    if (!common.clear_route_cache) return;
    const f = this.f;
    if (!this.isRequest) {
      f.violation(`${where}: clear_route_cache is ignored in the response direction`);
    } else if (f.cfg.upstream) {
      f.violation(`${where}: clear_route_cache is ignored in an upstream filter`);
    } else if (!common.header_mutation) {
      f.violation(`${where}: clear_route_cache is ignored without a header_mutation`);
    } else if (this.headersReleased) {
      f.violation(`${where}: clear_route_cache came after the router saw the headers (too late)`);
    } else {
      f.routeCacheCleared = true;
    }
  }

  // ---- releasing to the next filter -----------------------------------------------------------

  private releaseHeaders(): void {
    if (this.headersReleased) return;
    this.headersReleased = true;
    const end = this.noBody && this.fm === null && !this.trailersAvailable;
    for (const o of this.observers) o.headers?.(this.hdrs!, end);
    if (end) this.finish();
  }

  private release(data: Buffer, endStream: boolean): void {
    this.releaseHeaders();
    this.outHasBody = true;
    this.out.push(data);
    for (const o of this.observers) o.data?.(data, endStream);
    if (endStream) this.finish();
  }

  private releaseTrailers(): void {
    if (this.trailersReleased) return;
    this.releaseHeaders();
    this.trailersReleased = true;
    for (const o of this.observers) o.trailers?.(this.trailersList!);
    this.finish();
  }

  /** Envoy's continueIfNecessary plus the filter manager resuming held data. */
  continue(): void {
    if (!this.paused) return;
    this.paused = false;
    this.releaseHeaders();
    if (this.fm !== null) {
      const data = this.fmBody();
      this.fm = null;
      this.fmLen = 0;
      this.release(data, this.completeBody && !this.trailersAvailable);
    }
    if (this.trailersAvailable) this.releaseTrailers();
  }

  /**
   * Envoy's onFinishProcessorCall without a continue: timers stop and no answer is awaited any
   * more, but whatever the filter holds stays held.
   */
  finishCalls(): void {
    this.stopTimer();
    const wasHeaders = this.cb === 'headers';
    this.cb = 'idle';
    if (wasHeaders) this.notifyHeaders();
  }

  /** The processor is gone: pass on whatever is queued, unprocessed, and resume. */
  clearAsyncState(): void {
    this.stopTimer();
    const wasHeaders = this.cb === 'headers';
    this.cb = 'idle';
    if (wasHeaders) this.notifyHeaders();
    if (!this.hdrs || this.done) return;
    this.releaseHeaders();
    const pending = this.queue;
    this.queue = [];
    this.queueLen = 0;
    for (const q of pending) this.release(q.data, q.end && !this.trailersAvailable);
    for (const d of this.partialLeftover) this.release(d, false);
    this.partialLeftover = [];
    this.paused = true;
    this.continue();
    if (
      this.completeBody &&
      !this.done &&
      !this.trailersAvailable &&
      this.bodyMode === 'FULL_DUPLEX_STREAMED'
    ) {
      this.release(EMPTY, true);
    }
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.stopTimer();
    const waiters = this.waiters;
    this.waiters = [];
    if (waiters.length > 0) {
      const r = this.continued();
      for (const w of waiters) w.resolve(r);
    }
    this.f.onDirectionDone(this);
  }

  private notifyHeaders(): void {
    const hw = this.headerWaiters;
    this.headerWaiters = [];
    for (const w of hw) w();
  }

  /** Called by the filter when it stops (local reply or strict failure). */
  settle(reply: LocalReply | Error): void {
    this.notifyHeaders();
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      if (reply instanceof Error) w.reject(reply);
      else w.resolve(reply);
    }
    this.dispose();
  }

  private continued(): Continued {
    const f = this.f;
    const r: Continued = {
      kind: 'continue',
      headers: this.hdrs ?? [],
      body: this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out),
      hasBody: this.outHasBody,
      routeCacheCleared: f.routeCacheCleared,
      processorBypassed: f.processingComplete && f.bypassed,
      violations: f.violations,
      timings: f.timings,
    };
    if (this.trailersList && this.trailersReleased) r.trailers = this.trailersList;
    return r;
  }

  get responseStarted(): boolean {
    return this.headersReleased;
  }
}

export interface FilterObserver {
  localReply?(reply: LocalReply): void;
  /** An upstream filter ignored a local reply (`details` is the reply's) and holds the request. */
  stalled?(details: string): void;
}

export interface RunOptions {
  /**
   * Deliver body and trailers right after the headers, before the headers answer (as when the
   * whole request sits in one network read). Default: wait for the headers answer first, as
   * with a client that streams its body, so STREAMED chunks map 1:1 to messages.
   */
  dataWithHeaders?: boolean;
}

/** Incremental input for one direction with processed chunks as an async iterable. */
export interface StreamingPhase extends AsyncIterable<ReleasedChunk> {
  /** Released (possibly mutated) headers, or the local reply that replaced them. */
  readonly headers: Promise<HeaderList | LocalReply>;
  write(chunk: Buffer): void;
  end(lastChunk?: Buffer, trailers?: HeaderList): void;
  readonly result: Promise<PhaseResult>;
}

/**
 * One ext_proc filter instance for one HTTP request: request then response over one lazily
 * opened gRPC stream.
 */
export class ExtProcFilter {
  readonly cfg: CompiledConfig;
  readonly request: Direction;
  readonly response: Direction;
  readonly violations: string[] = [];
  readonly timings: Timing[] = [];
  /** Dynamic metadata the server set in receiving namespaces (namespace → struct). */
  readonly dynamicMetadata: Record<string, PbStruct> = {};
  routeCacheCleared = false;
  processingComplete = false;
  /** processingComplete because the processor was dropped, not because of a local reply. */
  bypassed = false;
  reply: LocalReply | undefined;
  strictError: ViolationError | undefined;
  /**
   * Set when an upstream filter ignored a local reply (see FilterConfig.upstreamLocalReplies):
   * the details of the reply it did not send. The request is held from then on; its result
   * promises settle only if later input resumes it, as in Envoy.
   */
  stalled: string | undefined;
  /** Envoy's ext_proc counters this filter incremented (names as in Envoy's stats). */
  readonly stats = { send_immediate_resp_upstream_ignored: 0 };
  readonly mutationCtx: MutationContext;

  private call: grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse> | null = null;
  private closed = false;
  private firstSent = false;
  private observer: FilterObserver | undefined;

  constructor(
    private readonly client: ExtProcClient,
    config: FilterConfig = {},
    observer?: FilterObserver,
  ) {
    this.cfg = compile(config);
    this.observer = observer;
    this.request = new Direction(this, true);
    this.response = new Direction(this, false);
    this.request.setMode(this.cfg.mode);
    this.response.setMode(this.cfg.mode);
    this.mutationCtx = {
      replacingMessage: false,
      removeContentLength: false,
      where: '',
      report: (m) => this.violation(m),
    };
  }

  /** No more input is processed: a local reply was sent or strict mode failed. */
  get ended(): boolean {
    return this.reply !== undefined || this.strictError !== undefined;
  }

  get streamOpened(): boolean {
    return this.call !== null;
  }

  // ---- convenience drivers ------------------------------------------------------------------

  runRequest(
    headers: HeaderList,
    bodyChunks: Buffer[] = [],
    trailers?: HeaderList,
    options: RunOptions = {},
  ): Promise<PhaseResult> {
    return this.run(this.request, headers, bodyChunks, trailers, options);
  }

  runResponse(
    headers: HeaderList,
    bodyChunks: Buffer[] = [],
    trailers?: HeaderList,
    options: RunOptions = {},
  ): Promise<PhaseResult> {
    return this.run(this.response, headers, bodyChunks, trailers, options);
  }

  private async run(
    d: Direction,
    headers: HeaderList,
    chunks: Buffer[],
    trailers: HeaderList | undefined,
    options: RunOptions,
  ): Promise<PhaseResult> {
    const endOnHeaders = chunks.length === 0 && !trailers;
    d.headers(headers, endOnHeaders);
    if (!endOnHeaders && !options.dataWithHeaders) await d.headersAnswered();
    for (let i = 0; i < chunks.length; i++) {
      d.data(chunks[i]!, i === chunks.length - 1 && !trailers);
    }
    if (trailers) d.trailers(trailers);
    return d.result();
  }

  streamRequest(headers: HeaderList): StreamingPhase {
    return this.stream(this.request, headers);
  }

  streamResponse(headers: HeaderList): StreamingPhase {
    return this.stream(this.response, headers);
  }

  private stream(d: Direction, headers: HeaderList): StreamingPhase {
    const items: ReleasedChunk[] = [];
    let wake: (() => void) | null = null;
    let resolveHeaders!: (h: HeaderList | LocalReply) => void;
    const headersP = new Promise<HeaderList | LocalReply>((r) => (resolveHeaders = r));
    d.observe({
      headers: (h) => resolveHeaders(h),
      data: (data, endStream) => {
        items.push({ data, endStream });
        wake?.();
      },
    });
    const result = d.result();
    let settled = false;
    result.then(
      (r) => {
        settled = true;
        if (r.kind === 'local-reply') resolveHeaders(r);
        wake?.();
      },
      () => {
        settled = true;
        wake?.();
      },
    );
    // Input must be ordered after the headers answer, like a client that streams its body.
    const usageError = (e: unknown): void => {
      this.violation(`driver usage error: ${e instanceof Error ? e.message : String(e)}`);
    };
    let input: Promise<void> = (async () => {
      d.headers(headers, false);
      await d.headersAnswered();
    })();
    void input.catch(usageError);
    const enqueue = (fn: () => void): void => {
      input = input.then(fn);
      void input.catch(usageError);
    };
    return {
      headers: headersP,
      result,
      write: (chunk) => enqueue(() => d.data(chunk, false)),
      end: (lastChunk, trailers) =>
        enqueue(() => {
          if (trailers) {
            if (lastChunk) d.data(lastChunk, false);
            d.trailers(trailers);
          } else {
            d.data(lastChunk ?? EMPTY, true);
          }
        }),
      async *[Symbol.asyncIterator]() {
        for (;;) {
          const next = items.shift();
          if (next) {
            yield next;
            if (next.endStream) return;
            continue;
          }
          if (settled || d.finished) return;
          await new Promise<void>((r) => (wake = r));
          wake = null;
        }
      },
    };
  }

  /** Ends the gRPC stream (half-close then cancel), as Envoy does when the request ends. */
  close(): void {
    this.closeStream();
    this.request.dispose();
    this.response.dispose();
  }

  // ---- internals used by Direction ----------------------------------------------------------

  write(msg: ProcessingRequest): void {
    if (this.closed) return;
    if (!this.call) this.open();
    if (!this.firstSent) {
      this.firstSent = true;
      const pc: PbProtocolConfiguration = {};
      if (this.request.bodyMode !== 'NONE') pc.request_body_mode = this.request.bodyMode;
      if (this.response.bodyMode !== 'NONE') pc.response_body_mode = this.response.bodyMode;
      msg.protocol_config = pc;
    }
    this.call!.write(msg);
  }

  private open(): void {
    const codec = extProcCodec();
    const call = this.client.grpc.makeBidiStreamRequest<ProcessingRequest, ProcessingResponse>(
      PROCESS_METHOD,
      codec.encodeRequest,
      codec.decodeResponse,
      this.cfg.metadata.clone(),
    );
    call.on('data', (m: ProcessingResponse) => this.onMessage(m));
    call.on('status', (s: grpc.StatusObject) => this.onStatus(s));
    // Errors are reported again through 'status'; without a listener they would throw.
    call.on('error', () => undefined);
    this.call = call;
  }

  private closeStream(): void {
    if (this.closed) return;
    this.closed = true;
    const call = this.call;
    if (!call) return;
    call.end();
    // Envoy resets right after the half-close, but its writes are already on the wire. grpc-js
    // may still hold queued messages (e.g. while the channel connects) and a cancel would drop
    // them, so the reset waits for a grace period unless the server ends the call first.
    const t = setTimeout(() => call.cancel(), this.client.closeGraceMs);
    t.unref();
    call.once('status', () => clearTimeout(t));
  }

  timing(phase: Phase, ms: number): void {
    const t = { phase, ms };
    this.timings.push(t);
    this.cfg.onTiming?.(t);
  }

  violation(message: string): void {
    this.violations.push(message);
    if (this.cfg.strict && !this.strictError) {
      this.strictError = new ViolationError(this.violations);
      this.processingComplete = true;
      this.closeStream();
      this.request.settle(this.strictError);
      this.response.settle(this.strictError);
    }
  }

  onDirectionDone(_d: Direction): void {
    // The last expected answer has been processed: Envoy closes its side of the stream.
    if (this.response.finished && (this.request.finished || !this.request.headersSeen)) {
      this.close();
    }
  }

  onMessageTimeout(d: Direction): void {
    if (this.processingComplete) return;
    this.violation(`${d.isRequest ? 'request' : 'response'}: message timeout exceeded`);
    if (this.cfg.failureModeAllow) {
      this.dropProcessor();
    } else {
      this.sendImmediateResponse(504, 'ext_proc_error_per-message_timeout_exceeded');
    }
  }

  private onStatus(s: grpc.StatusObject): void {
    if (this.processingComplete || this.closed) return;
    if (s.code === grpc.status.OK) {
      this.dropProcessor();
      return;
    }
    this.violation(`server failed the stream: ${grpc.status[s.code]} ${s.details}`);
    if (this.processingComplete) return;
    if (this.cfg.failureModeAllow) this.dropProcessor();
    else
      this.sendImmediateResponse(
        this.cfg.statusOnError,
        `ext_proc_error_gRPC_error_${s.code}{${s.details}}`,
      );
  }

  private dropProcessor(): void {
    this.processingComplete = true;
    this.bypassed = true;
    this.closeStream();
    this.request.clearAsyncState();
    this.response.clearAsyncState();
  }

  private onMessage(m: ProcessingResponse): void {
    if (this.cfg.observability) return;
    if (this.processingComplete) {
      if (!this.ended)
        this.violation(`answer ${m.response ?? '(none)'} after processing ended is ignored`);
      return;
    }
    if (m.override_message_timeout) {
      this.onOverrideTimeout(m.override_message_timeout);
      return;
    }
    const req = this.request;
    const res = this.response;
    if (m.mode_override) {
      if (this.cfg.allowModeOverride && (req.awaitingHeaders || res.awaitingHeaders)) {
        const mode = effectiveModeOverride(m.mode_override, this.cfg.mode);
        req.setMode(mode);
        res.setMode(mode);
      } else {
        this.violation(
          this.cfg.allowModeOverride
            ? `mode_override in a ${m.response ?? 'non'} answer outside header processing is ignored`
            : 'mode_override is ignored: allow_mode_override is false',
        );
      }
    }
    // Envoy's onReceiveMessage decides before handling the answer whether it is the last body
    // answer of its direction (isLastBodyResponse), and sets dynamic metadata before handling any
    // answer with a known oneof — an immediate response included (setDecoderDynamicMetadata
    // precedes sendImmediateResponse), so a local reply's access log and local_reply_config see it.
    const lastBody =
      m.response === 'request_body'
        ? req.isLastBodyAnswer(m.request_body?.response ?? {})
        : m.response === 'response_body'
          ? res.isLastBodyAnswer(m.response_body?.response ?? {})
          : false;
    if (m.dynamic_metadata && m.response) this.takeDynamicMetadata(m.dynamic_metadata);
    let err: string | undefined;
    let dir: Direction | undefined;
    switch (m.response) {
      case 'request_headers':
        dir = req;
        err = req.onHeadersAnswer(m.request_headers?.response ?? {});
        break;
      case 'response_headers':
        dir = res;
        err = res.onHeadersAnswer(m.response_headers?.response ?? {});
        break;
      case 'request_body':
        dir = req;
        err = req.onBodyAnswer(m.request_body?.response ?? {});
        break;
      case 'response_body':
        dir = res;
        err = res.onBodyAnswer(m.response_body?.response ?? {});
        break;
      case 'request_trailers':
        dir = req;
        err = req.onTrailersAnswer(m.request_trailers?.header_mutation);
        break;
      case 'response_trailers':
        dir = res;
        err = res.onTrailersAnswer(m.response_trailers?.header_mutation);
        break;
      case 'immediate_response':
        this.immediate(m.immediate_response ?? {});
        break;
      default:
        err = 'spurious';
    }
    if (err === 'spurious') {
      this.violation(
        m.response === 'streamed_immediate_response'
          ? 'streamed_immediate_response is not valid for these body modes'
          : m.response
            ? `spurious ${m.response} answer: no such message is awaiting an answer`
            : 'answer with no response oneof set',
      );
      if (this.processingComplete) return;
      if (this.cfg.failureModeAllow || !this.cfg.release.spuriousFailClose) this.dropProcessor();
      else this.sendImmediateResponse(this.cfg.statusOnError, 'ext_proc_error_spurious_message');
    } else if (err !== undefined && !this.ended) {
      // The mutation code already recorded the violation; handleErrorResponse answers with
      // status_on_error (500 before 1.36) whatever failure_mode_allow says.
      this.sendImmediateResponse(
        this.cfg.statusOnError,
        `${dir?.isRequest ? 'request' : 'response'}: ${err}`,
      );
    } else if (err === undefined && this.cfg.release.streamCloseOptimization) {
      this.closeIfLastAnswer(m.response, lastBody);
    }
  }

  /**
   * Envoy 1.37+ (closeGrpcStreamIfLastRespReceived): the stream is closed as soon as the answer
   * just processed was the last one this filter will ever need — never in BUFFERED or
   * BUFFERED_PARTIAL body modes, where isLastBodyResponse is always false.
   */
  private closeIfLastAnswer(kind: ProcessingResponse['response'], lastBody: boolean): void {
    if (this.closed || this.processingComplete) return;
    const req = this.request;
    const res = this.response;
    let last: boolean;
    switch (kind) {
      case 'request_headers':
        last =
          (req.hasNoBody || (req.bodyMode === 'NONE' && !req.sendTrailers)) &&
          res.noExternalProcess;
        break;
      case 'request_body':
        last = lastBody && res.noExternalProcess;
        break;
      case 'request_trailers':
        last = res.noExternalProcess;
        break;
      case 'response_headers':
        last = res.hasNoBody || (res.bodyMode === 'NONE' && !res.sendTrailers);
        break;
      case 'response_body':
        last = lastBody;
        break;
      case 'response_trailers':
        last = true;
        break;
      default:
        last = false;
    }
    if (last) this.closeStream();
  }

  private onOverrideTimeout(d: { seconds?: string | number; nanos?: number }): void {
    const ms = Number(d.seconds ?? 0) * 1000 + Math.floor((d.nanos ?? 0) / 1e6);
    const max = this.cfg.maxMessageTimeoutMs;
    if (ms < 1 || ms > max) {
      this.violation(`override_message_timeout ${ms} ms ignored (max_message_timeout ${max} ms)`);
      return;
    }
    const a = this.request.overrideTimeout(ms);
    const b = this.response.overrideTimeout(ms);
    if (!a && !b)
      this.violation('override_message_timeout ignored: no message pending or repeated');
  }

  private takeDynamicMetadata(s: PbStruct): void {
    for (const [ns, v] of Object.entries(s.fields ?? {})) {
      if (this.cfg.receiving.has(ns) && v.structValue) this.dynamicMetadata[ns] = v.structValue;
      else
        this.violation(`dynamic_metadata namespace "${ns}" is not a receiving namespace; ignored`);
    }
  }

  private immediate(ir: NonNullable<ProcessingResponse['immediate_response']>): void {
    let status = extProcCodec().httpStatus(ir.status?.code);
    if (!ir.status) {
      this.violation('immediate_response without status (required); Envoy sends 200');
      status = 200;
    } else if (!(status >= 200 && status <= 599)) {
      this.violation(`immediate_response status ${status} is invalid; Envoy sends 200`);
      status = 200;
    }
    this.sendImmediateResponse(
      status,
      ir.details ?? '',
      ir.body ?? EMPTY,
      ir.headers ?? undefined,
      ir.grpc_status?.status,
    );
  }

  /**
   * Envoy's Filter::sendImmediateResponse, which every ext_proc local reply goes through (the
   * buffer limit's is the filter manager's own and does not).
   */
  private sendImmediateResponse(
    status: number,
    details: string,
    body: Buffer = EMPTY,
    mutation?: PbHeaderMutation,
    grpcStatus?: number,
  ): void {
    if (this.cfg.upstream && !this.cfg.release.upstreamLocalReplies) {
      this.ignoreImmediateResponse(details);
      return;
    }
    this.localReply(status, details, body, mutation, grpcStatus);
  }

  /**
   * Envoy up to 1.36 in an upstream filter: the stream is closed and processing over (every path
   * set processing_complete_ and stopped the timers first), the reply is counted and dropped, and
   * nothing resumes the request the filter paused.
   */
  private ignoreImmediateResponse(details: string): void {
    if (this.ended || this.stalled !== undefined) return;
    this.stats.send_immediate_resp_upstream_ignored++;
    this.violation(
      `local reply "${details}" ignored: an upstream filter does not send immediate responses ` +
        '(send_immediate_resp_upstream_ignored); the request stalls until the router gives up',
    );
    this.processingComplete = true;
    this.stalled = details;
    this.closeStream();
    this.request.finishCalls();
    this.response.finishCalls();
    this.observer?.stalled?.(details);
  }

  localReply(
    status: number,
    details: string,
    body: Buffer = EMPTY,
    mutation?: PbHeaderMutation,
    grpcStatus?: number,
  ): void {
    if (this.ended) return;
    this.processingComplete = true;
    this.closeStream();
    // Utility::sendLocalReply: the immediate response's header mutation (modify_headers) runs on
    // a fresh map with only :status; the content headers come after (set when absent).
    const modified: HeaderList = [[':status', String(status)]];
    if (mutation) {
      const ctx = this.mutationCtx;
      ctx.replacingMessage = false;
      ctx.removeContentLength = false;
      ctx.where = 'immediate_response';
      // Envoy logs mutation failures of an immediate response and sends it anyway.
      applyHeaderMutation(modified, mutation, ctx);
    }
    const headers: HeaderList = modified.map(([k, v]) => [k, v]);
    if (body.length > 0) {
      setHeader(headers, 'content-length', String(body.length));
      if (getHeader(headers, 'content-type') === undefined) {
        setHeader(headers, 'content-type', 'text/plain');
      }
    } else {
      removeHeader(headers, 'content-length');
      removeHeader(headers, 'content-type');
    }
    const reply: LocalReply = {
      kind: 'local-reply',
      status,
      headers,
      modifiedHeaders: modified,
      body,
      details,
      responseStarted: this.response.responseStarted,
      violations: this.violations,
      timings: this.timings,
    };
    if (grpcStatus !== undefined) reply.grpcStatus = grpcStatus;
    this.reply = reply;
    this.request.settle(reply);
    this.response.settle(reply);
    this.observer?.localReply?.(reply);
  }
}
