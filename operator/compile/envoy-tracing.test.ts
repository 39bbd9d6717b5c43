import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { envoyApiRoot } from '../envoy-api/index.js';
import { validateEnvoy } from '../envoy-api/validate.js';
import { encodeStrict as strictBytes } from '../../test/envoy-config/strict-json.js';
import { hcmTracing, OTLP_CLUSTER, otlpCluster, parseCollector } from './envoy-tracing.js';

const T = {
  collectorHost: 'otel.observability.svc',
  collectorPort: 4317,
  samplingPercent: 25,
  serviceName: 'sluice-envoy',
};

describe("Envoy's tracing config", () => {
  it('is read strictly by Envoy 1.40 and breaks none of its constraints', () => {
    const root = envoyApiRoot();
    const hcm = {
      stat_prefix: 'x',
      rds: { route_config_name: 'r', config_source: { ads: {}, resource_api_version: 'V3' } },
      http_filters: [
        {
          name: 'envoy.filters.http.router',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
          },
        },
      ],
      tracing: hcmTracing(T),
    };
    const hcmType =
      'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
    assert.deepEqual(validateEnvoy(root, hcmType, strictBytes(root, hcmType, hcm)), []);
    const cluster = otlpCluster(T, 1000);
    const clusterType = 'envoy.config.cluster.v3.Cluster';
    assert.deepEqual(validateEnvoy(root, clusterType, strictBytes(root, clusterType, cluster)), []);
  });

  it('sends OTLP over gRPC to its own HTTP/2 cluster, samples at the percent, spans attempts', () => {
    const t = hcmTracing(T) as Record<string, any>;
    assert.equal(t.provider.name, 'envoy.tracers.opentelemetry');
    assert.equal(t.provider.typed_config.grpc_service.envoy_grpc.cluster_name, OTLP_CLUSTER);
    assert.equal(t.provider.typed_config.service_name, 'sluice-envoy');
    assert.deepEqual(t.random_sampling, { value: 25 });
    assert.equal(t.spawn_upstream_span, true);
    const c = otlpCluster(T, 1000) as Record<string, any>;
    assert.equal(c.name, OTLP_CLUSTER);
    assert.deepEqual(
      c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address,
      {
        address: 'otel.observability.svc',
        port_value: 4317,
      },
    );
  });

  it('takes a collector as host:port only', () => {
    assert.deepEqual(parseCollector('otel:4317'), { host: 'otel', port: 4317 });
    assert.deepEqual(parseCollector('[::1]:4317'), { host: '::1', port: 4317 });
    for (const bad of ['otel', ':4317', 'otel:0', 'otel:http'])
      assert.throws(() => parseCollector(bad));
  });
});
