/**
 * Every string a provider receives (requests) or a caller receives (responses), for masking, the
 * prompt guard and restoration: one walk over the whole body, deny by default, bounded in depth
 * and linear in size. Only the fields each API assigns itself (`model`, ids, enums, base64
 * payloads) are left out, by path; rewriting them would break the request or the answer.
 */
import type { Operation } from '../providers/endpoints.js';
import { duplicateKey } from './json-keys.js';

type Obj = Record<string, unknown>;

// eslint-disable-next-line @typescript-eslint/unbound-method -- always called with .call
const hasOwn = Object.prototype.hasOwnProperty;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One string in the document, readable and replaceable in place. */
export interface TextSlot {
  readonly text: string;
  /** The key it sits under (undefined for an array element). */
  readonly key: string | undefined;
  set(value: string): void;
  /** The slot is inside a JSON document carried as a string (tool-call arguments). */
  readonly json: boolean;
  /** Covered by a provider's signature (a thinking block): it cannot change without breaking it. */
  readonly signed?: boolean;
}

/**
 * `holder[at]`, a string. A class rather than an object with a closure: a body has a slot per
 * string, and each closure cost a function and its context on top of the object (issue 16).
 */
class ValueSlot implements TextSlot {
  readonly key: string | undefined;
  readonly signed?: boolean;

  constructor(
    readonly text: string,
    readonly holder: Record<string | number, unknown>,
    readonly at: string | number,
    readonly json: boolean,
    signed = false,
  ) {
    this.key = typeof at === 'string' ? at : undefined;
    if (signed) this.signed = true;
  }

  set(value: string): void {
    this.holder[this.at] = value;
  }
}

/**
 * Where a slot's value sits in the parsed body (`holder[at]`), for a slot that is a plain value
 * there; undefined for a key and for a value inside JSON carried in a string, whose change
 * rewrites something else (the object, or that string).
 */
export function valueTarget(
  slot: TextSlot,
): { holder: Record<string | number, unknown>; at: string | number } | undefined {
  return slot instanceof ValueSlot ? slot : undefined;
}

export class SlotList {
  readonly slots: TextSlot[] = [];
  /** Each returns true when it wrote something. */
  private readonly commits: (() => boolean)[] = [];
  /** Renamed keys, per object, applied at commit in one rebuild of each object. */
  private renames: Map<Obj, Map<string, string>> | undefined;

  /** A key of `holder`, readable as text; setting it renames the key (order kept). */
  key(holder: Obj, key: string): void {
    if (key.length === 0) return;
    this.slots.push({
      text: key,
      key: undefined,
      json: false,
      set: (value) => {
        if (value === key) return;
        this.renames ??= new Map();
        let r = this.renames.get(holder);
        if (!r) {
          this.renames.set(holder, (r = new Map<string, string>()));
          // Registered after every walk, so it runs before any JSON document is written back.
          this.commits.push(() => {
            renameKeys(holder, r!);
            return true;
          });
        }
        r.set(key, value);
      },
    });
  }

  /** `holder[key]`, a string, with its own flags (see TextSlot). */
  push(slot: TextSlot): void {
    this.slots.push(slot);
  }

  /**
   * Runs `f` at commit, before the commits registered earlier (an enclosing document's); `f`
   * returns true when it wrote something.
   */
  onCommit(f: () => boolean): void {
    this.commits.push(f);
  }

  /** `holder[key]` when it is a non-empty string. */
  field(holder: Obj | unknown[], key: string | number, json = false): void {
    const h = holder as Record<string | number, unknown>;
    const v = h[key];
    if (typeof v !== 'string' || v.length === 0) return;
    this.slots.push(new ValueSlot(v, h, key, json));
  }

  /**
   * Writes back renamed keys and the JSON documents whose values changed; call once after every
   * `set`. Latest first: what was registered inside a document is written before the document.
   */
  commit(): boolean {
    let wrote = false;
    for (let i = this.commits.length - 1; i >= 0; i--) if (this.commits[i]!()) wrote = true;
    return wrote;
  }
}

