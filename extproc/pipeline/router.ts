/**
 * The `sluice.router` filter: the HTTP-level ext_proc that sees every request before routing.
 * Request: dispatch on :path, read the model from the body, answer with the routing header and
 * clear_route_cache. Response: usage accounting, SSE handling, access log and metrics.
 */
import { isUtf8 } from 'node:buffer';
import {
  guessApi,
  resolveEndpoint,
  stripQuery,
  type ApiFormat,
  type Endpoint,
} from '../providers/endpoints.js';
import { WIRE, type Route } from '../config/contract.js';
import type { CompiledGovernance, RuntimeConfig } from '../config/runtime.js';
import { SluiceError, toSluiceError } from '../errors.js';
import { applyRequestPolicyNow } from './masking.js';
import {
  findingsOf,
  newPolicyState,
  VAULT_DEGRADED,
  verdictsOf,
  type PolicyState,
} from '../policy/state.js';
import { duplicateKey, duplicateKeyError } from '../masking/json-keys.js';
import { TEMPLATE_FIELD } from '../guard/schema.js';
import { scanBody, type BodyScan } from './body-scan.js';
import type { Budget } from '../governance/budget.js';
import type { Caller } from '../governance/identity.js';
import type { RequestRecord, Telemetry } from '../telemetry/telemetry.js';
import { CompletionCapture, maskedForTrace, promptText, tee } from '../telemetry/content.js';
import { requestTrace, type RequestTrace, type TraceHeaders } from '../telemetry/trace-context.js';
import { refusalMetric } from '../state/store.js';
import { headerMap } from '../wire/headers.js';
import { canServe, servesApi, unsupportedBackend } from '../providers/index.js';
import {
  CACHE_HEADER,
  type CacheCapture,
  type CacheRecord,
  type ResponseCache,
} from '../cache/cache.js';
import type { TokenUsage } from '../usage/extract.js';
import {
  admit,
  admitCaller,
  finishGovernance,
  modelsVisible,
  reserveFor,
  type Admitted,
  type AdmitInput,
} from './governance.js';
import { applyGuard, type GuardFinding } from './guard.js';
import { ConversationStep } from './conversation.js';
import type { SessionIds } from '../context/session.js';
import { modelList, modelObject } from './models.js';
import { CONTINUE, proceed, type Mutation, type Outcome } from '../wire/mutation.js';
import type {
  BodyMessage,
  EndReason,
  HeadersMessage,
  PhaseHandler,
  ProtocolConfig,
} from './phase.js';
import type { RequestState, RequestStore } from './request-store.js';
import { ResponseProcessor } from './response.js';
import {
  deliveredBytes,
  keptAnswered,
  ResponsesTurn,
  StoredResource,
  type KeptRequest,
} from './sessions.js';
import type { Sessions } from '../sessions/sessions.js';
import { errorVerdict, jsonVerdict, REQUEST_ID_HEADER } from './verdict.js';

export const MODEL_HEADER = WIRE.modelHeader;

/** Shared empty values (read only): an exchange that never needs its own makes none. */
const NO_HEADERS: ReadonlyMap<string, string> = new Map();
const NO_BODY: Record<string, unknown> = Object.freeze({});

export interface RouterDeps {
  config: RuntimeConfig | undefined;
  store: RequestStore;
  telemetry: Telemetry;
  now: () => number;
  newId: () => string;
  /** Limits and budgets; absent: governance checks identity and access only. */
  budget?: Budget | undefined;
  /** Wall-clock ms (key expiry); `now` is monotonic. */
  wallNow?: () => number;
  /** Receives each settlement in flight, so shutdown and tests can wait for them. */
  settling?: (p: Promise<unknown>) => void;
  /** The response cache (cache/cache.ts); absent: no route caches. */
  cache?: ResponseCache | undefined;
  /** Keys the session ids of logs, metrics and usage (from the vault key); absent: per process. */
  sessionIds?: SessionIds | undefined;
  /** Stored Responses turns and conversations (sessions/); absent: the gateway keeps none. */
  sessions?: Sessions | undefined;
  /** A turn that could not be stored after its answer was bought (the embedder logs it). */
  onSessionError?: (err: unknown) => void;
  /**
   * Tracing is on: the sampling ratio of new traces, and the trace context of this ext_proc
   * stream (Envoy's span, from the initial metadata), which wins over the request's own header.
   */
  trace?: { ratio: number; stream?: TraceHeaders | undefined } | undefined;
}

