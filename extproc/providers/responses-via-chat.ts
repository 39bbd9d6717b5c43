/**
 * OpenAI Responses API callers to backends that keep no state and speak another API (Anthropic,
 * Bedrock Converse, Gemini) or only Chat Completions (self-hosted OpenAI-compatible servers).
 *
 * Composed, not written per pair: a Responses request is rewritten into the Chat Completions
 * shape (messages, tools, response_format…), handed to the (OpenAI Chat × backend) translator that
 * already exists for the backend, and its answer — which that translator already turns into a
 * chat completion or chunk stream — is rewritten into a Response object or Responses events.
 * Chat Completions is the shape every backend translator takes and gives back, and for what a
 * stateless backend can do (text, images, files, function tools, structured output) the two OpenAI
 * APIs say the same things in other words; a pair translator per backend would repeat this file
 * three times over and drift. Each (Responses × backend) pair is still one registered Translator
 * (providers/index.ts), so the refusal and capability checks work per pair as for every other.
 *
 * State: the router phase (sessions/responses.ts) has already rebuilt the conversation from
 * `previous_response_id` into `input` and chosen the response id (`req.responseId`); here
 * `store`, `previous_response_id` and `conversation` are only echoed in the answer. A request that
 * still needs state the gateway did not resolve (no response id) is refused, never sent half.
 *
 * What a backend cannot carry is refused with a 400 naming the field (built-in tools, reasoning
 * items, `background`, `prompt` templates…): never silently dropped.
 */
import type { ResolvedBackend } from '../config/runtime.js';
import { SseParser, type SseEvent } from '../usage/sse.js';
import {
  backendJson,
  eventJson,
  isObject,
  namedEvent,
  num,
  str,
  unsupportedField,
  type Json,
} from './common.js';
import type {
  ExchangeRequest,
  ResponseContext,
  ResponseStart,
  ResponseTranslator,
  Translator,
} from './translator.js';

/** Fields read here; any other top-level field is refused, never dropped. */
const HANDLED = new Set([
  'model',
  'input',
  'instructions',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'max_output_tokens',
  'temperature',
  'top_p',
  'stream',
  'stream_options',
  'text',
  'reasoning',
  'user',
  'safety_identifier',
  // Bookkeeping the gateway handles or that changes nothing in the answer.
  'store',
  'previous_response_id',
  'conversation',
  'metadata',
  'service_tier',
  'prompt_cache_key',
  'prompt_cache_retention',
]);
/** Refused only when set to something other than their no-op value. */
const NEUTRAL: Readonly<Record<string, (v: unknown) => boolean>> = {
  background: (v) => v === false || v === null,
  truncation: (v) => v === 'disabled' || v === null,
  include: (v) => v === null || (Array.isArray(v) && v.length === 0),
  top_logprobs: (v) => v === null || v === 0,
  max_tool_calls: (v) => v === null,
  prompt: (v) => v === null,
};

/**
 * The request as the router phase leaves it for a Responses translation: `responseId` is set when
 * the gateway keeps the conversation's state (sessions/responses.ts) and names the answer.
 */
type ResponsesRequest = ExchangeRequest & { readonly responseId?: string | undefined };

/**
 * Providers that keep Responses state themselves pass through; every other backend is served over
 * Chat Completions by this file, with the state kept by the gateway. Declared with the providers
 * (the operator pins requests for a provider-kept response to its backend by the same rule).
 */
export { keepsResponsesState } from './provider.js';

/** Response id prefix; item ids are derived from the response's own id. */
export const RESPONSE_ID_PREFIX = 'resp_';

