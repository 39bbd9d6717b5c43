// Decoded xDS resources (already checked against the allowlist) → the emulator's runtime
// model. Cross-field rules Envoy enforces at load time are checked here and throw ConfigError,
// which becomes the NACK message.
import type { JsonValue, ProcessingModeConfig } from './ext-proc/index.js';
import type { BodySendMode, HeaderSendMode } from './ext-proc/index.js';
import { compileJwtAuthn, type JwtAuthnSpec } from './jwt-authn.js';
import { arr, ConfigError, durationMs, obj, str } from './json.js';
import { compileLocalReplyConfig, type LocalReplyConfig } from './local-reply.js';
import type { Json } from './protos.js';
import { DEFAULT_RING, type HashPolicyModel, type RingConfig } from './ring-hash.js';

export { ConfigError, durationMs };

export interface ExtProcSpec {
  filterName: string;
  clusterName: string;
  initialMetadata: Record<string, string>;
  failureModeAllow: boolean;
  processingMode: ProcessingModeConfig;
  messageTimeoutMs: number;
  allowModeOverride: boolean;
  requestAttributes: string[];
  responseAttributes: string[];
  /** metadata_options.receiving_namespaces.untyped: where the server may write dynamic metadata. */
  receivingNamespaces: string[];
}

/** The HTTP filters the emulator runs itself, in order, before the router's ext_proc filter. */
export type NativeFilter =
  | { kind: 'header_mutation'; name: string; removeRequestHeaders: string[] }
  | { kind: 'jwt_authn'; name: string; spec: JwtAuthnSpec };

export interface ListenerModel {
  name: string;
  host: string;
  port: number;
  bufferLimitBytes: number;
  routeConfigName: string;
  /**
   * On the emulator's plaintext listener SANITIZE (the default), SANITIZE_SET and APPEND_FORWARD
   * all remove any x-forwarded-client-cert a client sent and set none, as Envoy does without
   * downstream mTLS; only ALWAYS_FORWARD_ONLY keeps it.
   */
  forwardClientCertDetails: 'SANITIZE' | 'SANITIZE_SET' | 'APPEND_FORWARD' | 'ALWAYS_FORWARD_ONLY';
  nativeFilters: NativeFilter[];
  extProc: ExtProcSpec | undefined;
  /** The HCM's local_reply_config (local-reply.ts); no mappers when absent. */
  localReply: LocalReplyConfig;
}

export interface HeaderMatch {
  name: string;
  exact?: string;
  prefix?: string;
}

export interface HeaderToAdd {
  key: string;
  value: string;
  overwrite: boolean;
}

export interface RetryModel {
  on: Set<string>;
  numRetries: number;
  statusCodes: number[];
  perTryTimeoutMs: number | undefined;
  /** previous_priorities update_frequency, when the plugin is configured. */
  previousPriorities: number | undefined;
  previousHosts: boolean;
  hostSelectionMaxAttempts: number;
}

export type RouteAction =
  | {
      kind: 'route';
      cluster: string;
      autoHostRewrite: boolean;
      /**
       * Envoy's route timeout: from the end of the request until the response is complete (the
       * router disables it in onUpstreamComplete), so it also bounds a streamed body. 0 disables
       * it, as in Envoy; unset is 15 s.
       */
      timeoutMs: number;
      /**
       * The stream idle timeout for this route (RouteAction.idle_timeout): no activity in either
       * direction for this long ends the stream. Unset: the HCM's stream_idle_timeout (5 min
       * default); 0 disables it.
       */
      idleTimeoutMs: number | undefined;
      retry: RetryModel | undefined;
      /** hash_policy: what a hashing cluster (RING_HASH) hashes; ignored by round robin. */
      hashPolicy: HashPolicyModel[];
    }
  | { kind: 'direct'; status: number; body: string | undefined };

export interface RouteModel {
  name: string;
  prefix: string;
  headers: HeaderMatch[];
  action: RouteAction;
  headersToAdd: HeaderToAdd[];
}

