/**
 * The `sluice.upstream` filter: an upstream HTTP filter on every backend cluster, run once per
 * attempt (retries and fallbacks included). It knows the chosen backend from the cluster name
 * attribute, so it is the one place that shapes the request for that backend: path, model
 * override, credential, body schema.
 *
 * A refused attempt (no router state, unknown backend, a backend that cannot take the caller's
 * API) is answered with an immediate response in the caller's format, which every supported
 * Envoy release (1.37+) sends downstream (see fail()).
 */
import { Limits, WIRE, type Provider } from '../config/contract.js';
import type { ResolvedBackend } from '../config/runtime.js';
import type { RuntimeConfig } from '../config/runtime.js';
import { SluiceError, toSluiceError } from '../errors.js';
import { createBodyDecoder, isBodyDecoder, type BodyDecoder } from '../usage/decode.js';
import { rateLimitHeaders, retryAfterFromErrorBody } from '../providers/rate-limit-headers.js';
import { DEFAULT_MAX_EVENT_BYTES } from '../usage/sse.js';
import { headerMap } from '../wire/headers.js';
import { CONTINUE, proceed, type Mutation, type Outcome } from '../wire/mutation.js';
import {
  attribute,
  type Attributes,
  type BodyMessage,
  type EndReason,
  type HeadersMessage,
  type PhaseHandler,
} from './phase.js';
import {
  backendApi,
  CALLER_CREDENTIAL_HEADERS,
  credentialHeaders,
  signingHeaders,
  translatorFor,
  unsupportedBackend,
  type ResponseTranslator,
} from '../providers/index.js';
import type { ExchangeRequest, Translator } from '../providers/translator.js';
import { attemptHeaders, newSpanId, type RequestTrace } from '../telemetry/trace-context.js';
import { recordAttempt, type KeptResource, type RequestStore } from './request-store.js';
import { responsesResourcePath } from '../providers/paths.js';
import { MODEL_HEADER } from './router.js';
import { errorVerdict, REQUEST_ID_HEADER } from './verdict.js';

function lostTrack(): SluiceError {
  return new SluiceError('gateway_error', 'The gateway lost track of this request.');
}

/** Client credentials and gateway-internal headers never reach a provider. */
// The affinity key is for Envoy's host selection only, which has happened when this filter runs.
const STRIP = [
  ...CALLER_CREDENTIAL_HEADERS,
  REQUEST_ID_HEADER,
  MODEL_HEADER,
  WIRE.affinityHeader,
  WIRE.backendHeader,
];

/** What a translator reads of a request held by another worker, and its trace. */
export type RemoteRequest = ExchangeRequest & { trace?: RequestTrace; resource?: KeptResource };

/** An attempt to record on the request's owner (recordAttempt there). */
export interface RemoteAttempt {
  id: string;
  backend: string;
  provider: Provider;
  startedAtMs?: number;
  spanId?: string;
}

/**
 * Requests whose router phase ran in another worker of `--workers N` (workers/requests.ts): read
 * for translation, then the attempt recorded there, as a local request is.
 */
export interface RemoteRequests {
  /** The id names another worker: worth asking. */
  elsewhere(id: string): boolean;
  get(id: string): Promise<RemoteRequest | undefined>;
  /** false: the owner no longer holds the request. */
  begin(attempt: RemoteAttempt): Promise<boolean>;
}

export interface UpstreamDeps {
  config: RuntimeConfig | undefined;
  store: RequestStore;
  /** Requests of other workers; absent in a single process. */
  remote?: RemoteRequests | undefined;
  onAttempt?: (backend: ResolvedBackend) => void;
  /** Wall-clock ms, for `created` in answers translated from an API that has none. */
  wallNow?: () => number;
}

export class UpstreamExchange implements PhaseHandler {
  private api: 'openai' | 'anthropic' = 'openai';
  private requestId: string | undefined;
  /** Set when this attempt's backend answers in another API than the caller's. */
  private response: ResponseTranslator | undefined;
  private status: number | undefined;
  private streaming = false;
  /** A compressed answer this attempt must read: decoded before it is translated. */
  private decoder: BodyDecoder | undefined;
  /** The answer's headers carry retry-after (the backend's, or one derived from them). */
  private retryAfter = false;

  constructor(private readonly deps: UpstreamDeps) {}