export class RouterExchange implements PhaseHandler {
  private api: ApiFormat = 'openai';
  private endpoint: Endpoint | undefined;
  private requestId: string | undefined;
  private state: RequestState | undefined;
  private chunks: Buffer[] = [];
  private bytes = 0;
  private readonly startedAt: number;
  private status: number | undefined;
  private errorCode: string | undefined;
  private response: ResponseProcessor | undefined;
  /** Envoy's defaults when it does not say (older Envoys send no protocol_config). */
  private requestBodyMode = 'BUFFERED';
  private responseBodyMode = 'BUFFERED';
  private requestHeaderMap: ReadonlyMap<string, string> = NO_HEADERS;
  private policy: PolicyState | undefined;
  private guardFindings: GuardFinding[] = [];
  /** Session, affinity key and context window of a model call (pipeline/conversation.ts). */
  private conversation: ConversationStep | undefined;
  /** Who listed the models, for the access log; the list itself names no one. */
  private modelsCaller: Caller | undefined;
  /** The governance policy a request was judged by, kept for the log line when admit refuses. */
  private judged:
    { policy: string; seen: { caller?: Caller }; compiled: CompiledGovernance } | undefined;
  /** The request's trace (tracing on): its ids are handed to upstream attempts. */
  private trace: RequestTrace | undefined;
  /** The provider's answer, for a route whose masking records content in traces. */
  private completion: CompletionCapture | undefined;
  /** The cache's decision for a route that has one, and on a hit what the request is charged. */
  private cached:
    | { record: CacheRecord; capture?: CacheCapture | undefined; hit?: { charged?: TokenUsage } }
    | undefined;

  /** A request for a stored response or conversation, answered from the session store. */
  private stored: StoredResource | undefined;
  /** A Responses request's turn: what it continues, and where its answer is stored. */
  private turn: ResponsesTurn | undefined;

  constructor(private readonly deps: RouterDeps) {
    this.startedAt = deps.now();
  }

  protocol(cfg: ProtocolConfig): void {
    if (cfg.request_body_mode) this.requestBodyMode = cfg.request_body_mode;
    if (cfg.response_body_mode) this.responseBodyMode = cfg.response_body_mode;
  }

  requestHeaders(msg: HeadersMessage): Outcome | Promise<Outcome> {
    const headers = headerMap(msg.headers);
    this.requestHeaderMap = headers;
    const t = this.deps.trace;
    if (t) {
      this.trace = requestTrace(
        [
          t.stream,
          { traceparent: headers.get('traceparent'), tracestate: headers.get('tracestate') },
        ],
        t.ratio,
      );
    }
    const path = headers.get(':path') ?? '';
    const method = headers.get(':method') ?? '';
    this.api = guessApi(headers);
    const cfg = this.deps.config;
    if (!cfg)
      throw new SluiceError(
        'config_unavailable',
        'The gateway has no configuration yet; retry shortly.',
      );
    const endpoint = resolveEndpoint(path, headers);
    if (!endpoint) {
      const stored = this.storedResource(path, method, headers, cfg, msg.end_of_stream === true);
      if (stored) return stored;
      throw new SluiceError(
        'unknown_path',
        `The gateway does not serve ${method || 'this method'} on this path.`,
      );
    }
    this.endpoint = endpoint;
    this.api = endpoint.api;
    if (endpoint.kind === 'models-list' || endpoint.kind === 'model-get') {
      if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed('GET');
      const visible = modelsVisible(cfg, headers, (this.deps.wallNow ?? Date.now)());
      this.modelsCaller = visible.caller;
      this.status = 200;
      // Whatever their backends' APIs, as long as some backend of the route can take this API.
      const api = this.api;
      const models = visible.models.filter((x) =>
        (cfg.routeForModel(x.id)?.backends ?? []).some((b) => {
          const backend = cfg.backend(b.name);
          return backend !== undefined && servesApi(api, backend);
        }),
      );
      if (endpoint.kind === 'models-list') {
        return {
          kind: 'respond',
          verdict: jsonVerdict(200, modelList(this.api, models), 'sluice_models'),
        };
      }
      // A model the caller may not use is answered like one that does not exist.
      const m = models.find((x) => x.id === endpoint.model);
      if (!m) throw modelNotFound(endpoint.model);
      return {
        kind: 'respond',
        verdict: jsonVerdict(200, modelObject(this.api, m), 'sluice_models'),
      };
    }
    if (method !== 'POST') throw methodNotAllowed('POST');
    if (msg.end_of_stream)
      throw new SluiceError('missing_body', 'This endpoint needs a JSON request body.');
    const contentType = headers.get('content-type');
    if (contentType !== undefined && !isJsonType(contentType)) {
      throw new SluiceError(
        'unsupported_media_type',
        'The request body must be JSON (content-type: application/json).',
      );
    }
    const length = headers.get('content-length');
    if (length !== undefined && Number(length) > cfg.limits.maxRequestBodyBytes)
      throw tooLarge(cfg);
    this.requestId = this.deps.newId();
    // Set before routing so a client cannot pick another request's id: ours always replaces theirs.
    return proceed({ setHeaders: [[REQUEST_ID_HEADER, this.requestId]] });
  }

