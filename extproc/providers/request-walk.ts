/**
 * The walks over a caller's request that every cross-API translator shares: an OpenAI Chat
 * conversation (system/developer text, user content, assistant text and tool calls, tool results
 * paired with the call they answer) and an Anthropic Messages one (system text, turns of content
 * blocks, tool_use blocks), and the tools and tool_choice of both APIs. Each walk checks the
 * caller's shape and names the field it refuses; the pair translator (one per caller × backend,
 * in a file named after the pair) only says what each piece becomes in its backend's API.
 */
import { isObject, str, unsupportedField, type Json } from './common.js';

/** A field's no-op values: a field at one of them asks for nothing and is not refused. */
export type Neutral = Readonly<Record<string, (v: unknown) => boolean>>;

/**
 * Refuses every top-level field of the caller's body that the translator does not read
 * (`handled`) and that is not at a no-op value (`neutral`): never a silent drop.
 */
export function refuseUnhandled(
  body: Readonly<Json>,
  handled: ReadonlySet<string>,
  neutral: Neutral,
  backend: string,
): void {
  for (const [k, v] of Object.entries(body)) {
    if (handled.has(k) || v === undefined) continue;
    if (neutral[k]?.(v)) continue;
    throw unsupportedField(k, `${backend} backends have no equivalent of this field.`);
  }
}

// ---- OpenAI Chat Completions callers ---------------------------------------------------------

/** OpenAI fields only OpenAI's own models act on, taken by other backends at their no-op value. */
export const OPENAI_NEUTRAL: Neutral = {
  presence_penalty: (v) => v === 0 || v === null,
  frequency_penalty: (v) => v === 0 || v === null,
  logprobs: (v) => v === false || v === null,
  logit_bias: (v) => v === null || (isObject(v) && Object.keys(v).length === 0),
  seed: (v) => v === null,
  modalities: (v) => v === null || (Array.isArray(v) && v.every((m) => m === 'text')),
};

/** OpenAI `stop`: a string or an array of strings, as a list (empty when unset). */
export function openaiStop(raw: unknown): string[] {
  if (raw === undefined || raw === null) return [];
  const stop: unknown[] = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw : [raw];
  if (!stop.every((s): s is string => typeof s === 'string'))
    throw unsupportedField('stop', 'must be a string or an array of strings.');
  return stop;
}

/**
 * The texts of an OpenAI message's text content: a string, or text parts (and `refusal` parts of
 * an assistant's past answer). An empty string is no text; an empty text part is kept, for the
 * backend that takes it (Anthropic) — backends that refuse empty text drop it (openaiTextParts).
 */
export function openaiTexts(content: unknown, at: string, assistant = false): string[] {
  if (typeof content === 'string') return content.length > 0 ? [content] : [];
  if (!Array.isArray(content)) throw unsupportedField(at, 'must be a string or an array of parts.');
  return content.map((p: unknown, j) => {
    let text: string | undefined;
    if (isObject(p) && p.type === 'text') text = str(p.text);
    else if (assistant && isObject(p) && p.type === 'refusal') text = str(p.refusal);
    if (text === undefined)
      throw unsupportedField(`${at}[${j}]`, 'only text parts are taken here.');
    return text;
  });
}

/**
 * An OpenAI message's text content as `{ text }` parts, the shape Converse and Gemini share;
 * empty texts are dropped, since both refuse an empty text block.
 */
export function openaiTextParts(content: unknown, at: string, assistant = false): Json[] {
  return openaiTexts(content, at, assistant)
    .filter((text) => text.length > 0)
    .map((text) => ({ text }));
}

export interface ToolCall {
  id: string;
  name: string;
  input: Json;
}

/**
 * One entry of an OpenAI assistant message's `tool_calls`: its id, function name and arguments
 * parsed as a JSON object (an empty string is `{}`); anything else is refused, naming the field.
 */
