/**
 * Stored Responses API turns: what the gateway keeps so `previous_response_id`, `GET`/`DELETE
 * /v1/responses/{id}` and the input-items listing work on backends that keep no state.
 *
 * A stored turn is a snapshot: the conversation before it (`history`), its own input items and the
 * Response the caller received (output items included, placeholders already restored), so the
 * next turn is rebuilt from one read whatever the conversation's length, and a fork (continuing
 * from an older response) is just another snapshot. Its size is bounded by the policy's
 * `maxStoredBytes`, its life by `ttlSeconds`. The gateway stores what the caller sent and saw,
 * never the masked form: each turn is masked whole again, in the vault session of its stored
 * conversation (`conversationKey`, the first response of the chain), so placeholders stay the
 * same across turns.
 *
 * On routes whose every backend keeps state itself (OpenAI, Azure OpenAI) the request passes
 * through; the gateway then records who owns the provider's response id and which backend
 * answered (`owned`), so a caller can continue, retrieve, list and delete only its own responses
 * there too, and those requests reach the backend that keeps the response.
 */
import { randomBytes } from 'node:crypto';
import { SluiceError } from '../errors.js';
import {
  conversationNotFound,
  listPage,
  readConversation,
  updateConversation,
} from './conversations.js';
import type { SessionsPolicy } from './schema.js';
import { vaultSession, type SessionOwner, type Sessions } from './sessions.js';

type Json = Record<string, unknown>;

export const STORED_RESPONSE_VERSION = 1;

export interface StoredResponse {
  v: typeof STORED_RESPONSE_VERSION;
  /** `stored`: the gateway holds the turn; `owned`: the provider does, the gateway the owner. */
  kind: 'stored' | 'owned';
  id: string;
  route: string;
  conversationKey: string;
  /** Items before this turn's input (stored only). */
  history?: Json[];
  /** This turn's input items, with ids (stored only). */
  input?: Json[];
  /** The Response as the caller received it (stored only). */
  response?: Json;
  /**
   * The backend that answered the turn and the model asked for (owned only): GET/DELETE and the
   * input-items listing are sent back to that backend. Markers written before these were kept
   * have neither: such a response is not reachable through the gateway (see answerResource).
   */
  backend?: string;
  model?: string;
}

/** What the router phase decided for one Responses request. */
export interface TurnPlan {
  /** `gateway`: history rebuilt here, the answer named and stored here; `provider`: passed on. */
  mode: 'gateway' | 'provider';
  /** The id the answer carries (gateway mode). */
  responseId?: string;
  /** Whether the turn is stored (gateway mode) or its ownership recorded (provider mode). */
  store: boolean;
  owner?: SessionOwner | undefined;
  conversationKey: string;
  /** The gateway-kept conversation the turn belongs to (`conversation`): its items grow. */
  conversationId?: string;
  history: Json[];
  input: Json[];
  /** The body to forward (gateway mode): the whole conversation as `input`. */
  body?: Json;
  /** The masking vault's session for this conversation (an owner's stored conversation only). */
  vaultSession?: string | undefined;
  /**
   * Provider mode, continuing a response its provider keeps: the backend that made it, where the
   * turn must go (another account does not know the id).
   */
  backend?: string;
}

export interface PlanInput {
  sessions: Sessions | undefined;
  policy: SessionsPolicy;
  body: Json;
  owner: SessionOwner | undefined;
  route: string;
  /** Whether some backend of the route keeps no Responses state (the gateway must). */
  gatewayKeeps: boolean;
}

const ID = /^[A-Za-z0-9_-]{1,128}$/;

/** `resp_` and 48 hex digits, as OpenAI's ids look; unguessable, though access is by owner anyway. */
export function newResponseId(): string {
  return `resp_${randomBytes(24).toString('hex')}`;
}

function itemId(prefix: string): string {
  return `${prefix}_${randomBytes(16).toString('hex')}`;
}

function shown(id: string): string {
  return ID.test(id) ? `'${id}'` : 'given';
}

export function responseNotFound(id: string, param?: string): SluiceError {
  return new SluiceError('response_not_found', `Response with id ${shown(id)} not found.`, {
    ...(param ? { param } : {}),
  });
}

export function sessionsUnavailable(): SluiceError {
  return new SluiceError(
    'state_unavailable',
    "The gateway's conversation store is unavailable, so the request was not sent. Retry shortly.",
  );
}

