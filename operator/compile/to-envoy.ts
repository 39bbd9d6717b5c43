/**
 * IR → Envoy resources, as plain objects in the proto3 JSON mapping with Envoy's snake_case field
 * names and "@type" on every Any: exactly what `envoy -c` YAML would hold.
 *
 * ## Weights, priorities and fallback: one cluster per rule
 *
 * Each rule of an AIRoute becomes ONE Envoy cluster. Each backend of the rule is one locality of
 * that cluster (`LocalityLbEndpoints`), carrying the backend's weight as the locality weight and
 * its priority as the locality priority (densely renumbered from 0, as Envoy requires), with
 * `common_lb_config.locality_weighted_lb_config` on. So:
 * - within a priority, Envoy splits traffic across backends by locality weight;
 * - a lower priority gets traffic only when the higher one has no healthy hosts (an in-cluster
 *   backend without ready pods, or hosts ejected), and
 * - on a retry, `retry_priority: envoy.retry_priorities.previous_priorities` (update_frequency 1)
 *   excludes the priorities already tried, so the retry goes to the next priority; when all are
 *   used up the plugin starts over. `previous_hosts` makes a retry avoid the host just tried.
 * This is Envoy's native model for the job (Envoy Gateway builds route-rule clusters the same
 * way: one locality per backendRef with weight and priority; Envoy AI Gateway's upstream ext_proc
 * reads the chosen backend from endpoint metadata). The alternatives were worse:
 * `weighted_clusters` picks a cluster once per request, so retries can never leave it; an
 * aggregate cluster fails over between clusters but cannot weight within a level, and reports
 * its own name, not the member's, as `xds.cluster_name` in the upstream filter.
 *
 * Consequence for the extproc: a cluster is no longer one backend, so the upstream filter learns
 * the backend from the chosen endpoint's metadata, `filter_metadata.sluice.backend`, requested
 * as the CEL attribute `xds.upstream_host_metadata.filter_metadata['sluice']['backend']`
 * (`xds.cluster_name` is still requested). Every endpoint carries that metadata.
 *
 * Per-backend differences inside one cluster: TLS and SNI come from `transport_socket_matches`
 * keyed on the endpoint metadata `envoy.transport_socket_match: {backend: <id>}` (endpoints of
 * in-cluster Services match nothing and stay plaintext); the Host header comes from
 * `auto_host_rewrite` with each endpoint's `hostname`.
 *
 * Discovery type: a rule whose backends are all in-cluster Services is an EDS cluster, its
 * ClusterLoadAssignment served over ADS. Any external backend makes it STRICT_DNS (LOGICAL_DNS
 * allows only one endpoint); in-cluster endpoints of such a mixed rule are inlined as IPs, so a
 * pod change there re-sends that cluster over CDS instead of EDS.
 *
 * ## Routing
 *
 * One listener, one HTTP connection manager with `[ext_proc sluice.router, router]`, routes by
 * RDS over ADS. Route entries match the `x-sluice-model` header and are ordered exactly as the
 * extproc resolves a model to a route: every exact model first, then prefixes longest first.
 * Within a model, the owning route's rules follow in order; if the last one is conditional
 * (headers, narrower model), a JSON 404 entry closes the model so a request never falls through
 * to another route. A final catch-all answers a JSON 404 for anything without a known model.
 * Before all of them, one entry per backend that keeps Responses state itself matches
 * `x-sluice-backend` (WIRE.backendHeader) to a cluster of that backend alone (`backend/<id>`):
 * the router phase sets it only to send GET/DELETE of a response that backend keeps back to it.
 *
 * ## Identity Envoy makes unforgeable (only when IR.governance asks for it)
 *
 * With JWT issuers the filter chain becomes `[header_mutation, jwt_authn, ext_proc, router]`:
 * header_mutation removes WIRE.jwtPayloadHeader from every client request, then jwt_authn
 * verifies `Authorization: Bearer <jwt>` against each issuer and, for a token it verified, writes
 * the token's payload segment (base64url JSON) to that header and removes the token
 * (`forward: false`). The extproc trusts the header because nothing else can have set it. The one
 * rule requires any provider OR `allow_missing_or_failed`: Envoy never refuses on its own, since
 * `Authorization: Bearer` also carries virtual keys (which are not JWTs and would fail), and a
 * token that fails reaches the extproc without a payload, which refuses it as a bad credential:
 * 401 in the caller's API format, where `allow_missing` would have Envoy answer a plain-text 401.
 * Each remote JWKS host gets a STRICT_DNS cluster with the same TLS (SNI, system CA, DNS SAN) as
 * an external backend. With mesh identity and clientCertTrust 'listener' the HCM replaces
 * x-forwarded-client-cert with the client certificate's URI SAN (SANITIZE_SET); without mesh
 * identity Envoy's default (SANITIZE) removes any XFCC a client sent. Both only ever yield an
 * identity when this listener terminates mTLS itself: on a plaintext connection Envoy removes XFCC
 * in every mode but ALWAYS_FORWARD_ONLY, which clientCertTrust 'sidecar' emits (see listener()).
 *
 * What an emulator must implement to run this output: listener + HCM with RDS; ext_proc filters
 * (the two processing modes used here); header matching exact/prefix; direct_response;
 * route timeout and the retry policy fields used below; clusters STATIC (pipe), STRICT_DNS and
 * EDS; locality weights and priorities; previous_priorities/previous_hosts; transport socket
 * matches with UpstreamTlsContext (sni, trusted_ca file, DNS SAN); auto_host_rewrite from the
 * endpoint hostname; upstream HTTP filters [ext_proc, upstream_codec]; the CEL attribute above;
 * with session affinity, lb_policy RING_HASH and a route hash_policy on one header;
 * with governance: header_mutation request removal, jwt_authn (local and remote JWKS,
 * requires_any with allow_missing_or_failed, forward_payload_header, forward: false), a cluster
 * transport_socket, and forward_client_cert_details SANITIZE / SANITIZE_SET / ALWAYS_FORWARD_ONLY.
 */