/** The Chat Completions request that says what a Responses request says, for a stateless backend. */
export function responsesToChat(body: Readonly<Json>): Json {
  for (const [k, v] of Object.entries(body)) {
    if (HANDLED.has(k) || v === undefined) continue;
    if (NEUTRAL[k]?.(v)) continue;
    throw unsupportedField(k, 'the gateway cannot carry this field to this backend.');
  }
  const out: Json = { model: body.model };
  const messages: Json[] = [];
  const instructions = body.instructions;
  if (typeof instructions === 'string') {
    if (instructions.length > 0) messages.push({ role: 'system', content: instructions });
  } else if (instructions !== undefined && instructions !== null) {
    throw unsupportedField('instructions', 'must be a string.');
  }
  messages.push(...inputMessages(body.input));
  if (!messages.some((m) => m.role !== 'system'))
    throw unsupportedField('input', 'needs at least one message.');
  out.messages = messages;

  const max = body.max_output_tokens;
  if (max !== undefined && max !== null) {
    if (num(max) === undefined || (max as number) < 1)
      throw unsupportedField('max_output_tokens', 'must be a positive integer.');
    out.max_completion_tokens = max;
  }
  for (const k of ['temperature', 'top_p', 'parallel_tool_calls'] as const)
    if (body[k] !== undefined && body[k] !== null) out[k] = body[k];
  if (body.stream === true) out.stream = true;
  const user = str(body.safety_identifier) ?? str(body.user);
  if (user) out.user = user;
  const tools = chatTools(body.tools);
  if (tools.length > 0) out.tools = tools;
  const choice = chatToolChoice(body.tool_choice);
  if (choice !== undefined) out.tool_choice = choice;
  const format = chatResponseFormat(body.text);
  if (format) out.response_format = format;
  const reasoning = body.reasoning;
  if (isObject(reasoning)) {
    if (reasoning.summary !== undefined && reasoning.summary !== null)
      throw unsupportedField('reasoning.summary', 'this backend returns no reasoning summaries.');
    if (typeof reasoning.effort === 'string') out.reasoning_effort = reasoning.effort;
  } else if (reasoning !== undefined && reasoning !== null) {
    throw unsupportedField('reasoning', 'must be an object.');
  }
  return out;
}

function inputMessages(input: unknown): Json[] {
  if (typeof input === 'string') return [{ role: 'user', content: input }];
  if (!Array.isArray(input) || input.length === 0)
    throw unsupportedField('input', 'must be a string or a non-empty array of items.');
  const out: Json[] = [];
  input.forEach((item: unknown, i) => {
    const at = `input[${i}]`;
    if (!isObject(item)) throw unsupportedField(at, 'must be an object.');
    const type = item.type ?? 'message';
    switch (type) {
      case 'message': {
        const role = item.role;
        if (role === 'assistant') {
          const text = assistantText(item.content, `${at}.content`);
          // Text after tool calls of the same turn is a new message; before them, one message.
          out.push({ role: 'assistant', content: text });
          return;
        }
        if (role !== 'user' && role !== 'system' && role !== 'developer')
          throw unsupportedField(`${at}.role`, 'must be user, assistant, system or developer.');
        out.push({ role, content: userContent(item.content, `${at}.content`) });
        return;
      }
      case 'function_call': {
        const callId = str(item.call_id);
        const name = str(item.name);
        if (!callId) throw unsupportedField(`${at}.call_id`, 'is required.');
        if (!name) throw unsupportedField(`${at}.name`, 'is required.');
        const call = {
          id: callId,
          type: 'function',
          function: { name, arguments: str(item.arguments) ?? '{}' },
        };
        const last = out.at(-1);
        // Consecutive calls of one turn are one assistant message with several tool_calls.
        if (last?.role === 'assistant' && Array.isArray(last.tool_calls))
          (last.tool_calls as Json[]).push(call);
        else if (last?.role === 'assistant' && last.tool_calls === undefined)
          last.tool_calls = [call];
        else out.push({ role: 'assistant', content: null, tool_calls: [call] });
        return;
      }
      case 'function_call_output': {
        const callId = str(item.call_id);
        if (!callId) throw unsupportedField(`${at}.call_id`, 'is required.');
        out.push({ role: 'tool', tool_call_id: callId, content: toolOutput(item.output, at) });
        return;
      }
      default:
        throw unsupportedField(
          `${at}.type`,
          'this backend takes message, function_call and function_call_output items.',
        );
    }
  });
  return out;
}