  async requestBody(msg: BodyMessage): Promise<Outcome> {
    if (this.stored)
      return this.answered(
        this.stored.body(msg.body ?? Buffer.alloc(0), msg.end_of_stream === true),
      );
    const cfg = this.deps.config;
    const endpoint = this.endpoint;
    if (!cfg || endpoint?.kind !== 'model-call' || !this.requestId) return CONTINUE;
    const chunk = msg.body ?? Buffer.alloc(0);
    this.bytes += chunk.length;
    if (this.bytes > cfg.limits.maxRequestBodyBytes) throw tooLarge(cfg);
    // A BUFFERED body is whole in one message, even when trailers follow (end_of_stream false).
    // In BUFFERED_PARTIAL a message without end_of_stream means the buffer limit was hit.
    if (!msg.end_of_stream) {
      if (this.requestBodyMode === 'BUFFERED_PARTIAL') throw tooLarge(cfg);
      if (this.requestBodyMode !== 'BUFFERED') {
        this.chunks.push(chunk);
        // With masking or a guard anywhere, nothing may go on before the whole body is checked.
        return cfg.masking || cfg.guard ? proceed({ body: Buffer.alloc(0) }) : CONTINUE;
      }
    }
    const raw = this.chunks.length === 0 ? chunk : Buffer.concat([...this.chunks, chunk]);
    this.chunks = [];
    const body = checkedBody(raw);
    const model = body.top('model');
    if (typeof model !== 'string' || model.length === 0) {
      throw new SluiceError('missing_model', 'The request body must name a model.', {
        param: 'model',
      });
    }
    const route = cfg.routeForModel(model);
    if (!route) throw modelNotFound(model);
    // Before identity, masking and budgets: the policy that would govern them is broken.
    if (route.refuse) throw routeRefused(route.refuse);
    const stream = body.top('stream') === true;
    const so = body.top('stream_options');
    const asked =
      typeof so === 'object' &&
      so !== null &&
      (so as Record<string, unknown>).include_usage === true;
    const usageCapable = endpoint.operation === 'chat' || endpoint.operation === 'completions';
    const state = (this.state = new RoutedRequest(
      this.requestId,
      endpoint,
      model,
      route.name,
      body,
      stream,
      stream && usageCapable && !asked,
      this.deps.now(),
    ));
    if (this.trace) state.trace = this.trace;
    const held = this.requestBodyMode !== 'BUFFERED' && (cfg.masking || cfg.guard);
    const setHeaders: [string, string][] = [[MODEL_HEADER, model]];
    // Only a request for a provider-kept response is pinned to one backend (pipeline/sessions.ts):
    // a client's own pin would pick a backend no rule of this model's route chose.
    const removeHeaders: string[] = this.requestHeaderMap.has(WIRE.backendHeader)
      ? [WIRE.backendHeader]
      : [];
    const governance = cfg.governanceFor(route.name);
    const caches = this.deps.cache?.policyFor(route) !== undefined;
    let deferred: { input: AdmitInput; admitted: Admitted } | undefined;
    const conversation = (this.conversation = new ConversationStep(this.deps.sessionIds));
    // Before masking: a caller who may not use the route costs no detector or vault work.
    if (governance) {
      this.judged = { policy: governance.policy.name, seen: {}, compiled: governance };
      const input: AdmitInput = {
        seen: this.judged.seen,
        compiled: governance,
        consumers: cfg.consumers,
        headers: this.requestHeaderMap,
        operation: endpoint.operation,
        body: state.body,
        model,
        route: route.name,
        budget: this.deps.budget,
        wallNow: (this.deps.wallNow ?? Date.now)(),
        sessionOf: (caller) => conversation.sessionId(route, caller, this.requestHeaderMap),
      };
      // With a cache, the reservation waits for the lookup (after masking): a hit reserves nothing.
      // A Responses turn's waits too: the conversation it continues is part of its prompt.
      // A route with a context window's waits for the window: it charges what is sent.
      const defer =
        caches || endpoint.operation === 'responses' || route.policy?.context !== undefined;
      const g = defer ? admitCaller(input) : await admit(input);
      if (defer) deferred = { input, admitted: g };
      this.state.governance = g.state;
      if (g.outputTokenCap !== undefined) this.state.outputTokenCap = g.outputTokenCap;
      removeHeaders.push(...g.strip);
    }
    // After identity (a session is its caller's), before any change to the body (turns as sent).
    const conv = conversation.identify({
      route,
      operation: endpoint.operation,
      // Read only for a caller's session (its turn): without a caller, not parsed for it.
      body: state.governance?.caller ? state.body : NO_BODY,
      headers: this.requestHeaderMap,
      caller: state.governance?.caller,
    });
    setHeaders.push(...conv.setHeaders);
    removeHeaders.push(...conv.removeHeaders);
    // Refused here when no backend could take it: the upstream phase would refuse every attempt,
    // after a round trip through routing. After admission, so a caller who may not use the route
    // learns nothing about its providers; the end of the request releases what admit reserved.
    // (A loop, not flatMap + some: two closures and a list per request for a check that passes.)
    let known = false;
    let servable = false;
    for (let i = 0; i < route.backends.length && !servable; i++) {
      const b = cfg.backend(route.backends[i]!.name);
      if (b === undefined) continue;
      known = true;
      servable = canServe(endpoint.api, endpoint.operation, b);
    }
    if (known && !servable) {
      throw unsupportedBackend(
        endpoint.api,
        endpoint.operation,
        route.backends.flatMap((b) => cfg.backend(b.name)?.provider ?? []),
      );
    }
    let replaced: Buffer | undefined;
    if (endpoint.operation === 'responses') replaced = await this.planTurn(cfg, route, state.body);
    // Continuing a response its provider keeps: to the backend that made it, when this route
    // sends there (pinned as GET/DELETE are, pipeline/sessions.ts); else as any request, and that
    // provider answers for the id.
    const pin = this.turn?.plan.backend;
    if (pin !== undefined && route.backends.some((b) => b.name === pin)) {
      // Set, where a client's own was removed above.
      const own = removeHeaders.indexOf(WIRE.backendHeader);
      if (own !== -1) removeHeaders.splice(own, 1);
      setHeaders.push([WIRE.backendHeader, pin]);
    }
    const policy = cfg.policyFor(route.name);
    if (policy) this.policy = newPolicyState(policy);
    // The window, once the conversation is whole (a Responses turn's history rebuilt), before
    // guard and masking, which then see only what is sent.
    // Only a route with a context window has one to fit (fit() returns false on the others):
    // not asked there, so neither the body is parsed nor the backends' models listed for it.
    const fitted =
      route.policy?.context !== undefined &&
      conversation.fit({
        route,
        operation: endpoint.operation,
        model,
        body: state.body,
        backendModels: route.backends.map((b) => cfg.backend(b.name)?.modelOverride ?? model),
        governance,
        verdicts: this.policy?.verdicts,
      });
    if (fitted) replaced = Buffer.from(JSON.stringify(state.body), 'utf8');
    if (deferred && !caches) {
      const a = await reserveFor(deferred.input, deferred.admitted);
      if (a.outputTokenCap !== undefined) this.state.outputTokenCap = a.outputTokenCap;
    }
    // After governance, before masking: masking then sees the rendered template and the
    // decorators, so PII in a template variable is masked like any other prompt text.
    // Without a guard and a policy state applyGuard only refuses a template field
    // (pipeline/guard.ts): not asked when the body is known to have none, so no parse for it.
    const guard = cfg.guardFor(route.name);
    const guarded =
      (guard && this.policy) || body.mayHave(TEMPLATE_FIELD)
        ? applyGuard({
            state: this.policy,
            guard,
            operation: endpoint.operation,
            body: state.body,
            findings: this.guardFindings,
          })
        : undefined;
    if (guarded) {
      this.state.body = guarded;
      replaced = Buffer.from(JSON.stringify(guarded), 'utf8');
    }
    // From here state.body is what leaves (the guard's rendering, else the client's body): what
    // masking and the cache see.
    if (policy && this.policy) {
      // Awaited only when the vault answers later: a promise per request otherwise (issue 16).
      const pending = applyRequestPolicyNow({
        state: this.policy,
        operation: endpoint.operation,
        body: state.body,
        headers: this.requestHeaderMap,
        route: route.name,
        vault: this.deps.store.vault,
        caller: this.state.governance?.caller,
        session: this.turn?.plan.vaultSession,
        source: replaced ?? raw,
      });
      const r = pending instanceof Promise ? await pending : pending;
      this.state.policy = this.policy;
      if (r.body) replaced = r.body;
      const session = policy.masking?.sessionHeader;
      // Our own session header is for the gateway only; a custom one may be the app's to forward.
      if (session?.startsWith('x-sluice-') && this.requestHeaderMap.has(session))
        removeHeaders.push(session);
    }
    if (caches) {
      const hit = await this.cacheLookup(cfg, route, endpoint, replaced, state.body, deferred);
      if (hit) return hit;
    }
    if (replaced) {
      this.state.rawBody = replaced;
      // BUFFERED with header SEND keeps content-length: it must match the new body (Envoy
      // fails the request otherwise). In other modes Envoy has removed it already.
      if (this.requestBodyMode === 'BUFFERED' && this.requestHeaderMap.has('content-length'))
        setHeaders.push(['content-length', String(replaced.length)]);
    }
    this.deps.store.put(this.state);
    const outBody = replaced ?? (held ? raw : undefined);
    // Set field by field: spreads of conditional objects were two throwaway objects per request.
    const mutation: Mutation = { setHeaders, clearRouteCache: true };
    if (removeHeaders.length > 0) mutation.removeHeaders = removeHeaders;
    if (outBody) mutation.body = outBody;
    return proceed(mutation);
  }

