/**
 * Anthropic Messages callers to OpenAI Chat Completions backends (OpenAI, Azure OpenAI, and any
 * OpenAI-compatible server: vLLM, Ollama, TGI), so an app or agent written for Claude can use them.
 *
 * Request: `system` becomes a system message; text, image (base64 or URL) and base64 PDF blocks
 * become content parts; `tool_use` blocks become `tool_calls`, `tool_result` blocks `tool` messages
 * (an `is_error` result is marked in its text, OpenAI having no flag for it); tools, tool_choice
 * and disable_parallel_tool_use map to OpenAI's; `stop_sequences` → `stop`; `max_tokens` → the
 * backend's own output field; `thinking` → `reasoning_effort` by budget; `metadata.user_id` →
 * `user`; a stream always asks for usage. Past thinking blocks are not sent back (OpenAI takes no
 * reasoning input); cache_control is a hint OpenAI has no field for. Anything else is refused with a
 * 400 naming it.
 *
 * Response: content, tool calls, reasoning (`reasoning_content` or `reasoning`, as vLLM, DeepSeek
 * and Ollama return it) become text, tool_use and thinking blocks; finish reasons and usage map;
 * errors become Anthropic error objects; the stream is rebuilt event by event — message_start,
 * content_block_start/delta/stop with indices in order, message_delta with stop_reason and usage,
 * message_stop — as OpenAI chunks arrive.
 */
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import type { SseEvent, SseParser } from '../usage/sse.js';
import {
  backendJson,
  eventJson,
  isObject,
  messageEnd,
  messageStart,
  namedEvent,
  num,
  str,
  unsupportedField,
  type Json,
  sseEvents,
  sseResponseStart,
} from './common.js';
import { anthropicErrorObject } from './error-body.js';
import { withOutputTokenCap } from './output-cap.js';
import { azurePath, versionedPath } from './paths.js';
import {
  anthropicSystem,
  anthropicToolChoice,
  anthropicTools,
  type ToolSpec,
} from './request-walk.js';
import type {
  ExchangeRequest,
  ResponseContext,
  ResponseStart,
  ResponseTranslator,
  Translator,
} from './translator.js';

/** Thinking budgets up to these become low, then medium; above, high. */
const EFFORT_BY_BUDGET: readonly [number, string][] = [
  [2048, 'low'],
  [8192, 'medium'],
];

const HANDLED = new Set([
  'model',
  'messages',
  'system',
  'max_tokens',
  'stop_sequences',
  'stream',
  'temperature',
  'top_p',
  'tools',
  'tool_choice',
  'thinking',
  'metadata',
]);

export const anthropicToOpenai: Translator = {
  from: 'anthropic',
  to: 'openai',
  operations: ['messages'],
  request(req, backend) {
    let body = toOpenaiRequest(req, backend);
    if (req.outputTokenCap !== undefined)
      body = withOutputTokenCap('chat', backend.provider, body, req.outputTokenCap) ?? body;
    const path =
      backend.provider === 'azure-openai' && backend.azure
        ? azurePath(
            backend,
            backend.azure.deployment ?? backend.modelOverride ?? req.model,
            '/chat/completions',
          )
        : versionedPath(backend, '/chat/completions');
    return {
      path,
      headers: [['content-type', 'application/json']],
      body: Buffer.from(JSON.stringify(body), 'utf8'),
    };
  },
  response(_req, _backend, ctx) {
    return new OpenaiToAnthropicResponse(ctx);
  },
};

