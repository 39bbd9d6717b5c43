/**
 * Whether the extproc traces, and where to: from flags and the standard OTEL_* environment. Kept
 * apart from tracing.ts, which imports the OpenTelemetry SDK and exporter (~10 MiB of V8 heap
 * with what they load, issue 16): the composition root (run.ts) imports that module only once
 * this one has found an endpoint.
 */
import type { SpanExporter } from '@opentelemetry/sdk-trace';

export interface TracingOptions {
  /** OTLP/HTTP traces URL (…/v1/traces). */
  url: string;
  /** Share of traces started here that are recorded, 0..1 (a caller's sampled flag wins). */
  samplingRatio: number;
  /** service.name of the spans (default sluice-gateway). */
  serviceName?: string;
  /** Tests: an exporter instead of OTLP, spans handed over at once. */
  exporter?: SpanExporter;
}

/** Where traces go from flags and the standard OTEL_* environment; undefined: tracing off. */
/** What the extproc traces with: `opts.tracing`, else the flags and the OTEL_* environment. */
export function configuredTracing(opts: {
  tracing?: TracingOptions | undefined;
  otlpEndpoint?: string | undefined;
  traceSamplingRatio?: number | undefined;
  env: NodeJS.ProcessEnv;
}): TracingOptions | undefined {
  return (
    opts.tracing ??
    tracingFromEnv(
      { otlpEndpoint: opts.otlpEndpoint, traceSamplingRatio: opts.traceSamplingRatio },
      opts.env,
    )
  );
}

export function tracingFromEnv(
  flags: { otlpEndpoint?: string | undefined; traceSamplingRatio?: number | undefined },
  env: NodeJS.ProcessEnv,
): TracingOptions | undefined {
  // The traces-specific variable is a full URL; the general one is a base the path is added to.
  const full = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'];
  const base = flags.otlpEndpoint ?? env['OTEL_EXPORTER_OTLP_ENDPOINT'];
  const url = flags.otlpEndpoint
    ? tracesUrl(flags.otlpEndpoint)
    : full
      ? full
      : base
        ? tracesUrl(base)
        : undefined;
  if (!url || env['OTEL_SDK_DISABLED'] === 'true' || env['OTEL_TRACES_EXPORTER'] === 'none') {
    return undefined;
  }
  let ratio = flags.traceSamplingRatio;
  if (ratio === undefined && env['OTEL_TRACES_SAMPLER_ARG'] !== undefined) {
    ratio = Number(env['OTEL_TRACES_SAMPLER_ARG']);
  }
  ratio ??= 1;
  if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
    throw new Error(`trace sampling ratio must be between 0 and 1, got ${String(ratio)}`);
  }
  const service = env['OTEL_SERVICE_NAME'];
  return { url, samplingRatio: ratio, ...(service ? { serviceName: service } : {}) };
}

function tracesUrl(base: string): string {
  let u: URL;
  try {
    u = new URL(base);
  } catch {
    throw new Error(`OTLP endpoint is not a URL: ${base}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new Error(`OTLP endpoint must be http(s): ${base}`);
  }
  return `${base.replace(/\/+$/, '')}/v1/traces`;
}