  /** `/v1/responses/{id}` and the Conversations API, answered from the session store. */
  private storedResource(
    path: string,
    method: string,
    headers: ReadonlyMap<string, string>,
    cfg: RuntimeConfig,
    endOfStream: boolean,
  ): Outcome | Promise<Outcome> | undefined {
    const stored = StoredResource.match(stripQuery(path), {
      sessions: this.deps.sessions,
      cfg,
      method,
      rawPath: path,
      headers,
      wallNow: (this.deps.wallNow ?? Date.now)(),
      forward: (k) => this.forwardKept(k, headers),
    });
    if (!stored) return undefined;
    this.api = 'openai';
    this.stored = stored;
    return this.answered(stored.headers(endOfStream));
  }

  /**
   * GET/DELETE of a response its provider keeps, by its owner: on to the backend that keeps it,
   * pinned by WIRE.backendHeader (its own route entry and cluster, operator/compile/to-envoy.ts),
   * with clear_route_cache so Envoy routes on it. A request state tells the upstream phase to set
   * only path and credential (RequestState.resource); no governance state, so nothing is charged.
   */
  private forwardKept(k: KeptRequest, headers: ReadonlyMap<string, string>): Outcome {
    const id = this.deps.newId();
    this.requestId = id;
    this.state = {
      id,
      api: 'openai',
      operation: 'responses',
      model: k.model,
      routeName: k.route.name,
      body: {},
      rawBody: Buffer.alloc(0),
      stream: false,
      forcedUsage: false,
      attempts: [],
      createdAt: this.deps.now(),
      resource: k.resource,
      ...(this.trace && { trace: this.trace }),
    };
    if (k.caller) this.modelsCaller = k.caller;
    this.deps.store.put(this.state);
    // A client's routing headers must not pick another entry than the pin.
    const remove = [MODEL_HEADER, WIRE.affinityHeader, ...k.strip].filter((h) => headers.has(h));
    return proceed({
      setHeaders: [
        [REQUEST_ID_HEADER, id],
        [WIRE.backendHeader, k.backend.name],
      ],
      ...(remove.length > 0 ? { removeHeaders: [...new Set(remove)] } : {}),
      clearRouteCache: true,
    });
  }

