/**
 * Stored conversations in the request path (the router phase): a Responses request's turn is
 * planned after the caller is known and before the guard and masking see it (so both read the
 * whole rebuilt conversation); the answer the caller receives is read as it leaves, and stored
 * before its last bytes go out — a caller that continues the moment it has the answer finds it.
 * GET / DELETE `/v1/responses/{id}` and `…/input_items` are answered here, from the store.
 * The decisions live in sessions/; this module only sequences them for one request.
 */
import type { Route } from '../config/contract.js';
import type { RuntimeConfig } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { resolveIdentity, type Caller } from '../governance/identity.js';
import { refusalError, type Refusal } from '../governance/refusal.js';
import { keepsResponsesState } from '../providers/responses-via-chat.js';
import { ResponseCapture } from '../sessions/capture.js';
import {
  allowedMethods,
  answerConversation,
  conversationsResource,
  needsBody,
  type ConversationsResource,
} from '../sessions/conversations.js';
import {
  answerResource,
  forgetOwned,
  normalizeInput,
  responseNotFound,
  type ProviderKept,
  planTurn,
  responsesResource,
  saveTurn,
  type ResponsesResource,
  type TurnPlan,
} from '../sessions/responses.js';
import { DEFAULT_SESSIONS, type SessionsPolicy } from '../sessions/schema.js';
import { ownerKey, type SessionOwner, type Sessions } from '../sessions/sessions.js';
import type { ResolvedBackend } from '../config/runtime.js';
import { admitCaller } from './governance.js';
import type { KeptResource } from './request-store.js';
import { jsonVerdict } from './verdict.js';
import { CONTINUE, type Outcome } from '../wire/mutation.js';

export function sessionsPolicy(route: Route): SessionsPolicy {
  return route.policy?.sessions ?? DEFAULT_SESSIONS;
}

export function ownerOf(caller: Caller | undefined): SessionOwner | undefined {
  return caller ? { method: caller.method, consumer: caller.consumer } : undefined;
}

/** Whether some backend of the route keeps no Responses state, so the gateway must keep it. */
export function gatewayKeeps(cfg: RuntimeConfig, route: Route): boolean {
  return route.backends.some((b) => {
    const provider = cfg.backend(b.name)?.provider;
    return provider !== undefined && !keepsResponsesState(provider);
  });
}

/**
 * Every identity the caller has under the governance policies of the gateway's routes (a key is
 * one consumer everywhere; a JWT is verified per issuer). A request for a stored response names no
 * model, hence no route: it may be any of them. Throws 401 when some policy refused the
 * credential and none identified the caller, as /v1/models does.
 */
export function ownersOf(
  cfg: RuntimeConfig,
  headers: ReadonlyMap<string, string>,
  wallNow: number,
): SessionOwner[] {
  const owners = new Map<string, SessionOwner>();
  const seen = new Set<unknown>();
  let refused: Refusal | undefined;
  for (const route of cfg.routes) {
    const g = cfg.governanceFor(route.name);
    if (!g || seen.has(g)) continue;
    seen.add(g);
    const id = resolveIdentity(g.policy.identity, headers, cfg.consumers, wallNow);
    if (!id.ok) {
      refused ??= id.refusal;
      continue;
    }
    const owner = ownerOf(id.caller);
    if (owner) owners.set(`${owner.method}\0${owner.consumer}`, owner);
  }
  if (refused && owners.size === 0) throw refusalError(refused);
  return [...owners.values()];
}

/**
 * A provider-kept response asked for by its owner, cleared to go to the backend that keeps it:
 * the router phase forwards the request there (pinned by WIRE.backendHeader) and, once the
 * provider confirms a DELETE, forgets the owner marker.
 */
export interface KeptRequest {
  id: string;
  owner: SessionOwner;
  route: Route;
  backend: ResolvedBackend;
  model: string;
  method: string;
  /** RequestState.resource: what the upstream phase needs. */
  resource: KeptResource;
  /** The caller as the route's governance policy knows it (for the access log). */
  caller: Caller | undefined;
  /** Request headers that carried identity (governance's strip list). */
  strip: string[];
}