import type { ModelMatch, RetryOn } from '../api/types.js';
import { hcmTracing, otlpCluster, type EnvoyTracing } from './envoy-tracing.js';
import { envoyDuration } from './durations.js';
import type { IR, IRBackend, IRGovernance, IRJwtProvider, IRRoute, IRRule } from './ir.js';
import {
  BACKEND_ATTRIBUTE,
  backendCluster,
  BACKEND_METADATA_KEY,
  DEFAULT_EXTPROC_CLUSTER,
  JWT_PAYLOAD_HEADER,
  jwksCluster,
  LISTENER_NAME,
  METADATA_NAMESPACE,
  MODEL_HEADER,
  ROUTE_CONFIG_NAME,
  ROUTER_FILTER,
  UPSTREAM_FILTER,
  VIRTUAL_HOST_NAME,
} from './names.js';
import { WIRE } from '../../extproc/config/contract.js';
import { keepsResponsesState } from '../../extproc/providers/provider.js';
import { cmp, narrow } from './to-ir.js';

/** A resource in the proto3 JSON mapping. */
export type EnvoyJson = Record<string, unknown>;

export interface EnvoyResources {
  listeners: EnvoyJson[];
  routes: EnvoyJson[];
  clusters: EnvoyJson[];
  endpoints: EnvoyJson[];
}

export interface EnvoyOptions {
  /** Envoy's own tracing, exported to an OTLP collector (envoy-tracing.ts); absent: off. */
  tracing?: EnvoyTracing | undefined;
  listenerAddress: string;
  listenerPort: number;
  /** The Unix socket the extproc sidecar listens on. */
  extprocSocket: string;
  extprocCluster: string;
  /** ext_proc message_timeout, per message. */
  messageTimeoutMs: number;
  connectTimeoutMs: number;
  /** Per-connection buffer: bounds BUFFERED request and response bodies. */
  bufferLimitBytes: number;
  /** The system CA bundle used to verify providers. */
  caFile: string;
  /**
   * Who terminates the callers' mTLS when a policy uses mesh identity: this Envoy's listener, or
   * a mesh sidecar (e.g. Istio) in front of it that sets x-forwarded-client-cert.
   */
  clientCertTrust: ClientCertTrust;
}

export const CLIENT_CERT_TRUST = ['listener', 'sidecar'] as const;
export type ClientCertTrust = (typeof CLIENT_CERT_TRUST)[number];

export const DEFAULT_ENVOY_OPTIONS: EnvoyOptions = {
  listenerAddress: '0.0.0.0',
  listenerPort: 1975,
  extprocSocket: '/var/run/sluice/extproc.sock',
  extprocCluster: DEFAULT_EXTPROC_CLUSTER,
  messageTimeoutMs: 5000,
  connectTimeoutMs: 10_000,
  // The extproc's largest default (response bodies, 8 MiB): larger requests then reach it and
  // are refused in the caller's API format instead of by Envoy's plain-text 413.
  bufferLimitBytes: 8 * 1024 * 1024,
  caFile: '/etc/ssl/certs/ca-certificates.crt',
  clientCertTrust: 'listener',
};

const T = 'type.googleapis.com/';
const HCM_TYPE = `${T}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`;
const EXT_PROC_TYPE = `${T}envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor`;
const ROUTER_TYPE = `${T}envoy.extensions.filters.http.router.v3.Router`;
const UPSTREAM_CODEC_TYPE = `${T}envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec`;
const HTTP_OPTIONS_KEY = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const HTTP_OPTIONS_TYPE = `${T}${HTTP_OPTIONS_KEY}`;
const TLS_TYPE = `${T}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`;
const PREVIOUS_HOSTS_TYPE = `${T}envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate`;
const PREVIOUS_PRIORITIES_TYPE = `${T}envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig`;
const HEADER_MUTATION_TYPE = `${T}envoy.extensions.filters.http.header_mutation.v3.HeaderMutation`;
const JWT_AUTHN_TYPE = `${T}envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication`;
const TRANSPORT_SOCKET_MATCH = 'envoy.transport_socket_match';
/** How long jwt_authn waits for a JWKS; a fetch that fails fails only that request's token. */
const JWKS_FETCH_TIMEOUT_MS = 5000;