function assistantText(content: unknown, at: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw unsupportedField(at, 'must be a string or an array of parts.');
  let text = '';
  content.forEach((p: unknown, j) => {
    if (
      isObject(p) &&
      (p.type === 'output_text' || p.type === 'input_text') &&
      str(p.text) !== undefined
    )
      text += p.text as string;
    else if (isObject(p) && p.type === 'refusal' && str(p.refusal) !== undefined)
      text += p.refusal as string;
    else throw unsupportedField(`${at}[${j}]`, 'only text parts are taken in assistant messages.');
  });
  return text;
}

function userContent(content: unknown, at: string): string | Json[] {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw unsupportedField(at, 'must be a string or an array of parts.');
  return content.map((p: unknown, j) => {
    const here = `${at}[${j}]`;
    if (!isObject(p)) throw unsupportedField(here, 'must be an object.');
    switch (p.type) {
      case 'input_text':
      case 'output_text':
        if (typeof p.text !== 'string') throw unsupportedField(`${here}.text`, 'is required.');
        return { type: 'text', text: p.text };
      case 'input_image': {
        const url = str(p.image_url);
        if (!url)
          throw unsupportedField(
            `${here}.image_url`,
            'this backend takes images by URL or data URL (no file_id).',
          );
        const image: Json = { url };
        if (typeof p.detail === 'string' && p.detail !== 'auto') image.detail = p.detail;
        return { type: 'image_url', image_url: image };
      }
      case 'input_file': {
        const data = str(p.file_data);
        if (!data)
          throw unsupportedField(
            `${here}.file_data`,
            'this backend takes files as inline data (no file_id or file_url).',
          );
        const file: Json = { file_data: data };
        if (typeof p.filename === 'string') file.filename = p.filename;
        return { type: 'file', file };
      }
      default:
        throw unsupportedField(`${here}.type`, 'this backend takes text, image and file parts.');
    }
  });
}

function toolOutput(output: unknown, at: string): string | Json[] {
  if (typeof output === 'string') return output;
  if (!Array.isArray(output)) throw unsupportedField(`${at}.output`, 'must be a string or parts.');
  return output.map((p: unknown, j) => {
    if (isObject(p) && p.type === 'input_text' && typeof p.text === 'string')
      return { type: 'text', text: p.text };
    throw unsupportedField(`${at}.output[${j}]`, 'only text parts are taken in tool output.');
  });
}

function chatTools(raw: unknown): Json[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw unsupportedField('tools', 'must be an array.');
  return raw.map((t: unknown, i) => {
    const at = `tools[${i}]`;
    if (!isObject(t) || t.type !== 'function')
      throw unsupportedField(`${at}.type`, 'this backend takes function tools only.');
    const name = str(t.name);
    if (!name) throw unsupportedField(`${at}.name`, 'is required.');
    const fn: Json = { name };
    if (typeof t.description === 'string') fn.description = t.description;
    if (isObject(t.parameters)) fn.parameters = t.parameters;
    if (typeof t.strict === 'boolean') fn.strict = t.strict;
    return { type: 'function', function: fn };
  });
}

function chatToolChoice(raw: unknown): unknown {
  if (raw === undefined || raw === null) return undefined;
  if (raw === 'auto' || raw === 'none' || raw === 'required') return raw;
  if (isObject(raw) && raw.type === 'function' && str(raw.name))
    return { type: 'function', function: { name: raw.name } };
  throw unsupportedField('tool_choice', 'must be auto, none, required or a function.');
}