  requestHeaders(
    msg: HeadersMessage,
    attributes: Attributes | undefined,
  ): Outcome | Promise<Outcome> {
    const headers = headerMap(msg.headers);
    const id = headers.get(REQUEST_ID_HEADER);
    this.requestId = id;
    const state = id === undefined ? undefined : this.deps.store.get(id);
    const remote = this.deps.remote;
    if (!state && id !== undefined && remote?.elsewhere(id)) {
      // The router phase ran in another worker (--workers): its state is read from there.
      const backend = this.backendOf(attributes);
      return remote.get(id).then(async (req) => {
        if (!req) throw lostTrack();
        this.api = req.api;
        if (req.resource)
          return this.forwardKept(req.resource, backend, headers, (a) =>
            remote.begin({ id, ...a }).then((ok) => {
              if (!ok) throw lostTrack();
            }),
          );
        const translator = this.translatorFor(req, backend);
        return this.forward(req, req.trace, backend, translator, headers, (a) =>
          remote.begin({ id, ...a }).then((ok) => {
            if (!ok) throw lostTrack();
          }),
        );
      });
    }
    // Fail closed: without the router phase's state this request was never checked.
    if (!state) throw lostTrack();
    this.api = state.api;
    const backend = this.backendOf(attributes);
    if (state.resource)
      return this.forwardKept(state.resource, backend, headers, (a) => recordAttempt(state, a));
    const translator = this.translatorFor(state, backend);
    return this.forward(state, state.trace, backend, translator, headers, (a) =>
      recordAttempt(state, a),
    );
  }

  private backendOf(attributes: Attributes | undefined): ResolvedBackend {
    const cfg = this.deps.config;
    const named = attribute(attributes, WIRE.backendAttribute);
    const cluster = attribute(attributes, WIRE.clusterAttribute);
    const backend =
      named !== undefined && named !== ''
        ? cfg?.backend(named)
        : cluster === undefined
          ? undefined
          : cfg?.backendForCluster(cluster);
    if (!backend)
      throw new SluiceError('gateway_error', 'The gateway has no backend for this upstream.');
    return backend;
  }

  private translatorFor(req: ExchangeRequest, backend: ResolvedBackend): Translator {
    const translator = translatorFor(req.api, req.operation, backendApi(backend));
    if (!translator) throw unsupportedBackend(req.api, req.operation, [backend.provider]);
    return translator;
  }

  /**
   * Translates the request for `backend`, records the attempt (`begin`: here, or on the worker
   * that holds the request) and answers. The attempt is recorded only once the translation
   * succeeded, and before the answer, so the response side sees every attempt that went out.
   */
  private forward(
    req: ExchangeRequest,
    trace: RequestTrace | undefined,
    backend: ResolvedBackend,
    translator: Translator,
    headers: ReadonlyMap<string, string>,
    begin: (a: {
      backend: string;
      provider: Provider;
      startedAtMs?: number;
      spanId?: string;
    }) => void | Promise<void>,
  ): Outcome | Promise<Outcome> {
    const cfg = this.deps.config;
    const up = translator.request(req, backend);
    // Tracing on: the provider is told this attempt's span as its parent (trace-context.ts).
    const spanId = trace ? newSpanId() : undefined;
    // Fields set one by one (here and below): conditional spreads were throwaway objects on
    // every attempt (bench section lean, BENCH_ALLOC_PROFILE).
    const attempt: Parameters<typeof begin>[0] = {
      backend: backend.name,
      provider: backend.provider,
    };
    if (this.deps.wallNow) attempt.startedAtMs = this.deps.wallNow();
    if (spanId !== undefined) attempt.spanId = spanId;
    const begun = begin(attempt);
    this.deps.onAttempt?.(backend);

    // Uncompressed answers let the response side read usage and rewrite streams without recoding.
    const set: [string, string][] = [
      [':path', up.path],
      ['accept-encoding', 'identity'],
    ];
    pushAll(set, up.headers);
    const defaults = up.defaultHeaders;
    if (defaults) {
      for (let i = 0; i < defaults.length; i++) {
        if (!headers.has(defaults[i]![0])) set.push(defaults[i]!);
      }
    }
    if (trace && spanId) pushAll(set, attemptHeaders(trace, spanId));
    pushAll(set, credentialHeaders(backend, up));
    // A kind that signs (AWS SigV4) covers the final path and body: the answer waits for it.
    const signing = signingHeaders(
      backend,
      up,
      { method: headers.get(':method') ?? 'POST', authority: headers.get(':authority') ?? '' },
      (this.deps.wallNow ?? Date.now)(),
    );
    const remove: string[] = [];
    for (let i = 0; i < STRIP.length; i++) if (headers.has(STRIP[i]!)) remove.push(STRIP[i]!);
    const m: Mutation = { setHeaders: set, removeHeaders: remove };
    if (up.body !== undefined) {
      m.body = up.body;
      m.replace = true;
    }
    this.response = translator.response(req, backend, {
      created: Math.floor((this.deps.wallNow ?? Date.now)() / 1000),
      maxEventBytes: cfg?.limits.maxSseEventBytes ?? DEFAULT_MAX_EVENT_BYTES,
    });
    // The filter is configured to skip responses, which costs a same-API attempt nothing; a
    // translated one turns the response headers on here (a mode override in a request headers
    // answer sets both directions' modes) and picks the body mode when it sees them.
    if (this.response) {
      m.modeOverride = {
        requestBody: 'NONE',
        responseBody: 'NONE',
        requestHeader: 'SEND',
        responseHeader: 'SEND',
      };
    }
    const answer = signing
      ? signing.then((h) => {
          set.push(...h);
          return proceed(m);
        })
      : proceed(m);
    // A remote attempt is recorded on its owner before Envoy may send the request on.
    return begun instanceof Promise ? begun.then(() => answer) : answer;
  }

