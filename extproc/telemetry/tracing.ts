/**
 * OpenTelemetry traces of gateway requests, exported over OTLP (off unless an endpoint is set).
 *
 * Each request becomes one SERVER span that continues the caller's W3C `traceparent` (sampled as
 * the caller decided; otherwise at the configured ratio), with one CLIENT child span per upstream
 * attempt and an event per policy verdict. Spans are built from the request's end record (the
 * same RequestRecord the metrics and the access log are made of, see telemetry.ts), so the
 * pipeline carries no tracing code and a span holds exactly what the access log holds: names,
 * counts, statuses and codes, never prompt or completion text.
 *
 * Attributes follow the OpenTelemetry GenAI semantic conventions (gen_ai.operation.name,
 * gen_ai.request.model, gen_ai.response.model, gen_ai.provider.name, gen_ai.usage.*); the rest
 * are `sluice.*`. Span names are `{gen_ai.operation.name} {gen_ai.request.model}` as the
 * conventions ask.
 *
 * Packages: @opentelemetry/api (the API spans are made with), @opentelemetry/sdk-trace (the SDK:
 * sampler, span limits, batching), @opentelemetry/core (the W3C trace-context propagator, which
 * validates traceparent/tracestate as the spec says), @opentelemetry/resources (service.name) and
 * @opentelemetry/exporter-trace-otlp-proto (OTLP/HTTP protobuf, the protocol's default encoding,
 * with its retry and back-off). Together they replace an OTLP encoder, a batcher and a
 * propagator we would otherwise write and keep conformant.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import type { Logger } from 'pino';
import { otelOperation, type Operation } from '../providers/endpoints.js';
import { MAX_LOG_FIELD_CHARS, OTEL_PROVIDER, type RequestRecord } from './telemetry.js';
import { MAX_CONTENT_CHARS } from './content.js';
import { loadTraceContext, PresetIdGenerator, type TraceHeaders } from './trace-context.js';
import { configuredTracing, type TracingOptions } from './tracing-config.js';

export { tracingFromEnv, type TracingOptions } from './tracing-config.js';

// requestTrace() (trace-context.ts, on the pipeline's path) parses with the same packages this
// module imports; a tracing that can be started has them loaded.
await loadTraceContext();

const propagator = new W3CTraceContextPropagator();
const getter = {
  get: (carrier: TraceHeaders, key: string) =>
    key === 'traceparent'
      ? carrier.traceparent
      : key === 'tracestate'
        ? carrier.tracestate
        : undefined,
  keys: () => ['traceparent', 'tracestate'],
};

/** Caller- and provider-given strings (names, codes) are cut as in the access log. */
function bounded(a: Attributes): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(a)) {
    out[k] =
      typeof v === 'string'
        ? boundString(v)
        : Array.isArray(v)
          ? (v as unknown[]).map((x) => (typeof x === 'string' ? boundString(x) : x))
          : v;
  }
  return out;
}

function boundString(v: string): string {
  return v.length <= MAX_LOG_FIELD_CHARS ? v : v.slice(0, MAX_LOG_FIELD_CHARS);
}

export class Tracing {
  private readonly provider: TracerProvider;
  private readonly tracer: Tracer;
  /** Spans are built after the fact with the ids the request handed out while live. */
  private readonly ids = new PresetIdGenerator();
  readonly samplingRatio: number;

