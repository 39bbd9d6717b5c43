/** Shared set-up for the xDS tests and the propagation bench. */
import { ResourceEncoder } from '../encode.js';
import { CLUSTER, ENDPOINT, LISTENER, ROUTE } from '../type-urls.js';

let shared: ResourceEncoder | undefined;

/** One encoder over proto/ for all tests in a process: loading every file takes a moment. */
export function testEncoder(): ResourceEncoder {
  shared ??= ResourceEncoder.fromProtoTree();
  return shared;
}

export const HCM =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const EXT_PROC =
  'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';
export const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

export interface Shape {
  /** Cluster name → connect timeout. */
  clusters: Record<string, string>;
  /** Route configuration name → the domains of its one virtual host. */
  routes: Record<string, string[]>;
  listener?: string;
  /** The address of every cluster's one endpoint (default 10.0.0.1). */
  endpointIp?: string;
}

const ADS_SOURCE = { ads: {}, resource_api_version: 'V3' };

/** Envoy-JSON resources for a small snapshot, shaped like the operator's, varied by `shape`. */
export function resourcesFor(shape: Shape): Record<string, unknown[]> {
  const listener = shape.listener ?? 'sluice-http';
  return {
    [CLUSTER]: Object.entries(shape.clusters).map(([name, timeout]) => ({
      '@type': CLUSTER,
      name,
      type: 'EDS',
      eds_cluster_config: { eds_config: ADS_SOURCE },
      connect_timeout: timeout,
    })),
    [ENDPOINT]: Object.keys(shape.clusters).map((name) => ({
      '@type': ENDPOINT,
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: [
            {
              endpoint: {
                address: {
                  socket_address: { address: shape.endpointIp ?? '10.0.0.1', port_value: 8000 },
                },
              },
            },
          ],
        },
      ],
    })),
    [LISTENER]: [
      {
        '@type': LISTENER,
        name: listener,
        address: { socket_address: { address: '0.0.0.0', port_value: 8080 } },
        filter_chains: [
          {
            filters: [
              {
                name: 'envoy.filters.network.http_connection_manager',
                typed_config: {
                  '@type': HCM,
                  stat_prefix: listener,
                  rds: { config_source: ADS_SOURCE, route_config_name: 'main' },
                  http_filters: [
                    {
                      name: 'sluice.router',
                      typed_config: {
                        '@type': EXT_PROC,
                        grpc_service: {
                          envoy_grpc: { cluster_name: 'sluice-extproc' },
                          timeout: '0.250s',
                        },
                        processing_mode: {
                          request_header_mode: 'SEND',
                          request_body_mode: 'BUFFERED',
                        },
                        message_timeout: '2s',
                        allow_mode_override: true,
                      },
                    },
                    { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } },
                  ],
                },
              },
            ],
          },
        ],
      },
    ],
    [ROUTE]: Object.entries(shape.routes).map(([name, domains]) => ({
      '@type': ROUTE,
      name,
      virtual_hosts: [
        {
          name: `${name}-vh`,
          domains,
          routes: [{ match: { prefix: '/' }, route: { cluster: 'backend-a', timeout: '60s' } }],
        },
      ],
    })),
  };
}