export function toOpenaiRequest(req: ExchangeRequest, backend: ResolvedBackend): Json {
  const b = req.body;
  for (const [k, v] of Object.entries(b)) {
    if (HANDLED.has(k) || v === undefined || v === null) continue;
    throw unsupportedField(k, 'OpenAI-compatible backends have no equivalent of this field.');
  }
  const out: Json = { model: backend.modelOverride ?? req.model };
  const messages: Json[] = [];
  const system = anthropicSystem(b.system)
    .map(({ text }) => text)
    .join('\n\n');
  if (system.length > 0) messages.push({ role: 'system', content: system });
  if (!Array.isArray(b.messages) || b.messages.length === 0)
    throw unsupportedField('messages', 'must be a non-empty array.');
  b.messages.forEach((m: unknown, i) => messages.push(...convertMessage(m, `messages[${i}]`)));
  out.messages = messages;

  const max = num(b.max_tokens);
  if (max === undefined) throw unsupportedField('max_tokens', 'is required.');
  out[backend.provider === 'openai-compatible' ? 'max_tokens' : 'max_completion_tokens'] = max;
  if (Array.isArray(b.stop_sequences) && b.stop_sequences.length > 0) {
    if (b.stop_sequences.length > 4)
      throw unsupportedField('stop_sequences', 'OpenAI backends take at most 4 stop sequences.');
    out.stop = b.stop_sequences;
  }
  if (b.temperature !== undefined && b.temperature !== null) out.temperature = b.temperature;
  if (b.top_p !== undefined && b.top_p !== null) out.top_p = b.top_p;
  if (b.stream === true) {
    out.stream = true;
    // The usage of a stream comes only when asked for; message_delta needs it.
    out.stream_options = { include_usage: true };
  }
  if (isObject(b.metadata) && typeof b.metadata.user_id === 'string') out.user = b.metadata.user_id;
  const tools = anthropicTools(b.tools, 'OpenAI backends take custom (function) tools only.').map(
    openaiTool,
  );
  if (tools.length > 0) out.tools = tools;
  const choice = anthropicToolChoice(b.tool_choice);
  if (choice) {
    out.tool_choice =
      choice.type === 'tool'
        ? { type: 'function', function: { name: choice.name } }
        : TOOL_CHOICE[choice.type];
    const tc = b.tool_choice;
    if (isObject(tc) && tc.disable_parallel_tool_use === true && tools.length > 0)
      out.parallel_tool_calls = false;
  }
  const thinking = b.thinking;
  if (isObject(thinking) && thinking.type === 'enabled') {
    const budget = num(thinking.budget_tokens) ?? 0;
    out.reasoning_effort = EFFORT_BY_BUDGET.find(([max]) => budget <= max)?.[1] ?? 'high';
  } else if (isObject(thinking) && thinking.type !== 'disabled') {
    throw unsupportedField('thinking.type', 'must be enabled or disabled.');
  }
  return out;
}

function convertMessage(m: unknown, at: string): Json[] {
  if (!isObject(m)) throw unsupportedField(at, 'must be an object.');
  const content = m.content;
  if (m.role === 'user') {
    if (typeof content === 'string') return [{ role: 'user', content }];
    if (!Array.isArray(content))
      throw unsupportedField(`${at}.content`, 'must be a string or blocks.');
    // Tool results answer the previous assistant turn's calls: they come first, as tool messages.
    const tools: Json[] = [];
    const parts: Json[] = [];
    content.forEach((c: unknown, j) => {
      const here = `${at}.content[${j}]`;
      if (!isObject(c)) throw unsupportedField(here, 'must be an object.');
      if (c.type === 'tool_result') tools.push(toolMessage(c, here));
      else parts.push(userPart(c, here));
    });
    const out = [...tools];
    if (parts.length > 0) out.push({ role: 'user', content: parts });
    return out;
  }
  if (m.role === 'assistant') {
    if (typeof content === 'string') return [{ role: 'assistant', content }];
    if (!Array.isArray(content))
      throw unsupportedField(`${at}.content`, 'must be a string or blocks.');
    let text = '';
    const calls: Json[] = [];
    content.forEach((c: unknown, j) => {
      const here = `${at}.content[${j}]`;
      if (!isObject(c)) throw unsupportedField(here, 'must be an object.');
      if (c.type === 'text' && typeof c.text === 'string') text += c.text;
      else if (c.type === 'tool_use') {
        const id = str(c.id);
        const name = str(c.name);
        if (!id || !name) throw unsupportedField(here, 'needs an id and a name.');
        calls.push({
          id,
          type: 'function',
          function: { name, arguments: JSON.stringify(c.input ?? {}) },
        });
      } else if (c.type === 'thinking' || c.type === 'redacted_thinking') {
        // The model's own earlier reasoning: OpenAI takes none back.
      } else throw unsupportedField(`${here}.type`, 'OpenAI backends take text and tool_use here.');
    });
    const msg: Json = { role: 'assistant', content: text.length > 0 ? text : null };
    if (calls.length > 0) msg.tool_calls = calls;
    return msg.content === null && calls.length === 0 ? [] : [msg];
  }
  throw unsupportedField(`${at}.role`, 'must be user or assistant.');
}

function userPart(c: Json, at: string): Json {
  if (c.type === 'text' && typeof c.text === 'string') return { type: 'text', text: c.text };
  if (c.type === 'image' || c.type === 'document') {
    const src = isObject(c.source) ? c.source : {};
    if (
      src.type === 'base64' &&
      typeof src.data === 'string' &&
      typeof src.media_type === 'string'
    ) {
      const url = `data:${src.media_type};base64,${src.data}`;
      if (c.type === 'image') return { type: 'image_url', image_url: { url } };
      if (src.media_type === 'application/pdf')
        return { type: 'file', file: { filename: 'document.pdf', file_data: url } };
    }
    if (c.type === 'image' && src.type === 'url' && typeof src.url === 'string')
      return { type: 'image_url', image_url: { url: src.url } };
    throw unsupportedField(
      `${at}.source`,
      'OpenAI backends take images as base64 or URL and documents as base64 PDF.',
    );
  }
  throw unsupportedField(`${at}.type`, 'OpenAI backends take text, image and document blocks.');
}