function chatResponseFormat(text: unknown): Json | undefined {
  if (text === undefined || text === null) return undefined;
  if (!isObject(text)) throw unsupportedField('text', 'must be an object.');
  if (text.verbosity !== undefined && text.verbosity !== null)
    throw unsupportedField('text.verbosity', 'this backend has no verbosity setting.');
  const f = text.format;
  if (f === undefined || f === null) return undefined;
  if (!isObject(f)) throw unsupportedField('text.format', 'must be an object.');
  switch (f.type) {
    case 'text':
      return undefined;
    case 'json_object':
      return { type: 'json_object' };
    case 'json_schema': {
      const name = str(f.name);
      if (!name || !isObject(f.schema))
        throw unsupportedField('text.format', 'json_schema needs a name and a schema.');
      const js: Json = { name, schema: f.schema };
      if (typeof f.description === 'string') js.description = f.description;
      if (typeof f.strict === 'boolean') js.strict = f.strict;
      return { type: 'json_schema', json_schema: js };
    }
    default:
      throw unsupportedField('text.format.type', 'must be text, json_object or json_schema.');
  }
}

// ---- the composed translator ---------------------------------------------------------------

/** The chat request handed to the backend's chat translator. */
function chatExchange(req: ResponsesRequest): ExchangeRequest {
  if (!req.responseId && (req.body.previous_response_id ?? null) !== null)
    throw unsupportedField(
      'previous_response_id',
      'this route keeps no conversation state, so a previous response cannot be continued.',
    );
  if (!req.responseId && (req.body.conversation ?? null) !== null)
    throw unsupportedField('conversation', 'this route keeps no conversation state.');
  return {
    api: 'openai',
    operation: 'chat',
    model: req.model,
    body: responsesToChat(req.body),
    stream: req.stream,
    // The final usage of a Responses stream comes from the chat stream's usage chunk.
    forcedUsage: req.stream,
    ...(req.outputTokenCap !== undefined && { outputTokenCap: req.outputTokenCap }),
  };
}

/**
 * The (Responses × backend) translator made of the (Chat × backend) one. The chat request is built
 * again for the response side (it is pure and cheap), so nothing is kept between the two calls.
 */
export function responsesVia(chat: Translator): Translator {
  return {
    from: 'openai',
    to: chat.to,
    operations: ['responses'],
    request(req, backend) {
      const creq = chatExchange(req);
      const up = chat.request(creq, backend);
      // A chat translator that would send the caller's bytes as they are must send the chat body.
      return up.body === undefined
        ? { ...up, body: Buffer.from(JSON.stringify(creq.body), 'utf8') }
        : up;
    },
    response(req, backend, ctx) {
      const creq = chatExchange(req);
      return new ChatToResponses(req, chat.response(creq, backend, ctx), ctx, backend);
    },
  };
}

// ---- response: chat completion → Response ---------------------------------------------------

type Usage = Json;

function responsesUsage(u: unknown): Usage | undefined {
  if (!isObject(u)) return undefined;
  const input = num(u.prompt_tokens) ?? 0;
  const output = num(u.completion_tokens) ?? 0;
  const pd = isObject(u.prompt_tokens_details) ? u.prompt_tokens_details : {};
  const cd = isObject(u.completion_tokens_details) ? u.completion_tokens_details : {};
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: num(pd.cached_tokens) ?? 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: num(cd.reasoning_tokens) ?? 0 },
    total_tokens: num(u.total_tokens) ?? input + output,
  };
}

function status(finish: string | null): { status: string; incomplete: Json | null } {
  if (finish === 'length')
    return { status: 'incomplete', incomplete: { reason: 'max_output_tokens' } };
  if (finish === 'content_filter')
    return { status: 'incomplete', incomplete: { reason: 'content_filter' } };
  return { status: 'completed', incomplete: null };
}

function textPart(text: string): Json {
  return { type: 'output_text', text, annotations: [], logprobs: [] };
}

