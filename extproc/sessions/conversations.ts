/**
 * The Conversations API, kept by the gateway for the identity that creates a conversation:
 * `POST /v1/conversations` (with items and metadata), `GET`, `POST` (metadata) and `DELETE
 * /v1/conversations/{id}`, `GET` and `POST /v1/conversations/{id}/items` (list, add), and `GET`
 * and `DELETE /v1/conversations/{id}/items/{item_id}` (one item; a delete answers with the
 * conversation, as OpenAI's does). A Responses request naming a `conversation` reads its items as
 * the history and appends its input and output items to it (sessions/responses.ts). Records are
 * sessions.ts's: bound to the owner, sealed, expiring, bounded.
 *
 * Every change is a compare-and-set (Sessions.update): two turns of one conversation at once both
 * land, in the order their writes did, each read again if the other got in first. Only when other
 * writers win every one of the bounded attempts is a change refused: 409 `conversation_locked`
 * (an SDK caller may retry), or, for a turn whose answer was already bought, the turn's items are
 * not appended and the access log says `failed`.
 */
import { randomBytes } from 'node:crypto';
import { SluiceError } from '../errors.js';
import type { SessionsPolicy } from './schema.js';
import type { SessionOwner, Sessions } from './sessions.js';

type Json = Record<string, unknown>;

export interface StoredConversation {
  v: 1;
  id: string;
  createdAt: number;
  metadata: Json;
  items: Json[];
}

export type ConversationsResource =
  | { kind: 'collection' }
  | { kind: 'conversation'; id: string }
  | { kind: 'items'; id: string }
  | { kind: 'item'; id: string; itemId: string };

const ID = /^[A-Za-z0-9_-]{1,128}$/;

export function newConversationId(): string {
  return `conv_${randomBytes(24).toString('hex')}`;
}

/**
 * `/v1/conversations`, `/v1/conversations/{id}`, `/v1/conversations/{id}/items` and
 * `/v1/conversations/{id}/items/{item_id}`.
 */
export function conversationsResource(path: string): ConversationsResource | undefined {
  if (/^\/v1\/conversations\/?$/.test(path)) return { kind: 'collection' };
  const m = /^\/v1\/conversations\/([^/]+)(?:\/items(?:\/([^/]+))?)?\/?$/.exec(path);
  if (!m) return undefined;
  const items = /^\/v1\/conversations\/[^/]+\/items/.test(path);
  let id: string;
  let itemId: string | undefined;
  try {
    id = decodeURIComponent(m[1]!);
    if (m[2] !== undefined) itemId = decodeURIComponent(m[2]);
  } catch {
    return undefined;
  }
  if (itemId !== undefined) return { kind: 'item', id, itemId };
  return items ? { kind: 'items', id } : { kind: 'conversation', id };
}

export function conversationNotFound(id: string, param?: string): SluiceError {
  return new SluiceError(
    'conversation_not_found',
    `Conversation with id ${ID.test(id) ? `'${id}'` : 'given'} not found.`,
    param ? { param } : {},
  );
}

export function conversationLocked(id: string): SluiceError {
  return new SluiceError(
    'conversation_locked',
    `Conversation ${ID.test(id) ? `'${id}'` : 'given'} kept changing while this change was applied; nothing was changed. Retry.`,
  );
}

function itemNotFound(itemId: string): SluiceError {
  return new SluiceError(
    'item_not_found',
    `Item with id ${ID.test(itemId) ? `'${itemId}'` : 'given'} not found in this conversation.`,
  );
}

/** OpenAI takes at most 20 items per request to add to a conversation. */
const MAX_ITEMS_ADDED = 20;

function unavailable(): SluiceError {
  return new SluiceError(
    'state_unavailable',
    "The gateway's conversation store is unavailable. Retry shortly.",
  );
}

/** The methods each resource takes; others are 405 with `allow`. */
export function allowedMethods(r: ConversationsResource): string[] {
  switch (r.kind) {
    case 'collection':
      return ['POST'];
    case 'conversation':
      return ['GET', 'POST', 'DELETE'];
    case 'items':
      return ['GET', 'POST'];
    case 'item':
      return ['GET', 'DELETE'];
  }
}

