// What the emulator implements, field by field. A resource is walked with Envoy's own message
// definitions; any field set to a non-default value that is not listed here, any Any of a type
// not listed, and any listed field with a value outside its implemented set is a refusal that
// names the field. Nothing is ignored silently: a NACK is the only answer to config we cannot run.
import protobuf from 'protobufjs';
import type { Json } from './protos.js';

/** true: every value; a list: these values only; a function: an error message or undefined. */
type Rule = true | readonly string[] | ((value: unknown) => string | undefined);

const EXT_PROC = 'envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';
const HCM = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const HTTP_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const JWT = 'envoy.extensions.filters.http.jwt_authn.v3';

/** The CEL attributes the emulator can evaluate for an upstream ext_proc filter. */
export const HOST_METADATA_ATTRIBUTE =
  /^xds\.upstream_host_metadata\.filter_metadata\['([^']+)'\]\['([^']+)'\]$/;

const HEADER_MODES = ['DEFAULT', 'SEND', 'SKIP'];

/** A google.protobuf.UInt32Value as the walker sees it. */
function wrappedValue(v: unknown): number {
  return typeof v === 'object' && v !== null
    ? Number((v as { value?: unknown }).value ?? 0)
    : Number(v);
}
const TRAILER_MODES = ['DEFAULT', 'SKIP'];
const BODY_MODES = ['NONE', 'BUFFERED', 'STREAMED'];
export const RETRY_ON = [
  '5xx',
  'gateway-error',
  'reset',
  'connect-failure',
  'retriable-status-codes',
];

const ALLOWED: Record<string, Record<string, Rule>> = {
  'envoy.config.listener.v3.Listener': {
    name: true,
    address: true,
    filter_chains: (v) =>
      Array.isArray(v) && v.length === 1 ? undefined : 'exactly one filter chain',
    per_connection_buffer_limit_bytes: true,
  },
  'envoy.config.core.v3.Address': { socket_address: true, pipe: true },
  'envoy.config.core.v3.SocketAddress': { address: true, port_value: true },
  'envoy.config.core.v3.Pipe': { path: true },
  'envoy.config.listener.v3.FilterChain': {
    filters: (v) => (Array.isArray(v) && v.length === 1 ? undefined : 'exactly one network filter'),
  },
  'envoy.config.listener.v3.Filter': {
    name: ['envoy.filters.network.http_connection_manager'],
    typed_config: true,
  },
  [HCM]: {
    stat_prefix: true,
    rds: true,
    http_filters: true,
    // Without downstream TLS all but ALWAYS_FORWARD_ONLY remove a client's XFCC (model.ts).
    forward_client_cert_details: [
      'SANITIZE',
      'SANITIZE_SET',
      'APPEND_FORWARD',
      'ALWAYS_FORWARD_ONLY',
    ],
    set_current_client_cert_details: true,
    // The features local-reply.ts implements; the message rules below are the detail.
    local_reply_config: true,
  },
  'envoy.extensions.filters.network.http_connection_manager.v3.LocalReplyConfig': {
    mappers: true,
  },
  'envoy.extensions.filters.network.http_connection_manager.v3.ResponseMapper': {
    filter: true,
    status_code: true,
    headers_to_add: true,
    body_format_override: true,
  },
  'envoy.config.accesslog.v3.AccessLogFilter': {
    status_code_filter: true,
    header_filter: true,
    response_flag_filter: true,
    metadata_filter: true,
    and_filter: true,
    or_filter: true,
  },
  'envoy.config.accesslog.v3.StatusCodeFilter': { comparison: true },
  'envoy.config.accesslog.v3.ComparisonFilter': { op: ['EQ', 'GE', 'LE'], value: true },
  'envoy.config.core.v3.RuntimeUInt32': { default_value: true, runtime_key: true },
  'envoy.config.accesslog.v3.HeaderFilter': { header: true },
  'envoy.config.accesslog.v3.ResponseFlagFilter': { flags: true },
  'envoy.config.accesslog.v3.MetadataFilter': { matcher: true, match_if_key_not_found: true },
  'envoy.type.matcher.v3.MetadataMatcher': { filter: true, path: true, value: true },
  'envoy.type.matcher.v3.MetadataMatcher.PathSegment': { key: true },
  'envoy.type.matcher.v3.ValueMatcher': { string_match: true },
  'envoy.config.accesslog.v3.AndFilter': { filters: true },
  'envoy.config.accesslog.v3.OrFilter': { filters: true },
  // json_format only, with literal values (local-reply.ts refuses command operators in it).
  'envoy.config.core.v3.SubstitutionFormatString': { json_format: true },
  [`${HCM}.SetCurrentClientCertDetails`]: { uri: true },
  'envoy.extensions.filters.network.http_connection_manager.v3.Rds': {
    config_source: true,
    route_config_name: true,
  },
  'envoy.config.core.v3.ConfigSource': { ads: true, resource_api_version: ['V3'] },
  'envoy.config.core.v3.AggregatedConfigSource': {},
  'envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter': {
    name: true,
    typed_config: true,
  },
  [EXT_PROC]: {
    grpc_service: true,
    failure_mode_allow: true,
    processing_mode: true,
    message_timeout: true,
    allow_mode_override: true,
    request_attributes: (v) => {
      for (const a of v as string[]) {
        if (a !== 'xds.cluster_name' && !HOST_METADATA_ATTRIBUTE.test(a)) {
          return `attribute ${JSON.stringify(a)} cannot be evaluated`;
        }
      }
      return undefined;
    },
    metadata_options: true,
  },
  'envoy.extensions.filters.http.ext_proc.v3.MetadataOptions': { receiving_namespaces: true },
  'envoy.extensions.filters.http.ext_proc.v3.MetadataOptions.MetadataNamespaces': {
    untyped: true,
  },
  'envoy.config.core.v3.GrpcService': { envoy_grpc: true, initial_metadata: true },
  'envoy.config.core.v3.GrpcService.EnvoyGrpc': { cluster_name: true },
  'envoy.config.core.v3.HeaderValue': { key: true, value: true },
  'envoy.extensions.filters.http.ext_proc.v3.ProcessingMode': {
    request_header_mode: HEADER_MODES,
    response_header_mode: HEADER_MODES,
    request_body_mode: BODY_MODES,
    response_body_mode: BODY_MODES,
    request_trailer_mode: TRAILER_MODES,
    response_trailer_mode: TRAILER_MODES,
  },
  'envoy.extensions.filters.http.router.v3.Router': {},
  'envoy.extensions.filters.http.header_mutation.v3.HeaderMutation': { mutations: true },
  'envoy.extensions.filters.http.header_mutation.v3.Mutations': { request_mutations: true },
  'envoy.config.common.mutation_rules.v3.HeaderMutation': { remove: true },
  [`${JWT}.JwtAuthentication`]: { providers: true, rules: true },
  [`${JWT}.JwtProvider`]: {
    issuer: true,
    audiences: true,
    remote_jwks: true,
    local_jwks: true,
    forward: true,
    from_headers: true,
    forward_payload_header: true,
  },
  [`${JWT}.RemoteJwks`]: { http_uri: true, cache_duration: true },
  'envoy.config.core.v3.HttpUri': { uri: true, cluster: true, timeout: true },
  [`${JWT}.JwtHeader`]: { name: true, value_prefix: true },
  [`${JWT}.RequirementRule`]: { match: true, requires: true },
  [`${JWT}.JwtRequirement`]: {
    provider_name: true,
    requires_any: true,
    allow_missing_or_failed: true,
    allow_missing: true,
  },
  [`${JWT}.JwtRequirementOrList`]: { requirements: true },
  'envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec': {},

  'envoy.config.route.v3.RouteConfiguration': { name: true, virtual_hosts: true },
  'envoy.config.route.v3.VirtualHost': {
    name: true,
    domains: (v) =>
      (v as string[]).every((d) => d === '*' || !d.includes('*'))
        ? undefined
        : 'only "*" and exact domains are implemented',
    routes: true,
  },
  'envoy.config.route.v3.Route': {
    name: true,
    match: true,
    route: true,
    direct_response: true,
    response_headers_to_add: true,
  },
  'envoy.config.route.v3.RouteMatch': { prefix: true, headers: true },
  'envoy.config.route.v3.HeaderMatcher': { name: true, string_match: true },
  'envoy.type.matcher.v3.StringMatcher': { exact: true, prefix: true },
  'envoy.config.route.v3.RouteAction': {
    cluster: true,
    auto_host_rewrite: true,
    timeout: true,
    idle_timeout: true,
    retry_policy: true,
    // Hashed by RING_HASH clusters (ring-hash.ts); header hashing only.
    hash_policy: true,
  },
  'envoy.config.route.v3.RouteAction.HashPolicy': { header: true },
  'envoy.config.route.v3.RouteAction.HashPolicy.Header': { header_name: true },
  'envoy.config.route.v3.RetryPolicy': {
    retry_on: (v) => {
      const bad = String(v)
        .split(',')
        .map((s) => s.trim())
        .filter((s) => !RETRY_ON.includes(s));
      return bad.length === 0 ? undefined : `retry_on ${bad.join(',')} is not implemented`;
    },
    num_retries: true,
    retriable_status_codes: true,
    per_try_timeout: true,
    retry_priority: true,
    retry_host_predicate: true,
    host_selection_retry_max_attempts: true,
  },
  'envoy.config.route.v3.RetryPolicy.RetryPriority': {
    name: ['envoy.retry_priorities.previous_priorities'],
    typed_config: true,
  },
  'envoy.config.route.v3.RetryPolicy.RetryHostPredicate': {
    name: ['envoy.retry_host_predicates.previous_hosts'],
    typed_config: true,
  },
  'envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig': {
    update_frequency: true,
  },
  'envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate': {},
  'envoy.config.route.v3.DirectResponseAction': { status: true, body: true },
  'envoy.config.core.v3.DataSource': { inline_string: true, filename: true },
  'envoy.config.core.v3.HeaderValueOption': {
    header: true,
    append_action: ['APPEND_IF_EXISTS_OR_ADD', 'OVERWRITE_IF_EXISTS_OR_ADD'],
  },

  'envoy.config.cluster.v3.Cluster': {
    name: true,
    type: ['STATIC', 'STRICT_DNS', 'EDS'],
    connect_timeout: true,
    eds_cluster_config: true,
    dns_lookup_family: ['V4_PREFERRED', 'V4_ONLY', 'AUTO'],
    load_assignment: true,
    // Round robin (lb.ts) and ring hash (ring-hash.ts); MAGLEV and the others are refused.
    lb_policy: ['ROUND_ROBIN', 'RING_HASH'],
    ring_hash_lb_config: true,
    common_lb_config: true,
    outlier_detection: true,
    transport_socket_matches: true,
    transport_socket: true,
    typed_extension_protocol_options: (v) =>
      Object.keys(v as object).every((k) => k === HTTP_OPTIONS)
        ? undefined
        : `only ${HTTP_OPTIONS} is implemented`,
  },
  'envoy.config.cluster.v3.Cluster.RingHashLbConfig': {
    minimum_ring_size: true,
    maximum_ring_size: true,
    hash_function: ['XX_HASH'],
  },
  'envoy.config.cluster.v3.Cluster.EdsClusterConfig': { eds_config: true, service_name: true },
  // Consecutive 5xx and gateway failures with ejection times (lb.ts); success rate and failure
  // percentage detection, and split local-origin errors, are not implemented.
  'envoy.config.cluster.v3.OutlierDetection': {
    consecutive_5xx: true,
    consecutive_gateway_failure: true,
    enforcing_consecutive_5xx: (v) =>
      wrappedValue(v) === 100 ? undefined : 'only 100 (always eject) is implemented',
    enforcing_consecutive_gateway_failure: (v) =>
      [0, 100].includes(wrappedValue(v)) ? undefined : 'only 0 or 100 is implemented',
    interval: true,
    base_ejection_time: true,
    max_ejection_time: true,
    max_ejection_percent: true,
  },
  'envoy.config.cluster.v3.Cluster.CommonLbConfig': { locality_weighted_lb_config: true },
  'envoy.config.cluster.v3.Cluster.CommonLbConfig.LocalityWeightedLbConfig': {},
  'envoy.config.cluster.v3.Cluster.TransportSocketMatch': {
    name: true,
    match: true,
    transport_socket: true,
  },
  'envoy.config.core.v3.TransportSocket': {
    name: ['envoy.transport_sockets.tls'],
    typed_config: true,
  },
  'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext': {
    sni: true,
    common_tls_context: true,
  },
  'envoy.extensions.transport_sockets.tls.v3.CommonTlsContext': { validation_context: true },
  'envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext': {
    trusted_ca: true,
    match_typed_subject_alt_names: true,
  },
  'envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher': {
    san_type: ['DNS'],
    matcher: true,
  },
  [HTTP_OPTIONS]: { explicit_http_config: true, http_filters: true },
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig': {
    http_protocol_options: true,
    http2_protocol_options: true,
  },
  'envoy.config.core.v3.Http1ProtocolOptions': {},
  'envoy.config.core.v3.Http2ProtocolOptions': {},

  'envoy.config.endpoint.v3.ClusterLoadAssignment': { cluster_name: true, endpoints: true },
  'envoy.config.endpoint.v3.LocalityLbEndpoints': {
    locality: true,
    lb_endpoints: true,
    load_balancing_weight: true,
    priority: true,
  },
  'envoy.config.core.v3.Locality': { region: true, zone: true, sub_zone: true },
  'envoy.config.endpoint.v3.LbEndpoint': { endpoint: true, metadata: true },
  'envoy.config.endpoint.v3.Endpoint': { address: true, hostname: true },
  'envoy.config.core.v3.Metadata': { filter_metadata: true },
};