class ChatToResponses implements ResponseTranslator {
  private readonly id: string;
  private readonly base: string;
  private parser: SseParser | undefined;
  private seq = 0;
  private model: string;
  private started = false;
  private done = false;
  /** Output items so far, in order; the open one (if any) is the last. */
  private readonly output: Json[] = [];
  private openText: { item: Json; index: number; text: string } | undefined;
  /** Chat tool call index → its output item. */
  private readonly calls = new Map<number, { item: Json; index: number }>();
  private openCall: { item: Json; index: number } | undefined;
  private finish: string | null = null;
  private usage: Usage | undefined;

  constructor(
    private readonly req: ResponsesRequest,
    /** Backend → chat; undefined when the backend speaks Chat Completions already. */
    private readonly inner: ResponseTranslator | undefined,
    private readonly ctx: ResponseContext,
    backend: ResolvedBackend,
  ) {
    this.id = req.responseId ?? `${RESPONSE_ID_PREFIX}${ctx.created.toString(16)}`;
    this.base = this.id.startsWith(RESPONSE_ID_PREFIX)
      ? this.id.slice(RESPONSE_ID_PREFIX.length)
      : this.id;
    this.model = backend.modelOverride ?? req.model;
  }

  headers(status: number, headers: ReadonlyMap<string, string>): ResponseStart {
    if (this.inner) {
      const start = this.inner.headers(status, headers);
      if (start.body === 'stream')
        this.parser = new SseParser({ maxEventBytes: this.ctx.maxEventBytes });
      return start;
    }
    const ok = status >= 200 && status < 300;
    const sse = (headers.get('content-type') ?? '').toLowerCase().startsWith('text/event-stream');
    if (ok && sse) this.parser = new SseParser({ maxEventBytes: this.ctx.maxEventBytes });
    return {
      body: ok && sse ? 'stream' : 'whole',
      setHeaders: ok ? [] : [['content-type', 'application/json']],
      removeHeaders: [],
    };
  }

  json(body: Buffer): Buffer {
    const chat = backendJson(this.inner ? this.inner.json(body) : body);
    if (typeof chat.model === 'string' && chat.model) this.model = chat.model;
    const choice = Array.isArray(chat.choices) && isObject(chat.choices[0]) ? chat.choices[0] : {};
    const message = isObject(choice.message) ? choice.message : {};
    const output: Json[] = [];
    const content = str(message.content);
    const refusal = str(message.refusal);
    if (refusal) {
      output.push(this.messageItem(0, [{ type: 'refusal', refusal }], 'completed'));
    } else if (content) {
      output.push(this.messageItem(0, [textPart(content)], 'completed'));
    }
    if (Array.isArray(message.tool_calls)) {
      for (const c of message.tool_calls) {
        if (!isObject(c) || !isObject(c.function)) continue;
        output.push(
          this.callItem(
            output.length,
            str(c.id) ?? '',
            str(c.function.name) ?? '',
            'completed',
            str(c.function.arguments) ?? '',
          ),
        );
      }
    }
    this.finish = str(choice.finish_reason) ?? null;
    this.usage = responsesUsage(chat.usage);
    const r = this.response(this.finalStatus(), output);
    return Buffer.from(JSON.stringify(r), 'utf8');
  }

  error(status: number, body: Buffer): Buffer {
    // Both sides speak OpenAI's error object.
    return this.inner ? this.inner.error(status, body) : openaiErrorBody(status, body);
  }

  stream(chunk: Buffer, end: boolean): Buffer {
    const bytes = this.inner ? this.inner.stream(chunk, end) : chunk;
    const parser = this.parser!;
    let out = '';
    for (const e of parser.push(bytes)) out += this.onChunk(e);
    if (end) {
      const rest = parser.end();
      if (rest.length > 0)
        for (const e of new SseParser({ maxEventBytes: this.ctx.maxEventBytes }).push(
          Buffer.concat([rest, Buffer.from('\n\n')]),
        ))
          out += this.onChunk(e);
      // A stream cut before its end still ends as a Responses stream does.
      if (!this.done) out += this.close();
    }
    return Buffer.from(out, 'utf8');
  }