/**
 * The caller's input as stored items: a string becomes a user message; every item gets an id and
 * messages get their content as a list of parts, as the input-items listing shows them.
 */
export function normalizeInput(input: unknown): Json[] {
  if (typeof input === 'string')
    return [
      {
        id: itemId('msg'),
        type: 'message',
        role: 'user',
        status: 'completed',
        content: [{ type: 'input_text', text: input }],
      },
    ];
  if (!Array.isArray(input))
    throw new SluiceError('invalid_request', 'input must be a string or an array of items.', {
      param: 'input',
    });
  return input.map((raw: unknown, i) => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw new SluiceError('invalid_request', `input[${i}] must be an object.`, {
        param: `input[${i}]`,
      });
    const item = { ...(raw as Json) };
    const type = item.type ?? 'message';
    if (type === 'message') {
      item.type = 'message';
      if (typeof item.content === 'string') {
        item.content = [
          {
            type: item.role === 'assistant' ? 'output_text' : 'input_text',
            text: item.content,
            ...(item.role === 'assistant' ? { annotations: [] } : {}),
          },
        ];
      }
      item.status ??= 'completed';
    }
    if (typeof item.id !== 'string' || item.id === '')
      item.id = itemId(type === 'message' ? 'msg' : type === 'function_call' ? 'fc' : 'item');
    return item;
  });
}

function conversationOf(r: StoredResponse): Json[] {
  return [...(r.history ?? []), ...(r.input ?? []), ...outputOf(r.response)];
}

function outputOf(response: Json | undefined): Json[] {
  const out = response?.output;
  return Array.isArray(out) ? (out as Json[]) : [];
}

/**
 * Decides the turn: refuses what cannot be served (no identity to own state, an unknown or
 * foreign previous response, a conversation too large to store), rebuilds the history from
 * `previous_response_id`, and names the response.
 */
export async function planTurn(p: PlanInput): Promise<TurnPlan> {
  const { body, owner, policy } = p;
  const prev = body.previous_response_id;
  if (prev !== undefined && prev !== null && (typeof prev !== 'string' || prev === ''))
    throw new SluiceError('invalid_request', 'previous_response_id must be a string.', {
      param: 'previous_response_id',
    });
  const conversationId = conversationIdOf(body.conversation);
  if (conversationId !== undefined && prev !== undefined && prev !== null)
    throw new SluiceError(
      'invalid_request',
      'previous_response_id and conversation cannot both be set.',
      { param: 'conversation' },
    );
  const asked = body.store !== false;
  const prevId = typeof prev === 'string' ? prev : undefined;

  if (!owner) {
    // Without an identity nothing can be owned; on a passthrough route the provider's own store
    // is shared by everyone who may call the route anonymously, as before.
    if (!p.gatewayKeeps)
      return { mode: 'provider', store: false, conversationKey: '', history: [], input: [] };
    if (prevId !== undefined)
      throw identityRequired('previous_response_id', 'Continuing a stored response');
    if (conversationId !== undefined) throw identityRequired('conversation', 'A conversation');
    if (asked && (body.store === true || policy.anonymous === 'refuse'))
      throw identityRequired('store', 'Storing a response (store defaults to true)');
    return gatewayPlan(p, false, undefined, []);
  }

  if (!policy.enabled || !p.sessions) {
    if (conversationId !== undefined)
      throw new SluiceError(
        'invalid_request',
        'This route keeps no conversation state, so conversation cannot be used on it.',
        { param: 'conversation' },
      );
    if (!p.gatewayKeeps)
      return { mode: 'provider', store: false, owner, conversationKey: '', history: [], input: [] };
    if (prevId !== undefined)
      throw new SluiceError(
        'invalid_request',
        'This route keeps no conversation state, so previous_response_id cannot be used on it.',
        { param: 'previous_response_id' },
      );
    return gatewayPlan(p, false, undefined, []);
  }

  if (conversationId !== undefined) {
    const conv = await readConversation(p.sessions, owner, conversationId);
    if (!conv) throw conversationNotFound(conversationId, 'conversation');
    return gatewayPlan(p, asked, undefined, conv.items, conversationId);
  }
  let previous: StoredResponse | undefined;
  if (prevId !== undefined) {
    try {
      previous = await p.sessions.read<StoredResponse>(owner, 'response', prevId);
    } catch {
      throw sessionsUnavailable();
    }
    if (!previous) throw responseNotFound(prevId, 'previous_response_id');
  }
  if (previous?.kind === 'owned') {
    if (p.gatewayKeeps)
      throw new SluiceError(
        'invalid_request',
        `Response ${shown(prevId!)} is kept by its provider; continue it with a model served there.`,
        { param: 'previous_response_id' },
      );
    return {
      mode: 'provider',
      store: asked,
      owner,
      conversationKey: previous.conversationKey,
      history: [],
      input: [],
      ...(previous.backend !== undefined && { backend: previous.backend }),
    };
  }
  if (!previous && !p.gatewayKeeps)
    return { mode: 'provider', store: asked, owner, conversationKey: '', history: [], input: [] };
  return gatewayPlan(p, asked, previous, previous ? conversationOf(previous) : []);
}

