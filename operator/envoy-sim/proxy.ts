// One downstream HTTP/1.1 request through the emulated HTTP connection manager: the router
// ext_proc filter (driver), route matching (re-matched only after an honoured clear_route_cache),
// direct responses, the router (host selection, retries, timeouts), the cluster's upstream
// ext_proc filter, the upstream codec, and the response back through the router ext_proc filter.
import { randomUUID } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { isIP, type Socket } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import {
  ExtProcFilter,
  getHeader,
  type ExtProcClient,
  type FilterConfig,
  type HeaderList,
  type JsonValue,
  type LocalReply,
  type PhaseResult,
} from './ext-proc/index.js';
import { removeHeader } from './ext-proc/headers.js';
import { CODE_DETAILS_ATTRIBUTE, HOST_METADATA_ATTRIBUTE } from './allowlist.js';
import { runJwtAuthn, type JwtEnv } from './jwt-authn.js';
import type { LoadBalancer } from './lb.js';
import type {
  ClusterModel,
  ExtProcSpec,
  HostModel,
  ListenerModel,
  RetryModel,
  RouteModel,
  TlsModel,
} from './model.js';
import type { XdsState } from './xds.js';

const EMPTY = Buffer.alloc(0);
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'host',
]);

export interface AccessLogEntry {
  method: string;
  path: string;
  status: number;
  route: string | undefined;
  cluster: string | undefined;
  upstreamHosts: string[];
  attempts: number;
  /** Envoy's response flags for what went wrong: NR, UH, UF, UT, URX, LR, DC, UC. */
  flags: string[];
  details: string;
  durationMs: number;
}

/** Where the emulator reads time: jwt_authn's exp/nbf (wall) and JWKS cache (monotonic). */
export interface Clock {
  wallMs(): number;
  monotonicMs(): number;
}

export const SYSTEM_CLOCK: Clock = {
  wallMs: () => Date.now(),
  monotonicMs: () => performance.now(),
};

export interface ProxyContext {
  state(): XdsState;
  clock: Clock;
  extProcClient(clusterName: string): ExtProcClient | undefined;
  lb: LoadBalancer;
  retryBackoffBaseMs: number;
  /** Upstream ext_proc filters send local replies (Envoy after 1.35) instead of ignoring them. */
  upstreamLocalReplies: boolean;
  /** Increments one of the emulator's counters (EnvoySim.counters). */
  count(stat: string): void;
  accessLog(entry: AccessLogEntry): void;
}

interface Log {
  route?: string;
  cluster?: string;
  hosts: string[];
  attempts: number;
  flags: string[];
  details: string;
}

/** The response the router hands to the encoder filters. */
interface Upstream {
  status: number;
  headers: HeaderList;
  /** Body chunks; undefined: the headers end the response. */
  body: AsyncIterable<Buffer> | Buffer | undefined;
  contentLength: number | undefined;
  /** Called when the downstream goes away before the body ended. */
  abort?: () => void;
  /** Envoy's response code details: `via_upstream`, or why the router answered itself. */
  details: string;
}

const routerConfigs = new WeakMap<ExtProcSpec, Map<number, FilterConfig>>();

function filterConfig(spec: ExtProcSpec, bufferLimitBytes: number): FilterConfig {
  let byLimit = routerConfigs.get(spec);
  if (!byLimit) routerConfigs.set(spec, (byLimit = new Map<number, FilterConfig>()));
  let cfg = byLimit.get(bufferLimitBytes);
  if (!cfg) {
    cfg = {
      processingMode: spec.processingMode,
      allowModeOverride: spec.allowModeOverride,
      failureModeAllow: spec.failureModeAllow,
      messageTimeoutMs: spec.messageTimeoutMs,
      bufferLimitBytes,
      initialMetadata: spec.initialMetadata,
    };
    byLimit.set(bufferLimitBytes, cfg);
  }
  return cfg;
}

function localReplyOf(status: number, body: string, details: string): LocalReply {
  const headers: HeaderList = [[':status', String(status)]];
  if (body) {
    headers.push(['content-length', String(Buffer.byteLength(body))]);
    headers.push(['content-type', 'text/plain']);
  }
  return {
    kind: 'local-reply',
    status,
    headers,
    body: Buffer.from(body),
    details,
    responseStarted: false,
    violations: [],
    timings: [],
  };
}