/** Whether the request carries a JSON body to read before answering. */
export function needsBody(r: ConversationsResource, method: string): boolean {
  return method === 'POST' && r.kind !== 'item';
}

function view(c: StoredConversation): Json {
  return { id: c.id, object: 'conversation', created_at: c.createdAt, metadata: c.metadata };
}

function metadataOf(v: unknown): Json {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v))
    throw new SluiceError('invalid_request', 'metadata must be an object.', { param: 'metadata' });
  const entries = Object.entries(v as Json);
  if (
    entries.length > 16 ||
    entries.some(([k, x]) => k.length > 64 || typeof x !== 'string' || x.length > 512)
  )
    throw new SluiceError(
      'invalid_request',
      'metadata takes at most 16 string values (keys up to 64, values up to 512 characters).',
      { param: 'metadata' },
    );
  return v as Json;
}

export async function readConversation(
  sessions: Sessions,
  owner: SessionOwner,
  id: string,
): Promise<StoredConversation | undefined> {
  if (!ID.test(id)) return undefined;
  try {
    return await sessions.read<StoredConversation>(owner, 'conversation', id);
  } catch {
    throw unavailable();
  }
}

export async function writeConversation(
  sessions: Sessions,
  owner: SessionOwner,
  c: StoredConversation,
  policy: SessionsPolicy,
): Promise<boolean> {
  const r = await sessions.write(owner, 'conversation', c.id, c, {
    ttlMs: policy.ttlSeconds * 1000,
    maxBytes: policy.maxStoredBytes,
  });
  return r.stored;
}

/**
 * Changes a stored conversation without losing a concurrent change (Sessions.update): `change`
 * gets the conversation as it is now — possibly more than once — and returns the new one, or
 * undefined to leave it. `gone`: no such conversation (any more); `too_large`: over the policy's
 * bound, nothing changed; throws 409 `conversation_locked` when other writers always won, 503 when
 * the store fails.
 */
export async function updateConversation(
  sessions: Sessions,
  owner: SessionOwner,
  id: string,
  change: (c: StoredConversation) => StoredConversation | undefined,
  policy: SessionsPolicy,
): Promise<StoredConversation | 'gone' | 'too_large'> {
  if (!ID.test(id)) return 'gone';
  let r: Awaited<ReturnType<Sessions['update']>>;
  let gone = false;
  try {
    r = await sessions.update<StoredConversation>(
      owner,
      'conversation',
      id,
      (c) => {
        gone = c === undefined;
        return c === undefined ? undefined : change(structuredClone(c));
      },
      { ttlMs: policy.ttlSeconds * 1000, maxBytes: policy.maxStoredBytes },
    );
  } catch {
    throw unavailable();
  }
  switch (r.kind) {
    case 'stored':
      return r.value as StoredConversation;
    case 'unchanged':
      return gone ? 'gone' : (r.value as StoredConversation);
    case 'too_large':
      return 'too_large';
    case 'conflict':
      throw conversationLocked(id);
  }
}

export interface ConversationRequest {
  sessions: Sessions;
  /** Every identity of the caller (sessions are looked up under each); the first creates. */
  owners: readonly SessionOwner[];
  resource: ConversationsResource;
  method: string;
  query: URLSearchParams;
  body: Json | undefined;
  policy: SessionsPolicy;
  /** Unix seconds. */
  created: number;
  /** Gives stored items ids (sessions/responses.ts normalizeInput). */
  normalize: (input: unknown) => Json[];
}