function unreachable(id: string, why: string): SluiceError {
  return new SluiceError(
    'response_unreachable',
    `Response '${id}' is kept by its provider at a backend ${why}, so it cannot be reached through this gateway; nothing was sent. The gateway keeps your ownership of it.`,
  );
}

/**
 * Where a provider-kept response's request may go: the backend that answered it, if the route
 * that chose it still sends to it; else 409 `response_unreachable` (never another backend, which
 * would hold another account's responses). The caller must still be let in by the route's access
 * rules (401/403 in the OpenAI format), and be the owner under the route's own identity rules —
 * else 404, as for any id that is not the caller's. Nothing is reserved or charged.
 */
export function keptRequest(
  cfg: RuntimeConfig,
  kept: ProviderKept,
  resource: ResponsesResource,
  method: string,
  rawPath: string,
  headers: ReadonlyMap<string, string>,
  wallNow: number,
): KeptRequest {
  const { id } = kept;
  const route = cfg.routes.find((r) => r.name === kept.route);
  if (!route) throw unreachable(id, 'of a route this gateway no longer serves');
  if (!route.backends.some((b) => b.name === kept.backend))
    throw unreachable(id, 'its route no longer sends to');
  const backend = cfg.backend(kept.backend);
  if (!backend || !keepsResponsesState(backend.provider))
    throw unreachable(id, 'this gateway no longer knows as one that keeps responses');
  if (route.refuse)
    throw new SluiceError(
      'policy_invalid',
      'A policy that governs this model is invalid, so the gateway refuses its requests until an operator fixes it.',
    );
  const model = kept.model ?? '';
  let caller: Caller | undefined;
  let strip: string[] = [];
  const governance = cfg.governanceFor(route.name);
  if (governance) {
    const g = admitCaller({
      compiled: governance,
      consumers: cfg.consumers,
      headers,
      operation: 'responses',
      body: {},
      model,
      route: route.name,
      budget: undefined,
      wallNow,
    });
    caller = g.state.caller;
    strip = g.strip;
    const owner = ownerOf(caller);
    if (!owner || ownerKey(owner) !== ownerKey(kept.owner)) throw responseNotFound(id);
  }
  const q = rawPath.indexOf('?');
  const call =
    resource.kind === 'response'
      ? `/responses/${encodeURIComponent(id)}`
      : `/responses/${encodeURIComponent(id)}/input_items`;
  return {
    id,
    owner: kept.owner,
    route,
    backend,
    model,
    method,
    resource: { backend: backend.name, call, query: q === -1 ? '' : rawPath.slice(q + 1) },
    caller,
    strip,
  };
}

/**
 * GET / DELETE of a stored response or its input items: answered by the gateway when it keeps the
 * response, forwarded (`forward`) to the backend that keeps it otherwise.
 */
export async function answerStoredResponse(
  sessions: Sessions | undefined,
  cfg: RuntimeConfig,
  resource: ResponsesResource,
  method: string,
  rawPath: string,
  headers: ReadonlyMap<string, string>,
  wallNow: number,
  forward: (k: KeptRequest) => Outcome,
): Promise<Outcome> {
  const allowed = resource.kind === 'response' ? 'GET, DELETE' : 'GET';
  if (method !== 'GET' && !(method === 'DELETE' && resource.kind === 'response'))
    throw new SluiceError('method_not_allowed', `Use ${allowed} on this path.`, {
      headers: { allow: allowed },
    });
  const owners = ownersOf(cfg, headers, wallNow);
  const q = rawPath.indexOf('?');
  const query = new URLSearchParams(q === -1 ? '' : rawPath.slice(q + 1));
  if (!sessions || owners.length === 0)
    throw new SluiceError('response_not_found', 'Response not found.');
  const a = await answerResource(sessions, owners, resource, method, query);
  if (a.kind === 'provider')
    return forward(keptRequest(cfg, a, resource, method, rawPath, headers, wallNow));
  return { kind: 'respond', verdict: jsonVerdict(a.status, a.value, 'sluice_responses') };
}