export async function handleRequest(
  ctx: ProxyContext,
  listener: ListenerModel,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const started = performance.now();
  const log: Log = { hosts: [], attempts: 0, flags: [], details: '' };
  const state = ctx.state();
  const headers: HeaderList = [
    [':method', req.method ?? 'GET'],
    [':path', req.url ?? '/'],
    [':scheme', 'http'],
    [':authority', req.headers.host ?? ''],
  ];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const k = req.rawHeaders[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(k)) headers.push([k, req.rawHeaders[i + 1]!]);
  }
  if (getHeader(headers, 'x-forwarded-proto') === undefined)
    headers.push(['x-forwarded-proto', 'http']);
  if (getHeader(headers, 'x-request-id') === undefined)
    headers.push(['x-request-id', randomUUID()]);
  const cl = req.headers['content-length'];
  const hasBody =
    cl !== undefined ? Number(cl) > 0 : req.headers['transfer-encoding'] !== undefined;

  // The HCM's XFCC handling without downstream TLS: every mode but ALWAYS_FORWARD_ONLY (even
  // APPEND_FORWARD, which appends only for an mTLS peer) removes what a client sent, sets nothing.
  if (listener.forwardClientCertDetails !== 'ALWAYS_FORWARD_ONLY') {
    removeHeader(headers, 'x-forwarded-client-cert');
  }

  const cleanups: (() => void)[] = [];
  let finished = false;
  res.on('close', () => {
    if (finished) return;
    // The client went away: Envoy resets the upstream and every filter's ext_proc stream.
    log.flags.push('DC');
    for (const c of cleanups.splice(0)) c();
  });

  // ---- request: the filters the emulator runs itself (before any ext_proc filter) ----
  for (const f of listener.nativeFilters) {
    if (f.kind === 'header_mutation') {
      for (const h of f.removeRequestHeaders) removeHeader(headers, h);
      continue;
    }
    const env: JwtEnv = {
      nowSeconds: () => ctx.clock.wallMs() / 1000,
      monotonicMs: () => ctx.clock.monotonicMs(),
      fetch: (cluster, uri, timeoutMs) => clusterGet(ctx, state, cluster, uri, timeoutMs),
    };
    const r = await runJwtAuthn(f.spec, headers, env);
    if (res.destroyed) return done();
    if (!r.ok) {
      log.details = r.details;
      const reply = localReplyOf(r.status, r.body, r.details);
      reply.headers.push(...r.headers);
      writeHead(res, reply.headers);
      res.end(reply.body);
      finished = true;
      return done(r.status);
    }
  }

  const client = listener.extProc ? ctx.extProcClient(listener.extProc.clusterName) : undefined;
  // A local reply of the router filter while the router waits for an upstream attempt (an
  // immediate response the processor sends unasked) is sent at once; the attempt is reset.
  let interrupted: ((reply: LocalReply) => void) | undefined;
  const rf =
    listener.extProc && client
      ? new ExtProcFilter(client, filterConfig(listener.extProc, listener.bufferLimitBytes), {
          localReply: (r) => interrupted?.(r),
        })
      : undefined;
  if (rf) cleanups.push(() => rf.close());

  const send = (reply: LocalReply): void => {
    writeHead(res, reply.headers);
    res.end(reply.body);
  };

  // ---- request: router ext_proc filter ----
  let released: { headers: HeaderList; body: Buffer; cleared: boolean };
  if (listener.extProc && !rf) {
    log.flags.push('UH');
    log.details = 'ext_proc cluster not found';
    send(localReplyOf(500, '', log.details));
    finished = true;
    return done();
  }
  if (rf) {
    const d = rf.request;
    d.headers(headers, !hasBody);
    if (hasBody) {
      await d.headersAnswered();
      for await (const chunk of req) {
        if (rf.ended) break;
        d.data(chunk as Buffer, false);
      }
      if (!rf.ended) d.data(EMPTY, true);
    }
    const r = await d.result();
    if (r.kind === 'local-reply') {
      log.flags.push('LR');
      log.details = r.details;
      send(r);
      finished = true;
      rf.close();
      return done(r.status);
    }
    released = { headers: r.headers, body: r.body, cleared: r.routeCacheCleared };
  } else {
    const chunks: Buffer[] = [];
    if (hasBody) for await (const c of req) chunks.push(c as Buffer);
    released = { headers, body: Buffer.concat(chunks), cleared: false };
  }

  // ---- routing ----
  const routeConfig = state.routes.get(listener.routeConfigName);
  const route = matchRoute(
    routeConfig?.virtualHosts ?? [],
    released.cleared ? released.headers : headers,
  );
  log.route = route?.name;
  let upstream: Upstream;
  if (!route) {
    log.flags.push('NR');
    upstream = local(404, '', [], 'route_not_found');
  } else if (route.action.kind === 'direct') {
    upstream = local(
      route.action.status,
      route.action.body ?? '',
      route.headersToAdd,
      'direct_response',
    );
  } else {
    const action = route.action;
    log.cluster = action.cluster;
    const cluster = state.clusters.get(action.cluster);
    if (!cluster) {
      log.flags.push('NC');
      upstream = local(503, '', [], 'cluster_not_found');
    } else {
      let r: Upstream | LocalReply;
      if (rf?.reply) r = rf.reply;
      else {
        const routed = routeToCluster(ctx, state, cluster, action, released, log, cleanups);
        r = await Promise.race([routed, new Promise<LocalReply>((go) => (interrupted = go))]);
        interrupted = undefined;
        // Settles once the reset attempt gives up; its answer no longer goes anywhere.
        if ('kind' in r) void routed.catch(() => undefined);
      }
      if ('kind' in r) {
        // The downstream stream ends with the reply: Envoy's router resets the upstream request
        // (and with it the upstream filters' ext_proc streams).
        for (const c of cleanups.splice(0)) c();
        log.flags.push('LR');
        log.details = r.details;
        if (!res.destroyed) send(r);
        finished = true;
        return done(r.status);
      }
      upstream = r;
    }
  }
  if (res.destroyed) return done();

  // ---- response: back through the router ext_proc filter ----
  await encode(upstream);
  return done();

  function local(
    status: number,
    body: string,
    add: RouteModel['headersToAdd'],
    details: string,
  ): Upstream {
    const h: HeaderList = [];
    if (body) {
      h.push(['content-length', String(Buffer.byteLength(body))]);
      h.push(['content-type', 'text/plain']);
    }
    for (const a of add) {
      if (a.overwrite) {
        const i = h.findIndex(([k]) => k === a.key);
        if (i >= 0) h.splice(i, 1);
      }
      h.push([a.key, a.value]);
    }
    return {
      status,
      headers: h,
      body: body ? Buffer.from(body) : undefined,
      contentLength: body ? Buffer.byteLength(body) : undefined,
      details,
    };
  }

  async function encode(u: Upstream): Promise<void> {
    const h: HeaderList = [[':status', String(u.status)], ...u.headers];
    log.details = u.details;
    if (!rf) {
      writeHead(res, h);
      if (u.body instanceof Buffer) res.end(u.body);
      else if (u.body) {
        for await (const c of u.body) res.write(c);
        res.end();
      } else res.end();
      finished = true;
      return;
    }
    const d = rf.response;
    let headersOut = false;
    d.observe({
      headers: (hs, end) => {
        headersOut = true;
        writeHead(res, hs);
        if (end) {
          finished = true;
          res.end();
        }
      },
      data: (chunk, end) => {
        if (chunk.length > 0) res.write(chunk);
        if (end) {
          finished = true;
          res.end();
        }
      },
    });
    if (u.abort) cleanups.push(u.abort);
    const noBody = u.body === undefined;
    // Envoy evaluates the response attributes when the headers go to the processor, after the
    // router (or the filter manager, for a local reply) set the response code details.
    if (listener.extProc?.responseAttributes.includes(CODE_DETAILS_ATTRIBUTE)) {
      d.setAttributes({ [CODE_DETAILS_ATTRIBUTE]: u.details });
    }
    d.headers(h, noBody);
    if (!noBody) {
      await d.headersAnswered();
      if (u.body instanceof Buffer) {
        if (!rf.ended) d.data(u.body, true);
      } else {
        let seen = 0;
        let ended = false;
        try {
          for await (const c of u.body!) {
            if (rf.ended || res.destroyed) break;
            const chunk = c as Buffer;
            seen += chunk.length;
            ended = u.contentLength !== undefined && seen >= u.contentLength;
            d.data(chunk, ended);
          }
        } catch {
          // The upstream reset mid-body: Envoy resets the downstream too.
          log.flags.push('UR');
          if (!res.destroyed) res.destroy();
          rf.close();
          return;
        }
        if (!ended && !rf.ended && !res.destroyed) d.data(EMPTY, true);
      }
    }
    const r: PhaseResult = await d.result();
    if (r.kind === 'local-reply') {
      log.flags.push('LR');
      log.details = r.details;
      if (headersOut) res.destroy();
      else {
        finished = true;
        send(r);
      }
      rf.close();
    }
  }

  function done(status?: number): void {
    ctx.accessLog({
      method: req.method ?? '',
      path: req.url ?? '',
      status: status ?? res.statusCode,
      route: log.route,
      cluster: log.cluster,
      upstreamHosts: log.hosts,
      attempts: log.attempts,
      flags: log.flags,
      details: log.details,
      durationMs: performance.now() - started,
    });
  }
}

