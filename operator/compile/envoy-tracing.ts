/**
 * Envoy's own tracing, when the operator is given an OTLP collector: the listener's HTTP
 * connection manager traces with the OpenTelemetry tracer (`envoy.tracers.opentelemetry`,
 * envoy.config.trace.v3.OpenTelemetryConfig) and exports OTLP over gRPC to a cluster of its own.
 *
 * What joins what: Envoy's request span continues the caller's `traceparent`; each ext_proc
 * stream is a child span whose context Envoy's gRPC client puts in the stream's initial metadata
 * (source/common/grpc/async_client_impl.cc, AsyncStreamImpl::initialize → injectContext), which
 * the extproc continues (extproc/telemetry/trace-context.ts); `spawn_upstream_span` gives each
 * upstream attempt a span of Envoy's too (HttpConnectionManager.Tracing, Envoy 1.28+). So one
 * request is one trace: caller → Envoy → extproc → (the extproc's attempt span) → provider.
 *
 * Field names: envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
 * .Tracing (provider, random_sampling as a type.v3.Percent, spawn_upstream_span) and
 * envoy.config.trace.v3.OpenTelemetryConfig (grpc_service, service_name), read strictly against
 * Envoy 1.40's descriptors in the tests.
 */
import { envoyDuration } from './durations.js';

export interface EnvoyTracing {
  /** The OTLP/gRPC collector, host:port (e.g. otel-collector.observability.svc:4317). */
  collectorHost: string;
  collectorPort: number;
  /** Share of requests without a sampling decision that Envoy traces, 0–100. */
  samplingPercent: number;
  /** service.name of Envoy's spans. */
  serviceName: string;
}

export const OTLP_CLUSTER = 'sluice-otlp';
const T = 'type.googleapis.com/';
const OTEL_TYPE = `${T}envoy.config.trace.v3.OpenTelemetryConfig`;
const HTTP_OPTIONS_KEY = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** `host:port` of a collector, checked; throws with the reason. */
export function parseCollector(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(i + 1));
  if (i <= 0 || host === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`OTLP collector must be host:port, got "${address}"`);
  }
  return { host, port };
}

/** The HCM's `tracing` field. */
export function hcmTracing(t: EnvoyTracing): Record<string, unknown> {
  return {
    provider: {
      name: 'envoy.tracers.opentelemetry',
      typed_config: {
        '@type': OTEL_TYPE,
        grpc_service: { envoy_grpc: { cluster_name: OTLP_CLUSTER }, timeout: '1s' },
        service_name: t.serviceName,
      },
    },
    random_sampling: { value: t.samplingPercent },
    spawn_upstream_span: true,
  };
}

/** The collector's cluster: OTLP is gRPC, so HTTP/2. */
export function otlpCluster(t: EnvoyTracing, connectTimeoutMs: number): Record<string, unknown> {
  return {
    name: OTLP_CLUSTER,
    type: 'STRICT_DNS',
    connect_timeout: envoyDuration(connectTimeoutMs),
    dns_lookup_family: 'V4_PREFERRED',
    load_assignment: {
      cluster_name: OTLP_CLUSTER,
      endpoints: [
        {
          lb_endpoints: [
            {
              endpoint: {
                address: {
                  socket_address: { address: t.collectorHost, port_value: t.collectorPort },
                },
              },
            },
          ],
        },
      ],
    },
    typed_extension_protocol_options: {
      [HTTP_OPTIONS_KEY]: {
        '@type': `${T}${HTTP_OPTIONS_KEY}`,
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
  };
}
