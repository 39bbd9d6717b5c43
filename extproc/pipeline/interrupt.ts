/**
 * An immediate response the router phase sends on its own stream without being asked, so that an
 * upstream attempt the extproc refuses ends the request at once, in the caller's format.
 *
 * Why not the upstream filter's own immediate response: Envoy's ext_proc filter ignores every
 * local reply it would send when it runs as an upstream filter. In
 * source/extensions/filters/http/ext_proc/ext_proc.cc, Filter::sendImmediateResponse returns
 * early when config_->isUpstream(), counting `send_immediate_resp_upstream_ignored` — and every
 * fail-closed path goes through it: the server's immediate_response (onReceiveMessage), a gRPC
 * error with failure_mode_allow false (onGrpcError), a message timeout (onMessageTimeout), a
 * spurious or invalid answer (handleErrorResponse). Before it returns, the filter has set
 * processing_complete_, stopped its timers (onFinishProcessorCalls) and closed the stream, but it
 * never resumes the paused request: the attempt hangs until the router's per-try or route timeout
 * (a 504 `upstream_per_try_timeout` or `response_timeout`, 300 s by default here). Only a data
 * callback arriving after that would resume it, unmodified, and the router hands a buffered body
 * to the attempt before any answer can come back. Envoy releases up to 1.35 (the one the chart
 * pins) behave so. envoyproxy/envoy PR 41231 ("allow immediate response from upstream filter",
 * opened after 1.35 was cut) drops the check, and later main-branch ext_proc.cc has none: there
 * the reply goes through UpstreamFilterManager::sendLocalReply
 * (source/common/router/upstream_request.cc), which aborts the attempt and sends the reply
 * downstream with the same code and details, never retried (source/docs/upstream_filters.md:
 * local-reply failures do not trigger retries).
 *
 * The router filter is an ordinary HTTP filter, so its immediate responses are honoured in every
 * state: Filter::onReceiveMessage checks only processing_complete_ before sending the local reply,
 * and its stream stays open until the response is processed (response headers are SEND). The
 * local reply goes through the encoder chain (the router ext_proc filter skips it, processing being
 * complete) and ends the downstream stream, whose router filter then resets the upstream attempt,
 * upstream ext_proc filter included.
 *
 * The stream state machine writes exactly one answer per message; this wraps its call so the
 * router phase can write one more, unsolicited, and silences whatever the state machine would
 * write after it. Envoy half-closes and resets the stream once it has sent the reply, which ends
 * the state machine as usual.
 */
import type { DuplexCall, ProcessingRequest } from '../stream.js';
import { immediate, type WireResponse } from '../wire/messages.js';
import type { Verdict } from './mutation.js';

export interface Interruptible {
  /** Give this to the stream state machine in place of the call. */
  call: DuplexCall;
  /**
   * Writes `verdict` as an immediate response and ends our side. False, writing nothing, when the
   * stream has already ended or answered with an immediate response.
   */
  interrupt(verdict: Verdict): boolean;
}

export function interruptible(inner: DuplexCall): Interruptible {
  return new InterruptibleCall(inner);
}

class InterruptibleCall implements DuplexCall, Interruptible {
  /** Nothing more reaches Envoy: either side ended, or an immediate response went out. */
  private done = false;
  /** Our side is half-closed. */
  private ended = false;

  constructor(private readonly inner: DuplexCall) {
    const over = (): void => {
      this.done = true;
    };
    inner.on('end', over);
    inner.on('cancelled', over);
    inner.on('error', over);
  }

  get call(): DuplexCall {
    return this;
  }

  on(event: 'data', fn: (msg: ProcessingRequest) => void): unknown;
  on(event: 'end' | 'cancelled', fn: () => void): unknown;
  on(event: 'error', fn: (err: Error) => void): unknown;
  on(event: 'data' | 'end' | 'cancelled' | 'error', fn: (arg: never) => void): unknown {
    return this.inner.on(event as 'end', fn as () => void);
  }

  write(msg: WireResponse): unknown {
    if (this.done) return false;
    if ('immediate_response' in msg) this.done = true;
    return this.inner.write(msg);
  }

  end(): unknown {
    if (this.ended) return undefined;
    this.done = true;
    this.ended = true;
    return this.inner.end();
  }

  interrupt(verdict: Verdict): boolean {
    if (this.done) return false;
    this.inner.write(immediate(verdict));
    this.done = true;
    this.ended = true;
    this.inner.end();
    return true;
  }
}