function writeHead(res: http.ServerResponse, headers: HeaderList): void {
  if (res.headersSent || res.destroyed) return;
  const out: Record<string, string | string[]> = {};
  let status = 200;
  for (const [k, v] of headers) {
    if (k === ':status') status = Number(v);
    else if (k.startsWith(':')) continue;
    else {
      const prev = out[k];
      out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
  }
  out['server'] ??= 'envoy';
  res.writeHead(status, out);
  // Envoy sends headers as soon as the filter chain releases them (SSE needs this).
  res.flushHeaders();
}

export function matchRoute(
  vhosts: readonly { domains: string[]; routes: RouteModel[] }[],
  headers: HeaderList,
): RouteModel | undefined {
  const authority = (getHeader(headers, ':authority') ?? '').toLowerCase();
  const path = getHeader(headers, ':path') ?? '/';
  const host = authority.replace(/:\d+$/, '');
  const vh =
    vhosts.find((v) =>
      v.domains.some((d) => d.toLowerCase() === authority || d.toLowerCase() === host),
    ) ?? vhosts.find((v) => v.domains.includes('*'));
  if (!vh) return undefined;
  return vh.routes.find(
    (r) =>
      path.startsWith(r.prefix) &&
      r.headers.every((m) => {
        const values = headers.filter(([k]) => k === m.name).map(([, v]) => v);
        if (values.length === 0) return false;
        // Envoy matches a repeated header on its values joined by commas.
        const v = values.join(',');
        return m.exact !== undefined ? v === m.exact : v.startsWith(m.prefix!);
      }),
  );
}

type AttemptOutcome =
  | { kind: 'response'; res: http.IncomingMessage; headers: HeaderList }
  /** The response as the cluster's upstream ext_proc filter released it (see filterResponse). */
  | { kind: 'filtered'; response: Upstream; destroy: () => void }
  /** `metadata`: what the upstream filter wrote in the downstream stream's dynamic metadata. */
  | { kind: 'reply'; reply: LocalReply; metadata?: ExtProcFilter['dynamicMetadata'] }
  | { kind: 'failure'; reason: 'connect-failure' | 'reset' | 'per-try-timeout'; detail: string };

async function routeToCluster(
  ctx: ProxyContext,
  state: XdsState,
  cluster: ClusterModel,
  action: Extract<RouteModel['action'], { kind: 'route' }>,
  released: { headers: HeaderList; body: Buffer },
  log: Log,
  cleanups: (() => void)[],
): Promise<Upstream> {
  const retry: RetryModel | undefined = action.retry;
  const localities =
    cluster.type === 'EDS'
      ? (state.endpoints.get(cluster.edsServiceName!) ?? [])
      : (cluster.localities ?? []);
  const deadline = action.timeoutMs > 0 ? performance.now() + action.timeoutMs : Infinity;
  const tried = { priorities: new Set<number>(), hosts: new Set<HostModel>() };
  let aborted = false;
  let current: (() => void) | undefined;
  cleanups.push(() => {
    aborted = true;
    current?.();
  });
  const maxAttempts = 1 + (retry?.numRetries ?? 0);
  for (let attempt = 0; ; attempt++) {
    const exclude = retry
      ? {
          ...(retry.previousPriorities ? { priorities: tried.priorities } : {}),
          ...(retry.previousHosts ? { hosts: tried.hosts } : {}),
          tries: retry.hostSelectionMaxAttempts,
        }
      : undefined;
    const pick = ctx.lb.pick(
      localities,
      cluster.localityWeighted,
      attempt === 0 ? undefined : exclude,
      cluster.outlier ? { cluster: cluster.name, nowMs: ctx.clock.monotonicMs() } : undefined,
    );
    if (!pick) {
      log.flags.push('UH');
      return textReply(503, 'no healthy upstream', 'no_healthy_upstream');
    }
    tried.priorities.add(pick.locality.priority);
    tried.hosts.add(pick.host);
    log.attempts++;
    log.hosts.push(`${pick.host.address}:${pick.host.port}`);
    const remaining = deadline - performance.now();
    if (remaining <= 0) {
      log.flags.push('UT');
      return textReply(504, 'upstream request timeout', 'response_timeout');
    }
    const perTry = Math.min(retry?.perTryTimeoutMs ?? Infinity, remaining);
    const globalLeft = perTry >= remaining;
    const controller = new AbortController();
    current = () => controller.abort();
    const outcome = await attemptOnce(
      ctx,
      cluster,
      action,
      pick.host,
      released,
      perTry,
      controller.signal,
    );
    if (aborted) {
      if (outcome.kind === 'response') outcome.res.destroy();
      return textReply(499, '', 'downstream_remote_disconnect');
    }
    const last = attempt + 1 >= maxAttempts || performance.now() >= deadline;
    // Passive health: the router reports each attempt's result for the host it reached.
    if (cluster.outlier && outcome.kind !== 'reply') {
      ctx.lb.report(
        cluster.name,
        cluster.outlier,
        pick.host,
        localities,
        outcome.kind === 'filtered'
          ? { status: outcome.response.status }
          : outcome.kind === 'response'
            ? { status: outcome.res.statusCode ?? 502 }
            : {
                localFailure:
                  outcome.reason === 'connect-failure'
                    ? 'connect'
                    : outcome.reason === 'per-try-timeout'
                      ? 'timeout'
                      : 'reset',
              },
        ctx.clock.monotonicMs(),
      );
    }
    if (outcome.kind === 'reply') return replyUpstream(outcome.reply);
    if (outcome.kind === 'filtered') {
      // The router sees the response after the upstream filters: retries go by what they released.
      if (!last && retry && retriableStatus(retry, outcome.response.status)) {
        outcome.destroy();
        log.flags.push('URX');
        await backoff(ctx, attempt);
        continue;
      }
      current = outcome.destroy;
      return outcome.response;
    }
    if (outcome.kind === 'response') {
      const status = outcome.res.statusCode ?? 502;
      if (!last && retry && retriableStatus(retry, status)) {
        outcome.res.destroy();
        log.flags.push('URX');
        await backoff(ctx, attempt);
        continue;
      }
      current = () => outcome.res.destroy();
      const len = outcome.res.headers['content-length'];
      return {
        status,
        headers: outcome.headers,
        body: outcome.res,
        contentLength: len === undefined ? undefined : Number(len),
        abort: () => outcome.res.destroy(),
        details: 'via_upstream',
      };
    }
    const timedOut = outcome.reason === 'per-try-timeout';
    if (timedOut && globalLeft) {
      log.flags.push('UT');
      return textReply(504, 'upstream request timeout', 'response_timeout');
    }
    if (!last && retry && retriableFailure(retry, outcome.reason)) {
      log.flags.push('URX');
      await backoff(ctx, attempt);
      continue;
    }
    if (timedOut) {
      log.flags.push('UT');
      return textReply(504, 'upstream request timeout', 'upstream_per_try_timeout');
    }
    log.flags.push(outcome.reason === 'connect-failure' ? 'UF' : 'UR');
    return textReply(
      503,
      `upstream connect error or disconnect/reset before headers. reset reason: ${outcome.detail}`,
      // Envoy's form: the reset reason in braces, whitespace replaced by underscores.
      `upstream_reset_before_response_started{${outcome.detail.replace(/,\s*/g, ',').replace(/\s+/g, '_')}}`,
    );
  }
}

function textReply(status: number, body: string, details: string): Upstream {
  const headers: HeaderList = [];
  if (body) {
    headers.push(['content-length', String(Buffer.byteLength(body))]);
    headers.push(['content-type', 'text/plain']);
  }
  return {
    status,
    headers,
    body: body ? Buffer.from(body) : undefined,
    contentLength: body ? Buffer.byteLength(body) : undefined,
    details,
  };
}

function replyUpstream(r: LocalReply): Upstream {
  return {
    status: r.status,
    headers: r.headers.filter(([k]) => !k.startsWith(':')),
    body: r.body.length > 0 ? r.body : undefined,
    contentLength: r.body.length,
    details: r.details,
  };
}

function retriableStatus(retry: RetryModel, status: number): boolean {
  if (retry.on.has('5xx') && status >= 500) return true;
  if (retry.on.has('gateway-error') && status >= 502 && status <= 504) return true;
  return retry.on.has('retriable-status-codes') && retry.statusCodes.includes(status);
}

function retriableFailure(retry: RetryModel, reason: string): boolean {
  // Envoy counts a per-try timeout and a reset before headers as "no response at all", which
  // 5xx, gateway-error and reset all retry; a refused connection also counts as connect-failure.
  if (retry.on.has('5xx') || retry.on.has('gateway-error') || retry.on.has('reset')) return true;
  return reason === 'connect-failure' && retry.on.has('connect-failure');
}

async function backoff(ctx: ProxyContext, attempt: number): Promise<void> {
  // Envoy's default: fully jittered exponential back-off from a 25 ms base, capped at 10×.
  const base = ctx.retryBackoffBaseMs;
  if (base <= 0) return;
  const ceiling = Math.min(base * 2 ** (attempt + 1) - 1, base * 10);
  await new Promise((r) => setTimeout(r, Math.floor(Math.random() * ceiling)));
}

function upstreamAttributes(
  spec: ExtProcSpec,
  cluster: string,
  host: HostModel,
): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const a of spec.requestAttributes) {
    if (a === 'xds.cluster_name') {
      out[a] = cluster;
      continue;
    }
    const m = HOST_METADATA_ATTRIBUTE.exec(a);
    if (!m) continue;
    const v = host.metadata[m[1]!]?.[m[2]!];
    // An absent value is not sent, as Envoy leaves out attributes that evaluate to nothing.
    if (v !== undefined) out[a] = v;
  }
  return out;
}

