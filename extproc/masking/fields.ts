/**
 * Where the text a model reads (requests) or writes (responses) sits in each API's JSON. Walked by
 * API shape, never by blind recursion: `model`, ids, roles, tool names, image URLs and base64
 * data are not text the model reads as prose, and rewriting them would break the request.
 */
import type { Operation } from '../api/endpoints.js';

type Obj = Record<string, unknown>;

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
}

export class SlotList {
  readonly slots: TextSlot[] = [];
  private readonly commits: (() => void)[] = [];

  /** `holder[key]` when it is a non-empty string. */
  field(holder: Obj | unknown[], key: string | number, json = false): void {
    const v = (holder as Record<string | number, unknown>)[key];
    if (typeof v !== 'string' || v.length === 0) return;
    this.slots.push({
      text: v,
      key: typeof key === 'string' ? key : undefined,
      json,
      set: (value) => {
        (holder as Record<string | number, unknown>)[key] = value;
      },
    });
  }

  /** Every string value (not key) inside a JSON value the model reads whole, e.g. tool input. */
  values(holder: Obj | unknown[], key: string | number, json = false, depth = 0): void {
    const v = (holder as Record<string | number, unknown>)[key];
    if (typeof v === 'string') this.field(holder, key, json);
    else if (depth >= 32) return;
    else if (Array.isArray(v))
      for (let i = 0; i < v.length; i++) this.values(v, i, json, depth + 1);
    else if (isObj(v)) for (const k of Object.keys(v)) this.values(v, k, json, depth + 1);
  }

  /**
   * Tool-call arguments: a JSON document in a string. Values inside are masked without breaking
   * the JSON (the document is re-serialized only when something changed); a string that is not
   * JSON is treated as text.
   */
  jsonString(holder: Obj | unknown[], key: string | number): void {
    const v = (holder as Record<string | number, unknown>)[key];
    if (typeof v !== 'string' || v.length === 0) return;
    let doc: unknown;
    try {
      doc = JSON.parse(v);
    } catch {
      this.field(holder, key, true);
      return;
    }
    if (typeof doc !== 'object' || doc === null) {
      this.field(holder, key, true);
      return;
    }
    const box = { doc };
    const before = this.slots.length;
    this.values(box, 'doc');
    const inner = this.slots.splice(before);
    let changed = false;
    for (const s of inner) {
      this.slots.push({
        text: s.text,
        key: s.key,
        json: false,
        set: (value) => {
          s.set(value);
          changed = true;
        },
      });
    }
    this.commits.push(() => {
      if (changed) (holder as Record<string | number, unknown>)[key] = JSON.stringify(box.doc);
    });
  }

  /** Writes back the JSON documents whose values changed; call once after every `set`. */
  commit(): void {
    for (const c of this.commits) c();
  }
}

/** Text parts of a content array: `text` (chat, Anthropic), `input_text`/`output_text` (Responses). */
function contentParts(list: SlotList, content: unknown[]): void {
  for (const p of content) {
    if (!isObj(p)) continue;
    switch (p.type) {
      case 'text':
      case 'input_text':
      case 'output_text':
        list.field(p, 'text');
        break;
      case 'refusal':
        list.field(p, 'refusal');
        break;
    }
  }
}

function content(list: SlotList, holder: Obj, key: string): void {
  const c = holder[key];
  if (typeof c === 'string') list.field(holder, key);
  else if (Array.isArray(c)) contentParts(list, c);
}

function chatMessages(list: SlotList, messages: unknown): void {
  if (!Array.isArray(messages)) return;
  for (const m of messages) {
    if (!isObj(m)) continue;
    content(list, m, 'content');
    list.field(m, 'refusal');
    if (Array.isArray(m.tool_calls)) {
      for (const tc of m.tool_calls) {
        if (isObj(tc) && isObj(tc.function)) list.jsonString(tc.function, 'arguments');
      }
    }
    if (isObj(m.function_call)) list.jsonString(m.function_call, 'arguments');
  }
}

function stringOrStrings(list: SlotList, holder: Obj, key: string): void {
  const v = holder[key];
  if (typeof v === 'string') list.field(holder, key);
  // Arrays of token ids (numbers) are not text the gateway can read.
  else if (Array.isArray(v)) for (let i = 0; i < v.length; i++) list.field(v, i);
}

