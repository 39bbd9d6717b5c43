{{/* The listener port the operator programs into every Envoy (operator/compile DEFAULT_ENVOY_OPTIONS). */}}
{{- define "sluice.gateway.listenerPort" -}}1975{{- end -}}

{{/*
Envoy's bootstrap: only what cannot come over xDS. ADS (listeners and clusters, routes and
endpoints by reference) from the operator Service; the admin API on loopback; and a pod-facing
listener that exposes exactly /ready and /stats/prometheus of that admin API, so probes and
scrapes work without opening the mutating admin endpoints to the network. node.id is set per pod
on the command line (--service-node), from the pod name.
*/}}
{{- define "sluice.gateway.bootstrap" -}}
{{- $envoy := .Values.gateway.envoy -}}
node:
  cluster: {{ $envoy.serviceCluster | quote }}
admin:
  address:
    socket_address:
      address: 127.0.0.1
      port_value: {{ $envoy.adminPort }}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
      - envoy_grpc:
          cluster_name: sluice-xds
  lds_config:
    ads: {}
    resource_api_version: V3
  cds_config:
    ads: {}
    resource_api_version: V3
static_resources:
  listeners:
    - name: sluice-ready
      address:
        socket_address:
          address: 0.0.0.0
          port_value: {{ $envoy.readyPort }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: sluice_ready
                route_config:
                  name: sluice-ready
                  virtual_hosts:
                    - name: admin-subset
                      domains: ["*"]
                      routes:
                        - match:
                            path: /ready
                          route:
                            cluster: sluice-envoy-admin
                        - match:
                            path: /stats/prometheus
                          route:
                            cluster: sluice-envoy-admin
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: sluice-xds
      type: STRICT_DNS
      dns_lookup_family: V4_PREFERRED
      connect_timeout: 5s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options:
              connection_keepalive:
                interval: 30s
                timeout: 10s
      load_assignment:
        cluster_name: sluice-xds
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address:
                      address: {{ include "sluice.operator.xdsHost" . }}
                      port_value: {{ .Values.operator.xdsPort }}
    - name: sluice-envoy-admin
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: sluice-envoy-admin
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address:
                      address: 127.0.0.1
                      port_value: {{ $envoy.adminPort }}
overload_manager:
  resource_monitors:
    - name: envoy.resource_monitors.global_downstream_max_connections
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
        max_active_downstream_connections: {{ $envoy.maxDownstreamConnections }}
{{- end -}}

{{- /* The extproc's worker processes: gateway.extproc.workers when set, else one per core of the
  container's CPU limit (rounded up: 1500m is 2), else 1. Without a limit the extproc could only
  guess from the node's cores, which may be far more than the pod gets. */}}
{{- define "sluice.extproc.workers" -}}
{{- $ext := .Values.gateway.extproc -}}
{{- if $ext.workers -}}
{{- int $ext.workers -}}
{{- else -}}
{{- $cpu := "" -}}
{{- with $ext.resources -}}{{- with .limits -}}{{- with .cpu -}}{{- $cpu = toString . -}}{{- end -}}{{- end -}}{{- end -}}
{{- if not $cpu -}}
1
{{- else if hasSuffix "m" $cpu -}}
{{- max 1 (div (add (atoi (trimSuffix "m" $cpu)) 999) 1000) -}}
{{- else -}}
{{- max 1 (int (ceil (float64 $cpu))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
