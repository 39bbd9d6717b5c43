/**
 * envoy-sim: an Envoy emulator that runs exactly the configuration Sluice's operator emits,
 * for machines without Envoy. It is a data plane on ADS like Envoy (node id, State of the World,
 * ACK/NACK), decodes every resource with Envoy's official protos and refuses — NACKs, with a
 * message naming each field — anything outside what it implements. It never guesses.
 *
 * Implemented (allowlist.ts is the field-level truth):
 * - LDS: one filter chain with one HTTP connection manager; RDS over ADS; HTTP filters
 *   `[header_mutation | jwt_authn ..., ext_proc?, router]`; `per_connection_buffer_limit_bytes`
 *   as the ext_proc buffer limit. Downstream HTTP/1.1 (node:http) on the listener's socket
 *   address (port 0 = ephemeral). forward_client_cert_details: with no downstream TLS,
 *   SANITIZE, SANITIZE_SET and APPEND_FORWARD remove a client's x-forwarded-client-cert and set
 *   none; ALWAYS_FORWARD_ONLY passes it on unchanged.
 * - header_mutation: request header removal.
 * - jwt_authn (jwt-authn.ts): providers with issuer, audiences, local JWKS (inline or file) and
 *   remote JWKS fetched through the named cluster and cached for cache_duration, from_headers,
 *   forward, forward_payload_header; rules by path prefix and headers; requirements
 *   provider_name, requires_any, allow_missing_or_failed, allow_missing; RS/PS/ES/HS 256-512 and
 *   EdDSA; exp/nbf with Envoy's 60 s skew; the 401/403 local reply.
 * - ext_proc (router and upstream filters) through ./ext-proc, the Envoy-exact ext_proc client, so
 *   Envoy's ext_proc semantics are the driver's: header/body modes NONE/BUFFERED/STREAMED,
 *   mode_override, message_timeout → 504, failure_mode_allow, buffer limit → 413 (request) /
 *   500 (response), content-length rules,
 *   immediate responses, clear_route_cache (the route is re-matched only when it was honoured),
 *   `grpc_service.initial_metadata`, and the attributes `xds.cluster_name` and
 *   `xds.upstream_host_metadata.filter_metadata['ns']['key']`; `metadata_options`
 *   receiving namespaces. An immediate response the router filter receives while the router
 *   waits for an attempt is sent at once and resets the attempt. Upstream filters: fed the
 *   router's buffered body with the headers; their local replies go downstream (1.37+) and
 *   through the router filter's response phase (local replies of the upstream filter chain).
 *   `envoyRelease` selects 1.34–1.36 behaviour (ext-proc/release.ts): upstream local replies
 *   ignored and counted (`counters`), the attempt held until a timeout or a reset.
 * - RDS: virtual hosts by exact domain or `*`; routes by path prefix and headers (string_match
 *   exact/prefix); direct_response with inline body; response_headers_to_add (append/overwrite);
 *   route action cluster, timeout, auto_host_rewrite from the endpoint hostname; retry_policy:
 *   retry_on 5xx, gateway-error, reset, connect-failure, retriable-status-codes; num_retries;
 *   per_try_timeout; previous_priorities; previous_hosts with host_selection_retry_max_attempts;
 *   jittered back-off from 25 ms.
 * - CDS/EDS: STATIC (pipe endpoints: the ext_proc cluster), STRICT_DNS (resolved per connection,
 *   dns_lookup_family), EDS over ADS; localities with load_balancing_weight and priority
 *   (locality-weighted round robin, lowest populated priority first); connect_timeout;
 *   transport_socket_matches on `envoy.transport_socket_match` endpoint metadata, falling back to
 *   the cluster's transport_socket, with UpstreamTlsContext (sni, trusted_ca file, exact DNS
 *   SAN); upstream HTTP/1.1;
 *   upstream filters `[ext_proc?, upstream_codec]`.
 * - Local replies as Envoy words them (404 no route, 503 no healthy upstream / connect error, 504
 *   upstream request timeout / stream timeout, ext_proc's 500/504), with their response flags,
 *   shaped by the HCM's local_reply_config (local-reply.ts: the features the operator emits).
 *   The router ext_proc filter never sees the router's own (Envoy 1.34+).
 * - Route timeout over the whole response (a started response is reset), the route's
 *   idle_timeout (HCM stream idle timeout, 5 min default).
 * - Downstream HTTP/1.1 and HTTP/2 cleartext with prior knowledge on one port (codec AUTO).
 *
 * Not implemented (refused if configured): everything else — e.g. regex or path matching,
 * weighted_clusters, health checks, outlier detection, HTTP/2 upstreams, downstream TLS,
 * trailers processing, response processing in upstream ext_proc filters.
 * Known gaps in behaviour: connection pooling (one upstream connection per attempt); the ADS stream is not re-opened.
 */
import type { AddressInfo } from 'node:net';
import { ExtProcClient } from './ext-proc/index.js';
import { releaseBehaviour, type ReleaseBehaviour } from './ext-proc/release.js';
import { LoadBalancer } from './lb.js';
import { AutoCodecListener } from './listener.js';
import type { ListenerModel } from './model.js';
import { handleRequest, SYSTEM_CLOCK, type AccessLogEntry, type Clock } from './proxy.js';
import { XdsClient, type XdsEvent, type XdsState } from './xds.js';

export type { AccessLogEntry, Clock } from './proxy.js';
export type { XdsEvent } from './xds.js';