  // ---- building blocks ----

  private itemId(prefix: string, index: number): string {
    return `${prefix}_${this.base}${index.toString(16).padStart(2, '0')}`;
  }

  private messageItem(index: number, content: Json[], status: string): Json {
    return { id: this.itemId('msg', index), type: 'message', role: 'assistant', status, content };
  }

  private callItem(
    index: number,
    callId: string,
    name: string,
    status: string,
    args: string,
  ): Json {
    return {
      id: this.itemId('fc', index),
      type: 'function_call',
      status,
      arguments: args,
      call_id: callId,
      name,
    };
  }

  private finalStatus(): string {
    return status(this.finish).status;
  }

  /** The Response object, echoing the request's parameters as OpenAI does. */
  private response(st: string, output: Json[]): Json {
    const b = this.req.body;
    const echo = (k: string, dflt: unknown = null): unknown => b[k] ?? dflt;
    const r: Json = {
      id: this.id,
      object: 'response',
      created_at: this.ctx.created,
      status: st,
      background: false,
      error: null,
      incomplete_details: st === 'incomplete' ? status(this.finish).incomplete : null,
      instructions: echo('instructions'),
      max_output_tokens: echo('max_output_tokens'),
      model: this.model,
      output,
      parallel_tool_calls: echo('parallel_tool_calls', true),
      previous_response_id: echo('previous_response_id'),
      reasoning: {
        effort: isObject(b.reasoning) ? (b.reasoning.effort ?? null) : null,
        summary: null,
      },
      store: b.store !== false,
      temperature: echo('temperature'),
      text: echo('text', { format: { type: 'text' } }),
      tool_choice: echo('tool_choice', 'auto'),
      tools: echo('tools', []),
      top_p: echo('top_p'),
      truncation: 'disabled',
      usage: st === 'in_progress' ? null : (this.usage ?? null),
      user: echo('user'),
      metadata: echo('metadata', {}),
    };
    const conv = b.conversation;
    if (conv !== undefined && conv !== null)
      r.conversation = { id: typeof conv === 'string' ? conv : isObject(conv) ? conv.id : null };
    return r;
  }

  private event(type: string, fields: Json): string {
    return namedEvent({ type, ...fields, sequence_number: this.seq++ });
  }

  private start(): string {
    if (this.started) return '';
    this.started = true;
    const r = this.response('in_progress', []);
    return (
      this.event('response.created', { response: r }) +
      this.event('response.in_progress', { response: r })
    );
  }

  private onChunk(e: SseEvent): string {
    if (this.done || e.data === '') return '';
    if (e.data.trim() === '[DONE]') return this.close();
    const d = eventJson(e.data);
    if (!d) return '';
    let out = this.start();
    if (isObject(d.error)) {
      this.done = true;
      const err = d.error;
      const failed = this.response('failed', this.closedOutput());
      failed.error = {
        code: 'server_error',
        message: str(err.message) ?? 'The backend failed mid-stream.',
      };
      return out + this.event('response.failed', { response: failed });
    }
    if (typeof d.model === 'string' && d.model) this.model = d.model;
    if (isObject(d.usage)) this.usage = responsesUsage(d.usage);
    const choice = Array.isArray(d.choices) && isObject(d.choices[0]) ? d.choices[0] : undefined;
    if (!choice) return out;
    const delta = isObject(choice.delta) ? choice.delta : {};
    const text = str(delta.content);
    if (text) out += this.text(text);
    if (Array.isArray(delta.tool_calls))
      for (const c of delta.tool_calls) if (isObject(c)) out += this.toolDelta(c);
    if (typeof choice.finish_reason === 'string') this.finish = choice.finish_reason;
    return out;
  }