const ADS = { ads: {}, resource_api_version: 'V3' };

const RETRY_ON: Record<RetryOn, string> = {
  'rate-limited': 'retriable-status-codes',
  '5xx': '5xx',
  // Envoy has no timeout-only condition: a per-try timeout is an upstream that "does not respond
  // at all", which `reset` (and `5xx`) retry.
  reset: 'reset',
  timeout: 'reset',
  'connect-failure': 'connect-failure',
};

export function toEnvoy(ir: IR, options: Partial<EnvoyOptions> = {}): EnvoyResources {
  const opts: EnvoyOptions = { ...DEFAULT_ENVOY_OPTIONS, ...options };
  if (!CLIENT_CERT_TRUST.includes(opts.clientCertTrust)) {
    throw new Error(`clientCertTrust must be one of ${CLIENT_CERT_TRUST.join(', ')}`);
  }
  const clusters: EnvoyJson[] = [extprocCluster(opts), ...jwksClusters(ir.governance, opts)];
  if (opts.tracing) clusters.push(otlpCluster(opts.tracing, opts.connectTimeoutMs));
  const endpoints: EnvoyJson[] = [];
  for (const route of ir.routes) {
    const byId = new Map(route.backends.map((b) => [b.id, b]));
    for (const rule of route.rules) {
      const built = ruleCluster(rule, byId, opts, route.sessionAffinity !== undefined);
      clusters.push(built.cluster);
      if (built.assignment) endpoints.push(built.assignment);
    }
    for (const pin of pinnedRules(route)) {
      const built = ruleCluster(pin, byId, opts, false);
      clusters.push(built.cluster);
      if (built.assignment) endpoints.push(built.assignment);
    }
  }
  clusters.sort((a, b) => cmp(a['name'] as string, b['name'] as string));
  endpoints.sort((a, b) => cmp(a['cluster_name'] as string, b['cluster_name'] as string));
  return {
    listeners: [listener(opts, ir.governance)],
    routes: [routeConfiguration(ir)],
    clusters,
    endpoints,
  };
}

function listener(opts: EnvoyOptions, governance: IRGovernance | undefined): EnvoyJson {
  const hcm: EnvoyJson = {
    '@type': HCM_TYPE,
    stat_prefix: LISTENER_NAME,
    rds: { route_config_name: ROUTE_CONFIG_NAME, config_source: ADS },
  };
  if (governance?.meshIdentity && opts.clientCertTrust === 'sidecar') {
    // The sidecar terminates mTLS and reaches Envoy in plaintext, where Envoy removes XFCC in
    // every mode but this one (APPEND_FORWARD included): the sidecar's XFCC element, last in the
    // header, names the caller. Only safe when every request reaches Envoy through the sidecar
    // (mesh mTLS STRICT for this pod's port): otherwise a client could send its own XFCC.
    hcm['forward_client_cert_details'] = 'ALWAYS_FORWARD_ONLY';
  } else if (governance?.meshIdentity) {
    hcm['forward_client_cert_details'] = 'SANITIZE_SET';
    hcm['set_current_client_cert_details'] = { uri: true };
  }
  hcm['http_filters'] = [
    ...identityFilters(governance),
    routerExtProc(opts),
    { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } },
  ];
  hcm['local_reply_config'] = localReplyConfig();
  if (opts.tracing) hcm['tracing'] = hcmTracing(opts.tracing);
  return {
    name: LISTENER_NAME,
    address: { socket_address: { address: opts.listenerAddress, port_value: opts.listenerPort } },
    per_connection_buffer_limit_bytes: opts.bufferLimitBytes,
    filter_chains: [
      {
        filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }],
      },
    ],
  };
}

function routerExtProc(opts: EnvoyOptions): EnvoyJson {
  return {
    name: ROUTER_FILTER,
    typed_config: {
      '@type': EXT_PROC_TYPE,
      grpc_service: { envoy_grpc: { cluster_name: opts.extprocCluster } },
      failure_mode_allow: false,
      processing_mode: {
        request_header_mode: 'SEND',
        response_header_mode: 'SEND',
        request_body_mode: 'BUFFERED',
        response_body_mode: 'BUFFERED',
        request_trailer_mode: 'SKIP',
        response_trailer_mode: 'SKIP',
      },
      message_timeout: envoyDuration(opts.messageTimeoutMs),
      allow_mode_override: true,
      metadata_options: REPLY_METADATA_OPTIONS,
    },
  };
}

