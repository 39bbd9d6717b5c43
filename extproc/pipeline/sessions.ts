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
  normalizeInput,
  planTurn,
  responsesResource,
  saveTurn,
  type ResponsesResource,
  type TurnPlan,
} from '../sessions/responses.js';
import { DEFAULT_SESSIONS, type SessionsPolicy } from '../sessions/schema.js';
import type { SessionOwner, Sessions } from '../sessions/sessions.js';
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

/** GET / DELETE of a stored response or its input items, answered by the gateway. */
export async function answerStoredResponse(
  sessions: Sessions | undefined,
  cfg: RuntimeConfig,
  resource: ResponsesResource,
  method: string,
  rawPath: string,
  headers: ReadonlyMap<string, string>,
  wallNow: number,
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

  responseHeaders(status: number, contentType: string, maxEventBytes: number): void {
    if (!this.storing || status < 200 || status >= 300) return;
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
      this.outcome = await saveTurn(this.sessions!, this.policy, this.plan, this.route, response);
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