function gatewayPlan(
  p: PlanInput,
  store: boolean,
  previous: StoredResponse | undefined,
  history: Json[],
  conversationId?: string,
): TurnPlan {
  const responseId = newResponseId();
  const input = normalizeInput(p.body.input);
  const conversationKey =
    conversationId !== undefined
      ? `conv:${conversationId}`
      : (previous?.conversationKey ?? responseId);
  if (store || conversationId !== undefined) {
    const bytes =
      Buffer.byteLength(JSON.stringify(history)) + Buffer.byteLength(JSON.stringify(input));
    if (bytes > p.policy.maxStoredBytes)
      throw new SluiceError(
        'request_too_large',
        `The conversation would be larger than the ${p.policy.maxStoredBytes} bytes this gateway stores per response; start a new conversation or send store: false.`,
      );
  }
  return {
    mode: 'gateway',
    responseId,
    store,
    owner: p.owner,
    conversationKey,
    ...(conversationId !== undefined && { conversationId }),
    history,
    input,
    // A copy: masking rewrites the forwarded body in place, and the stored items stay as sent.
    body: { ...p.body, input: structuredClone([...history, ...input]), store },
    vaultSession: p.owner ? vaultSession(p.owner, conversationKey) : undefined,
  };
}

function identityRequired(param: string, what: string): SluiceError {
  return new SluiceError(
    'identity_required',
    `${what} needs an authenticated caller (an API key or identity the gateway knows); send store: false without previous_response_id, or authenticate.`,
    { param },
  );
}

/** Where a turn was answered: the route, and for an owned id the backend and model too. */
export interface AnsweredBy {
  route: string;
  /** The backend of the attempt that answered (the request's last attempt). */
  backend?: string | undefined;
  model?: string | undefined;
}

/**
 * Stores the finished turn (gateway mode) or records who owns the provider's id and where it is
 * kept (provider mode).
 */
export async function saveTurn(
  sessions: Sessions,
  policy: SessionsPolicy,
  plan: TurnPlan,
  at: AnsweredBy,
  response: Json,
): Promise<'stored' | 'too_large' | 'skipped'> {
  const route = at.route;
  if (!plan.owner) return 'skipped';
  if (plan.conversationId !== undefined) {
    // Appended to the conversation as it is when written (compare-and-set): what another turn
    // appended meanwhile is kept, and this turn's items land too. A conversation deleted
    // meanwhile stays deleted.
    const added = [...plan.input, ...outputOf(response)];
    const u = await updateConversation(
      sessions,
      plan.owner,
      plan.conversationId,
      (c) => ({ ...c, items: [...c.items, ...added] }),
      policy,
    );
    if (u === 'too_large') return 'too_large';
  }
  if (!plan.store) return plan.conversationId !== undefined ? 'stored' : 'skipped';
  const id = response.id;
  if (typeof id !== 'string' || !ID.test(id)) return 'skipped';
  const opts = { ttlMs: policy.ttlSeconds * 1000, maxBytes: policy.maxStoredBytes };
  const record: StoredResponse =
    plan.mode === 'gateway'
      ? {
          v: STORED_RESPONSE_VERSION,
          kind: 'stored',
          id,
          route,
          conversationKey: plan.conversationKey,
          history: plan.history,
          input: plan.input,
          response,
        }
      : {
          v: STORED_RESPONSE_VERSION,
          kind: 'owned',
          id,
          route,
          conversationKey: plan.conversationKey || id,
          ...(at.backend !== undefined && { backend: at.backend }),
          ...(at.model !== undefined && { model: at.model }),
        };
  const r = await sessions.write(plan.owner, 'response', id, record, opts);
  return r.stored ? 'stored' : 'too_large';
}