  /**
   * GET/DELETE of a response its provider keeps, or its input items (RequestState.resource): only
   * the backend that keeps it may take the request — the route pins it there (WIRE.backendHeader),
   * and any other backend is refused here, unsent, rather than asked for another account's id.
   * Path (the caller's query kept) and credential are set; nothing is translated or charged.
   */
  private forwardKept(
    resource: KeptResource,
    backend: ResolvedBackend,
    headers: ReadonlyMap<string, string>,
    begin: (a: {
      backend: string;
      provider: Provider;
      startedAtMs?: number;
    }) => void | Promise<void>,
  ): Outcome | Promise<Outcome> {
    if (backend.name !== resource.backend)
      throw new SluiceError(
        'response_unreachable',
        'The backend that keeps this response was not reached, so the request was not sent.',
      );
    const up = {
      path: responsesResourcePath(backend, resource.call, resource.query),
      headers: [],
      body: undefined,
    };
    const begun = begin({
      backend: backend.name,
      provider: backend.provider,
      ...(this.deps.wallNow && { startedAtMs: this.deps.wallNow() }),
    });
    this.deps.onAttempt?.(backend);
    const set: [string, string][] = [
      [':path', up.path],
      ['accept-encoding', 'identity'],
      ...credentialHeaders(backend, up),
    ];
    const signing = signingHeaders(
      backend,
      up,
      { method: headers.get(':method') ?? 'GET', authority: headers.get(':authority') ?? '' },
      (this.deps.wallNow ?? Date.now)(),
    );
    const m: Mutation = { setHeaders: set, removeHeaders: STRIP.filter((h) => headers.has(h)) };
    const answer = signing
      ? signing.then((h) => {
          set.push(...h);
          return proceed(m);
        })
      : proceed(m);
    return begun instanceof Promise ? begun.then(() => answer) : answer;
  }

  requestBody(): Outcome {
    return CONTINUE;
  }
  requestTrailers(): Outcome {
    return CONTINUE;
  }

  /**
   * Only asked for when this attempt's backend answers in another API than the caller's (the
   * request headers answer turned the response headers on): the answer is translated back here,
   * before the router filter reads it. JSON and error bodies come whole (BUFFERED), streams chunk
   * by chunk (STREAMED).
   */
  responseHeaders(msg: HeadersMessage): Outcome {
    const rt = this.response;
    if (!rt) return CONTINUE;
    const headers = headerMap(msg.headers);
    const status = Number(headers.get(':status') ?? '0');
    this.status = status;
    const translated = rt.headers(status, headers);
    // The backend's rate-limit headers under the caller's names (providers/rate-limit-headers.ts).
    const limits = rateLimitHeaders(this.api, status, headers, (this.deps.wallNow ?? Date.now)());
    this.retryAfter = headers.has('retry-after') || limits.set.some(([k]) => k === 'retry-after');
    const start = {
      ...translated,
      setHeaders: [...translated.setHeaders, ...limits.set],
      removeHeaders: [...translated.removeHeaders, ...limits.remove],
    };
    // `none`: the answer is already the caller's; the body mode stays the configured skip.
    if (msg.end_of_stream || start.body === 'none') {
      this.response = undefined;
      return proceed({ setHeaders: start.setHeaders, removeHeaders: start.removeHeaders });
    }
    this.streaming = status >= 200 && status < 300 && start.body === 'stream';
    const remove = [...start.removeHeaders];
    this.decoder = this.bodyDecoder(headers.get('content-encoding'));
    if (this.decoder) remove.push('content-encoding');
    // STREAMED: Envoy drops content-length itself; said here too, as the length will change.
    if (this.streaming && headers.has('content-length')) remove.push('content-length');
    return proceed({
      setHeaders: start.setHeaders,
      removeHeaders: remove,
      // Header modes restated: one left DEFAULT would fall back to the configured SKIP (Envoy
      // 1.34+ effectiveModeOverride), and BUFFERED without headers drops content-length.
      modeOverride: {
        requestBody: 'NONE',
        responseBody: this.streaming ? 'STREAMED' : 'BUFFERED',
        requestHeader: 'SEND',
        responseHeader: 'SEND',
      },
    });
  }