  constructor(opts: TracingOptions) {
    const processor: SpanProcessor = new BatchSpanProcessor({
      exporter: opts.exporter ?? new OTLPTraceExporter({ url: opts.url }),
      // A test exporter sees each span at once; OTLP batches as the SDK defaults say.
      ...(opts.exporter ? { scheduledDelayMillis: 1, maxExportBatchSize: 1 } : {}),
    });
    this.samplingRatio = opts.samplingRatio;
    this.provider = new TracerProvider({
      idGenerator: this.ids,
      resource: resourceFromAttributes({ 'service.name': opts.serviceName ?? 'sluice-gateway' }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(opts.samplingRatio) }),
      // Names and codes are cut by bounded() as in the access log; this limit is for the one
      // long value a span may carry, opted-in content (content.ts cuts it there first).
      spanLimits: {
        attributeValueLengthLimit: MAX_CONTENT_CHARS + 32,
        attributeCountLimit: 64,
        eventCountLimit: 64,
      },
      spanProcessors: [processor],
    });
    this.tracer = this.provider.getTracer('sluice');
  }

  /**
   * The spans of one finished request. `endMs` is the wall-clock end (epoch ms); the start is
   * the record's duration before it.
   */
  record(r: RequestRecord, endMs: number): void {
    const t = r.trace;
    const from = t?.parent;
    const parent = from?.traceparent
      ? propagator.extract(ROOT_CONTEXT, from, getter)
      : ROOT_CONTEXT;
    // The ids the request handed out (providers were given its attempts' span ids).
    this.ids.preset(t?.spanId, from ? undefined : t?.traceId);
    const startMs = endMs - r.durationMs;
    const op = isOperation(r.operation) ? otelOperation(r.operation) : (r.operation ?? 'unknown');
    const name = r.requestModel ? `${op} ${r.requestModel}` : op;
    const span = this.tracer.startSpan(
      name,
      { kind: SpanKind.SERVER, startTime: startMs, attributes: bounded(requestAttributes(r, op)) },
      parent,
    );
    addEvents(span, r, startMs);
    if (r.status >= 500 || r.errorCode) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: r.errorCode ?? String(r.status) });
    }
    this.attempts(r, trace.setSpan(parent, span), name, startMs, endMs);
    span.end(endMs);
  }

  /**
   * One CLIENT span per upstream attempt. Envoy retried or fell back from every attempt but the
   * last, so those failed; only the last one's status reached the caller.
   */
  private attempts(r: RequestRecord, ctx: Context, name: string, startMs: number, endMs: number) {
    const list = r.attemptList ?? [];
    list.forEach((a, i) => {
      const last = i === list.length - 1;
      const attrs: Attributes = {
        'gen_ai.operation.name': isOperation(r.operation)
          ? otelOperation(r.operation)
          : (r.operation ?? ''),
        'gen_ai.provider.name': OTEL_PROVIDER[a.provider],
        'sluice.backend': a.backend,
        'sluice.attempt': i + 1,
      };
      if (r.requestModel) attrs['gen_ai.request.model'] = r.requestModel;
      if (last) {
        if (r.status) attrs['http.response.status_code'] = r.status;
        if (r.responseModel) attrs['gen_ai.response.model'] = r.responseModel;
      } else {
        attrs['sluice.attempt.outcome'] = 'retried';
      }
      this.ids.preset(a.spanId);
      const s = this.tracer.startSpan(
        name,
        { kind: SpanKind.CLIENT, startTime: a.startedAtMs ?? startMs, attributes: bounded(attrs) },
        ctx,
      );
      if (!last || r.status >= 500) {
        s.setStatus({ code: SpanStatusCode.ERROR, message: last ? String(r.status) : 'retried' });
      }
      s.end(last ? endMs : (list[i + 1]?.startedAtMs ?? endMs));
    });
  }

  /** Exports what is buffered and stops. */
  async shutdown(): Promise<void> {
    await this.provider.shutdown();
  }

  async flush(): Promise<void> {
    await this.provider.forceFlush();
  }
}

function requestAttributes(r: RequestRecord, op: string): Attributes {
  const a: Attributes = {
    'gen_ai.operation.name': op,
    'http.response.status_code': r.status,
    'sluice.api': r.api,
    'sluice.attempts': r.attempts,
    'sluice.outcome': r.outcome,
    'sluice.stream': r.stream,
  };
  const set = (k: string, v: string | number | undefined) => {
    if (v !== undefined && v !== '') a[k] = v;
  };
  set('gen_ai.request.model', r.requestModel);
  set('gen_ai.response.model', r.responseModel);
  set('gen_ai.provider.name', r.provider ? OTEL_PROVIDER[r.provider] : undefined);
  set('sluice.request_id', r.requestId);
  set('sluice.route', r.route);
  set('sluice.backend', r.backend);
  set('sluice.consumer', r.consumer);
  set('sluice.team', r.team);
  set('sluice.cost_usd', r.costUsd);
  set('error.type', r.errorCode ?? (r.status >= 400 ? String(r.status) : undefined));
  if (r.usage) {
    a['gen_ai.usage.input_tokens'] = r.usage.inputTokens;
    a['gen_ai.usage.output_tokens'] = r.usage.outputTokens;
    if (r.usage.cachedInputTokens > 0) {
      a['gen_ai.usage.cache_read.input_tokens'] = r.usage.cachedInputTokens;
    }
    if (r.usage.reasoningTokens > 0) a['sluice.usage.reasoning_tokens'] = r.usage.reasoningTokens;
    a['sluice.usage.estimated'] = r.usage.estimated;
  }
  return a;
}