function toolMessage(c: Json, at: string): Json {
  const id = str(c.tool_use_id);
  if (!id) throw unsupportedField(`${at}.tool_use_id`, 'is required.');
  let text: string;
  if (typeof c.content === 'string') text = c.content;
  else if (c.content === undefined || c.content === null) text = '';
  else if (Array.isArray(c.content)) {
    text = c.content
      .map((p: unknown, k) => {
        if (isObject(p) && p.type === 'text' && typeof p.text === 'string') return p.text;
        throw unsupportedField(`${at}.content[${k}]`, 'OpenAI tool results take text only.');
      })
      .join('');
  } else throw unsupportedField(`${at}.content`, 'must be a string or text blocks.');
  // OpenAI has no error flag on a tool result: the text says it, so the model still knows.
  if (c.is_error === true) text = `Error: ${text}`;
  return { role: 'tool', tool_call_id: id, content: text };
}

/** A custom tool as an OpenAI function tool; one without a schema takes no parameters. */
function openaiTool({ name, description, schema }: ToolSpec): Json {
  const fn: Json = { name, parameters: schema ?? { type: 'object', properties: {} } };
  if (description !== undefined) fn.description = description;
  return { type: 'function', function: fn };
}

const TOOL_CHOICE: Readonly<Record<'auto' | 'none' | 'any', string>> = {
  auto: 'auto',
  none: 'none',
  any: 'required',
};

// ---- response ------------------------------------------------------------------------------

const STOP: Readonly<Record<string, string>> = {
  stop: 'end_turn',
  length: 'max_tokens',
  tool_calls: 'tool_use',
  function_call: 'tool_use',
  content_filter: 'refusal',
};

function stopReason(finish: unknown): string {
  return (typeof finish === 'string' && STOP[finish]) || 'end_turn';
}

/** OpenAI usage → Anthropic's: cached prompt tokens are reported apart from the rest. */
export function anthropicUsage(u: Json | undefined): Json {
  const prompt = num(u?.prompt_tokens) ?? 0;
  const details = isObject(u?.prompt_tokens_details) ? u.prompt_tokens_details : {};
  const cached = num(details.cached_tokens) ?? 0;
  return {
    input_tokens: Math.max(0, prompt - cached),
    output_tokens: num(u?.completion_tokens) ?? 0,
    cache_read_input_tokens: cached,
    cache_creation_input_tokens: 0,
  };
}

/** An OpenAI error body (or anything a backend sent with an error status) → Anthropic's. */
export function anthropicError(status: number, body: Buffer): Buffer {
  let message = `The backend answered with status ${status}.`;
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    if (isObject(v) && isObject(v.error)) message = str(v.error.message) ?? message;
    else if (isObject(v) && typeof v.error === 'string') message = v.error;
  } catch {
    // Not JSON: the status says it.
  }
  return Buffer.from(JSON.stringify(anthropicErrorObject(status, message)), 'utf8');
}

function reasoningOf(m: Json): string | undefined {
  return str(m.reasoning_content) ?? str(m.reasoning);
}

type Open = { kind: 'text' | 'thinking' } | { kind: 'tool'; call: number };

class OpenaiToAnthropicResponse implements ResponseTranslator {
  private parser: SseParser | undefined;
  private started = false;
  private id = '';
  private model = '';
  /** The block being streamed, and the index the next one gets. */
  private open: (Open & { index: number }) | undefined;
  private next = 0;
  /** OpenAI tool call index → its tool_use block index. */
  private readonly calls = new Map<number, number>();
  private finish: unknown;
  private usage: Json | undefined;
  private done = false;

  constructor(private readonly ctx: ResponseContext) {}

  headers(status: number, headers: ReadonlyMap<string, string>): ResponseStart {
    const { start, parser } = sseResponseStart(status, headers, this.ctx.maxEventBytes);
    this.parser = parser;
    return start;
  }

