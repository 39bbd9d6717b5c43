/**
 * One ext_proc stream = one HTTP request as one filter sees it. This is only a state machine:
 * it orders messages (a FIFO per direction, because Envoy may send response messages while
 * request messages are unanswered), gets an Outcome from the phase handler, and writes exactly
 * one answer per message with the matching oneof. It keeps nothing after the stream ends.
 */
import type { Logger } from 'pino';
import { describeError, SluiceError } from './errors.js';
import type { Outcome } from './wire/mutation.js';
import type {
  Attributes,
  BodyMessage,
  HeadersMessage,
  PhaseHandler,
  ProtocolConfig,
} from './pipeline/phase.js';
import {
  reply,
  type MessageKind,
  type MutationAnswer,
  type WireResponse,
} from './wire/messages.js';

export interface ProcessingRequest {
  request?: MessageKind;
  request_headers?: HeadersMessage;
  response_headers?: HeadersMessage;
  request_body?: BodyMessage;
  response_body?: BodyMessage;
  attributes?: Attributes;
  observability_mode?: boolean;
  protocol_config?: ProtocolConfig;
}

/** The parts of a grpc-js ServerDuplexStream the state machine uses (tests pass a fake). */
export interface DuplexCall {
  on(event: 'data', fn: (msg: ProcessingRequest) => void): unknown;
  on(event: 'end' | 'cancelled', fn: () => void): unknown;
  on(event: 'error', fn: (err: Error) => void): unknown;
  /** A MutationAnswer is encoded by wire/encode.ts (encodeProcessingResponse) like a tree. */
  write(msg: WireResponse | MutationAnswer): unknown;
  end(): unknown;
}

export interface StreamObserver {
  phase(kind: MessageKind, seconds: number): void;
  opened(): void;
  closed(): void;
}

export class ExtProcStream {
  /**
   * The messages of one direction still being answered, in order; undefined when none is. A
   * message that finds its direction idle is answered at once, and without a promise when its
   * phase answers synchronously (the common case for headers and trailers): a promise chain per
   * message was a twentieth of what a request allocated (bench section lean).
   */
  private requestChain: Promise<void> | undefined;
  private responseChain: Promise<void> | undefined;
  /** After an immediate response Envoy stops; nothing more is answered. */
  private stopped = false;
  private ended = false;

  constructor(
    private readonly call: DuplexCall,
    private readonly handler: PhaseHandler,
    private readonly observer: StreamObserver,
    private readonly logger: Logger,
    private readonly now: () => number,
    private readonly opts: { endAfterRequestHeaders?: boolean } = {},
  ) {}

  start(): void {
    this.observer.opened();
    this.call.on('data', (msg) => this.onMessage(msg));
    this.call.on('end', () => void this.onHalfClose());
    // Envoy resets the stream once it has what it needs; a cancel is the normal end, not a fault.
    this.call.on('cancelled', () => this.close('aborted'));
    this.call.on('error', (err) => {
      this.logger.debug(
        { event: 'stream_error', err: describeError(err) },
        'ext_proc stream error',
      );
      this.close('error');
    });
  }

  private onMessage(msg: ProcessingRequest): void {
    const kind = msg.request;
    if (!kind) {
      this.logger.warn(
        { event: 'protocol_error' },
        'ext_proc message without a request oneof; ignored',
      );
      return;
    }
    if (msg.protocol_config) this.handler.protocol?.(msg.protocol_config);
    // Observability mode: Envoy ignores answers, so none are sent.
    const silent = msg.observability_mode === true;
    this.queue(kind.startsWith('request_'), kind, msg, silent);
  }

