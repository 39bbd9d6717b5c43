// One direction of an ext_proc filter (request = decoding, response = encoding), modelled on
// Envoy's processor_state.cc: which message is awaited (the callback state), the body held for
// BUFFERED and BUFFERED_PARTIAL, streamed chunks awaiting their answers, the message timer, and
// what the direction releases to the next filter. The filter (filter.ts) owns the gRPC stream and
// routes each answer to its direction.
import {
  bodyModeName,
  headerModeName,
  type BodySendMode,
  type PbBodyMutation,
  type PbCommonResponse,
  type PbHeaderMutation,
  type PbHttpBody,
  type PbHttpHeaders,
  type PbProcessingMode,
  type PbStruct,
  type ProcessingRequest,
} from './codec.js';
import {
  FILTER_NAME,
  toStruct,
  type JsonValue,
  type Phase,
  type ProcessingModeConfig,
  type Timing,
} from './config.js';
import type { ExtProcFilter } from './filter.js';
import {
  applyHeaderMutation,
  getHeader,
  removeHeader,
  toHeaderMap,
  type HeaderList,
} from './headers.js';

const EMPTY = Buffer.alloc(0);

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