export interface RouteConfigModel {
  name: string;
  virtualHosts: { name: string; domains: string[]; routes: RouteModel[] }[];
}

export interface HostModel {
  /** IP or DNS name (STRICT_DNS), or a Unix socket path when `pipe`. */
  address: string;
  port: number;
  pipe: boolean;
  hostname: string;
  /** filter_metadata, namespace → struct as JSON. */
  metadata: Record<string, Record<string, JsonValue>>;
}

export interface LocalityModel {
  name: string;
  priority: number;
  weight: number;
  hosts: HostModel[];
}

export interface TlsModel {
  sni: string;
  caFile: string | undefined;
  sanExact: string[];
}

export interface ClusterModel {
  name: string;
  type: 'STATIC' | 'STRICT_DNS' | 'EDS';
  connectTimeoutMs: number;
  edsServiceName: string | undefined;
  dnsFamily: string;
  /** Inline endpoints (STATIC, STRICT_DNS); EDS clusters take theirs from the ClusterLoadAssignment. */
  localities: LocalityModel[] | undefined;
  localityWeighted: boolean;
  /** ROUND_ROBIN (lb.ts pick) or RING_HASH (lb.ts pickByHash, ring-hash.ts). */
  lbPolicy: 'ROUND_ROBIN' | 'RING_HASH';
  ring: RingConfig;
  transportSocketMatches: { name: string; match: Record<string, JsonValue>; tls: TlsModel }[];
  /** The cluster's own transport socket: endpoints no match selects use it. */
  transportSocket: TlsModel | undefined;
  http2: boolean;
  upstreamExtProc: ExtProcSpec | undefined;
  /** Passive health (outlier_detection); undefined: hosts are never ejected. */
  outlier: OutlierModel | undefined;
}

/** The outlier_detection fields the emulator implements, with Envoy's defaults. */
export interface OutlierModel {
  consecutive5xx: number;
  consecutiveGatewayFailure: number;
  /** % chance a gateway-failure streak ejects; Envoy's default 0 turns it off. */
  enforcingGatewayFailure: number;
  intervalMs: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
  maxEjectionPercent: number;
}

function outlierModel(v: unknown): OutlierModel | undefined {
  if (v === undefined || v === null) return undefined;
  const o = obj(v);
  return {
    consecutive5xx: wrapped(o['consecutive_5xx'], 5),
    consecutiveGatewayFailure: wrapped(o['consecutive_gateway_failure'], 5),
    enforcingGatewayFailure: wrapped(o['enforcing_consecutive_gateway_failure'], 0),
    intervalMs: durationMs(o['interval'], 10_000),
    baseEjectionMs: durationMs(o['base_ejection_time'], 30_000),
    maxEjectionMs: durationMs(o['max_ejection_time'], 300_000),
    maxEjectionPercent: wrapped(o['max_ejection_percent'], 10),
  };
}

const EXT_PROC = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';
const HEADER_MUTATION =
  'type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation';
const JWT_AUTHN =
  'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const UPSTREAM_CODEC =
  'type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec';
const HTTP_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

function wrapped(v: unknown, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  return Number((v as { value?: number }).value ?? 0);
}

/** google.protobuf.Struct as protobufjs decodes it → plain JSON. */
export function structToJson(s: unknown): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(obj(obj(s)['fields']))) out[k] = valueToJson(v);
  return out;
}

function valueToJson(v: unknown): JsonValue {
  const x = obj(v);
  if ('stringValue' in x) return str(x['stringValue']);
  if ('numberValue' in x) return Number(x['numberValue']);
  if ('boolValue' in x) return Boolean(x['boolValue']);
  if ('structValue' in x) return structToJson(x['structValue']);
  if ('listValue' in x) return arr(obj(x['listValue'])['values']).map(valueToJson);
  return null;
}