export function openaiToolCall(c: unknown, at: string): ToolCall {
  if (!isObject(c) || c.type !== 'function' || !isObject(c.function))
    throw unsupportedField(at, 'only function tool calls are taken.');
  const id = str(c.id);
  const name = str(c.function.name);
  if (!id || !name) throw unsupportedField(at, 'needs an id and a function name.');
  const args = c.function.arguments;
  let input: unknown = {};
  if (typeof args === 'string' && args.trim().length > 0) {
    try {
      input = JSON.parse(args);
    } catch {
      throw unsupportedField(`${at}.function.arguments`, 'must be a JSON object.');
    }
  }
  if (!isObject(input))
    throw unsupportedField(`${at}.function.arguments`, 'must be a JSON object.');
  return { id, name, input };
}

export type Role = 'user' | 'assistant';

/** What one backend makes of the pieces of an OpenAI conversation. */
export interface OpenaiConversation {
  /** The backend's name in a refusal: "<backend> backends take …". */
  readonly backend: string;
  /** System, developer and assistant text (openaiTexts) → the backend's parts. */
  texts(texts: string[]): Json[];
  /** A user message's content → the backend's parts. */
  user(content: unknown, at: string): Json[];
  /** An assistant's tool call → the backend's part. */
  toolCall(call: ToolCall): Json;
  /**
   * A `tool` message → the backend's part: `id` is its tool_call_id, `name` the function of the
   * earlier assistant call with that id (undefined when none had it), `at` the message.
   */
  toolResult(id: string, name: string | undefined, content: unknown, at: string): Json;
  /** Adds a turn to `messages`: the backend's APIs alternate turns, so a same-role one merges. */
  push(messages: Json[], role: Role, parts: Json[]): void;
}

/** An OpenAI `messages` array → the backend's system parts and turns, refusing what it cannot. */
export function openaiConversation(
  raw: unknown,
  to: OpenaiConversation,
): { system: Json[]; messages: Json[] } {
  if (!Array.isArray(raw) || raw.length === 0)
    throw unsupportedField('messages', 'must be a non-empty array.');
  const system: Json[] = [];
  const messages: Json[] = [];
  /** tool_call_id → function name: Gemini names the function a result answers. */
  const names = new Map<string, string>();
  raw.forEach((m: unknown, i) => {
    const at = `messages[${i}]`;
    if (!isObject(m)) throw unsupportedField(at, 'must be an object.');
    switch (m.role) {
      case 'system':
      case 'developer':
        system.push(...to.texts(openaiTexts(m.content, `${at}.content`)));
        return;
      case 'user':
        to.push(messages, 'user', to.user(m.content, `${at}.content`));
        return;
      case 'assistant': {
        const parts =
          m.content === undefined || m.content === null
            ? []
            : to.texts(openaiTexts(m.content, `${at}.content`, true));
        if (Array.isArray(m.tool_calls)) {
          m.tool_calls.forEach((c: unknown, j) => {
            const call = openaiToolCall(c, `${at}.tool_calls[${j}]`);
            names.set(call.id, call.name);
            parts.push(to.toolCall(call));
          });
        } else if (m.tool_calls !== undefined && m.tool_calls !== null) {
          throw unsupportedField(`${at}.tool_calls`, 'must be an array.');
        }
        // Refused, never dropped: a legacy function call left out would change the conversation.
        if (m.function_call !== undefined && m.function_call !== null)
          throw unsupportedField(`${at}.function_call`, 'use tool_calls.');
        if (m.audio !== undefined && m.audio !== null)
          throw unsupportedField(`${at}.audio`, `${to.backend} backends take no audio.`);
        if (parts.length > 0) to.push(messages, 'assistant', parts);
        return;
      }
      case 'tool': {
        const id = str(m.tool_call_id);
        if (!id) throw unsupportedField(`${at}.tool_call_id`, 'is required.');
        to.push(messages, 'user', [to.toolResult(id, names.get(id), m.content, at)]);
        return;
      }
      default:
        throw unsupportedField(
          `${at}.role`,
          `${to.backend} backends take system, developer, user, assistant and tool messages.`,
        );
    }
  });
  if (messages.length === 0)
    throw unsupportedField('messages', 'needs at least one user or assistant message.');
  return { system, messages };
}