/**
 * header_mutation then jwt_authn, before the extproc (see the header comment). The payload header
 * is also stripped when some policy reads it without any issuer configured: the extproc trusts it
 * whenever a policy says so, so a client must never be the one to set it.
 */
function identityFilters(governance: IRGovernance | undefined): EnvoyJson[] {
  const providers = governance?.jwtProviders ?? [];
  const readsPayload = governance?.policies.some((p) => p.identity?.jwt !== undefined) ?? false;
  if (providers.length === 0 && !readsPayload) return [];
  const filters: EnvoyJson[] = [
    {
      name: 'envoy.filters.http.header_mutation',
      typed_config: {
        '@type': HEADER_MUTATION_TYPE,
        mutations: { request_mutations: [{ remove: JWT_PAYLOAD_HEADER }] },
      },
    },
  ];
  if (providers.length === 0) return filters;
  const byName: EnvoyJson = {};
  for (const p of providers) byName[p.name] = jwtProvider(p);
  filters.push({
    name: 'envoy.filters.http.jwt_authn',
    typed_config: {
      '@type': JWT_AUTHN_TYPE,
      providers: byName,
      rules: [
        {
          match: { prefix: '/' },
          requires: {
            requires_any: {
              requirements: [
                ...providers.map((p) => ({ provider_name: p.name })),
                { allow_missing_or_failed: {} },
              ],
            },
          },
        },
      ],
    },
  });
  return filters;
}

function jwtProvider(p: IRJwtProvider): EnvoyJson {
  const out: EnvoyJson = { issuer: p.issuer };
  if (p.audiences.length > 0) out['audiences'] = [...p.audiences];
  if (p.jwks.kind === 'inline') out['local_jwks'] = { inline_string: p.jwks.json };
  else {
    out['remote_jwks'] = {
      http_uri: {
        uri: p.jwks.uri,
        cluster: jwksCluster(p.jwks.host, p.jwks.port),
        timeout: envoyDuration(JWKS_FETCH_TIMEOUT_MS),
      },
      cache_duration: envoyDuration(p.jwks.cacheDurationSeconds * 1000),
    };
  }
  // The default, spelt out: the verified token goes no further than Envoy.
  out['forward'] = false;
  // Explicit so that Envoy's other default location, the access_token query parameter, is not
  // read: the extproc only ever looks at Authorization.
  out['from_headers'] = [{ name: 'authorization', value_prefix: 'Bearer ' }];
  out['forward_payload_header'] = JWT_PAYLOAD_HEADER;
  return out;
}

/** One cluster per distinct JWKS host:port, sorted with the rest by the caller. */
function jwksClusters(governance: IRGovernance | undefined, opts: EnvoyOptions): EnvoyJson[] {
  const hosts = new Map<string, { host: string; port: number }>();
  for (const p of governance?.jwtProviders ?? []) {
    if (p.jwks.kind === 'remote') {
      hosts.set(jwksCluster(p.jwks.host, p.jwks.port), { host: p.jwks.host, port: p.jwks.port });
    }
  }
  return [...hosts].map(([name, { host, port }]) => ({
    name,
    type: 'STRICT_DNS',
    connect_timeout: envoyDuration(opts.connectTimeoutMs),
    dns_lookup_family: 'V4_PREFERRED',
    load_assignment: {
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: host, port_value: port } } } },
          ],
        },
      ],
    },
    transport_socket: upstreamTls(host, opts),
  }));
}

function upstreamExtProc(opts: EnvoyOptions): EnvoyJson {
  return {
    name: UPSTREAM_FILTER,
    typed_config: {
      '@type': EXT_PROC_TYPE,
      grpc_service: {
        envoy_grpc: { cluster_name: opts.extprocCluster },
        initial_metadata: [{ key: 'x-sluice-filter', value: 'upstream' }],
      },
      failure_mode_allow: false,
      processing_mode: {
        request_header_mode: 'SEND',
        response_header_mode: 'SKIP',
        request_body_mode: 'NONE',
        response_body_mode: 'NONE',
        request_trailer_mode: 'SKIP',
        response_trailer_mode: 'SKIP',
      },
      request_attributes: ['xds.cluster_name', BACKEND_ATTRIBUTE],
      message_timeout: envoyDuration(opts.messageTimeoutMs),
      metadata_options: REPLY_METADATA_OPTIONS,
      // Responses are skipped unless the attempt's backend speaks another API than the caller:
      // the extproc's request headers answer then turns the response headers on, and its
      // response headers answer picks BUFFERED (JSON, errors) or STREAMED (SSE) to translate.
      allow_mode_override: true,
    },
  };
}