  private answered(o: Outcome | Promise<Outcome>): Outcome | Promise<Outcome> {
    const seen = (x: Outcome): Outcome => {
      if (x.kind === 'respond') this.status = x.verdict.status;
      return x;
    };
    return o instanceof Promise ? o.then(seen) : seen(o);
  }

  /**
   * A Responses request's turn (pipeline/sessions.ts): the conversation it continues is rebuilt
   * into its `input`, in place, so the guard, masking, the budget and the upstream phase all read
   * the whole of it (the reservation admitCaller deferred follows, on what is sent). Returns the
   * new bytes.
   */
  private async planTurn(
    cfg: RuntimeConfig,
    route: Route,
    body: Record<string, unknown>,
  ): Promise<Buffer | undefined> {
    const state = this.state!;
    this.turn = await ResponsesTurn.plan({
      sessions: this.deps.sessions,
      cfg,
      route,
      body,
      caller: state.governance?.caller,
      onError: (err) => this.deps.onSessionError?.(err),
    });
    const planned = this.turn.plan;
    let bytes: Buffer | undefined;
    if (planned.body) {
      Object.assign(body, planned.body);
      state.responseId = planned.responseId;
      bytes = Buffer.from(JSON.stringify(body), 'utf8');
    }
    return bytes;
  }

  /**
   * Asks the cache with the request as it leaves (after guard and masking), then makes the
   * reservation admitCaller deferred: a hit is answered now, with nothing reserved unless the
   * policy charges hits a share of their cost.
   */
  private async cacheLookup(
    cfg: RuntimeConfig,
    route: Route,
    endpoint: Extract<Endpoint, { kind: 'model-call' }>,
    replaced: Buffer | undefined,
    outgoing: Record<string, unknown>,
    deferred: { input: AdmitInput; admitted: Admitted } | undefined,
  ): Promise<Outcome | undefined> {
    const state = this.state!;
    const so = (this.state!.body as { stream_options?: { include_usage?: unknown } })
      .stream_options;
    const found = await this.deps.cache!.lookup({
      cfg,
      route,
      api: endpoint.api,
      operation: endpoint.operation,
      path: endpoint.path,
      model: state.model,
      stream: state.stream,
      includeUsage: so?.include_usage === true,
      body: replaced
        ? (JSON.parse(replaced.toString('utf8')) as Record<string, unknown>)
        : outgoing,
      headers: this.requestHeaderMap,
      caller: state.governance?.caller,
      policy: this.policy,
    });
    if (found?.kind === 'hit') {
      const charged = found.charged;
      // A refused reservation throws here: the request is then refused, not served.
      if (deferred && charged) {
        const a = await reserveFor(deferred.input, deferred.admitted);
        // The hit is the request's one "attempt": settled at its charged usage.
        a.state.ledger.begin();
      }
      this.cached = { record: found.record, hit: charged ? { charged } : {} };
      // Counted as cached in the usage report (pipeline/governance.ts finishGovernance).
      if (state.governance) {
        const { tokens, micros } = found.saved;
        state.governance.cacheHit = { route: route.name, savedTokens: tokens, savedMicros: micros };
      }
      this.status = 200;
      const v = found.verdict;
      v.headers.push(
        [REQUEST_ID_HEADER, state.id],
        ...Object.entries(state.governance?.headers ?? {}),
      );
      return { kind: 'respond', verdict: v };
    }
    if (found) this.cached = { record: found.record, capture: found.capture };
    if (deferred) {
      const a = await reserveFor(deferred.input, deferred.admitted);
      if (a.outputTokenCap !== undefined) state.outputTokenCap = a.outputTokenCap;
    }
    return undefined;
  }