function extProcSpec(filterName: string, cfg: Json): ExtProcSpec {
  const grpc = obj(cfg['grpc_service']);
  const clusterName = str(obj(grpc['envoy_grpc'])['cluster_name']);
  if (!clusterName) throw new ConfigError(`${filterName}: grpc_service.envoy_grpc is required`);
  const initialMetadata: Record<string, string> = {};
  for (const h of arr(grpc['initial_metadata'])) initialMetadata[str(h['key'])] = str(h['value']);
  const pm = obj(cfg['processing_mode']);
  const header = (k: string): HeaderSendMode => (str(pm[k]) || 'DEFAULT') as HeaderSendMode;
  const body = (k: string): BodySendMode => (str(pm[k]) || 'NONE') as BodySendMode;
  return {
    filterName,
    clusterName,
    initialMetadata,
    failureModeAllow: cfg['failure_mode_allow'] === true,
    processingMode: {
      requestHeaderMode: header('request_header_mode'),
      responseHeaderMode: header('response_header_mode'),
      requestBodyMode: body('request_body_mode'),
      responseBodyMode: body('response_body_mode'),
      requestTrailerMode: header('request_trailer_mode'),
      responseTrailerMode: header('response_trailer_mode'),
    },
    messageTimeoutMs: durationMs(cfg['message_timeout'], 200),
    allowModeOverride: cfg['allow_mode_override'] === true,
    requestAttributes: arr(cfg['request_attributes']) as unknown as string[],
    responseAttributes: arr(cfg['response_attributes']) as unknown as string[],
    receivingNamespaces: arr(
      obj(obj(cfg['metadata_options'])['receiving_namespaces'])['untyped'],
    ) as unknown as string[],
  };
}

export function compileListener(l: Json): ListenerModel {
  const name = str(l['name']);
  const sa = obj(obj(l['address'])['socket_address']);
  if (!sa['address']) throw new ConfigError(`listener ${name}: a socket_address is required`);
  const filter = arr(arr(l['filter_chains'])[0]?.['filters'])[0]!;
  const hcm = obj(filter['typed_config']);
  const rds = obj(hcm['rds']);
  if (!obj(rds['config_source'])['ads']) {
    throw new ConfigError(`listener ${name}: rds.config_source must be ads`);
  }
  const filters = arr(hcm['http_filters']);
  const last = filters[filters.length - 1];
  if (!last || obj(last['typed_config'])['@type'] !== ROUTER) {
    throw new ConfigError(`listener ${name}: the last HTTP filter must be the router`);
  }
  const nativeFilters: NativeFilter[] = [];
  const procs: Json[] = [];
  for (const f of filters.slice(0, -1)) {
    const fname = str(f['name']);
    const cfg = obj(f['typed_config']);
    const type = cfg['@type'];
    if (type === EXT_PROC) {
      procs.push(f);
      continue;
    }
    if (procs.length > 0) {
      throw new ConfigError(
        `listener ${name}: HTTP filter ${fname} after an ext_proc filter is not implemented`,
      );
    }
    if (type === HEADER_MUTATION) nativeFilters.push(headerMutation(name, fname, cfg));
    else if (type === JWT_AUTHN) {
      nativeFilters.push({ kind: 'jwt_authn', name: fname, spec: compileJwtAuthn(fname, cfg) });
    } else {
      throw new ConfigError(`listener ${name}: HTTP filter ${fname} is not implemented`);
    }
  }
  if (procs.length > 1) {
    throw new ConfigError(`listener ${name}: more than one ext_proc filter is not implemented`);
  }
  const extProc = procs[0]
    ? extProcSpec(str(procs[0]['name']), obj(procs[0]['typed_config']))
    : undefined;
  if (extProc && extProc.requestAttributes.length > 0) {
    throw new ConfigError(
      `listener ${name}: request_attributes are implemented for upstream filters only`,
    );
  }
  return {
    name,
    host: str(sa['address']),
    port: Number(sa['port_value'] ?? 0),
    bufferLimitBytes: wrapped(l['per_connection_buffer_limit_bytes'], 1024 * 1024),
    routeConfigName: str(rds['route_config_name']),
    forwardClientCertDetails: forwardClientCert(hcm['forward_client_cert_details']),
    nativeFilters,
    extProc,
    localReply: compileLocalReplyConfig(
      `listener ${name}: local_reply_config`,
      hcm['local_reply_config'] as Json | undefined,
    ),
  };
}