function extprocCluster(opts: EnvoyOptions): EnvoyJson {
  return {
    name: opts.extprocCluster,
    type: 'STATIC',
    connect_timeout: envoyDuration(Math.min(opts.connectTimeoutMs, 1000)),
    load_assignment: {
      cluster_name: opts.extprocCluster,
      endpoints: [
        { lb_endpoints: [{ endpoint: { address: { pipe: { path: opts.extprocSocket } } } }] },
      ],
    },
    typed_extension_protocol_options: {
      [HTTP_OPTIONS_KEY]: {
        '@type': HTTP_OPTIONS_TYPE,
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
  };
}

/**
 * Passive health: a backend that keeps failing stops getting first attempts, so a fallback of
 * another priority (another provider, another API) serves at once instead of after a failed try.
 * Five consecutive 5xx (local failures — connect errors, resets, timeouts — count as the 503/504
 * the router answers), or three consecutive gateway errors (502/503/504, enforced), eject the
 * host for 30 s × its ejections so far, at most 5 minutes. 429 cannot eject: Envoy's detectors
 * count only 5xx and local-origin errors (the consecutive-errors monitor that could match other
 * codes is not implemented in Envoy's API), so a rate-limited provider is left to the retry
 * policy's fallback per request. Up to every host of a cluster may be ejected: then Envoy is in
 * panic and routes as if all were healthy.
 */
const OUTLIER_DETECTION: EnvoyJson = {
  consecutive_5xx: 5,
  consecutive_gateway_failure: 3,
  enforcing_consecutive_gateway_failure: 100,
  interval: '10s',
  base_ejection_time: '30s',
  max_ejection_time: '300s',
  max_ejection_percent: 100,
};

function ruleCluster(
  rule: IRRule,
  byId: ReadonlyMap<string, IRBackend>,
  opts: EnvoyOptions,
  affinity: boolean,
): { cluster: EnvoyJson; assignment?: EnvoyJson } {
  const serving = rule.backends.filter((rb) => rb.weight > 0);
  const ranks = priorityRanks(rule);
  const backends = serving.map((rb) => byId.get(rb.backend)!);
  const allInCluster = backends.every((b) => b.target.kind === 'service');

  const localities = serving.map((rb) => {
    const b = byId.get(rb.backend)!;
    const locality: EnvoyJson = {
      locality: { region: b.id },
      lb_endpoints: lbEndpoints(b),
      load_balancing_weight: rb.weight,
    };
    const rank = ranks.get(rb.priority)!;
    if (rank > 0) locality['priority'] = rank;
    return locality;
  });
  const assignment: EnvoyJson = { cluster_name: rule.cluster, endpoints: localities };

  const cluster: EnvoyJson = {
    name: rule.cluster,
    type: allInCluster ? 'EDS' : 'STRICT_DNS',
    connect_timeout: envoyDuration(opts.connectTimeoutMs),
  };
  if (allInCluster) cluster['eds_cluster_config'] = { eds_config: ADS, service_name: rule.cluster };
  else {
    cluster['dns_lookup_family'] = 'V4_PREFERRED';
    cluster['load_assignment'] = assignment;
  }
  // Session affinity: Envoy's ring hash (defaults: at least 1,024 entries, xxHash) over the
  // cluster's healthy hosts, with each host's share its locality weight divided among the
  // locality's hosts (TypedRingHashLbConfig keeps common_lb_config.locality_weighted_lb_config).
  if (affinity) cluster['lb_policy'] = 'RING_HASH';
  cluster['common_lb_config'] = { locality_weighted_lb_config: {} };
  cluster['outlier_detection'] = OUTLIER_DETECTION;
  const tls = backends
    .filter((b) => b.target.kind === 'external')
    .map((b) => transportSocketMatch(b, opts));
  if (tls.length > 0) cluster['transport_socket_matches'] = tls;
  cluster['typed_extension_protocol_options'] = {
    [HTTP_OPTIONS_KEY]: {
      '@type': HTTP_OPTIONS_TYPE,
      // HTTP/1.1 everywhere: every provider and model server speaks it, and it needs no ALPN,
      // which a cluster mixing TLS and plaintext endpoints could not negotiate uniformly.
      explicit_http_config: { http_protocol_options: {} },
      http_filters: [
        upstreamExtProc(opts),
        {
          name: 'envoy.filters.http.upstream_codec',
          typed_config: { '@type': UPSTREAM_CODEC_TYPE },
        },
      ],
    },
  };
  return allInCluster ? { cluster, assignment } : { cluster };
}

/**
 * A rule of one backend alone, for each backend of the route that keeps Responses state itself
 * (keepsResponsesState): GET/DELETE `/v1/responses/{id}` of a response it keeps must reach that
 * backend, which a rule's cluster (several backends as localities, picked by weight) cannot
 * promise. The router phase sets WIRE.backendHeader to the backend's id for such a request only;
 * its route entry (pinnedEntries) comes before every model. The idle timeout is the longest of
 * the rules that list the backend; no retries (a DELETE is not retried blindly).
 */
function pinnedRules(route: IRRoute): IRRule[] {
  const out: IRRule[] = [];
  for (const b of route.backends) {
    if (!keepsResponsesState(b.provider)) continue;
    const timeouts = route.rules
      .filter((r) => r.backends.some((rb) => rb.backend === b.id))
      .map((r) => r.timeoutMs);
    if (timeouts.length === 0) continue;
    out.push({
      index: -1,
      cluster: backendCluster(b.id),
      matches: [],
      backends: [{ backend: b.id, weight: 1, priority: 0 }],
      timeoutMs: Math.max(...timeouts),
    });
  }
  return out;
}

/** The route entries of pinnedRules: WIRE.backendHeader exactly the backend's id. */
function pinnedEntries(ir: IR): EnvoyJson[] {
  const out: EnvoyJson[] = [];
  for (const route of ir.routes) {
    for (const pin of pinnedRules(route)) {
      const id = pin.backends[0]!.backend;
      out.push({
        name: pin.cluster,
        match: {
          prefix: '/',
          headers: [{ name: WIRE.backendHeader, string_match: { exact: id } }],
        },
        route: routeAction(pin, false),
      });
    }
  }
  return out.sort((a, b) => cmp(a['name'] as string, b['name'] as string));
}

/** Envoy wants priorities 0..N-1 without gaps; the API allows any order of small numbers. */
function priorityRanks(rule: IRRule): Map<number, number> {
  const levels = [...new Set(rule.backends.filter((b) => b.weight > 0).map((b) => b.priority))];
  levels.sort((a, b) => a - b);
  return new Map(levels.map((p, i) => [p, i]));
}

function lbEndpoints(b: IRBackend): EnvoyJson[] {
  const identity = { [METADATA_NAMESPACE]: { [BACKEND_METADATA_KEY]: b.id } };
  if (b.target.kind === 'external') {
    return [
      {
        endpoint: {
          address: { socket_address: { address: b.target.host, port_value: b.target.port } },
          hostname: b.target.authority,
        },
        metadata: {
          filter_metadata: { ...identity, [TRANSPORT_SOCKET_MATCH]: { backend: b.id } },
        },
      },
    ];
  }
  const t = b.target;
  return t.addresses.map((a) => ({
    endpoint: {
      address: { socket_address: { address: a.ip, port_value: a.port } },
      hostname: `${t.service}.${t.namespace}.svc:${t.port}`,
    },
    metadata: { filter_metadata: identity },
  }));
}

function transportSocketMatch(b: IRBackend, opts: EnvoyOptions): EnvoyJson {
  const host = (b.target as { host: string }).host;
  return { name: b.id, match: { backend: b.id }, transport_socket: upstreamTls(host, opts) };
}

/** TLS to a public host: SNI, the system CA bundle, and the host checked against the DNS SANs. */
function upstreamTls(host: string, opts: EnvoyOptions): EnvoyJson {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': TLS_TYPE,
      sni: host,
      common_tls_context: {
        validation_context: {
          trusted_ca: { filename: opts.caFile },
          // Without a SAN check any publicly trusted certificate would do.
          match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: host } }],
        },
      },
    },
  };
}