  requestTrailers(): Outcome {
    return CONTINUE;
  }

  responseHeaders(msg: HeadersMessage): Outcome {
    const headers = headerMap(msg.headers);
    this.status = Number(headers.get(':status') ?? '0') || undefined;
    // A local reply of the upstream filter chain (Envoy 1.37+): the upstream phase's refusal, or
    // Envoy's reply shaped by local_reply_config — both name their code; the log line keeps it.
    const code = headers.get('x-sluice-error-code');
    if (code !== undefined && (this.status ?? 0) >= 400) this.errorCode = code;
    const kept = this.stored?.kept;
    if (kept) {
      // Without a body the answer ends here: the marker is forgotten alongside, not awaited.
      if (msg.end_of_stream) {
        this.deps.settling?.(this.keptAnswered(kept));
        this.done('complete');
      }
      return CONTINUE;
    }
    const cfg = this.deps.config;
    if (!this.state || !cfg) return CONTINUE;
    this.response = new ResponseProcessor(this.state, cfg.limits, this.deps.now, this.startedAt);
    if (this.contentMasking()) this.completion = new CompletionCapture(this.state.operation);
    this.response.capture = tee(this.cached?.capture, this.completion);
    this.turn?.responseHeaders(
      this.status ?? 0,
      headers.get('content-type') ?? '',
      cfg.limits.maxSseEventBytes,
      { backend: this.state.attempts.at(-1)?.backend, model: this.state.model },
    );
    const outcome = this.response.headers(headers, msg.end_of_stream === true);
    const limits = this.state.governance?.headers;
    if (limits && outcome.kind === 'continue' && outcome.mutation) {
      outcome.mutation.setHeaders = [
        ...(outcome.mutation.setHeaders ?? []),
        ...Object.entries(limits),
      ];
    }
    if (this.cached && outcome.kind === 'continue' && outcome.mutation) {
      (outcome.mutation.setHeaders ??= []).push([CACHE_HEADER, this.cached.record.result]);
    }
    if (msg.end_of_stream) this.done('complete');
    return this.conversation?.withResponseHeaders(outcome) ?? outcome;
  }

  /**
   * The provider's answer to a request for a response it keeps goes to the caller as it is; a
   * DELETE it confirmed forgets the owner marker before the answer's last bytes go out
   * (pipeline/sessions.ts), so the caller's next request finds it gone. A store failure then is
   * logged, not the caller's: the provider has deleted the response.
   */
  private async keptAnswered(kept: KeptRequest): Promise<void> {
    try {
      await keptAnswered(this.deps.sessions, kept, this.status ?? 0);
    } catch (err) {
      this.deps.onSessionError?.(err);
    }
  }

  /** At once (no promise) unless something must be awaited: decoding, a stored turn or marker. */
  responseBody(msg: BodyMessage): Outcome | Promise<Outcome> {
    const kept = this.stored?.kept;
    if (kept) return this.keptBody(kept, msg.end_of_stream === true);
    if (!this.response) return CONTINUE;
    const outcome = this.response.body(
      msg.body ?? Buffer.alloc(0),
      msg.end_of_stream === true,
      this.responseBodyMode === 'BUFFERED',
    );
    if (outcome instanceof Promise || this.turn) return this.bodyAnswered(outcome, msg);
    if (msg.end_of_stream) this.done('complete');
    return outcome;
  }

  private async keptBody(kept: KeptRequest, end: boolean): Promise<Outcome> {
    if (end) {
      await this.keptAnswered(kept);
      this.done('complete');
    }
    return CONTINUE;
  }

  private async bodyAnswered(
    pending: Outcome | Promise<Outcome>,
    msg: BodyMessage,
  ): Promise<Outcome> {
    const outcome = await pending;
    // A stored turn is written before the last of its answer goes out (pipeline/sessions.ts).
    if (this.turn)
      await this.turn.delivered(deliveredBytes(outcome, msg.body), msg.end_of_stream === true);
    if (msg.end_of_stream) this.done('complete');
    return outcome;
  }

  responseTrailers(): Outcome {
    this.done('complete');
    return CONTINUE;
  }

  fail(err: unknown): Outcome {
    const e = toSluiceError(err);
    this.status = e.status;
    this.errorCode = e.code;
    return { kind: 'respond', verdict: errorVerdict(this.api, e, this.requestId) };
  }

  finish(reason: EndReason): void {
    this.done(reason);
  }