function transportFor(cluster: ClusterModel, host: HostModel): TlsModel | undefined {
  const md = host.metadata['envoy.transport_socket_match'] ?? {};
  for (const m of cluster.transportSocketMatches) {
    if (Object.entries(m.match).every(([k, v]) => md[k] === v)) return m.tls;
  }
  return cluster.transportSocket;
}

/**
 * A GET through a cluster, as Envoy's async client makes it for a filter (jwt_authn's JWKS
 * fetcher): a host picked by the load balancer, the cluster's TLS, Host from the URI, the whole
 * body read. Rejects when no response comes in `timeoutMs`.
 */
export async function clusterGet(
  ctx: ProxyContext,
  state: XdsState,
  clusterName: string,
  uri: string,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  const cluster = state.clusters.get(clusterName);
  if (!cluster) throw new Error(`cluster ${clusterName} not found`);
  if (cluster.upstreamExtProc) {
    throw new Error(
      `cluster ${clusterName}: upstream filters for an async client are not implemented`,
    );
  }
  const localities =
    cluster.type === 'EDS'
      ? (state.endpoints.get(cluster.edsServiceName!) ?? [])
      : (cluster.localities ?? []);
  const pick = ctx.lb.pick(localities, cluster.localityWeighted);
  if (!pick) throw new Error(`cluster ${clusterName}: no healthy upstream`);
  const url = new URL(uri);
  const host = pick.host;
  const tls = transportFor(cluster, host);
  const address = host.pipe ? host.address : await resolve(host, cluster.dnsFamily);
  const base: http.RequestOptions = {
    method: 'GET',
    path: `${url.pathname}${url.search}`,
    headers: { host: url.host },
    agent: false,
    setHost: false,
    ...(host.pipe ? { socketPath: address } : { host: address, port: host.port }),
  };
  return new Promise((resolveGet, reject) => {
    const request = tls
      ? https.request({
          ...base,
          servername: tls.sni || undefined,
          ca: tls.caFile ? readCa(tls.caFile) : undefined,
          rejectUnauthorized: true,
          checkServerIdentity: (_h: string, cert: PeerCertificate) => sanCheck(tls, cert),
        })
      : http.request(base);
    const timer = setTimeout(() => {
      request.destroy(new Error(`no response from ${clusterName} in ${timeoutMs}ms`));
    }, timeoutMs);
    request.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolveGet({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    request.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    request.end();
  });
}

async function resolve(host: HostModel, family: string): Promise<string> {
  if (isIP(host.address)) return host.address;
  const all = await lookup(host.address, { all: true });
  const v4 = all.filter((a) => a.family === 4);
  const v6 = all.filter((a) => a.family === 6);
  const order =
    family === 'V4_ONLY' ? v4 : family === 'V4_PREFERRED' ? [...v4, ...v6] : [...v6, ...v4];
  if (order.length === 0) throw new Error(`no address for ${host.address}`);
  return order[0]!.address;
}

const caCache = new Map<string, string>();

async function attemptOnce(
  ctx: ProxyContext,
  cluster: ClusterModel,
  action: { autoHostRewrite: boolean; timeoutMs: number },
  host: HostModel,
  released: { headers: HeaderList; body: Buffer },
  perTryMs: number,
  signal: AbortSignal,
): Promise<AttemptOutcome> {
  const tls = transportFor(cluster, host);
  let headers: HeaderList = released.headers.map(([k, v]) => [k, v]);
  const set = (k: string, v: string): void => {
    const i = headers.findIndex(([n]) => n === k);
    if (i >= 0) headers[i] = [k, v];
    else headers.push([k, v]);
  };
  if (action.autoHostRewrite && host.hostname) set(':authority', host.hostname);
  set(':scheme', tls ? 'https' : 'http');
  if (action.timeoutMs > 0)
    set(
      'x-envoy-expected-rq-timeout-ms',
      String(Math.min(action.timeoutMs, perTryMs === Infinity ? action.timeoutMs : perTryMs)),
    );
  let body = released.body;

  const timer = perTryMs === Infinity ? undefined : setTimeout(() => onTimeout?.(), perTryMs);
  let onTimeout: (() => void) | undefined;
  const timedOut = new Promise<AttemptOutcome>((r) => {
    onTimeout = () => r({ kind: 'failure', reason: 'per-try-timeout', detail: 'per try timeout' });
  });
  const reset = new Promise<AttemptOutcome>((r) => {
    const fire = (): void => r({ kind: 'failure', reason: 'reset', detail: 'downstream reset' });
    if (signal.aborted) fire();
    else signal.addEventListener('abort', fire);
  });

  try {
    // ---- upstream ext_proc filter (one per attempt) ----
    const spec = cluster.upstreamExtProc;
    if (spec) {
      const client = ctx.extProcClient(spec.clusterName);
      if (!client)
        return { kind: 'reply', reply: localReplyOf(500, '', 'ext_proc cluster not found') };
      const uf = new ExtProcFilter(
        client,
        {
          processingMode: spec.processingMode,
          failureModeAllow: spec.failureModeAllow,
          messageTimeoutMs: spec.messageTimeoutMs,
          allowModeOverride: spec.allowModeOverride,
          initialMetadata: spec.initialMetadata,
          requestAttributes: upstreamAttributes(spec, cluster.name, host),
          upstream: true,
          upstreamLocalReplies: ctx.upstreamLocalReplies,
        },
        // The filter then holds the attempt: only the timers below or a reset end it.
        { stalled: () => ctx.count('ext_proc.send_immediate_resp_upstream_ignored') },
      );
      signal.addEventListener('abort', () => uf.close());
      const r = await Promise.race([
        // The router hands the attempt its buffered body right after the headers.
        uf.runRequest(
          headers,
          body.length > 0 || released.body.length > 0 ? [body] : [],
          undefined,
          { dataWithHeaders: true },
        ),
        timedOut,
        reset,
      ]);
      // The configured mode skips responses; a mode override in the request headers answer may
      // have turned them on (Envoy sets both directions' modes from it), else the stream is done.
      if (uf.response.sendHeaders && !('kind' in r && r.kind === 'failure')) responseFilter = uf;
      else uf.close();
      if ('kind' in r && r.kind === 'failure') return r;
      const pr = r as PhaseResult;
      if (pr.kind === 'local-reply') return { kind: 'reply', reply: pr };
      headers = pr.headers;
      body = pr.body;
    }
    if (signal.aborted) return { kind: 'failure', reason: 'reset', detail: 'downstream reset' };

    // ---- upstream codec: HTTP/1.1 ----
    let address: string;
    try {
      address = host.pipe ? host.address : await resolve(host, cluster.dnsFamily);
    } catch (err) {
      return { kind: 'failure', reason: 'connect-failure', detail: (err as Error).message };
    }
    const outHeaders: Record<string, string | string[]> = {};
    for (const [k, v] of headers) {
      if (k.startsWith(':')) continue;
      const prev = outHeaders[k];
      outHeaders[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    outHeaders['host'] = getHeader(headers, ':authority') ?? host.hostname;
    const base: http.RequestOptions = {
      method: getHeader(headers, ':method') ?? 'GET',
      path: getHeader(headers, ':path') ?? '/',
      headers: outHeaders,
      agent: false,
      setHost: false,
      ...(host.pipe ? { socketPath: address } : { host: address, port: host.port }),
    };
    const request = tls
      ? https.request({
          ...base,
          servername: tls.sni || undefined,
          ca: tls.caFile ? readCa(tls.caFile) : undefined,
          rejectUnauthorized: true,
          checkServerIdentity: (_h: string, cert: PeerCertificate) => sanCheck(tls, cert),
        })
      : http.request(base);
    const response = new Promise<AttemptOutcome>((resolveOutcome) => {
      let connected = false;
      const connectTimer = setTimeout(() => {
        if (!connected) {
          request.destroy();
          resolveOutcome({
            kind: 'failure',
            reason: 'connect-failure',
            detail: 'connection timeout',
          });
        }
      }, cluster.connectTimeoutMs);
      request.on('socket', (s: Socket) => {
        const ready = (): void => {
          connected = true;
          clearTimeout(connectTimer);
        };
        s.once(tls ? 'secureConnect' : 'connect', ready);
        if (!s.connecting && !tls) ready();
      });
      request.on('response', (res) => {
        clearTimeout(connectTimer);
        const hs: HeaderList = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          const k = res.rawHeaders[i]!.toLowerCase();
          if (!HOP_BY_HOP.has(k)) hs.push([k, res.rawHeaders[i + 1]!]);
        }
        resolveOutcome({ kind: 'response', res, headers: hs });
      });
      request.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(connectTimer);
        const refused = !connected;
        resolveOutcome({
          kind: 'failure',
          reason: refused ? 'connect-failure' : 'reset',
          detail: refused
            ? `connection failure, ${err.code ?? err.message}`
            : 'connection termination',
        });
      });
      signal.addEventListener('abort', () => request.destroy());
    });
    request.end(body.length > 0 ? body : undefined);
    const outcome = await Promise.race([response, timedOut, reset]);
    if (outcome.kind === 'failure') request.destroy();
    if (outcome.kind !== 'response' || !responseFilter) {
      responseFilter?.close();
      return outcome;
    }
    const uf = responseFilter;
    responseFilter = undefined;
    return await Promise.race([filterResponse(uf, outcome.res, outcome.headers), timedOut, reset]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}

function readCa(file: string): string {
  let pem = caCache.get(file);
  if (pem === undefined) {
    pem = readFileSync(file, 'utf8');
    caCache.set(file, pem);
  }
  return pem;
}

function sanCheck(tls: TlsModel, cert: PeerCertificate): Error | undefined {
  if (tls.sanExact.length === 0) return undefined;
  const sans = (cert.subjectaltname ?? '')
    .split(/,\s*/)
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4));
  return sans.some((s) => tls.sanExact.includes(s))
    ? undefined
    : new Error(`certificate SANs ${sans.join(',')} match none of ${tls.sanExact.join(',')}`);
}
let responseFilter: ExtProcFilter | undefined;
responseFilter?.close();
/**
 * The encoder side of a cluster's upstream ext_proc filter: Envoy runs the upstream filter chain
 * on the response before the router sees it (UpstreamRequest → router onUpstreamHeaders), so the
 * router's retry decision and the downstream filters see what this filter released. Resolves once
 * the filter released the headers (for a BUFFERED body, after the body answer) or replied itself.
 */
async function filterResponse(
  uf: ExtProcFilter,
  res: http.IncomingMessage,
  headers: HeaderList,
): Promise<AttemptOutcome> {
  const d = uf.response;
  const status = res.statusCode ?? 502;
  const len = res.headers['content-length'];
  const contentLength = len === undefined ? undefined : Number(len);
  const chunks: Buffer[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  let release!: (h: HeaderList) => void;
  const released = new Promise<HeaderList>((r) => (release = r));
  d.observe({
    headers: (h, end) => {
      release(h);
      if (end) ended = true;
      wake?.();
    },
    data: (chunk, end) => {
      if (chunk.length > 0) chunks.push(chunk);
      if (end) ended = true;
      wake?.();
    },
  });
  const destroy = (): void => {
    res.destroy();
    uf.close();
    ended = true;
    wake?.();
  };
  const noBody = contentLength === 0;
  d.headers([[':status', String(status)], ...headers], noBody);
  if (noBody) res.resume();
  else {
    void (async () => {
      await d.headersAnswered();
      let seen = 0;
      let end = false;
      try {
        for await (const c of res) {
          if (uf.ended) break;
          const chunk = c as Buffer;
          seen += chunk.length;
          end = contentLength !== undefined && seen >= contentLength;
          d.data(chunk, end);
        }
      } catch {
        destroy();
        return;
      }
      if (!end && !uf.ended) d.data(EMPTY, true);
    })();
  }
  const result = d.result().then(
    (r) => {
      if (r.kind === 'local-reply') destroy();
      else uf.close();
      ended = true;
      wake?.();
      return r;
    },
    () => {
      destroy();
      return undefined;
    },
  );
  const first = await Promise.race([released, result]);
  if (first === undefined) {
    return { kind: 'failure', reason: 'reset', detail: 'upstream filter failure' };
  }
  if (!Array.isArray(first)) {
    if (first.kind === 'local-reply') return { kind: 'reply', reply: first };
  }
  const out = Array.isArray(first) ? first : await released;
  const outStatus = Number(getHeader(out, ':status') ?? status);
  const outLength = getHeader(out, 'content-length');
  async function* body(): AsyncIterable<Buffer> {
    for (;;) {
      const next = chunks.shift();
      if (next) {
        yield next;
        continue;
      }
      if (ended) return;
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
  }
  return {
    kind: 'filtered',
    destroy,
    response: {
      status: outStatus,
      headers: out.filter(([k]) => !k.startsWith(':')),
      body: ended && chunks.length === 0 ? undefined : body(),
      contentLength: outLength === undefined ? undefined : Number(outLength),
      abort: destroy,
      details: 'via_upstream',
    },
  };
}