interface Group {
  route: IRRoute;
  model: ModelMatch;
}

function routeConfiguration(ir: IR): EnvoyJson {
  const groups: Group[] = [];
  for (const route of ir.routes) for (const model of route.models) groups.push({ route, model });
  groups.sort(compareGroups);
  const entries: EnvoyJson[] = pinnedEntries(ir);
  for (const g of groups) entries.push(...groupEntries(g));
  entries.push(
    ...notFoundEntries('sluice/no-model', [], 'model_not_found', 'No route serves this request.'),
  );
  return {
    name: ROUTE_CONFIG_NAME,
    virtual_hosts: [{ name: VIRTUAL_HOST_NAME, domains: ['*'], routes: entries }],
  };
}

/** Exact models first, then prefixes longest first: the extproc's own resolution order. */
function compareGroups(a: Group, b: Group): number {
  const ea = a.model.exact !== undefined;
  const eb = b.model.exact !== undefined;
  if (ea !== eb) return ea ? -1 : 1;
  if (ea) return cmp(a.model.exact!, b.model.exact!);
  return b.model.prefix!.length - a.model.prefix!.length || cmp(a.model.prefix!, b.model.prefix!);
}

function groupEntries({ route, model }: Group): EnvoyJson[] {
  const out: EnvoyJson[] = [];
  const modelPart = model.exact !== undefined ? `exact/${model.exact}` : `prefix/${model.prefix}`;
  for (const rule of route.rules) {
    const matches = rule.matches.length === 0 ? [{ headers: [] }] : rule.matches;
    for (const [j, m] of matches.entries()) {
      const effective = m.model === undefined ? model : narrow(model, m.model);
      if (effective === undefined) continue;
      const headers: EnvoyJson[] = [modelHeader(effective)];
      for (const h of m.headers) {
        headers.push({
          name: h.name,
          string_match: h.exact !== undefined ? { exact: h.exact } : { prefix: h.prefix! },
        });
      }
      out.push({
        name: `${route.key}/rule/${rule.index}/match/${j}/${modelPart}`,
        match: { prefix: '/', headers },
        route: routeAction(rule, route.sessionAffinity !== undefined),
      });
      const catchesAll = m.headers.length === 0 && sameModel(effective, model);
      if (catchesAll) return out;
    }
  }
  out.push(
    ...notFoundEntries(
      `${route.key}/no-rule/${modelPart}`,
      [modelHeader(model)],
      'no_matching_rule',
      `No rule of route ${route.key} matches this request.`,
    ),
  );
  return out;
}