  /** The route's masking, when it records prompt and completion text in a sampled trace. */
  private contentMasking() {
    const m = this.trace?.sampled ? this.policy?.policy.masking : undefined;
    return m?.traceContent ? m : undefined;
  }

  /** Prompt and completion for the span, masked (telemetry/content.ts); only when opted in. */
  private content(state: RequestState | undefined) {
    const m = this.contentMasking();
    if (!m || !state) return undefined;
    const prompt = promptText(state.operation, state.body);
    const completion = this.completion?.text();
    return {
      ...(prompt !== undefined && { prompt: maskedForTrace(m, prompt) }),
      ...(completion !== undefined && { completion: maskedForTrace(m, completion) }),
    };
  }

  /**
   * A refusal is counted in usage by reason (the usage report's top refusals), under the route's
   * governance policy when it has limits: the rows `sluice usage` reads.
   */
  private countRefusal(state: RequestState | undefined): void {
    const metric = refusalMetric(this.errorCode);
    const g = state?.governance;
    const judge = g?.compiled ?? this.judged?.compiled;
    if (!metric || !state || !judge?.budget || !this.deps.budget) return;
    const caller = g?.caller ?? this.judged?.seen.caller;
    this.deps.settling?.(
      this.deps.budget.recordRefusal(
        judge.budget,
        {
          consumer: caller?.consumer,
          team: caller?.team,
          model: state.model,
          route: state.routeName,
        },
        metric,
      ),
    );
  }

  private finished = false;
  private done(reason: EndReason): void {
    if (this.finished) return;
    this.finished = true;
    if (this.requestId) this.deps.store.delete(this.requestId);
    const state = this.state;
    const result = this.response?.result();
    const outcome = this.errorCode ? 'rejected' : reason;
    const last = state?.attempts.at(-1);
    const g = state?.governance;
    const hit = this.cached?.hit;
    // A complete answer of a miss is offered to the cache; the write is not the caller's wait.
    if (outcome === 'complete' && this.cached?.capture)
      this.deps.settling?.(this.cached.capture.finish());
    if (g && state) {
      const settling = finishGovernance(
        g,
        {
          responded: this.response !== undefined || hit !== undefined,
          usage: result?.usage ?? hit?.charged,
          model: state.model,
        },
        this.deps.budget,
      );
      // Budget.settle queues store failures itself; what is left would be a bug, not an outage.
      const quiet = settling?.catch(() => undefined);
      if (quiet) this.deps.settling?.(quiet);
    }
    this.countRefusal(state);
    // The fixed fields in one literal, the rest set when they apply: conditional spreads made an
    // object or two per request and sent the literal through the runtime's slow copy.
    const record: RequestRecord = {
      requestId: this.requestId,
      api: this.api,
      operation:
        this.endpoint?.kind === 'model-call' ? this.endpoint.operation : this.endpoint?.kind,
      route: state?.routeName,
      requestModel: state?.model,
      responseModel: result?.model,
      backend: last?.backend,
      provider: last?.provider,
      attempts: state?.attempts.length ?? 0,
      attemptList: state?.attempts,
      trace: this.trace,
      content: this.content(state),
      status: this.status ?? 0,
      errorCode: this.errorCode,
      stream: state?.stream ?? false,
      // No response after an attempt went out: the prompt estimate charged (marked estimated).
      usage: result?.usage ?? hit?.charged ?? g?.charged,
      durationMs: this.deps.now() - this.startedAt,
      ttftMs: result?.ttftMs,
      outcome,
    };
    if (this.cached) record.cache = this.cached.record;
    const conv = this.conversation?.record();
    if (conv) Object.assign(record, conv);
    if (g) {
      record.consumer = g.caller?.consumer;
      record.team = g.caller?.team;
      record.costUsd = g.costUsd;
      record.governance = { policy: g.compiled.policy.name, verdicts: [...g.verdicts] };
    } else if (this.judged) {
      record.consumer = this.judged.seen.caller?.consumer;
      record.team = this.judged.seen.caller?.team;
      record.governance = { policy: this.judged.policy, verdicts: [] };
    } else if (this.modelsCaller) {
      record.consumer = this.modelsCaller.consumer;
      record.team = this.modelsCaller.team;
    }
    if (this.policy) {
      record.policy = this.policy.policy.name;
      record.verdicts = verdictsOf(this.policy);
      record.findings = findingsOf(this.policy);
      if (this.guardFindings.length > 0) record.guard = this.guardFindings;
      record.policyFailure = this.policy.failedOpen
        ? 'open'
        : this.policy.verdicts.has('fail_closed')
          ? 'closed'
          : this.policy.verdicts.has(VAULT_DEGRADED)
            ? 'degraded'
            : undefined;
    }
    this.deps.telemetry.recordRequest(record);
  }
}

/**
 * The router's RequestState: its body is the CheckedBody's, parsed on first read. A class, its
 * accessors on the prototype: a getter per request (a closure over requestBody's scope) kept
 * whole requests alive past young collections (promoted 0.8 -> 2-3 KiB per request, twice the
 * full collections; gc-flags chat-2k).
 */
