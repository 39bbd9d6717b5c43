/**
 * The Conversations API, kept by the gateway for the identity that creates a conversation:
 * `POST /v1/conversations` (with items and metadata), `GET`, `POST` (metadata) and `DELETE
 * /v1/conversations/{id}`, and `GET /v1/conversations/{id}/items`. A Responses request naming a
 * `conversation` reads its items as the history and appends its input and output items to it
 * (sessions/responses.ts). Records are sessions.ts's: bound to the owner, sealed, expiring, bounded.
 *
 * Two turns of one conversation at once both append to what they read: the later write wins and
 * the other turn's items are not in the conversation (each turn's own response is still stored).
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
  { kind: 'collection' } | { kind: 'conversation'; id: string } | { kind: 'items'; id: string };

const ID = /^[A-Za-z0-9_-]{1,128}$/;

export function newConversationId(): string {
  return `conv_${randomBytes(24).toString('hex')}`;
}

/** `/v1/conversations`, `/v1/conversations/{id}`, `/v1/conversations/{id}/items`. */
export function conversationsResource(path: string): ConversationsResource | undefined {
  if (/^\/v1\/conversations\/?$/.test(path)) return { kind: 'collection' };
  const m = /^\/v1\/conversations\/([^/]+)(\/items)?\/?$/.exec(path);
  if (!m) return undefined;
  let id: string;
  try {
    id = decodeURIComponent(m[1]!);
  } catch {
    return undefined;
  }
  return m[2] ? { kind: 'items', id } : { kind: 'conversation', id };
}

export function conversationNotFound(id: string, param?: string): SluiceError {
  return new SluiceError(
    'conversation_not_found',
    `Conversation with id ${ID.test(id) ? `'${id}'` : 'given'} not found.`,
    param ? { param } : {},
  );
}

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
      return ['GET'];
  }
}

/** Whether the request carries a JSON body to read before answering. */
export function needsBody(r: ConversationsResource, method: string): boolean {
  return method === 'POST' && (r.kind === 'collection' || r.kind === 'conversation');
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
  const { c } = found;
  if (resource.kind === 'items') return { status: 200, value: listPage(c.items, r.query) };
  switch (r.method) {
    case 'GET':
      return { status: 200, value: view(c) };
    case 'POST': {
      if (!r.body || !('metadata' in r.body))
        throw new SluiceError('invalid_request', 'metadata is required.', { param: 'metadata' });
      c.metadata = metadataOf(r.body.metadata);
      try {
        await writeConversation(sessions, found.owner, c, policy);
      } catch {
        throw unavailable();
      }
      return { status: 200, value: view(c) };
    }
    default:
      try {
        await sessions.remove(found.owner, 'conversation', c.id);
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