/**
 * A rule's `timeout` is how long the backend may stay silent: before it starts answering, and
 * between two pieces of a streamed answer. Envoy's route `timeout` would not do: it runs from the
 * end of the request until the response is complete (Router::Filter disables it only in
 * onUpstreamComplete, source/common/router/router.cc), so it would cut a legitimate 10-minute
 * stream. It is turned off (0s) and the rule's timeout becomes the route's `idle_timeout` (the
 * stream idle timeout for this route, re-armed by every byte in either direction): a backend that
 * never answers, or stalls mid-stream, ends at that point — a 504 `upstream_timeout` in the
 * caller's format before the response started (flag SI), a reset after.
 */
function routeAction(rule: IRRule, affinity: boolean): EnvoyJson {
  const action: EnvoyJson = {
    cluster: rule.cluster,
    auto_host_rewrite: true,
    timeout: envoyDuration(0),
    idle_timeout: envoyDuration(rule.timeoutMs),
  };
  // The conversation key the extproc sets (after clear_route_cache, the router reads the headers
  // as the ext_proc filter left them). Without it Envoy hashes a random value.
  if (affinity) action['hash_policy'] = [{ header: { header_name: WIRE.affinityHeader } }];
  const retry = rule.retry;
  if (retry) {
    const on = [...new Set(retry.on.map((r) => RETRY_ON[r]))];
    const policy: EnvoyJson = { retry_on: on.join(','), num_retries: retry.attempts };
    if (retry.on.includes('rate-limited')) policy['retriable_status_codes'] = [429];
    if (retry.perTryTimeoutMs !== undefined) {
      policy['per_try_timeout'] = envoyDuration(retry.perTryTimeoutMs);
    }
    if (priorityRanks(rule).size > 1) {
      policy['retry_priority'] = {
        name: 'envoy.retry_priorities.previous_priorities',
        typed_config: { '@type': PREVIOUS_PRIORITIES_TYPE, update_frequency: 1 },
      };
    }
    policy['retry_host_predicate'] = [
      {
        name: 'envoy.retry_host_predicates.previous_hosts',
        typed_config: { '@type': PREVIOUS_HOSTS_TYPE },
      },
    ];
    policy['host_selection_retry_max_attempts'] = 3;
    action['retry_policy'] = policy;
  }
  return action;
}

function modelHeader(m: ModelMatch): EnvoyJson {
  return {
    name: MODEL_HEADER,
    string_match: m.exact !== undefined ? { exact: m.exact } : { prefix: m.prefix },
  };
}

function sameModel(a: ModelMatch, b: ModelMatch): boolean {
  return a.exact === b.exact && a.prefix === b.prefix;
}

/**
 * A 404 direct response in the caller's API format: Anthropic's error object on the Anthropic
 * path, OpenAI's on every other one (the same split as the local reply mappers below).
 */
function notFoundEntries(
  name: string,
  headers: EnvoyJson[],
  code: string,
  message: string,
): EnvoyJson[] {
  const anthropic = {
    type: 'error',
    error: { type: 'not_found_error', message, code },
  };
  const openai = { error: { message, type: 'invalid_request_error', param: 'model', code } };
  const entry = (suffix: string, prefix: string, body: unknown): EnvoyJson => ({
    name: `${name}${suffix}`,
    match: headers.length > 0 ? { prefix, headers } : { prefix },
    direct_response: { status: 404, body: { inline_string: JSON.stringify(body) } },
    response_headers_to_add: jsonHeaders(code),
  });
  return [entry('/anthropic', ANTHROPIC_PATH, anthropic), entry('', '/', openai)];
}

function jsonHeaders(code: string): EnvoyJson[] {
  return [
    {
      header: { key: 'content-type', value: 'application/json' },
      append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
    },
    {
      header: { key: 'x-sluice-error-code', value: code },
      append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
    },
  ];
}

/** The path of the one Anthropic API the gateway serves (extproc/providers/endpoints.ts). */
const ANTHROPIC_PATH = '/v1/messages';

/** Both ext_proc filters accept the extproc's mark on its own immediate responses. */
const REPLY_METADATA_OPTIONS: EnvoyJson = {
  receiving_namespaces: { untyped: [WIRE.replyMetadataNamespace] },
};

