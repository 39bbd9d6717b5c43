/**
 * The trace a request belongs to, decided when its headers arrive, so that each upstream attempt
 * can hand the provider a W3C `traceparent` naming the attempt's own span: a provider that traces
 * then joins the gateway's trace under the attempt that called it.
 *
 * Our spans are built when the request ends (tracing.ts, from the end record), long after the
 * provider was called; so the ids are chosen here and the tracer is handed them then
 * (PresetIdGenerator): the span the provider names as its parent is the span we export.
 *
 * The parent is Envoy's, when Envoy traces: its gRPC client injects the ext_proc call's span
 * into the stream's initial metadata (envoyproxy/envoy source/common/grpc/async_client_impl.cc,
 * AsyncStreamImpl::initialize: `current_span_->injectContext(...)` on the stream's headers), and
 * that span is a child of Envoy's request span, itself continuing the caller's `traceparent`. So
 * the stream's metadata wins over the request's own header: both are in the same trace, and the
 * metadata's is the nearer parent. Without Envoy tracing the caller's header is the parent; with
 * neither, a new trace starts and the configured ratio decides sampling, exactly as the
 * tracer's ParentBased(TraceIdRatio) sampler decides later for the same trace id.
 */
import { randomBytes } from 'node:crypto';
import type * as OtelApi from '@opentelemetry/api';
import type { W3CTraceContextPropagator } from '@opentelemetry/core';
import type * as OtelSdk from '@opentelemetry/sdk-trace';
import type { IdGenerator } from '@opentelemetry/sdk-trace';

/** W3C trace-context headers as received (header or gRPC metadata), verbatim. */
export interface TraceHeaders {
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

/** The trace of one request: where it continues, and its own root span's id. */
export interface RequestTrace {
  traceId: string;
  /** The request's SERVER span. */
  spanId: string;
  sampled: boolean;
  /** Where the trace came from (a valid traceparent), or undefined for a new trace. */
  parent?: TraceHeaders;
  tracestate?: string;
}

/**
 * The OpenTelemetry packages requestTrace() parses and samples with. The pipeline imports this
 * module whether or not tracing is on, and without tracing it never calls requestTrace(); so they
 * are loaded by loadTraceContext(), which tracing.ts awaits before it can be started (issue 16:
 * ~3 MiB of V8 heap an extproc without tracing does without).
 */
interface Otel {
  api: typeof OtelApi;
  propagator: W3CTraceContextPropagator;
  sdk: typeof OtelSdk;
}
let otel: Otel | undefined;
let loading: Promise<void> | undefined;

/** Loads what requestTrace() needs; once per process, a failed load tried again next call. */
export function loadTraceContext(): Promise<void> {
  loading ??= Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/core'),
    import('@opentelemetry/sdk-trace'),
  ]).then(
    ([api, core, sdk]) => {
      otel = { api, propagator: new core.W3CTraceContextPropagator(), sdk };
    },
    (err: unknown) => {
      loading = undefined;
      throw err;
    },
  );
  return loading;
}

const getter = {
  get: (c: TraceHeaders, key: string) =>
    key === 'traceparent' ? c.traceparent : key === 'tracestate' ? c.tracestate : undefined,
  keys: () => ['traceparent', 'tracestate'],
};

export function newSpanId(): string {
  return randomBytes(8).toString('hex');
}

/**
 * The request's trace: continuing the first valid context of `sources` (in order: the ext_proc
 * stream's metadata, then the request's headers), else a new one sampled at `ratio`.
 */
export function requestTrace(
  sources: readonly (TraceHeaders | undefined)[],
  ratio: number,
): RequestTrace {
  // Only a started tracing passes a ratio to the pipeline, and it loaded these first.
  if (!otel) throw new Error('requestTrace before loadTraceContext(): tracing was not started');
  const { api, propagator, sdk } = otel;
  const { ROOT_CONTEXT, trace } = api;
  for (const s of sources) {
    if (!s?.traceparent) continue;
    const ctx = trace.getSpanContext(propagator.extract(ROOT_CONTEXT, s, getter));
    if (!ctx || !trace.isSpanContextValid(ctx)) continue;
    const state = ctx.traceState?.serialize();
    return {
      traceId: ctx.traceId,
      spanId: newSpanId(),
      sampled: (ctx.traceFlags & 1) === 1, // W3C trace-flags bit 0: sampled
      parent: { traceparent: s.traceparent, ...(s.tracestate && { tracestate: s.tracestate }) },
      ...(state && { tracestate: state }),
    };
  }
  const traceId = randomBytes(16).toString('hex');
  const decision = new sdk.TraceIdRatioBasedSampler(ratio).shouldSample(ROOT_CONTEXT, traceId);
  return {
    traceId,
    spanId: newSpanId(),
    sampled: decision.decision === sdk.SamplingDecision.RECORD_AND_SAMPLED,
  };
}

/** The headers an upstream attempt carries: its own span as the provider's parent. */
export function attemptHeaders(t: RequestTrace, attemptSpanId: string): [string, string][] {
  const out: [string, string][] = [
    ['traceparent', `00-${t.traceId}-${attemptSpanId}-${t.sampled ? '01' : '00'}`],
  ];
  if (t.tracestate) out.push(['tracestate', t.tracestate]);
  return out;
}

/**
 * Ids for spans started after the fact: `preset` hands the next span (and, for a new trace, the
 * trace) the id chosen when the request was live; without one, random ids as the SDK's own.
 */
export class PresetIdGenerator implements IdGenerator {
  private traceId: string | undefined;
  private spanId: string | undefined;

  /** The next startSpan() gets these; call right before it (startSpan is synchronous). */
  preset(spanId: string | undefined, traceId?: string): void {
    this.spanId = spanId;
    this.traceId = traceId;
  }

  generateTraceId(): string {
    const t = this.traceId ?? randomBytes(16).toString('hex');
    this.traceId = undefined;
    return t;
  }

  generateSpanId(): string {
    const s = this.spanId ?? newSpanId();
    this.spanId = undefined;
    return s;
  }
}