/** A function tool as the backends declare one; `schema` is the caller's JSON Schema, if any. */
export interface ToolSpec {
  name: string;
  description: string | undefined;
  schema: Json | undefined;
}

/**
 * OpenAI `tools` (function tools only). `reserved` is a name the gateway uses for a tool of its
 * own (the Anthropic translator's response_format tool): a caller's tool may not take it.
 */
export function openaiTools(raw: unknown, backend: string, reserved?: string): ToolSpec[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw unsupportedField('tools', 'must be an array.');
  return raw.map((t: unknown, i) => {
    const at = `tools[${i}]`;
    if (!isObject(t) || t.type !== 'function' || !isObject(t.function))
      throw unsupportedField(at, `${backend} backends take function tools only.`);
    const f = t.function;
    const name = str(f.name);
    if (!name) throw unsupportedField(`${at}.function.name`, 'is required.');
    if (name === reserved)
      throw unsupportedField(`${at}.function.name`, `${reserved} is reserved by the gateway.`);
    // `strict` has no equivalent: the schema is sent, the model follows it without a guarantee.
    return {
      name,
      description: str(f.description),
      schema: isObject(f.parameters) ? f.parameters : undefined,
    };
  });
}

/** A tool choice in words both caller APIs share (Anthropic's own shape). */
export type ToolChoice =
  { type: 'auto' } | { type: 'none' } | { type: 'any' } | { type: 'tool'; name: string };

/** OpenAI `tool_choice`: auto, none, required (any) or a named function. */
export function openaiToolChoice(raw: unknown): ToolChoice | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (raw === 'auto') return { type: 'auto' };
  if (raw === 'none') return { type: 'none' };
  if (raw === 'required') return { type: 'any' };
  if (isObject(raw) && raw.type === 'function' && isObject(raw.function)) {
    const name = str(raw.function.name);
    if (name) return { type: 'tool', name };
  }
  throw unsupportedField('tool_choice', 'must be auto, none, required or a function.');
}

// ---- Anthropic Messages callers ----------------------------------------------------------------

/** Anthropic `stop_sequences`: an array of strings, if set. */
export function anthropicStop(raw: unknown): string[] | undefined {
  if (raw !== undefined && !(Array.isArray(raw) && raw.every((s) => typeof s === 'string')))
    throw unsupportedField('stop_sequences', 'must be an array of strings.');
  return raw;
}

/** An Anthropic `system` block's text, and whether it asks for a cache breakpoint after it. */
export interface SystemText {
  text: string;
  cache: boolean;
}

/** Anthropic `system`: a string (an empty one is none) or text blocks. */
export function anthropicSystem(raw: unknown): SystemText[] {
  if (raw === undefined || raw === null) return [];
  if (typeof raw === 'string') return raw.length > 0 ? [{ text: raw, cache: false }] : [];
  if (!Array.isArray(raw)) throw unsupportedField('system', 'must be a string or text blocks.');
  return raw.map((blk: unknown, i) => {
    if (!isObject(blk) || blk.type !== 'text' || typeof blk.text !== 'string')
      throw unsupportedField(`system[${i}]`, 'only text blocks are taken.');
    return { text: blk.text, cache: Boolean(blk.cache_control) };
  });
}

/**
 * Anthropic `messages` → the backend's turns: each message must be a user or assistant turn whose
 * content is a string (an empty one is no part) or an array of blocks, each an object that
 * `block` turns into the backend's parts (at names the block). `push` merges a same-role turn.
 */