/** Policy verdicts as events: counts, names and actions only (what the access log holds). */
function addEvents(span: Span, r: RequestRecord, startMs: number): void {
  if (r.ttftMs !== undefined) span.addEvent('gen_ai.first_token', startMs + r.ttftMs);
  // Only for a policy that opted in, and masked before it got here (content.ts).
  if (r.content?.prompt !== undefined) {
    span.addEvent('gen_ai.content.prompt', { 'gen_ai.prompt': r.content.prompt });
  }
  if (r.content?.completion !== undefined) {
    span.addEvent('gen_ai.content.completion', { 'gen_ai.completion': r.content.completion });
  }
  if (r.policy) {
    span.addEvent('sluice.policy', {
      'sluice.policy': r.policy,
      'sluice.verdicts': r.verdicts ?? [],
      ...(r.policyFailure ? { 'sluice.policy.failure': r.policyFailure } : {}),
    });
  }
  for (const f of r.findings ?? []) {
    span.addEvent('sluice.masking', {
      'sluice.finding.type': f.type,
      'sluice.finding.action': f.action,
      'sluice.finding.direction': f.direction,
      'sluice.finding.count': f.count,
    });
  }
  for (const g of r.guard ?? []) {
    span.addEvent('sluice.guard', {
      'sluice.guard.rule': g.rule,
      'sluice.guard.kind': g.kind,
      'sluice.guard.action': g.action,
      ...(g.count !== undefined ? { 'sluice.guard.count': g.count } : {}),
    });
  }
  if (r.governance) {
    span.addEvent('sluice.governance', {
      'sluice.governance.policy': r.governance.policy,
      'sluice.verdicts': r.governance.verdicts,
      ...(r.errorCode ? { 'error.type': r.errorCode } : {}),
    });
  }
}

function isOperation(v: string | undefined): v is Operation {
  return (
    v === 'chat' ||
    v === 'completions' ||
    v === 'embeddings' ||
    v === 'responses' ||
    v === 'messages'
  );
}

/** The longest a shutdown waits for the last spans to be exported. */
export const SHUTDOWN_EXPORT_MS = 2000;

export interface RunningTracing {
  /** Share of requests without a sampling decision that are traced (new traces). */
  readonly samplingRatio: number;
  /** Telemetry's per-request hook: the spans of one finished request, never a throw. */
  onRequest: (r: RequestRecord) => void;
  /** Exports what is buffered (the exporter retries within its own timeout) and stops. */
  shutdown(): Promise<void>;
}

/**
 * Tracing for the extproc: `opts.tracing` or the OTEL_* environment; undefined when neither
 * names an endpoint. A bad endpoint or ratio throws here, at start, not per request.
 */
export function startTracing(
  opts: {
    tracing?: TracingOptions | undefined;
    otlpEndpoint?: string | undefined;
    traceSamplingRatio?: number | undefined;
    env: NodeJS.ProcessEnv;
    wallClock?: () => number;
  },
  log: Logger,
): RunningTracing | undefined {
  const cfg = configuredTracing(opts);
  if (!cfg) return undefined;
  const tracing = new Tracing(cfg);
  const clock = opts.wallClock ?? Date.now;
  // The URL may carry credentials in its userinfo or query: only the origin is logged.
  log.info(
    { event: 'tracing', endpoint: new URL(cfg.url).origin, sampling_ratio: cfg.samplingRatio },
    'OpenTelemetry traces exported over OTLP/HTTP',
  );
  let failed = false;
  return {
    samplingRatio: cfg.samplingRatio,
    onRequest(r) {
      try {
        tracing.record(r, clock());
      } catch (err) {
        // Tracing must never fail a request; one line says it stopped working.
        if (!failed) {
          failed = true;
          log.error({ event: 'tracing_failed', reason: (err as Error).message }, 'tracing failed');
        }
      }
    },
    // A collector that is down must not hold a drain for the exporter's own timeout (10 s).
    shutdown: async () => {
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, SHUTDOWN_EXPORT_MS);
        timer.unref();
      });
      await Promise.race([tracing.shutdown().catch(() => undefined), limit]);
      clearTimeout(timer);
    },
  };
}