  /**
   * The request asked for identity (forward()), but a backend may compress anyway (some servers
   * and proxies ignore accept-encoding): gzip, deflate and br are decoded, bounded so a
   * decompression bomb stops at the limit with 502 `response_too_large` in the caller's format —
   * a JSON or error answer by maxResponseBodyBytes in all, a stream by as much per chunk. Any
   * other coding cannot be read, so it cannot be translated: 502 `bad_upstream_response`.
   */
  private bodyDecoder(encoding: string | undefined): BodyDecoder | undefined {
    const limits = this.deps.config?.limits ?? Limits.parse({});
    const d = createBodyDecoder(encoding, {
      maxOutputBytes: limits.maxResponseBodyBytes,
      perChunk: this.streaming,
    });
    if (d === null) return undefined;
    if (!isBodyDecoder(d)) {
      throw new SluiceError(
        'bad_upstream_response',
        'The backend sent its answer in a content-encoding the gateway cannot decode.',
      );
    }
    return d;
  }

  responseBody(msg: BodyMessage): Outcome | Promise<Outcome> {
    const rt = this.response;
    if (!rt) return CONTINUE;
    const chunk = msg.body ?? Buffer.alloc(0);
    const end = msg.end_of_stream === true;
    const d = this.decoder;
    if (!d) return this.translate(rt, chunk, end);
    // BUFFERED: this one message is the whole body, so the decoder ends with it.
    return decode(d, chunk, end || !this.streaming).then((plain) => this.translate(rt, plain, end));
  }

  private translate(rt: ResponseTranslator, chunk: Buffer, end: boolean): Outcome {
    if (this.streaming) return proceed({ body: rt.stream(chunk, end) });
    // BUFFERED: the whole body in this one message (trailers, if any, follow without it).
    this.response = undefined;
    const status = this.status ?? 0;
    const ok = status >= 200 && status < 300;
    const body = ok ? rt.json(chunk) : rt.error(status, chunk);
    // BUFFERED with header SEND keeps content-length: it must match what now goes on.
    const set: [string, string][] = [['content-length', String(body.length)]];
    // A throttled error that said when to retry only in its body (Google's RetryInfo).
    const retryAfter = ok || this.retryAfter ? undefined : retryAfterFromErrorBody(status, chunk);
    if (retryAfter !== undefined) set.push(['retry-after', retryAfter]);
    return proceed({ body, setHeaders: set });
  }

  responseTrailers(): Outcome {
    return CONTINUE;
  }

  /**
   * A refused attempt ends the request with this immediate response: every supported Envoy
   * release (1.37+) sends an upstream ext_proc filter's local reply downstream
   * (UpstreamFilterManager::sendLocalReply, envoyproxy/envoy PR #41231), unretried.
   */
  fail(err: unknown): Outcome {
    const e = toSluiceError(err);
    return { kind: 'respond', verdict: errorVerdict(this.api, e, this.requestId) };
  }

  finish(_reason: EndReason): void {}
}

/** Appends `items` to `list` (no spread: push(...items) copies them into an arguments list). */
function pushAll<T>(list: T[], items: readonly T[]): void {
  for (let i = 0; i < items.length; i++) list.push(items[i]!);
}

/** What `chunk` decodes to; `last` ends the decoder (a truncated body is an error). */
async function decode(d: BodyDecoder, chunk: Buffer, last: boolean): Promise<Buffer> {
  const head = await d.push(chunk);
  if (!last) return head;
  const tail = await d.end();
  return tail.length === 0 ? head : head.length === 0 ? tail : Buffer.concat([head, tail]);
}