export function anthropicTurns(
  raw: unknown,
  block: (blk: Json, at: string) => Json[],
  push: (messages: Json[], role: Role, parts: Json[]) => void,
): Json[] {
  if (!Array.isArray(raw) || raw.length === 0)
    throw unsupportedField('messages', 'must be a non-empty array.');
  const messages: Json[] = [];
  raw.forEach((m: unknown, i) => {
    const at = `messages[${i}]`;
    if (!isObject(m) || (m.role !== 'user' && m.role !== 'assistant'))
      throw unsupportedField(`${at}.role`, 'must be user or assistant.');
    push(messages, m.role, anthropicBlocks(m.content, `${at}.content`, block));
  });
  if (messages.length === 0)
    throw unsupportedField('messages', 'needs at least one non-empty message.');
  return messages;
}

function anthropicBlocks(
  content: unknown,
  at: string,
  block: (blk: Json, at: string) => Json[],
): Json[] {
  if (typeof content === 'string') return content.length > 0 ? [{ text: content }] : [];
  if (!Array.isArray(content))
    throw unsupportedField(at, 'must be a string or an array of blocks.');
  return content.flatMap((blk: unknown, j) => {
    const here = `${at}[${j}]`;
    if (!isObject(blk)) throw unsupportedField(here, 'must be an object.');
    return block(blk, here);
  });
}

/** A `text` block's text; an empty one is no part. */
export function anthropicText(blk: Json, at: string): Json[] {
  const text = str(blk.text);
  if (text === undefined) throw unsupportedField(`${at}.text`, 'is required.');
  return text.length > 0 ? [{ text }] : [];
}

/** A `tool_use` block: its id, name and input (an object; anything else is `{}`). */
export function anthropicToolUse(blk: Json, at: string): ToolCall {
  const id = str(blk.id);
  const name = str(blk.name);
  if (!id || !name) throw unsupportedField(at, 'needs an id and a name.');
  return { id, name, input: isObject(blk.input) ? blk.input : {} };
}

/** An image or document `source` the backend takes only as base64 data. */
export function base64Source(
  src: unknown,
  at: string,
  backend: string,
): { mediaType: string; data: string } {
  if (isObject(src) && src.type === 'base64' && typeof src.data === 'string')
    return { mediaType: str(src.media_type) ?? '', data: src.data };
  throw unsupportedField(`${at}.source`, `${backend} backends take base64 data only, not URLs.`);
}

/**
 * Anthropic `tools`: custom tools only (server tools — web search, code execution… — carry a
 * versioned `type`, custom tools none). `refusal` is the message for a server tool.
 */
export function anthropicTools(raw: unknown, refusal: string): ToolSpec[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw unsupportedField('tools', 'must be an array.');
  return raw.map((t: unknown, i) => {
    const at = `tools[${i}]`;
    if (!isObject(t) || (t.type !== undefined && t.type !== 'custom'))
      throw unsupportedField(at, refusal);
    const name = str(t.name);
    if (!name) throw unsupportedField(`${at}.name`, 'is required.');
    return {
      name,
      description: str(t.description),
      schema: isObject(t.input_schema) ? t.input_schema : undefined,
    };
  });
}

/**
 * Anthropic `tool_choice`. A backend that cannot be told to call one tool at a time names itself
 * in `serialRefusedBy`, and `disable_parallel_tool_use` is refused before anything else is read.
 */
export function anthropicToolChoice(
  raw: unknown,
  serialRefusedBy?: string,
): ToolChoice | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isObject(raw)) throw unsupportedField('tool_choice', 'must be an object.');
  if (serialRefusedBy !== undefined && raw.disable_parallel_tool_use === true)
    throw unsupportedField(
      'tool_choice.disable_parallel_tool_use',
      `${serialRefusedBy} backends cannot be told to call one tool at a time.`,
    );
  switch (raw.type) {
    case 'auto':
    case 'none':
    case 'any':
      return { type: raw.type };
    case 'tool': {
      const name = str(raw.name);
      if (name) return { type: 'tool', name };
      throw unsupportedField('tool_choice.name', 'is required.');
    }
    default:
      throw unsupportedField('tool_choice.type', 'must be auto, any, tool or none.');
  }
}