// ---- /v1/responses/{id} ---------------------------------------------------------------------

export type ResponsesResource =
  { kind: 'response'; id: string } | { kind: 'input_items'; id: string };

/** `/v1/responses/{id}` and `/v1/responses/{id}/input_items`; undefined for other paths. */
export function responsesResource(path: string): ResponsesResource | undefined {
  const m = /^\/v1\/responses\/([^/]+)(\/input_items)?\/?$/.exec(path);
  if (!m) return undefined;
  let id: string;
  try {
    id = decodeURIComponent(m[1]!);
  } catch {
    return undefined;
  }
  return m[2] ? { kind: 'input_items', id } : { kind: 'response', id };
}

export interface ResourceAnswer {
  kind: 'answer';
  status: number;
  value: unknown;
}

/** A response its provider keeps, asked for by its owner: the request goes to that backend. */
export interface ProviderKept {
  kind: 'provider';
  owner: SessionOwner;
  id: string;
  route: string;
  backend: string;
  model: string | undefined;
}

/**
 * GET and DELETE of a stored response, and the listing of the items it was generated from, for
 * one of the caller's owners (a caller may be known to several governance policies). Another
 * owner's id is not found: the answer never says whether it exists. A response its provider keeps
 * is not answered here: the caller is told where it is kept (`provider`), and the request goes
 * there (pipeline/sessions.ts).
 */
export async function answerResource(
  sessions: Sessions,
  owners: readonly SessionOwner[],
  resource: ResponsesResource,
  method: string,
  query: URLSearchParams,
): Promise<ResourceAnswer | ProviderKept> {
  const { id } = resource;
  if (!ID.test(id)) throw responseNotFound(id);
  let found: { owner: SessionOwner; record: StoredResponse } | undefined;
  try {
    for (const owner of owners) {
      const record = await sessions.read<StoredResponse>(owner, 'response', id);
      if (record) {
        found = { owner, record };
        break;
      }
    }
  } catch {
    throw sessionsUnavailable();
  }
  if (!found) throw responseNotFound(id);
  const { owner, record } = found;
  if (record.kind === 'owned') {
    // A marker written before the gateway recorded where the response is kept: it cannot be
    // sent anywhere without guessing a backend, which could answer with another account's data.
    if (record.backend === undefined)
      throw new SluiceError(
        'invalid_request',
        `Response ${shown(id)} is kept by its provider, and this gateway recorded only its owner when it was created; retrieve or delete it at the provider.`,
      );
    return {
      kind: 'provider',
      owner,
      id,
      route: record.route,
      backend: record.backend,
      model: record.model,
    };
  }
  if (resource.kind === 'response' && method === 'DELETE') {
    try {
      await sessions.remove(owner, 'response', id);
    } catch {
      throw sessionsUnavailable();
    }
    return { kind: 'answer', status: 200, value: { id, object: 'response', deleted: true } };
  }
  if (resource.kind === 'response') return { kind: 'answer', status: 200, value: record.response };
  return {
    kind: 'answer',
    status: 200,
    value: listPage([...(record.history ?? []), ...(record.input ?? [])], query),
  };
}

/**
 * The provider confirmed the DELETE of a response it kept: the owner marker goes too, so the id
 * is no longer the caller's to continue or ask for. Whether there was one.
 */
export async function forgetOwned(
  sessions: Sessions,
  owner: SessionOwner,
  id: string,
): Promise<boolean> {
  try {
    return await sessions.remove(owner, 'response', id);
  } catch {
    throw sessionsUnavailable();
  }
}

/** `conversation`: an id, or an object with one. */
function conversationIdOf(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  const id =
    typeof v === 'string'
      ? v
      : typeof v === 'object' && !Array.isArray(v)
        ? (v as Json).id
        : undefined;
  if (typeof id !== 'string' || id === '')
    throw new SluiceError(
      'invalid_request',
      'conversation must be an id or an object with an id.',
      {
        param: 'conversation',
      },
    );
  return id;
}