  private text(delta: string): string {
    let out = '';
    if (!this.openText) {
      out += this.closeCall();
      const index = this.output.length;
      const item = this.messageItem(index, [], 'in_progress');
      this.output.push(item);
      this.openText = { item, index, text: '' };
      out += this.event('response.output_item.added', { output_index: index, item });
      out += this.event('response.content_part.added', {
        item_id: item.id,
        output_index: index,
        content_index: 0,
        part: textPart(''),
      });
    }
    const t = this.openText;
    t.text += delta;
    return (
      out +
      this.event('response.output_text.delta', {
        item_id: t.item.id,
        output_index: t.index,
        content_index: 0,
        delta,
        logprobs: [],
      })
    );
  }

  private closeText(): string {
    const t = this.openText;
    if (!t) return '';
    this.openText = undefined;
    const part = textPart(t.text);
    const item: Json = { ...t.item, status: 'completed', content: [part] };
    this.output[t.index] = item;
    const at = { item_id: item.id, output_index: t.index, content_index: 0 };
    return (
      this.event('response.output_text.done', { ...at, text: t.text, logprobs: [] }) +
      this.event('response.content_part.done', { ...at, part }) +
      this.event('response.output_item.done', { output_index: t.index, item })
    );
  }

  private toolDelta(c: Json): string {
    const n = num(c.index) ?? 0;
    const fn = isObject(c.function) ? c.function : {};
    let out = '';
    let call = this.calls.get(n);
    if (!call) {
      out += this.closeText() + this.closeCall();
      const index = this.output.length;
      const item = this.callItem(index, str(c.id) ?? '', str(fn.name) ?? '', 'in_progress', '');
      this.output.push(item);
      call = { item, index };
      this.calls.set(n, call);
      this.openCall = call;
      out += this.event('response.output_item.added', { output_index: index, item: { ...item } });
    }
    const part = str(fn.arguments);
    if (part) {
      call.item.arguments = (call.item.arguments as string) + part;
      out += this.event('response.function_call_arguments.delta', {
        item_id: call.item.id,
        output_index: call.index,
        delta: part,
      });
    }
    return out;
  }

  private closeCall(): string {
    const c = this.openCall;
    if (!c) return '';
    this.openCall = undefined;
    c.item.status = 'completed';
    return (
      this.event('response.function_call_arguments.done', {
        item_id: c.item.id,
        output_index: c.index,
        name: c.item.name,
        arguments: c.item.arguments,
      }) + this.event('response.output_item.done', { output_index: c.index, item: { ...c.item } })
    );
  }

  /** The output as it stands, open items marked incomplete (a failed stream). */
  private closedOutput(): Json[] {
    return this.output.map((item, i) => {
      if (this.openText?.index === i)
        return { ...item, status: 'incomplete', content: [textPart(this.openText.text)] };
      if (this.openCall?.index === i) return { ...item, status: 'incomplete' };
      return item;
    });
  }

  private close(): string {
    this.done = true;
    let out = this.start() + this.closeText() + this.closeCall();
    const st = this.finalStatus();
    const r = this.response(st, this.output);
    out += this.event(st === 'incomplete' ? 'response.incomplete' : 'response.completed', {
      response: r,
    });
    return out;
  }
}

/** An error body of an OpenAI-compatible server, kept when it is OpenAI's shape, else wrapped. */
function openaiErrorBody(status: number, body: Buffer): Buffer {
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    if (isObject(v) && isObject(v.error) && typeof v.error.message === 'string') return body;
  } catch {
    // Not JSON (a proxy's page): the status says it.
  }
  return Buffer.from(
    JSON.stringify({
      error: {
        message: `The backend answered with status ${status}.`,
        type: status >= 500 ? 'server_error' : 'invalid_request_error',
        param: null,
        code: null,
      },
    }),
    'utf8',
  );
}