function forwardClientCert(v: unknown): ListenerModel['forwardClientCertDetails'] {
  const mode = str(v);
  // The allowlist has refused any other value already.
  return mode === 'SANITIZE_SET' || mode === 'APPEND_FORWARD' || mode === 'ALWAYS_FORWARD_ONLY'
    ? mode
    : 'SANITIZE';
}

function headerMutation(listener: string, filterName: string, cfg: Json): NativeFilter {
  const removeRequestHeaders = arr(obj(cfg['mutations'])['request_mutations']).map((m) => {
    const header = str(m['remove']).toLowerCase();
    // Envoy never removes pseudo-headers or Host this way; nothing of ours asks it to.
    if (!header || header.startsWith(':') || header === 'host') {
      throw new ConfigError(
        `listener ${listener}: ${filterName}: removing ${JSON.stringify(header)} is not implemented`,
      );
    }
    return header;
  });
  return { kind: 'header_mutation', name: filterName, removeRequestHeaders };
}

export function compileRouteConfig(rc: Json): RouteConfigModel {
  return {
    name: str(rc['name']),
    virtualHosts: arr(rc['virtual_hosts']).map((vh) => ({
      name: str(vh['name']),
      domains: arr(vh['domains']) as unknown as string[],
      routes: arr(vh['routes']).map(compileRoute),
    })),
  };
}

function compileRoute(r: Json): RouteModel {
  const name = str(r['name']);
  const match = obj(r['match']);
  if (typeof match['prefix'] !== 'string') {
    throw new ConfigError(`route ${name}: only prefix path matching is implemented`);
  }
  const headers = arr(match['headers']).map((h): HeaderMatch => {
    const sm = obj(h['string_match']);
    if (typeof sm['exact'] === 'string') return { name: str(h['name']), exact: sm['exact'] };
    if (typeof sm['prefix'] === 'string') return { name: str(h['name']), prefix: sm['prefix'] };
    throw new ConfigError(
      `route ${name}: header ${str(h['name'])} needs string_match exact or prefix`,
    );
  });
  const headersToAdd = arr(r['response_headers_to_add']).map((o) => ({
    key: str(obj(o['header'])['key']).toLowerCase(),
    value: str(obj(o['header'])['value']),
    overwrite: o['append_action'] === 'OVERWRITE_IF_EXISTS_OR_ADD',
  }));
  let action: RouteAction;
  if (r['direct_response']) {
    const d = obj(r['direct_response']);
    const body = obj(d['body']);
    if (body['filename']) throw new ConfigError(`route ${name}: a body file is not implemented`);
    action = {
      kind: 'direct',
      status: Number(d['status'] ?? 0),
      body: typeof body['inline_string'] === 'string' ? body['inline_string'] : undefined,
    };
  } else if (r['route']) {
    const a = obj(r['route']);
    if (!a['cluster']) throw new ConfigError(`route ${name}: only route.cluster is implemented`);
    action = {
      kind: 'route',
      cluster: str(a['cluster']),
      autoHostRewrite: obj(a['auto_host_rewrite'])['value'] === true,
      timeoutMs: durationMs(a['timeout'], 15_000),
      idleTimeoutMs: a['idle_timeout'] === undefined ? undefined : durationMs(a['idle_timeout'], 0),
      retry: a['retry_policy'] ? compileRetry(obj(a['retry_policy'])) : undefined,
      hashPolicy: arr(a['hash_policy']).map((h) => {
        const header = str(obj(h['header'])['header_name']).toLowerCase();
        if (!header)
          throw new ConfigError(`route ${name}: only header hash policies are implemented`);
        return { header };
      }),
    };
  } else {
    throw new ConfigError(`route ${name}: needs route or direct_response`);
  }
  return { name, prefix: str(match['prefix']), headers, action, headersToAdd };
}