class RoutedRequest implements RequestState {
  readonly attempts: RequestState['attempts'] = [];
  declare trace?: RequestState['trace'];
  declare policy?: RequestState['policy'];
  declare governance?: RequestState['governance'];
  declare outputTokenCap?: number;
  declare responseId?: string;
  readonly api: RequestState['api'];
  readonly operation: RequestState['operation'];
  rawBody: Buffer;

  constructor(
    readonly id: string,
    endpoint: { api: RequestState['api']; operation: RequestState['operation'] },
    readonly model: string,
    readonly routeName: string,
    private readonly checked: CheckedBody,
    readonly stream: boolean,
    readonly forcedUsage: boolean,
    readonly createdAt: number,
  ) {
    this.api = endpoint.api;
    this.operation = endpoint.operation;
    this.rawBody = checked.raw;
  }

  get body(): Record<string, unknown> {
    return this.checked.value();
  }

  set body(v: Record<string, unknown>) {
    this.checked.replace(v);
  }
}

/**
 * The request body, checked as parseBody checks it, and parsed only when something reads it.
 *
 * Why: a plain route reads three top-level fields of the body; JSON.parse made the whole tree
 * and its text (~4.5 KiB of the ~17 KiB Sluice allocated per 2 KB chat request, bench section
 * lean with BENCH_ALLOC_PROFILE). body-scan.ts checks the bytes without building anything and
 * says where the top-level values lie. When it cannot vouch for a body (anything invalid, an
 * escape in a key, very wide or deep bodies) parseBody decides, so every refusal is the same.
 */
class CheckedBody {
  constructor(
    readonly raw: Buffer,
    private readonly scan: BodyScan | undefined,
    private parsed: Record<string, unknown> | undefined,
  ) {}

  /** A top-level field as JSON.parse gives it (the body has no duplicate key). */
  top(key: string): unknown {
    if (this.parsed || !this.scan) return this.value()[key];
    const span = this.scan.member(key);
    return span && JSON.parse(this.raw.toString('utf8', span.start, span.end));
  }

  /** Whether the body may have the top-level field: false only when it surely has not. */
  mayHave(key: string): boolean {
    if (this.parsed || !this.scan) return key in this.value();
    return this.scan.member(key) !== undefined;
  }

  /** The parsed body (scanned bodies parse: the scan vouched for them). */
  value(): Record<string, unknown> {
    return (this.parsed ??= JSON.parse(this.raw.toString('utf8')) as Record<string, unknown>);
  }

  /** A body that replaces the client's (the guard's rendering). */
  replace(v: Record<string, unknown>): void {
    this.parsed = v;
  }
}

function checkedBody(raw: Buffer): CheckedBody {
  if (!isUtf8(raw))
    throw new SluiceError('invalid_encoding', 'The request body is not valid UTF-8.');
  const scan = scanBody(raw);
  return new CheckedBody(raw, scan, scan ? undefined : parseBody(raw));
}

/** The body as JSON.parse reads it, refused as the caller must hear it; `raw` is valid UTF-8. */
function parseBody(raw: Buffer): Record<string, unknown> {
  let parsed: unknown;
  const text = raw.toString('utf8');
  try {
    parsed = JSON.parse(text);
  } catch {
    // The parser's own message quotes the body; it must not reach the caller or the logs.
    throw new SluiceError('invalid_json', 'The request body is not valid JSON.');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new SluiceError('invalid_request', 'The request body must be a JSON object.');
  }
  // Forwarded bytes must mean what was checked: a parser that keeps the first of two keys would
  // read another `messages` or `model` than the one masking and routing saw.
  const dup = duplicateKey(text, parsed);
  if (dup !== undefined) throw duplicateKeyError(dup);
  return parsed as Record<string, unknown>;
}

function isJsonType(contentType: string): boolean {
  const t = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return t === 'application/json' || (t.startsWith('application/') && t.endsWith('+json'));
}

function methodNotAllowed(allowed: string): SluiceError {
  return new SluiceError('method_not_allowed', `Use ${allowed} on this path.`, {
    headers: { allow: allowed },
  });
}

function modelNotFound(model: string): SluiceError {
  const shown = model.length > 200 ? `${model.slice(0, 200)}…` : model;
  return new SluiceError(
    'model_not_found',
    `The model "${shown}" does not exist or is not served by this gateway.`,
    {
      param: 'model',
    },
  );
}

/** Says nothing of the policy (its name, fields or patterns are the operator's business). */
function routeRefused(code: 'policy_invalid'): SluiceError {
  return new SluiceError(
    code,
    'A policy that governs this model is invalid, so the gateway refuses its requests until an operator fixes it.',
  );
}

function tooLarge(cfg: RuntimeConfig): SluiceError {
  return new SluiceError(
    'request_too_large',
    `The request body is larger than the gateway's limit of ${cfg.limits.maxRequestBodyBytes} bytes.`,
  );
}