/** One Responses request's stored turn, from plan to save. */
export class ResponsesTurn {
  private capture: ResponseCapture | undefined;
  private saved = false;
  /** For the access log: what became of the turn. */
  outcome: 'stored' | 'too_large' | 'failed' | 'skipped' | undefined;

  private constructor(
    readonly plan: TurnPlan,
    private readonly sessions: Sessions | undefined,
    private readonly policy: SessionsPolicy,
    private readonly route: string,
    private readonly onError: (err: unknown) => void,
  ) {}

  static async plan(input: {
    sessions: Sessions | undefined;
    cfg: RuntimeConfig;
    route: Route;
    body: Record<string, unknown>;
    caller: Caller | undefined;
    onError: (err: unknown) => void;
  }): Promise<ResponsesTurn> {
    const policy = sessionsPolicy(input.route);
    const plan = await planTurn({
      sessions: input.sessions,
      policy,
      body: input.body,
      owner: ownerOf(input.caller),
      route: input.route.name,
      gatewayKeeps: gatewayKeeps(input.cfg, input.route),
    });
    return new ResponsesTurn(plan, input.sessions, policy, input.route.name, input.onError);
  }

  /** Whether the answer must be read as it leaves (something will be stored). */
  get storing(): boolean {
    const p = this.plan;
    return (
      (p.store || p.conversationId !== undefined) &&
      p.owner !== undefined &&
      this.sessions !== undefined
    );
  }

  /** The backend of the attempt that answered, and the model asked for (an owned id's record). */
  private answeredBy: { backend?: string | undefined; model?: string | undefined } = {};

  responseHeaders(
    status: number,
    contentType: string,
    maxEventBytes: number,
    answeredBy: { backend?: string | undefined; model?: string | undefined } = {},
  ): void {
    if (!this.storing || status < 200 || status >= 300) return;
    this.answeredBy = answeredBy;
    this.capture = new ResponseCapture(this.policy.maxStoredBytes + 64 * 1024, maxEventBytes);
    this.capture.start(contentType.toLowerCase().startsWith('text/event-stream'));
  }

  /**
   * The bytes that go to the caller now; resolves once the turn is stored when these bytes end
   * the answer (the final event, or the last chunk), so they are released only after that.
   */
  async delivered(bytes: Buffer, end: boolean): Promise<void> {
    const c = this.capture;
    if (!c || this.saved) return;
    c.push(bytes);
    if (!c.complete && !end) return;
    this.saved = true;
    const response = c.result();
    if (!response) {
      this.outcome = 'skipped';
      return;
    }
    try {
      this.outcome = await saveTurn(
        this.sessions!,
        this.policy,
        this.plan,
        { route: this.route, ...this.answeredBy },
        response,
      );
    } catch (err) {
      // The answer was bought and goes to the caller; the turn is lost, and said so in the log.
      this.outcome = 'failed';
      this.onError(err);
    }
  }
}

/**
 * A request for something the gateway stores rather than a model call: `/v1/responses/{id}`
 * (and its input items) and the Conversations API. Answered from the store, with no route, no
 * upstream and no charge; the caller's identity is every one its credential has.
 */
export class StoredResource {
  private chunks: Buffer[] = [];
  private bytes = 0;
  /** Set when the request went on to the backend that keeps the response. */
  kept: KeptRequest | undefined;

  private constructor(
    private readonly target:
      | { api: 'responses'; r: ResponsesResource }
      | { api: 'conversations'; r: ConversationsResource },
    private readonly ctx: {
      sessions: Sessions | undefined;
      cfg: RuntimeConfig;
      method: string;
      rawPath: string;
      headers: ReadonlyMap<string, string>;
      wallNow: number;
      /** Sends a provider-kept response's request on to its backend (the router phase). */
      forward: (k: KeptRequest) => Outcome;
    },
  ) {}