interface ReplyCategory {
  code: string;
  message: string;
  filter: EnvoyJson;
  /** Forced status; absent: the one Envoy chose. */
  status?: number;
  /** The error `type` each API's SDKs expect for it. */
  openaiType: string;
  anthropicType: string;
}

function statusIs(code: number): EnvoyJson {
  return {
    status_code_filter: {
      comparison: {
        op: 'EQ',
        value: { default_value: code, runtime_key: `sluice.local_reply.status_${code}` },
      },
    },
  };
}

/**
 * Envoy's own replies, by response flag first (the router's), then by status for those that carry
 * none (ext_proc's gRPC error → 500 and message timeout → 504, the buffer limit's 413). First
 * match wins (LocalReplyImpl::rewrite, source/common/local_reply/local_reply.cc).
 */
const REPLY_CATEGORIES: ReplyCategory[] = [
  {
    code: 'upstream_unavailable',
    message: 'The model backend could not be reached.',
    // No healthy upstream, connect failure, connection termination, remote reset, retries
    // exhausted, overflow, cluster not found.
    filter: { response_flag_filter: { flags: ['UH', 'UF', 'UC', 'UR', 'URX', 'UO', 'NC'] } },
    status: 503,
    openaiType: 'server_error',
    anthropicType: 'overloaded_error',
  },
  {
    code: 'upstream_timeout',
    message: 'The model backend did not answer in time.',
    // Upstream request timeout (route or per try), stream idle timeout (the route's
    // idle_timeout), upstream max stream duration.
    filter: { response_flag_filter: { flags: ['UT', 'SI', 'UMSDR'] } },
    status: 504,
    openaiType: 'server_error',
    anthropicType: 'api_error',
  },
  {
    code: 'model_not_found',
    message: 'No route of this gateway serves this request.',
    filter: { response_flag_filter: { flags: ['NR'] } },
    status: 404,
    openaiType: 'invalid_request_error',
    anthropicType: 'not_found_error',
  },
  {
    code: 'extproc_unavailable',
    message: 'The gateway could not process this request; retry shortly.',
    // The ext_proc filter's fail-closed replies (status_on_error, default 500; message
    // timeout 504) carry no response flag; the extproc's own replies were matched before.
    filter: { or_filter: { filters: [statusIs(500), statusIs(504)] } },
    openaiType: 'server_error',
    anthropicType: 'api_error',
  },
  {
    code: 'request_too_large',
    message: 'The request is larger than the gateway accepts.',
    filter: statusIs(413),
    openaiType: 'invalid_request_error',
    anthropicType: 'request_too_large',
  },
];

/**
 * Envoy's own replies in the caller's API format. Since 1.34 the router ext_proc filter never
 * sees them (Filter::onLocalReply, CVE-2025-30157), so Envoy shapes them itself: a mapper per
 * category and API (Anthropic on the Anthropic path, OpenAI elsewhere), with a stable `code` in
 * the body and in x-sluice-error-code, and the request id when the extproc had assigned one. The
 * first mapper passes the extproc's own immediate responses through untouched: they carry
 * WIRE.replyMetadata* in the stream's dynamic metadata. A direct_response is written in the
 * caller's format by the route itself and matches no mapper.
 */
function localReplyConfig(): EnvoyJson {
  const ours: EnvoyJson = {
    filter: {
      metadata_filter: {
        matcher: {
          filter: WIRE.replyMetadataNamespace,
          path: [{ key: WIRE.replyMetadataKey }],
          value: { string_match: { exact: WIRE.replyMetadataValue } },
        },
        match_if_key_not_found: false,
      },
    },
  };
  const anthropicPath: EnvoyJson = {
    header_filter: { header: { name: ':path', string_match: { prefix: ANTHROPIC_PATH } } },
  };
  const mappers: EnvoyJson[] = [ours];
  for (const api of ['anthropic', 'openai'] as const) {
    for (const c of REPLY_CATEGORIES) {
      const body =
        api === 'anthropic'
          ? { type: 'error', error: { type: c.anthropicType, message: c.message, code: c.code } }
          : { error: { message: c.message, type: c.openaiType, code: c.code } };
      const m: EnvoyJson = {
        // OpenAI mappers come after every Anthropic one: they take what the path did not.
        filter:
          api === 'anthropic' ? { and_filter: { filters: [anthropicPath, c.filter] } } : c.filter,
        headers_to_add: [
          {
            header: { key: 'x-sluice-error-code', value: c.code },
            append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
          },
          {
            // Empty (and so left out) when the extproc had not assigned one yet.
            header: { key: WIRE.requestIdHeader, value: `%REQ(${WIRE.requestIdHeader})%` },
            append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
          },
        ],
        body_format_override: { json_format: body },
      };
      if (c.status !== undefined) m['status_code'] = c.status;
      mappers.push(m);
    }
  }
  return { mappers };
}