  json(body: Buffer): Buffer {
    const r = backendJson(body);
    const choice = Array.isArray(r.choices) && isObject(r.choices[0]) ? r.choices[0] : {};
    const m = isObject(choice.message) ? choice.message : {};
    const content: Json[] = [];
    const reasoning = reasoningOf(m);
    if (reasoning) content.push({ type: 'thinking', thinking: reasoning, signature: '' });
    const text = str(m.content) ?? str(m.refusal);
    if (text) content.push({ type: 'text', text });
    if (Array.isArray(m.tool_calls)) {
      for (const c of m.tool_calls) {
        if (!isObject(c) || !isObject(c.function)) continue;
        content.push({
          type: 'tool_use',
          id: str(c.id) ?? '',
          name: str(c.function.name) ?? '',
          input: toolInput(c.function.arguments),
        });
      }
    }
    const out = {
      id: str(r.id) ?? '',
      type: 'message',
      role: 'assistant',
      model: str(r.model) ?? '',
      content,
      stop_reason: stopReason(choice.finish_reason),
      stop_sequence: null,
      usage: anthropicUsage(isObject(r.usage) ? r.usage : undefined),
    };
    return Buffer.from(JSON.stringify(out), 'utf8');
  }

  error(status: number, body: Buffer): Buffer {
    return anthropicError(status, body);
  }

  stream(chunk: Buffer, end: boolean): Buffer {
    let out = '';
    for (const e of sseEvents(this.parser!, chunk, end, this.ctx.maxEventBytes))
      out += this.onEvent(e);
    if (end && !this.done) out += this.close();
    return Buffer.from(out, 'utf8');
  }

  private onEvent(e: SseEvent): string {
    if (this.done || e.data === '') return '';
    if (e.data.trim() === '[DONE]') return this.close();
    const d = eventJson(e.data);
    if (!d) return '';
    if (d.error !== undefined) {
      this.done = true;
      const err = isObject(d.error) ? d.error : {};
      return namedEvent({
        type: 'error',
        error: { type: 'api_error', message: str(err.message) ?? 'The backend failed mid-stream.' },
      });
    }
    let out = this.start(d);
    if (isObject(d.usage)) this.usage = d.usage;
    const choice = Array.isArray(d.choices) && isObject(d.choices[0]) ? d.choices[0] : undefined;
    if (!choice) return out;
    const delta = isObject(choice.delta) ? choice.delta : {};
    const reasoning = reasoningOf(delta);
    if (reasoning) {
      out += this.ensure({ kind: 'thinking' }, { type: 'thinking', thinking: '', signature: '' });
      out += this.delta({ type: 'thinking_delta', thinking: reasoning });
    }
    const text = str(delta.content);
    if (text) {
      out += this.ensure({ kind: 'text' }, { type: 'text', text: '' });
      out += this.delta({ type: 'text_delta', text });
    }
    if (Array.isArray(delta.tool_calls)) {
      for (const c of delta.tool_calls) {
        if (!isObject(c)) continue;
        const call = num(c.index) ?? 0;
        const fn = isObject(c.function) ? c.function : {};
        if (!this.calls.has(call)) {
          out += this.closeBlock();
          const index = this.next++;
          this.calls.set(call, index);
          this.open = { kind: 'tool', call, index };
          out += namedEvent({
            type: 'content_block_start',
            index,
            content_block: {
              type: 'tool_use',
              id: str(c.id) ?? '',
              name: str(fn.name) ?? '',
              input: {},
            },
          });
        } else if (!(this.open?.kind === 'tool' && this.open.call === call)) {
          // Arguments of an earlier call after another block began: Anthropic blocks do not
          // interleave, so such a stream cannot be carried on faithfully.
          continue;
        }
        const args = str(fn.arguments);
        if (args) out += this.delta({ type: 'input_json_delta', partial_json: args });
      }
    }
    if (choice.finish_reason !== undefined && choice.finish_reason !== null)
      this.finish = choice.finish_reason;
    return out;
  }

  private start(d: Json): string {
    if (this.started) return '';
    this.started = true;
    this.id = str(d.id) ?? '';
    this.model = str(d.model) ?? '';
    return messageStart(this.id, this.model);
  }

  private ensure(kind: Open, block: Json): string {
    if (this.open?.kind === kind.kind) return '';
    let out = this.closeBlock();
    const index = this.next++;
    this.open = { ...kind, index };
    out += namedEvent({ type: 'content_block_start', index, content_block: block });
    return out;
  }

  private delta(delta: Json): string {
    return namedEvent({ type: 'content_block_delta', index: this.open!.index, delta });
  }

  private closeBlock(): string {
    if (!this.open) return '';
    const index = this.open.index;
    this.open = undefined;
    return namedEvent({ type: 'content_block_stop', index });
  }

  private close(): string {
    this.done = true;
    let out = this.start({});
    out += this.closeBlock();
    return out + messageEnd(stopReason(this.finish), anthropicUsage(this.usage));
  }
}

function toolInput(args: unknown): Json {
  if (typeof args !== 'string' || args.trim() === '') return {};
  try {
    const v: unknown = JSON.parse(args);
    if (isObject(v)) return v;
  } catch {
    // Handled below.
  }
  throw new SluiceError(
    'bad_upstream_response',
    'The backend returned tool call arguments that are not a JSON object.',
  );
}