export interface EnvoySimOptions {
  /** The ADS server: `unix:/path` or `host:port`. */
  adsAddress: string;
  nodeId: string;
  /** Random source for load balancing; pass a seeded one for deterministic tests. */
  random?: () => number;
  /** Retry back-off base interval (Envoy's default 25 ms); 0 retries at once. */
  retryBackoffBaseMs?: number;
  onAccessLog?: (entry: AccessLogEntry) => void;
  onXdsEvent?: (event: XdsEvent) => void;
  /** jwt_authn's clocks (token times, JWKS cache); the system's by default. */
  clock?: Clock;
  /**
   * The Envoy release modelled, `1.<minor>` (ext-proc/release.ts): the newest by default; 1.34 to
   * 1.36 model out-of-support releases (upstream ext_proc local replies ignored, no stream close
   * after the last answer, …).
   */
  envoyRelease?: string;
}

interface BoundListener {
  model: ListenerModel;
  server: AutoCodecListener;
  address: AddressInfo;
}

export class EnvoySim {
  private readonly xds: XdsClient;
  private readonly listeners = new Map<string, BoundListener>();
  private readonly clients = new Map<string, ExtProcClient>();
  private readonly lb: LoadBalancer;
  private readonly release: ReleaseBehaviour;
  private readonly waiters: (() => void)[] = [];
  private readonly stats = new Map<string, number>();
  private work: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly opts: EnvoySimOptions) {
    this.lb = new LoadBalancer(opts.random ?? Math.random);
    this.release = releaseBehaviour(opts.envoyRelease);
    this.xds = new XdsClient(opts.adsAddress, opts.nodeId, (state, event) => {
      opts.onXdsEvent?.(event);
      if (event.accepted) {
        this.work = this.work.then(() => this.reconcile(state)).catch(() => undefined);
      }
    });
  }

  /**
   * The counters the emulator keeps, by Envoy's stat name without its scope prefix (e.g.
   * `ext_proc.send_immediate_resp_upstream_ignored`).
   */
  get counters(): ReadonlyMap<string, number> {
    return this.stats;
  }

  /** Every response received so far, with its verdict. */
  get xdsEvents(): readonly XdsEvent[] {
    return this.xds.events;
  }

  /** Resolves once a listener is bound and its route configuration is applied. */
  ready(timeoutMs = 10_000): Promise<void> {
    if (this.isReady()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error('envoy-sim: no complete config in time')),
        timeoutMs,
      );
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** host:port of a bound listener (the only one when no name is given). */
  listenerAddress(name?: string): string {
    const l = name ? this.listeners.get(name) : [...this.listeners.values()][0];
    if (!l) throw new Error('envoy-sim: no listener bound');
    return `${l.address.address}:${l.address.port}`;
  }

  /**
   * Drains every listener (see AutoCodecListener.drain): no new connection is accepted, requests
   * in flight finish within `graceMs`. Config keeps applying meanwhile; close() ends the rest.
   */
  async drain(graceMs: number): Promise<void> {
    await Promise.all([...this.listeners.values()].map((l) => l.server.drain(graceMs)));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.xds.close();
    await this.work;
    await Promise.all([...this.listeners.values()].map((l) => l.server.close(true)));
    this.listeners.clear();
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private isReady(): boolean {
    const s = this.xds.state;
    return (
      this.listeners.size > 0 &&
      [...this.listeners.values()].every((l) => s.routes.has(l.model.routeConfigName))
    );
  }

  private async reconcile(state: XdsState): Promise<void> {
    if (this.closed) return;
    for (const [name, bound] of this.listeners) {
      const next = state.listeners.get(name);
      if (
        next &&
        next.host === bound.model.host &&
        (next.port === bound.model.port || next.port === 0)
      ) {
        bound.model = next;
        continue;
      }
      this.listeners.delete(name);
      await bound.server.close();
    }
    for (const [name, model] of state.listeners) {
      if (this.listeners.has(name)) continue;
      const bound: BoundListener = {
        model,
        server: new AutoCodecListener((req, res) => {
          handleRequest(
            {
              state: () => this.xds.state,
              clock: this.opts.clock ?? SYSTEM_CLOCK,
              extProcClient: (c) => this.extProcClient(c),
              lb: this.lb,
              retryBackoffBaseMs: this.opts.retryBackoffBaseMs ?? 25,
              release: this.release,
              count: (stat) => this.stats.set(stat, (this.stats.get(stat) ?? 0) + 1),
              accessLog: (e) => this.opts.onAccessLog?.(e),
            },
            bound.model,
            req,
            res,
          ).catch(() => {
            if (!res.headersSent) {
              res.writeHead(500, {});
              res.end();
            } else res.destroy();
          });
        }),
        address: { address: model.host, port: model.port, family: 'IPv4' },
      };
      bound.address = await bound.server.listen(model.port, model.host);
      this.listeners.set(name, bound);
    }
    if (this.isReady()) for (const w of this.waiters.splice(0)) w();
  }

  /** One gRPC channel per ext_proc cluster (its one STATIC pipe endpoint). */
  private extProcClient(clusterName: string): ExtProcClient | undefined {
    const cluster = this.xds.state.clusters.get(clusterName);
    const host = cluster?.localities?.[0]?.hosts[0];
    if (!cluster || !host?.pipe) return undefined;
    const key = `${clusterName}\0${host.address}`;
    let c = this.clients.get(key);
    if (!c) {
      c = new ExtProcClient(`unix:${host.address}`);
      this.clients.set(key, c);
    }
    return c;
  }
}

/** Starts an emulator and waits for its first complete configuration. */
export async function startEnvoySim(
  opts: EnvoySimOptions,
  readyTimeoutMs?: number,
): Promise<EnvoySim> {
  const sim = new EnvoySim(opts);
  try {
    await sim.ready(readyTimeoutMs);
  } catch (err) {
    await sim.close();
    throw err;
  }
  return sim;
}