function compileRetry(p: Json): RetryModel {
  const priority = p['retry_priority'] ? obj(obj(p['retry_priority'])['typed_config']) : undefined;
  return {
    on: new Set(
      str(p['retry_on'])
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
    numRetries: wrapped(p['num_retries'], 1),
    statusCodes: arr(p['retriable_status_codes']).map(Number),
    perTryTimeoutMs: p['per_try_timeout'] ? durationMs(p['per_try_timeout'], 0) : undefined,
    previousPriorities: priority ? Number(priority['update_frequency'] ?? 0) : undefined,
    previousHosts: arr(p['retry_host_predicate']).length > 0,
    hostSelectionMaxAttempts: Number(p['host_selection_retry_max_attempts'] ?? 1),
  };
}

export function compileLocalities(cla: Json, cluster: string): LocalityModel[] {
  const localities = arr(cla['endpoints']).map((l, i): LocalityModel => {
    const loc = obj(l['locality']);
    return {
      name: str(loc['region']) || `#${i}`,
      priority: Number(l['priority'] ?? 0),
      weight: wrapped(l['load_balancing_weight'], 0),
      hosts: arr(l['lb_endpoints']).map((e) => compileHost(e, cluster)),
    };
  });
  const levels = [...new Set(localities.map((l) => l.priority))].sort((a, b) => a - b);
  levels.forEach((p, i) => {
    // Envoy refuses gaps in priorities: they must run 0..N-1.
    if (p !== i) throw new ConfigError(`cluster ${cluster}: priorities must be contiguous from 0`);
  });
  return localities;
}

function compileHost(e: Json, cluster: string): HostModel {
  const ep = obj(e['endpoint']);
  const addr = obj(ep['address']);
  const metadata: Record<string, Record<string, JsonValue>> = {};
  for (const [ns, s] of Object.entries(obj(obj(e['metadata'])['filter_metadata']))) {
    metadata[ns] = structToJson(s);
  }
  if (addr['pipe']) {
    return {
      address: str(obj(addr['pipe'])['path']),
      port: 0,
      pipe: true,
      hostname: str(ep['hostname']),
      metadata,
    };
  }
  const sa = obj(addr['socket_address']);
  if (!sa['address']) throw new ConfigError(`cluster ${cluster}: an endpoint without an address`);
  return {
    address: str(sa['address']),
    port: Number(sa['port_value'] ?? 0),
    pipe: false,
    hostname: str(ep['hostname']),
    metadata,
  };
}

export function compileCluster(c: Json): ClusterModel {
  const name = str(c['name']);
  const type = (str(c['type']) || 'STATIC') as ClusterModel['type'];
  let edsServiceName: string | undefined;
  let localities: LocalityModel[] | undefined;
  if (type === 'EDS') {
    const eds = obj(c['eds_cluster_config']);
    if (!obj(eds['eds_config'])['ads']) {
      throw new ConfigError(`cluster ${name}: eds_config must be ads`);
    }
    edsServiceName = str(eds['service_name']) || name;
    if (c['load_assignment']) {
      throw new ConfigError(
        `cluster ${name}: load_assignment on an EDS cluster is not implemented`,
      );
    }
  } else {
    localities = compileLocalities(obj(c['load_assignment']), name);
    for (const l of localities) {
      for (const h of l.hosts) {
        if (h.pipe !== (type === 'STATIC')) {
          throw new ConfigError(
            `cluster ${name}: ${type} with ${h.pipe ? 'pipe' : 'socket'} endpoints is not implemented`,
          );
        }
      }
    }
  }
  const opts = obj(obj(c['typed_extension_protocol_options'])[HTTP_OPTIONS]);
  const explicit = obj(opts['explicit_http_config']);
  const http2 = explicit['http2_protocol_options'] !== undefined;
  const filters = arr(opts['http_filters']);
  let upstreamExtProc: ExtProcSpec | undefined;
  if (filters.length > 0) {
    const last = filters[filters.length - 1]!;
    if (obj(last['typed_config'])['@type'] !== UPSTREAM_CODEC) {
      throw new ConfigError(
        `cluster ${name}: the last upstream HTTP filter must be upstream_codec`,
      );
    }
    const procs = filters.slice(0, -1);
    if (procs.length > 1) {
      throw new ConfigError(`cluster ${name}: more than one upstream ext_proc is not implemented`);
    }
    for (const f of procs) {
      if (obj(f['typed_config'])['@type'] !== EXT_PROC) {
        throw new ConfigError(
          `cluster ${name}: upstream filter ${str(f['name'])} is not implemented`,
        );
      }
      upstreamExtProc = extProcSpec(str(f['name']), obj(f['typed_config']));
      const m = upstreamExtProc.processingMode;
      if (
        m.responseHeaderMode !== 'SKIP' ||
        m.responseBodyMode !== 'NONE' ||
        upstreamExtProc.responseAttributes.length > 0
      ) {
        throw new ConfigError(
          `cluster ${name}: response processing in an upstream ext_proc filter is not implemented`,
        );
      }
    }
  }
  const transportSocketMatches = arr(c['transport_socket_matches']).map((m) => ({
    name: str(m['name']),
    match: structToJson(m['match']),
    tls: tlsModel(name, obj(m['transport_socket'])),
  }));
  const transportSocket = c['transport_socket']
    ? tlsModel(name, obj(c['transport_socket']))
    : undefined;
  return {
    name,
    type,
    connectTimeoutMs: durationMs(c['connect_timeout'], 5000),
    edsServiceName,
    dnsFamily: str(c['dns_lookup_family']) || 'AUTO',
    localities,
    localityWeighted: obj(c['common_lb_config'])['locality_weighted_lb_config'] !== undefined,
    ...lbPolicy(name, c),
    transportSocketMatches,
    transportSocket,
    http2,
    upstreamExtProc,
    outlier: outlierModel(c['outlier_detection']),
  };
}

/** lb_policy and its ring_hash_lb_config; MAGLEV and the others are refused by the allowlist. */
function lbPolicy(name: string, c: Json): Pick<ClusterModel, 'lbPolicy' | 'ring'> {
  const policy = str(c['lb_policy']) || 'ROUND_ROBIN';
  if (policy !== 'RING_HASH') {
    if (c['ring_hash_lb_config']) {
      throw new ConfigError(`cluster ${name}: ring_hash_lb_config needs lb_policy RING_HASH`);
    }
    return { lbPolicy: 'ROUND_ROBIN', ring: DEFAULT_RING };
  }
  const cfg = obj(c['ring_hash_lb_config']);
  const ring = {
    minRingSize: wrapped(cfg['minimum_ring_size'], DEFAULT_RING.minRingSize),
    maxRingSize: wrapped(cfg['maximum_ring_size'], DEFAULT_RING.maxRingSize),
  };
  // RingHashLoadBalancer's constructor refuses this (ring_hash_lb.cc).
  if (ring.minRingSize > ring.maxRingSize) {
    throw new ConfigError(
      `cluster ${name}: ring hash: minimum_ring_size (${ring.minRingSize}) > maximum_ring_size (${ring.maxRingSize})`,
    );
  }
  return { lbPolicy: 'RING_HASH', ring };
}

function tlsModel(cluster: string, socket: Json): TlsModel {
  const tls = obj(socket['typed_config']);
  const vc = obj(obj(tls['common_tls_context'])['validation_context']);
  const ca = obj(vc['trusted_ca']);
  if (ca['inline_string']) {
    throw new ConfigError(`cluster ${cluster}: inline trusted_ca is not implemented`);
  }
  return {
    sni: str(tls['sni']),
    caFile: typeof ca['filename'] === 'string' ? ca['filename'] : undefined,
    sanExact: arr(vc['match_typed_subject_alt_names']).map((s) => {
      const exact = obj(s['matcher'])['exact'];
      if (typeof exact !== 'string') {
        throw new ConfigError(`cluster ${cluster}: only exact SAN matchers are implemented`);
      }
      return exact;
    }),
  };
}