/** Messages taken whole: their meaning does not depend on fields we could fail to implement. */
const OPAQUE = new Set([
  'google.protobuf.Duration',
  'google.protobuf.Struct',
  'google.protobuf.UInt32Value',
  'google.protobuf.UInt64Value',
  'google.protobuf.BoolValue',
  'google.protobuf.Empty',
]);

function fullName(t: protobuf.ReflectionObject): string {
  return t.fullName.startsWith('.') ? t.fullName.slice(1) : t.fullName;
}

function isDefault(field: protobuf.Field, value: unknown): boolean {
  if (field.map)
    return typeof value === 'object' && value !== null && Object.keys(value).length === 0;
  if (field.repeated) return Array.isArray(value) && value.length === 0;
  if (field.resolvedType instanceof protobuf.Enum) {
    return value === field.resolvedType.valuesById[0] || value === 0;
  }
  if (field.resolvedType) return false;
  return value === false || value === 0 || value === '' || value === '0';
}

/** Every unimplemented field or value in `json` (a decoded `type`), as "path: what". */
export function unsupported(type: protobuf.Type, json: Json, path: string): string[] {
  const errors: string[] = [];
  walk(type, json, path, errors);
  return errors;
}

function walk(type: protobuf.Type, obj: Json, path: string, errors: string[]): void {
  const name = fullName(type);
  const allowed = ALLOWED[name];
  if (!allowed) {
    errors.push(`${path}: message ${name} is not implemented by envoy-sim`);
    return;
  }
  for (const [key, value] of Object.entries(obj)) {
    if (key === '@type') continue;
    const field = type.fields[key];
    if (!field) {
      errors.push(`${path}.${key}: not a field of ${name}`);
      continue;
    }
    if (isDefault(field, value)) continue;
    const rule = allowed[key];
    const at = `${path}.${key}`;
    if (rule === undefined) {
      errors.push(`${at}: field ${name}.${key} is not implemented by envoy-sim`);
      continue;
    }
    if (Array.isArray(rule)) {
      const values = Array.isArray(value) ? (value as unknown[]) : [value];
      for (const v of values) {
        if (!rule.includes(String(v))) {
          errors.push(`${at}: value ${JSON.stringify(v)} of ${name}.${key} is not implemented`);
        }
      }
    } else if (typeof rule === 'function') {
      const problem = rule(value);
      if (problem) errors.push(`${at}: ${name}.${key}: ${problem}`);
    }
    const sub = field.resolvedType;
    if (!(sub instanceof protobuf.Type) || OPAQUE.has(fullName(sub))) continue;
    const items: [string, unknown][] = field.map
      ? Object.entries(value as object).map(([k, v]) => [`${at}[${JSON.stringify(k)}]`, v])
      : field.repeated
        ? (value as unknown[]).map((v, i) => [`${at}[${i}]`, v])
        : [[at, value]];
    for (const [p, v] of items) {
      if (fullName(sub) === 'google.protobuf.Any') walkAny(type.root, v as Json, p, errors);
      else walk(sub, v as Json, p, errors);
    }
  }
}

function walkAny(root: protobuf.Namespace, any: Json, path: string, errors: string[]): void {
  const at = any['@type'];
  if (typeof at !== 'string') {
    errors.push(`${path}: typed_config of type ${String(any['type_url'])} is not implemented`);
    return;
  }
  const inner = root.lookupType(at.slice(at.lastIndexOf('/') + 1));
  walk(inner, any, path, errors);
}