function responsesInput(list: SlotList, body: Obj): void {
  list.field(body, 'instructions');
  const input = body.input;
  if (typeof input === 'string') {
    list.field(body, 'input');
    return;
  }
  if (!Array.isArray(input)) return;
  for (const item of input) {
    if (!isObj(item)) continue;
    switch (item.type ?? 'message') {
      case 'message':
        content(list, item, 'content');
        break;
      case 'function_call':
        list.jsonString(item, 'arguments');
        break;
      case 'function_call_output':
      case 'custom_tool_call_output':
        content(list, item, 'output');
        break;
      case 'custom_tool_call':
        list.field(item, 'input');
        break;
    }
  }
}

function anthropicBlocks(list: SlotList, blocks: unknown[]): void {
  for (const b of blocks) {
    if (!isObj(b)) continue;
    switch (b.type) {
      case 'text':
        list.field(b, 'text');
        break;
      case 'tool_use':
        list.values(b, 'input');
        break;
      case 'tool_result':
        content(list, b, 'content');
        break;
      // `thinking` blocks are signed by the provider: changing them invalidates the signature.
    }
  }
}

function anthropicMessages(list: SlotList, body: Obj): void {
  const sys = body.system;
  if (typeof sys === 'string') list.field(body, 'system');
  else if (Array.isArray(sys)) anthropicBlocks(list, sys);
  if (!Array.isArray(body.messages)) return;
  for (const m of body.messages) {
    if (!isObj(m)) continue;
    if (typeof m.content === 'string') list.field(m, 'content');
    else if (Array.isArray(m.content)) anthropicBlocks(list, m.content);
  }
}

export function requestSlots(op: Operation, body: Obj): SlotList {
  const list = new SlotList();
  switch (op) {
    case 'chat':
      chatMessages(list, body.messages);
      break;
    case 'completions':
      stringOrStrings(list, body, 'prompt');
      list.field(body, 'suffix');
      break;
    case 'embeddings':
      stringOrStrings(list, body, 'input');
      break;
    case 'responses':
      responsesInput(list, body);
      break;
    case 'messages':
      anthropicMessages(list, body);
      break;
  }
  return list;
}

function responsesOutput(list: SlotList, output: unknown): void {
  if (!Array.isArray(output)) return;
  for (const item of output) {
    if (!isObj(item)) continue;
    if (item.type === 'message' && Array.isArray(item.content)) contentParts(list, item.content);
    else if (item.type === 'function_call') list.field(item, 'arguments', true);
    else if (item.type === 'custom_tool_call') list.field(item, 'input');
  }
}

/**
 * The generated text in a whole (non-streamed) response. Tool-call arguments are kept as strings
 * (flagged json) rather than parsed: restoring into them only needs JSON escaping.
 */
export function responseSlots(op: Operation, body: Obj): SlotList {
  const list = new SlotList();
  switch (op) {
    case 'chat':
    case 'completions': {
      if (!Array.isArray(body.choices)) break;
      for (const c of body.choices) {
        if (!isObj(c)) continue;
        list.field(c, 'text');
        const m = c.message;
        if (!isObj(m)) continue;
        content(list, m, 'content');
        list.field(m, 'refusal');
        if (Array.isArray(m.tool_calls)) {
          for (const tc of m.tool_calls) {
            if (isObj(tc) && isObj(tc.function)) list.field(tc.function, 'arguments', true);
          }
        }
        if (isObj(m.function_call)) list.field(m.function_call, 'arguments', true);
      }
      break;
    }
    case 'responses': {
      const root = isObj(body.response) && body.output === undefined ? body.response : body;
      responsesOutput(list, root.output);
      list.field(root, 'output_text');
      break;
    }
    case 'messages':
      if (Array.isArray(body.content)) anthropicBlocks(list, body.content);
      break;
    case 'embeddings':
      break;
  }
  return list;
}

/** Items of a Responses stream event that carry whole text (done events, the final response). */
export function responsesEventSlots(ev: Obj): SlotList {
  const list = new SlotList();
  switch (ev.type) {
    case 'response.output_text.done':
      list.field(ev, 'text');
      break;
    case 'response.refusal.done':
      list.field(ev, 'refusal');
      break;
    case 'response.function_call_arguments.done':
      list.field(ev, 'arguments', true);
      break;
    case 'response.content_part.added':
    case 'response.content_part.done':
      if (isObj(ev.part)) contentParts(list, [ev.part]);
      break;
    case 'response.output_item.added':
    case 'response.output_item.done':
      responsesOutput(list, [ev.item]);
      break;
    case 'response.created':
    case 'response.in_progress':
    case 'response.completed':
    case 'response.incomplete':
    case 'response.failed':
      if (isObj(ev.response)) {
        responsesOutput(list, ev.response.output);
        list.field(ev.response, 'output_text');
      }
      break;
  }
  return list;
}
