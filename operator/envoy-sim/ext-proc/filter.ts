// One ext_proc HTTP filter instance (one HTTP request), modelled on Envoy's ext_proc filter
// (ext_proc.cc): it opens the gRPC stream lazily, sends each direction's messages, routes every
// answer to its direction (processor-state.ts), and turns errors, timeouts and immediate
// responses into local replies. Envoy's filter-manager effects (StopIteration, buffering,
// continue) are folded into "release" events: what the next filter (router / downstream codec)
// would receive. The configuration is config.ts; the channel, client.ts.
import * as grpc from '@grpc/grpc-js';
import type { ExtProcClient } from './client.js';
import {
  PROCESS_METHOD,
  bodyModeName,
  extProcCodec,
  headerModeName,
  type HeaderSendMode,
  type PbHeaderMutation,
  type PbProcessingMode,
  type PbProtocolConfiguration,
  type PbStruct,
  type ProcessingRequest,
  type ProcessingResponse,
} from './codec.js';
import {
  compile,
  type CompiledConfig,
  type FilterConfig,
  type Phase,
  type ProcessingModeConfig,
  type Timing,
} from './config.js';
import {
  applyHeaderMutation,
  getHeader,
  removeHeader,
  setHeader,
  type HeaderList,
  type MutationContext,
} from './headers.js';
import {
  Direction,
  type LocalReply,
  type PhaseResult,
  type ReleasedChunk,
} from './processor-state.js';

const EMPTY = Buffer.alloc(0);

export class ViolationError extends Error {
  constructor(readonly violations: string[]) {
    super(`ext_proc violation: ${violations.join('; ')}`);
    this.name = 'ViolationError';
  }
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
    // In observability mode nothing waited for the server, so the filter can be done before the
    // channel is even connected: Envoy defers that close by deferred_close_timeout (ext_proc.cc
    // Filter::onDestroy, "to prevent the data loss"; 5 s by default). A 20 ms grace there cancelled
    // streams that had not started yet: the server never saw them (a hang under load).
    const grace = this.cfg.observability
      ? Math.max(this.client.closeGraceMs, this.cfg.deferredCloseTimeoutMs)
      : this.client.closeGraceMs;
    const t = setTimeout(() => call.cancel(), grace);
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