export async function answerConversation(
  r: ConversationRequest,
): Promise<{ status: number; value: unknown }> {
  const { sessions, resource, policy } = r;
  const owner = r.owners[0];
  if (!owner) {
    if (resource.kind === 'collection')
      throw new SluiceError(
        'identity_required',
        'A conversation needs an authenticated caller (an API key or identity the gateway knows).',
      );
    throw conversationNotFound(resource.id);
  }
  if (resource.kind === 'collection') {
    const items = r.body?.items;
    const c: StoredConversation = {
      v: 1,
      id: newConversationId(),
      createdAt: r.created,
      metadata: metadataOf(r.body?.metadata),
      items: items === undefined || items === null ? [] : r.normalize(items),
    };
    let stored: boolean;
    try {
      stored = await writeConversation(sessions, owner, c, policy);
    } catch {
      throw unavailable();
    }
    if (!stored)
      throw new SluiceError(
        'request_too_large',
        `The conversation is larger than the ${policy.maxStoredBytes} bytes this gateway stores.`,
      );
    return { status: 200, value: view(c) };
  }
  let found: { owner: SessionOwner; c: StoredConversation } | undefined;
  for (const o of r.owners) {
    const c = await readConversation(sessions, o, resource.id);
    if (c) {
      found = { owner: o, c };
      break;
    }
  }
  if (!found) throw conversationNotFound(resource.id);
  const { c, owner: holder } = found;
  const tooLarge = (): SluiceError =>
    new SluiceError(
      'request_too_large',
      `The conversation would be larger than the ${policy.maxStoredBytes} bytes this gateway stores.`,
    );
  /** A change to the conversation, applied to it as it is at the time of writing. */
  const update = async (
    change: (x: StoredConversation) => StoredConversation | undefined,
  ): Promise<StoredConversation> => {
    const u = await updateConversation(sessions, holder, c.id, change, policy);
    if (u === 'gone') throw conversationNotFound(resource.id);
    if (u === 'too_large') throw tooLarge();
    return u;
  };
  if (resource.kind === 'items') {
    if (r.method === 'GET') return { status: 200, value: listPage(c.items, r.query) };
    const raw = r.body?.items;
    if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_ITEMS_ADDED)
      throw new SluiceError(
        'invalid_request',
        `items must be an array of 1 to ${MAX_ITEMS_ADDED} items.`,
        { param: 'items' },
      );
    const added = r.normalize(raw);
    await update((x) => ({ ...x, items: [...x.items, ...added] }));
    return {
      status: 200,
      value: {
        object: 'list',
        data: added,
        first_id: added[0]?.id ?? null,
        last_id: added.at(-1)?.id ?? null,
        has_more: false,
      },
    };
  }
  if (resource.kind === 'item') {
    const { itemId } = resource;
    if (r.method === 'GET') {
      const item = c.items.find((x) => x.id === itemId);
      if (!item) throw itemNotFound(itemId);
      return { status: 200, value: item };
    }
    let had = false;
    const after = await update((x) => {
      had = x.items.some((i) => i.id === itemId);
      return had ? { ...x, items: x.items.filter((i) => i.id !== itemId) } : undefined;
    });
    if (!had) throw itemNotFound(itemId);
    return { status: 200, value: view(after) };
  }
  switch (r.method) {
    case 'GET':
      return { status: 200, value: view(c) };
    case 'POST': {
      if (!r.body || !('metadata' in r.body))
        throw new SluiceError('invalid_request', 'metadata is required.', { param: 'metadata' });
      const metadata = metadataOf(r.body.metadata);
      return { status: 200, value: view(await update((x) => ({ ...x, metadata }))) };
    }
    default:
      try {
        await sessions.remove(holder, 'conversation', c.id);
      } catch {
        throw unavailable();
      }
      return { status: 200, value: { id: c.id, object: 'conversation.deleted', deleted: true } };
  }
}

/** OpenAI's list page: `order` (desc by default), `after`, `before`, `limit` 1–100 (20). */
export function listPage(items: readonly Json[], query: URLSearchParams): Json {
  const order = query.get('order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc')
    throw new SluiceError('invalid_request', 'order must be asc or desc.', { param: 'order' });
  const rawLimit = query.get('limit');
  const limit = rawLimit === null ? 20 : Number(rawLimit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100)
    throw new SluiceError('invalid_request', 'limit must be an integer from 1 to 100.', {
      param: 'limit',
    });
  let list = order === 'asc' ? [...items] : [...items].reverse();
  const after = query.get('after');
  if (after !== null) {
    const i = list.findIndex((x) => x.id === after);
    list = i === -1 ? [] : list.slice(i + 1);
  }
  const before = query.get('before');
  if (before !== null) {
    const i = list.findIndex((x) => x.id === before);
    if (i !== -1) list = list.slice(0, i);
  }
  const data = list.slice(0, limit);
  return {
    object: 'list',
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: list.length > data.length,
  };
}