  /**
   * Answers the message after those of its direction before it: at once when there are none,
   * else when they are done; the direction's chain is what is still pending (undefined: nothing).
   */
  private queue(
    request: boolean,
    kind: MessageKind,
    msg: ProcessingRequest,
    silent: boolean,
  ): void {
    const chain = request ? this.requestChain : this.responseChain;
    let next: Promise<void> | undefined;
    if (chain) {
      next = chain.then(() => this.process(kind, msg, silent));
    } else {
      try {
        // An answer that comes later leaves the chain itself (process); nothing more to chain.
        next = this.process(kind, msg, silent);
        if (request) this.requestChain = next;
        else this.responseChain = next;
        return;
      } catch (err) {
        // As a rejected chain did before: only a fault in building the error answer gets here.
        next = Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
    if (request) this.requestChain = next;
    else this.responseChain = next;
    const pending = next;
    void pending.then(() => this.leaveChain(pending));
  }

  /** The direction's chain is idle again when `pending` was its last message. */
  private leaveChain(pending: Promise<void>): void {
    if (this.requestChain === pending) this.requestChain = undefined;
    if (this.responseChain === pending) this.responseChain = undefined;
  }

  /** Undefined when the message was answered synchronously. */
  private process(
    kind: MessageKind,
    msg: ProcessingRequest,
    silent: boolean,
  ): Promise<void> | undefined {
    if (this.stopped || this.ended) return undefined;
    const started = this.now();
    let result: Outcome | Promise<Outcome>;
    try {
      result = this.dispatch(kind, msg);
    } catch (err) {
      result = this.failed(kind, err);
    }
    if (isPromise(result)) {
      // The answer's promise is the direction's chain until it is done: it leaves the chain in
      // the same callback (not in a second promise per message).
      const pending: Promise<void> = result.then(
        (outcome) => {
          this.answer(kind, msg, silent, started, outcome);
          this.leaveChain(pending);
        },
        (err: unknown) => {
          this.answer(kind, msg, silent, started, this.failed(kind, err));
          this.leaveChain(pending);
        },
      );
      return pending;
    }
    this.answer(kind, msg, silent, started, result);
    return undefined;
  }

  private failed(kind: MessageKind, err: unknown): Outcome {
    if (!(err instanceof SluiceError)) {
      this.logger.error(
        { event: 'processing_failed', phase: kind, err: describeError(err) },
        'processing failed',
      );
    }
    return this.handler.fail(err);
  }

  private answer(
    kind: MessageKind,
    msg: ProcessingRequest,
    silent: boolean,
    started: number,
    outcome: Outcome,
  ): void {
    let wire: WireResponse | MutationAnswer;
    try {
      wire = reply(kind, outcome);
    } catch (err) {
      this.logger.error(
        { event: 'answer_failed', phase: kind, err: describeError(err) },
        'could not build answer',
      );
      outcome = this.handler.fail(err);
      wire = reply(kind, outcome);
    }
    if (this.ended) return;
    if (!silent) this.call.write(wire);
    this.observer.phase(kind, (this.now() - started) / 1000);
    if (outcome.kind === 'respond') {
      this.stopped = true;
      this.finishOnce('complete');
    }
    if (outcome.kind === 'respond' || this.isLast(kind, msg, outcome)) {
      // Close our side as soon as nothing more is expected: a finished stream draws no
      // RST_STREAM from Envoy, and Node's HTTP/2 server drops the whole connection after about
      // 1,000 client resets (plus 33/s), failing every request on it.
      const other = kind.startsWith('request_') ? this.responseChain : this.requestChain;
      const endNow = (): void => {
        if (this.ended) return;
        this.call.end();
        this.close('complete');
      };
      if (other) void other.then(endNow);
      else endNow();
    }
  }

  /** The last message Envoy sends this filter for this request, given the configured modes. */
  private isLast(kind: MessageKind, msg: ProcessingRequest, outcome: Outcome): boolean {
    switch (kind) {
      case 'request_headers':
        // Unless the answer turned the response headers on (a translated upstream attempt).
        return (
          this.opts.endAfterRequestHeaders === true &&
          !(
            outcome.kind === 'continue' && outcome.mutation?.modeOverride?.responseHeader === 'SEND'
          )
        );
      case 'response_headers':
        return msg.response_headers?.end_of_stream === true;
      case 'response_body':
        return msg.response_body?.end_of_stream === true;
      case 'response_trailers':
        return true;
      default:
        return false;
    }
  }

  private dispatch(kind: MessageKind, msg: ProcessingRequest): Outcome | Promise<Outcome> {
    switch (kind) {
      case 'request_headers':
        return this.handler.requestHeaders(msg.request_headers ?? {}, msg.attributes);
      case 'request_body':
        return this.handler.requestBody(msg.request_body ?? {});
      case 'request_trailers':
        return this.handler.requestTrailers();
      case 'response_headers':
        return this.handler.responseHeaders(msg.response_headers ?? {}, msg.attributes);
      case 'response_body':
        return this.handler.responseBody(msg.response_body ?? {});
      case 'response_trailers':
        return this.handler.responseTrailers();
    }
  }

  private async onHalfClose(): Promise<void> {
    // Answer everything already received before closing our side.
    await Promise.all([this.requestChain, this.responseChain]);
    if (!this.ended) this.call.end();
    this.close('aborted');
  }

  private close(reason: 'complete' | 'aborted' | 'error'): void {
    if (this.ended) return;
    this.ended = true;
    this.finishOnce(reason);
    this.observer.closed();
  }

  private handlerFinished = false;
  private finishOnce(reason: 'complete' | 'aborted' | 'error'): void {
    if (this.handlerFinished) return;
    this.handlerFinished = true;
    this.handler.finish(reason);
  }
}

function isPromise(x: Outcome | Promise<Outcome>): x is Promise<Outcome> {
  return typeof (x as { then?: unknown }).then === 'function';
}