  /** The resource a path names, or undefined for every other path. */
  static match(path: string, ctx: StoredResource['ctx']): StoredResource | undefined {
    const r = responsesResource(path);
    if (r) return new StoredResource({ api: 'responses', r }, ctx);
    const c = conversationsResource(path);
    if (c) return new StoredResource({ api: 'conversations', r: c }, ctx);
    return undefined;
  }

  /** At the request headers: the answer, or CONTINUE when a body must be read first. */
  headers(endOfStream: boolean): Outcome | Promise<Outcome> {
    const { method } = this.ctx;
    const t = this.target;
    if (t.api === 'responses')
      return answerStoredResponse(
        this.ctx.sessions,
        this.ctx.cfg,
        t.r,
        method,
        this.ctx.rawPath,
        this.ctx.headers,
        this.ctx.wallNow,
        (k) => {
          this.kept = k;
          return this.ctx.forward(k);
        },
      );
    const allowed = allowedMethods(t.r);
    if (!allowed.includes(method))
      throw new SluiceError('method_not_allowed', `Use ${allowed.join(', ')} on this path.`, {
        headers: { allow: allowed.join(', ') },
      });
    if (needsBody(t.r, method) && !endOfStream) return CONTINUE;
    return this.answer(undefined);
  }

  /** A piece of the request body; the answer once it is whole. */
  body(chunk: Buffer, whole: boolean): Outcome | Promise<Outcome> {
    // A body sent with GET/DELETE of a provider-kept response goes on as it came (ignored there).
    if (this.kept) return CONTINUE;
    this.bytes += chunk.length;
    if (this.bytes > this.ctx.cfg.limits.maxRequestBodyBytes)
      throw new SluiceError(
        'request_too_large',
        `The request body is larger than the gateway's limit of ${this.ctx.cfg.limits.maxRequestBodyBytes} bytes.`,
      );
    this.chunks.push(chunk);
    if (!whole) return CONTINUE;
    const raw = Buffer.concat(this.chunks).toString('utf8');
    let body: unknown;
    try {
      body = raw.trim() === '' ? {} : JSON.parse(raw);
    } catch {
      throw new SluiceError('invalid_json', 'The request body is not valid JSON.');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new SluiceError('invalid_request', 'The request body must be a JSON object.');
    return this.answer(body as Record<string, unknown>);
  }

  private async answer(body: Record<string, unknown> | undefined): Promise<Outcome> {
    const t = this.target;
    if (t.api !== 'conversations') throw new Error('unreachable: responses answer at headers');
    const { cfg, headers, wallNow, rawPath } = this.ctx;
    const owners = ownersOf(cfg, headers, wallNow);
    if (!this.ctx.sessions)
      throw new SluiceError('invalid_request', 'This gateway keeps no conversations.');
    const q = rawPath.indexOf('?');
    const a = await answerConversation({
      sessions: this.ctx.sessions,
      owners,
      resource: t.r,
      method: this.ctx.method,
      query: new URLSearchParams(q === -1 ? '' : rawPath.slice(q + 1)),
      body,
      policy: DEFAULT_SESSIONS,
      created: Math.floor(wallNow / 1000),
      normalize: normalizeInput,
    });
    return { kind: 'respond', verdict: jsonVerdict(a.status, a.value, 'sluice_conversations') };
  }
}

/** The bytes an answer to a response body message lets through to the caller. */
export function deliveredBytes(o: Outcome, chunk: Buffer | undefined): Buffer {
  if (o.kind !== 'continue') return Buffer.alloc(0);
  return o.mutation?.body ?? chunk ?? Buffer.alloc(0);
}

/**
 * The provider answered a request for a response it keeps: a DELETE it confirmed (2xx) forgets the
 * owner marker too; a failed one keeps it, so the caller may retry. Throws SluiceError
 * `state_unavailable` when the store fails (the provider's answer still goes to the caller).
 */
export async function keptAnswered(
  sessions: Sessions | undefined,
  k: KeptRequest,
  status: number,
): Promise<boolean> {
  if (!sessions || k.method !== 'DELETE' || status < 200 || status >= 300) return false;
  return forgetOwned(sessions, k.owner, k.id);
}
