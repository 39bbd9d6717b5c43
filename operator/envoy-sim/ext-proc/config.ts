// The ext_proc filter's configuration, as Envoy's FilterConfig (ext_proc.h) holds it: what a
// route or cluster configures (FilterConfig), compiled once per config object into what every
// filter instance reads (CompiledConfig).
import * as grpc from '@grpc/grpc-js';
import type { BodySendMode, HeaderSendMode, PbStruct, PbValue } from './codec.js';
import { releaseBehaviour, type ReleaseBehaviour } from './release.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

export interface ProcessingModeConfig {
  requestHeaderMode?: HeaderSendMode;
  responseHeaderMode?: HeaderSendMode;
  requestBodyMode?: BodySendMode;
  responseBodyMode?: BodySendMode;
  requestTrailerMode?: HeaderSendMode;
  responseTrailerMode?: HeaderSendMode;
}

export interface Timing {
  phase: Phase;
  /** Round trip from writing the message to receiving its answer. */
  ms: number;
}

export type Phase =
  | 'request_headers'
  | 'request_body'
  | 'request_trailers'
  | 'response_headers'
  | 'response_body'
  | 'response_trailers';

export interface FilterConfig {
  processingMode?: ProcessingModeConfig;
  allowModeOverride?: boolean;
  failureModeAllow?: boolean;
  /** Per-direction message timeout (Envoy default 200 ms). */
  messageTimeoutMs?: number;
  /** max_message_timeout; 0 (default) makes Envoy ignore override_message_timeout. */
  maxMessageTimeoutMs?: number;
  statusOnError?: number;
  /** The listener/cluster buffer limit that bounds BUFFERED bodies (1 MiB default). */
  bufferLimitBytes?: number;
  /** Evaluated attribute values, sent as attributes["envoy.filters.http.ext_proc"]. */
  requestAttributes?: Record<string, JsonValue>;
  responseAttributes?: Record<string, JsonValue>;
  /** Forwarded dynamic metadata: namespace → struct, sent on every message. */
  metadataContext?: Record<string, Record<string, JsonValue>>;
  /** metadata_options.receiving_namespaces.untyped */
  receivingNamespaces?: string[];
  /** grpc_service.initial_metadata: arrives as gRPC call metadata. */
  initialMetadata?: Record<string, string>;
  /** The filter runs in an upstream (cluster) filter chain. */
  upstream?: boolean;
  /**
   * The Envoy release modelled (`1.<minor>`, default: the newest, release.ts). It decides what an
   * upstream filter does with a local reply (the server's immediate_response, or a fail-closed
   * error: gRPC error, message timeout, spurious or invalid answer): up to 1.36
   * Filter::sendImmediateResponse returns early when the filter is upstream, counting
   * `send_immediate_resp_upstream_ignored`; processing is over but the paused request is never
   * resumed, so the attempt hangs until the router's timeout or a reset (`stalled`). From 1.37
   * (PR #41231) the reply goes downstream through UpstreamFilterManager::sendLocalReply, as for
   * a downstream filter. It also decides whether a spurious answer fails the request
   * (ext_proc_fail_close_spurious_resp, 1.35+), whether `status_on_error` is honoured (1.36+)
   * and whether the stream is closed right after the last expected answer (1.37+).
   */
  envoyRelease?: string;
  observabilityMode?: boolean;
  /**
   * deferred_close_timeout (default 5000 ms): in observability mode Envoy resets the stream only
   * this long after the filter is done, so messages still queued on a connecting channel arrive.
   */
  deferredCloseTimeoutMs?: number;
  /** Reject run*()/result() promises with a ViolationError at the first violation. */
  strict?: boolean;
  /** Called for every answered message; timings are also collected on the filter. */
  onTiming?: (t: Timing) => void;
}

/** The attributes' key (attributes["envoy.filters.http.ext_proc"]). */
export const FILTER_NAME = 'envoy.filters.http.ext_proc';
const DEFAULT_LIMIT = 1024 * 1024;

export interface CompiledConfig {
  mode: Required<ProcessingModeConfig>;
  allowModeOverride: boolean;
  failureModeAllow: boolean;
  messageTimeoutMs: number;
  maxMessageTimeoutMs: number;
  statusOnError: number;
  bufferLimit: number;
  requestAttributes: Record<string, PbStruct> | undefined;
  responseAttributes: Record<string, PbStruct> | undefined;
  metadataContext: { filter_metadata?: Record<string, PbStruct> };
  receiving: ReadonlySet<string>;
  metadata: grpc.Metadata;
  upstream: boolean;
  release: ReleaseBehaviour;
  observability: boolean;
  deferredCloseTimeoutMs: number;
  strict: boolean;
  onTiming: ((t: Timing) => void) | undefined;
}

function toValue(v: JsonValue): PbValue {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}

export function toStruct(o: Record<string, JsonValue>): PbStruct {
  const fields: Record<string, PbValue> = {};
  for (const [k, v] of Object.entries(o)) fields[k] = toValue(v);
  return { fields };
}

const compiledConfigs = new WeakMap<FilterConfig, CompiledConfig>();

// Filters are created per request; the config object is usually shared, so compile it once.
export function compile(config: FilterConfig): CompiledConfig {
  const hit = compiledConfigs.get(config);
  if (hit) return hit;
  const m = config.processingMode ?? {};
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(config.initialMetadata ?? {})) metadata.set(k, v);
  const mc = config.metadataContext;
  const release = releaseBehaviour(config.envoyRelease);
  const c: CompiledConfig = {
    mode: {
      requestHeaderMode: m.requestHeaderMode ?? 'DEFAULT',
      responseHeaderMode: m.responseHeaderMode ?? 'DEFAULT',
      requestBodyMode: m.requestBodyMode ?? 'NONE',
      responseBodyMode: m.responseBodyMode ?? 'NONE',
      requestTrailerMode: m.requestTrailerMode ?? 'DEFAULT',
      responseTrailerMode: m.responseTrailerMode ?? 'DEFAULT',
    },
    allowModeOverride: config.allowModeOverride ?? false,
    failureModeAllow: config.failureModeAllow ?? false,
    messageTimeoutMs: config.messageTimeoutMs ?? 200,
    maxMessageTimeoutMs: config.maxMessageTimeoutMs ?? 0,
    // Before 1.36 gRPC and mutation errors always answer 500.
    statusOnError: release.statusOnError ? (config.statusOnError ?? 500) : 500,
    bufferLimit: config.bufferLimitBytes ?? DEFAULT_LIMIT,
    requestAttributes: config.requestAttributes
      ? { [FILTER_NAME]: toStruct(config.requestAttributes) }
      : undefined,
    responseAttributes: config.responseAttributes
      ? { [FILTER_NAME]: toStruct(config.responseAttributes) }
      : undefined,
    metadataContext: mc
      ? {
          filter_metadata: Object.fromEntries(
            Object.entries(mc).map(([ns, s]) => [ns, toStruct(s)]),
          ),
        }
      : {},
    receiving: new Set(config.receivingNamespaces ?? []),
    metadata,
    upstream: config.upstream ?? false,
    release,
    observability: config.observabilityMode ?? false,
    deferredCloseTimeoutMs: config.deferredCloseTimeoutMs ?? 5000,
    strict: config.strict ?? false,
    onTiming: config.onTiming,
  };
  compiledConfigs.set(config, c);
  return c;
}