/** Rebuilds `holder` with keys renamed, in their order (one pass, however many are renamed). */
function renameKeys(holder: Obj, renames: ReadonlyMap<string, string>): void {
  const entries = Object.entries(holder);
  for (const [k] of entries) delete holder[k];
  for (const [k, v] of entries) {
    Object.defineProperty(holder, renames.get(k) ?? k, {
      value: v,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Everything a provider receives, for masking: every string value and every key of the body is
// scanned, at any depth, except the fields listed below. Deny by default: a field an API adds
// tomorrow is scanned until it is listed here. Paths name object keys, with `*` for any array
// element; they are matched only where the API puts them, so the same name inside free-form JSON
// (tool input, schemas, metadata) is scanned like any other text.

/** Identifiers the API itself assigns or that name a model: never text the model reads as prose. */
const EXEMPT: Record<Operation, readonly string[]> = {
  chat: [
    'model',
    'messages.*.tool_call_id',
    'messages.*.tool_calls.*.id',
    'messages.*.audio.id',
    'messages.*.content.*.file.file_id',
  ],
  completions: ['model'],
  embeddings: ['model'],
  responses: [
    'model',
    'previous_response_id',
    'conversation',
    'conversation.id',
    'prompt.id',
    'prompt.version',
    'input.*.id',
    'input.*.call_id',
    'input.*.content.*.file_id',
    'input.*.output.*.file_id',
  ],
  messages: [
    'model',
    'container',
    'messages.*.content.*.id',
    'messages.*.content.*.tool_use_id',
    'messages.*.content.*.source.file_id',
    'messages.*.content.*.content.*.source.file_id',
  ],
};

/**
 * Encoded payloads: exempt only while the value really is base64 (bare or in a `data:` URL):
 * images, audio and files the model does not read as text, and provider-signed or encrypted
 * blobs. Anything else found there (a plain URL, text) is scanned.
 */
const ENCODED: Record<Operation, readonly string[]> = {
  chat: [
    'messages.*.content.*.image_url.url',
    'messages.*.content.*.input_audio.data',
    'messages.*.content.*.file.file_data',
  ],
  completions: [],
  embeddings: [],
  responses: [
    'input.*.content.*.image_url',
    'input.*.content.*.file_data',
    'input.*.output.*.image_url',
    'input.*.output.*.file_data',
    'input.*.encrypted_content',
    'input.*.result',
  ],
  messages: [
    'messages.*.content.*.signature',
    'messages.*.content.*.data',
    'messages.*.content.*.source.data',
    'messages.*.content.*.content.*.source.data',
  ],
};

/** The exempt fields of each API, for documentation and tests. */
export const EXEMPT_FIELDS: Readonly<
  Record<Operation, { ids: readonly string[]; base64: readonly string[] }>
> = Object.fromEntries(
  (Object.keys(EXEMPT) as Operation[]).map((op) => [op, { ids: EXEMPT[op], base64: ENCODED[op] }]),
) as Record<Operation, { ids: readonly string[]; base64: readonly string[] }>;

/**
 * The exempt and encoded paths as a table walked one key at a time beside the body: each node is
 * a path made of field names and `*`, and the walk moves to the child its next key names. Whether
 * a value is exempt is then a flag on the node it reached, with no path string built per value
 * (a string per key and element, and a hash of it per lookup, were ~1.3 KiB per chat request:
 * issue 16). A node reached is exactly the path the listed strings spell, component for
 * component, so the exemptions are the ones `Set.has(path)` gave.
 */
class PathNode {
  readonly next = new Map<string, PathNode>();
  exempt = false;
  encoded = false;
}

/** A path below the root that no listed path starts with: nothing under it is exempt. */
const OFF_TABLE = new PathNode();

function pathTable(exempt: Iterable<string>, encoded: Iterable<string>): PathNode {
  const root = new PathNode();
  const at = (path: string): PathNode => {
    let n = root;
    for (const part of path.split('.')) {
      let c = n.next.get(part);
      if (!c) n.next.set(part, (c = new PathNode()));
      n = c;
    }
    return n;
  };
  for (const p of exempt) at(p).exempt = true;
  for (const p of encoded) at(p).encoded = true;
  return root;
}

function stepInto(node: PathNode, key: string): PathNode {
  return node.next.get(key) ?? OFF_TABLE;
}

const REQUEST_TABLES = new Map(
  (Object.keys(EXEMPT) as Operation[]).map((op) => [op, pathTable(EXEMPT[op], ENCODED[op])]),
);

/** Deeper JSON is refused, never skipped: a value below the limit would leave unscanned. */
export const MAX_REQUEST_DEPTH = 64;

/** Thrown when the body (or JSON inside one of its strings) nests deeper than MAX_REQUEST_DEPTH. */
export class NestingTooDeep extends Error {
  override readonly name = 'NestingTooDeep';
}

/** A key made of lower-case letters and underscores: a field name, not scanned. */
const FIELD_NAME = /^[a-z_]{1,64}$/;

/** What an API enum value looks like: a short lower-case identifier. */
const ENUM_VALUE = /^[a-z][a-z0-9_.-]{0,63}$/;

const BASE64_BODY = /^[A-Za-z0-9+/_-]*={0,2}\s*$/;
const DATA_URL_HEAD = /^data:[\w.+-]+\/[\w.+-]+(?:;[\w.+-]+=[\w.+-]+)*;base64,/i;

/** True for base64 (standard or URL-safe), bare or as a `data:…;base64,` URL. */
export function isBase64Payload(v: string): boolean {
  const head = DATA_URL_HEAD.exec(v);
  const body = head ? v.slice(head[0].length) : v;
  return body.length > 0 && BASE64_BODY.test(body);
}

/** A string that is itself JSON (tool arguments, a JSON tool result): its values are walked. */
function embeddedJson(v: string): object | undefined {
  let i = 0;
  while (
    i < v.length &&
    (v.charCodeAt(i) === 32 ||
      v.charCodeAt(i) === 10 ||
      v.charCodeAt(i) === 13 ||
      v.charCodeAt(i) === 9)
  )
    i++;
  const c = v.charCodeAt(i);
  if (c !== 123 && c !== 91) return undefined;
  try {
    const doc: unknown = JSON.parse(v);
    return typeof doc === 'object' && doc !== null ? doc : undefined;
  } catch {
    return undefined;
  }
}

interface Walk {
  list: SlotList;
  /** The table's root: the body itself. */
  root: PathNode;
}

/**
 * Every string the provider will receive in `body`, keys included, except the exempt fields.
 * Strings that hold a JSON object or array are walked inside (and written back re-serialized
 * when something in them changed, or when they repeat a key, so what leaves is what was
 * scanned). Throws NestingTooDeep beyond MAX_REQUEST_DEPTH levels.
 */
export function maskableSlots(op: Operation, body: Obj): SlotList {
  return walkBody(REQUEST_TABLES.get(op)!, body);
}

function walkBody(root: PathNode, body: Obj): SlotList {
  const w: Walk = { list: new SlotList(), root };
  walkObject(w, body, root, 0, false);
  return w.list;
}

// ---------------------------------------------------------------------------------------------
// Everything a caller receives in an answer, for restoring placeholders and masking model output:
// the same walk, with the fields the answer's API assigns itself left out. A field a provider
// adds (reasoning text, annotations, a new block type) is scanned until it is listed here.

/** Ids, the model, and enum-like fields the provider sets; never text the model wrote. */
const RESPONSE_EXEMPT: Record<Operation, readonly string[]> = {
  chat: [
    'id',
    'object',
    'model',
    'system_fingerprint',
    'service_tier',
    'choices.*.finish_reason',
    'choices.*.message.tool_calls.*.id',
    'choices.*.message.audio.id',
  ],
  completions: ['id', 'object', 'model', 'system_fingerprint', 'choices.*.finish_reason'],
  embeddings: ['object', 'model'],
  responses: [
    'id',
    'object',
    'model',
    'status',
    'previous_response_id',
    'service_tier',
    'output.*.id',
    'output.*.call_id',
    'output.*.status',
  ],
  messages: ['id', 'model', 'stop_reason', 'content.*.id', 'content.*.tool_use_id'],
};

/** Encoded payloads of an answer (exempt while they are base64), as ENCODED for requests. */
const RESPONSE_ENCODED: Record<Operation, readonly string[]> = {
  chat: ['choices.*.message.audio.data'],
  completions: [],
  embeddings: ['data.*.embedding'],
  responses: ['output.*.encrypted_content', 'output.*.result'],
  messages: ['content.*.signature', 'content.*.data'],
};

/** The same lists under `response.` (a Responses event or a wrapped response object). */
function underResponse(paths: readonly string[]): string[] {
  return paths.map((p) => `response.${p}`);
}

const RESPONSE_EXEMPT_SETS = new Map(
  (Object.keys(RESPONSE_EXEMPT) as Operation[]).map((op) => [
    op,
    new Set([
      ...RESPONSE_EXEMPT[op],
      ...(op === 'responses' ? underResponse(RESPONSE_EXEMPT[op]) : []),
    ]),
  ]),
);
const RESPONSE_ENCODED_SETS = new Map(
  (Object.keys(RESPONSE_ENCODED) as Operation[]).map((op) => [
    op,
    new Set([
      ...RESPONSE_ENCODED[op],
      ...(op === 'responses' ? underResponse(RESPONSE_ENCODED[op]) : []),
    ]),
  ]),
);
const RESPONSE_TABLES = new Map(
  (Object.keys(RESPONSE_EXEMPT) as Operation[]).map((op) => [
    op,
    pathTable(RESPONSE_EXEMPT_SETS.get(op)!, RESPONSE_ENCODED_SETS.get(op)!),
  ]),
);

/**
 * Every string of a whole (non-streamed) answer the caller will receive, keys included, except
 * the exempt fields. Tool-call arguments and other JSON in strings are walked inside and written
 * back by `commit`. Throws NestingTooDeep beyond MAX_REQUEST_DEPTH levels (a fault: the policy's
 * failure mode decides, nothing deeper passes unread).
 */
export function responseSlots(op: Operation, body: Obj): SlotList {
  return unsigned(walkBody(RESPONSE_TABLES.get(op)!, body));
}

/**
 * Without the text of signed thinking blocks: the caller sends them back verbatim, and the
 * provider refuses one whose text no longer matches its signature.
 */
function unsigned(list: SlotList): SlotList {
  let n = 0;
  for (const s of list.slots) if (s.signed !== true) list.slots[n++] = s;
  list.slots.length = n;
  return list;
}

/** A Responses stream event's own ids; the response and items it carries are listed above. */
const EVENT_EXEMPT = new Set([
  ...RESPONSE_EXEMPT_SETS.get('responses')!,
  'item_id',
  'obfuscation',
  'item.id',
  'item.call_id',
  'item.status',
]);
const EVENT_ENCODED = new Set([
  ...RESPONSE_ENCODED_SETS.get('responses')!,
  'item.encrypted_content',
  'item.result',
  'partial_image_b64',
]);
const EVENT_TABLE = pathTable(EVENT_EXEMPT, EVENT_ENCODED);

/**
 * Every string of a Responses stream event that is handled whole (done events, items, the final
 * response, and any event type the gateway does not know), walked like a whole answer.
 */
export function responsesEventSlots(ev: Obj): SlotList {
  return unsigned(walkBody(EVENT_TABLE, ev));
}

function walkObject(w: Walk, o: Obj, node: PathNode, depth: number, free: boolean): void {
  if (depth >= MAX_REQUEST_DEPTH) throw new NestingTooDeep();
  // for-in over own keys, in Object.keys order: V8 walks the map's enum cache, where
  // Object.keys copied it into a new array per object (issue 16). Nothing changes `o` meanwhile.
  for (const k in o) {
    if (!hasOwn.call(o, k)) continue;
    // Field names (`tool_call_id`, `input_schema`) are the APIs' own: no built-in detector can
    // match lower-case letters and underscores, and an operator's word must not rename them.
    if (FIELD_NAME.test(k)) {
      walkValue(w, o, k, free ? OFF_TABLE : stepInto(node, k), node, depth + 1, free);
    } else {
      w.list.key(o, k);
      // Below any other key nothing is exempt: every exempt path is made of field names and `*`
      // (an array's elements), and a key such as `messages.*.tool_call_id` or `*` must not spell
      // one and take PII past masking.
      walkValue(w, o, k, OFF_TABLE, node, depth + 1, true);
    }
  }
}

/**
 * `holder[key]`, whose path is `node` (`holderNode` is the holder's); `free`: inside something
 * free-form (JSON in a string, below a key that is no field name), where nothing is exempt.
 */
function walkValue(
  w: Walk,
  holder: Obj | unknown[],
  key: string | number,
  node: PathNode,
  holderNode: PathNode,
  depth: number,
  free: boolean,
): void {
  const v = (holder as Record<string | number, unknown>)[key];
  if (typeof v === 'string') {
    // The APIs' own enums (`"role": "user"`, `"type": "text"`) at any depth, while they look like
    // one: a broad operator pattern must not rewrite the request's structure.
    if ((key === 'type' || key === 'role') && ENUM_VALUE.test(v)) return;
    if (!free) {
      if (node.exempt) return;
      // A `source` of type `text` (an Anthropic plain-text document) carries text, whatever it
      // looks like: a bare card or phone number is also valid base64.
      if (node.encoded && isBase64Payload(v) && !declaresText(holder)) return;
    }
    // A thinking block's text: a `thinking` field below the top level, outside free-form JSON.
    const thinking = !free && key === 'thinking' && holderNode !== w.root;
    walkString(w, holder, key, depth, thinking);
    return;
  }
  if (typeof v !== 'object' || v === null) return;
  if (Array.isArray(v)) {
    if (depth >= MAX_REQUEST_DEPTH) throw new NestingTooDeep();
    const item = free ? OFF_TABLE : stepInto(node, '*');
    for (let i = 0; i < v.length; i++) walkValue(w, v, i, item, node, depth + 1, free);
    return;
  }
  walkObject(w, v as Obj, node, depth, free);
}

function walkString(
  w: Walk,
  holder: Obj | unknown[],
  key: string | number,
  depth: number,
  thinking: boolean,
): void {
  const h = holder as Record<string | number, unknown>;
  const text = h[key] as string;
  if (text.length === 0) return;
  const doc = embeddedJson(text);
  if (doc === undefined) {
    const signed = thinking && isSignedThinking(holder);
    w.list.push(new ValueSlot(text, h, key, false, signed));
    return;
  }
  // A JSON document in a string: its keys and values are free-form, whatever the path.
  const box = { doc } as Obj;
  let changed = duplicateKey(text, doc) !== undefined;
  w.list.onCommit(() => {
    if (changed) h[key] = JSON.stringify(box.doc);
    return changed;
  });
  const before = w.list.slots.length;
  walkValue(w, box, 'doc', OFF_TABLE, OFF_TABLE, depth, true);
  for (let i = before; i < w.list.slots.length; i++) {
    const s = w.list.slots[i]!;
    w.list.slots[i] = {
      text: s.text,
      key: s.key,
      json: false,
      set: (value) => {
        s.set(value);
        changed = true;
      },
    };
  }
}

function declaresText(holder: Obj | unknown[]): boolean {
  return isObj(holder) && holder.type === 'text';
}

/** An Anthropic thinking block carrying its signature. */
function isSignedThinking(holder: Obj | unknown[]): boolean {
  if (!isObj(holder)) return false;
  return holder.type === 'thinking' && typeof holder.signature === 'string';
}
