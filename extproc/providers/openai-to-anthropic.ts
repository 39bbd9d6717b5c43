/**
 * OpenAI Chat Completions callers to Anthropic Messages backends.
 *
 * Request: system and developer messages become `system`; user content parts (text, images by URL
 * or base64 data URL) become content blocks; assistant `tool_calls` become `tool_use` blocks and
 * `tool` messages `tool_result` blocks in the user turn that follows; tools, tool_choice and
 * parallel_tool_calls map to Anthropic's; `stop` → `stop_sequences`; the output limit is
 * max_completion_tokens, else max_tokens, else the backend's default (Anthropic requires one);
 * `reasoning_effort` → an extended-thinking budget; `user` → `metadata.user_id`.
 * `response_format` (json_schema or json_object) is carried by a forced tool whose input schema is
 * the caller's schema: the model must answer by calling it, and its input comes back as the
 * message's JSON text (Anthropic's tool inputs follow the declared schema; works on every model).
 * Fields Anthropic has no equivalent for are refused with a 400 naming them.
 *
 * Response: text → `content`, `tool_use` → `tool_calls`, thinking → `reasoning_content` (the field
 * vLLM, DeepSeek and LiteLLM use), stop reasons and usage mapped; errors become OpenAI error
 * objects; the stream is translated event by event as it arrives.
 */
import type { ResolvedBackend } from '../config/runtime.js';
import type { SseEvent, SseParser } from '../usage/sse.js';
import { DEFAULT_ANTHROPIC_VERSION } from './anthropic-to-anthropic.js';
import {
  backendJson,
  dataEvent,
  dataUrl,
  eventJson,
  isObject,
  num,
  str,
  unsupportedField,
  type Json,
  sseEvents,
  sseResponseStart,
  assistantMessage,
  chatChunk,
  usageOnlyChunk,
} from './common.js';
import { withOutputTokenCap } from './output-cap.js';
import { versionedPath } from './paths.js';
import {
  openaiConversation,
  openaiStop,
  openaiTexts,
  openaiToolChoice,
  openaiTools,
  type OpenaiConversation,
  type ToolSpec,
  OPENAI_NEUTRAL,
  refuseUnhandled,
} from './request-walk.js';
import type {
  ExchangeRequest,
  ResponseContext,
  ResponseStart,
  ResponseTranslator,
  Translator,
} from './translator.js';

/** Anthropic requires max_tokens; used when neither the caller nor the backend config sets one. */
export const DEFAULT_MAX_TOKENS = 4096;
/** The forced tool that carries `response_format`; its input is the answer. */
export const RESPONSE_FORMAT_TOOL = 'json_response';
/** Extended thinking budgets by OpenAI reasoning effort (Anthropic's minimum budget is 1,024). */
export const THINKING_BUDGET: Readonly<Record<string, number>> = {
  low: 1024,
  medium: 4096,
  high: 16384,
};
const MIN_THINKING_BUDGET = 1024;

/** Fields read here; any other top-level field is refused, never dropped. */
const HANDLED = new Set([
  'model',
  'messages',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'stop',
  'stream',
  'stream_options',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'response_format',
  'reasoning_effort',
  'user',
  'n',
  // OpenAI-side bookkeeping with no effect on the answer: nothing to carry.
  'store',
  'metadata',
  'service_tier',
]);

export const openaiToAnthropic: Translator = {
  from: 'openai',
  to: 'anthropic',
  operations: ['chat'],
  request(req, backend) {
    const body = anthropicMessagesBody(req, backend);
    return {
      path: versionedPath(backend, '/messages'),
      headers: [
        ['anthropic-version', backend.anthropic?.version ?? DEFAULT_ANTHROPIC_VERSION],
        ['content-type', 'application/json'],
      ],
      body: Buffer.from(JSON.stringify(body), 'utf8'),
    };
  },
  response(req, _backend, ctx) {
    return new AnthropicToOpenaiResponse(req, ctx);
  },
};

/** The Messages body for an OpenAI request, held to the gateway's output cap (Claude on Vertex too). */
export function anthropicMessagesBody(req: ExchangeRequest, backend: ResolvedBackend): Json {
  let body = toAnthropicRequest(req, backend);
  if (req.outputTokenCap !== undefined) {
    body = withOutputTokenCap('messages', 'anthropic', body, req.outputTokenCap) ?? body;
    fitThinking(body);
  }
  return body;
}

export function toAnthropicRequest(req: ExchangeRequest, backend: ResolvedBackend): Json {
  const b = req.body;
  refuseUnhandled(b, HANDLED, OPENAI_NEUTRAL, 'Anthropic');
  const n = b.n;
  if (n !== undefined && n !== null && n !== 1)
    throw unsupportedField('n', 'Anthropic backends return one choice per request.');

  const out: Json = { model: backend.modelOverride ?? req.model };
  const { system, messages } = openaiConversation(b.messages, CONVERSATION);
  if (system.length > 0) out.system = system;
  out.messages = messages;

  const max = num(b.max_completion_tokens) ?? num(b.max_tokens);
  out.max_tokens = max ?? backend.anthropic?.defaultMaxTokens ?? DEFAULT_MAX_TOKENS;

  const t = b.temperature;
  if (t !== undefined && t !== null) {
    if (typeof t !== 'number' || t < 0 || t > 1)
      throw unsupportedField('temperature', 'Anthropic backends accept a temperature from 0 to 1.');
    out.temperature = t;
  }
  if (b.top_p !== undefined && b.top_p !== null) out.top_p = b.top_p;
  const stop = openaiStop(b.stop);
  if (stop.length > 0) out.stop_sequences = stop;
  if (b.stream === true) out.stream = true;
  if (typeof b.user === 'string' && b.user.length > 0) out.metadata = { user_id: b.user };

  const tools = openaiTools(b.tools, 'Anthropic', RESPONSE_FORMAT_TOOL).map(anthropicTool);
  let toolChoice: Json | undefined = openaiToolChoice(b.tool_choice);
  const format = b.response_format;
  if (isObject(format) && format.type !== 'text') {
    if (tools.length > 0 || (b.tool_choice !== undefined && b.tool_choice !== null))
      throw unsupportedField(
        'response_format',
        'with an Anthropic backend, response_format cannot be combined with tools.',
      );
    tools.push(formatTool(format));
    toolChoice = { type: 'tool', name: RESPONSE_FORMAT_TOOL };
  } else if (format !== undefined && format !== null && !isObject(format)) {
    throw unsupportedField('response_format', 'must be an object.');
  }
  if (b.parallel_tool_calls === false && tools.length > 0) {
    toolChoice ??= { type: 'auto' };
    if (toolChoice.type !== 'none') toolChoice.disable_parallel_tool_use = true;
  }
  if (tools.length > 0) out.tools = tools;
  if (toolChoice && (tools.length > 0 || toolChoice.type === 'none')) out.tool_choice = toolChoice;

  const effort = b.reasoning_effort;
  if (effort !== undefined && effort !== null && effort !== 'none' && effort !== 'minimal') {
    const budget = typeof effort === 'string' ? THINKING_BUDGET[effort] : undefined;
    if (budget === undefined)
      throw unsupportedField('reasoning_effort', 'must be minimal, low, medium or high.');
    if (toolChoice && toolChoice.type !== 'auto' && toolChoice.type !== 'none')
      throw unsupportedField(
        'reasoning_effort',
        'Anthropic backends cannot think while a tool is forced (tool_choice or response_format).',
      );
    out.thinking = { type: 'enabled', budget_tokens: budget };
    fitThinking(out);
  }
  return out;
}

/** A thinking budget must be at least 1,024 and below max_tokens. */
function fitThinking(out: Json): void {
  const thinking = out.thinking as { budget_tokens: number } | undefined;
  if (!thinking) return;
  const max = out.max_tokens as number;
  if (thinking.budget_tokens < max) return;
  if (max - 1 < MIN_THINKING_BUDGET)
    throw unsupportedField(
      'reasoning_effort',
      `Anthropic backends need an output limit above ${MIN_THINKING_BUDGET} tokens to think.`,
    );
  thinking.budget_tokens = max - 1;
}

type Block = Json;

/** Text as text blocks; Anthropic takes an empty one. */
const textBlocks = (texts: string[]): Block[] => texts.map((text) => ({ type: 'text', text }));

/** The OpenAI conversation in Anthropic's words: content blocks in alternating turns. */
const CONVERSATION: OpenaiConversation = {
  backend: 'Anthropic',
  texts: textBlocks,
  user: userBlocks,
  toolCall: ({ id, name, input }) => ({ type: 'tool_use', id, name, input }),
  toolResult: (id, _name, content, at) => ({
    type: 'tool_result',
    tool_use_id: id,
    content: textBlocks(openaiTexts(content, `${at}.content`)),
  }),
  push(messages, role, blocks) {
    const last = messages.at(-1);
    // Anthropic alternates turns: tool results and the user text after them are one user turn.
    if (last && last.role === role) (last.content as Block[]).push(...blocks);
    else messages.push({ role, content: blocks });
  },
};

function userBlocks(content: unknown, at: string): Block[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  if (!Array.isArray(content)) throw unsupportedField(at, 'must be a string or an array of parts.');
  return content.map((p: unknown, j) => {
    const here = `${at}[${j}]`;
    if (!isObject(p)) throw unsupportedField(here, 'must be an object.');
    if (p.type === 'text' && typeof p.text === 'string') return { type: 'text', text: p.text };
    if (p.type === 'image_url') {
      const image = p.image_url;
      const url = isObject(image) ? str(image.url) : str(image);
      if (!url) throw unsupportedField(`${here}.image_url.url`, 'is required.');
      const inline = dataUrl(url);
      if (inline) {
        return {
          type: 'image',
          source: { type: 'base64', media_type: inline.mediaType, data: inline.data },
        };
      }
      if (!/^https?:\/\//i.test(url))
        throw unsupportedField(
          `${here}.image_url.url`,
          'must be an https URL or a base64 data URL.',
        );
      // `detail` has no equivalent: Anthropic sizes images itself.
      return { type: 'image', source: { type: 'url', url } };
    }
    if (p.type === 'file' && isObject(p.file)) {
      const inline = typeof p.file.file_data === 'string' ? dataUrl(p.file.file_data) : undefined;
      if (inline?.mediaType === 'application/pdf') {
        return {
          type: 'document',
          source: { type: 'base64', media_type: inline.mediaType, data: inline.data },
        };
      }
      throw unsupportedField(here, 'Anthropic backends take files as base64 PDF data only.');
    }
    throw unsupportedField(`${here}.type`, 'Anthropic backends take text, image and PDF parts.');
  });
}

function anthropicTool({ name, description, schema }: ToolSpec): Block {
  // The caller's schema; a function without parameters takes none.
  const tool: Block = { name, input_schema: schema ?? { type: 'object', properties: {} } };
  if (description !== undefined) tool.description = description;
  return tool;
}

function formatTool(format: Json): Block {
  if (format.type === 'json_object') {
    return {
      name: RESPONSE_FORMAT_TOOL,
      description: 'Answer with a JSON object.',
      input_schema: { type: 'object', additionalProperties: true },
    };
  }
  if (format.type === 'json_schema' && isObject(format.json_schema)) {
    const schema = format.json_schema.schema;
    if (!isObject(schema) || schema.type !== 'object')
      throw unsupportedField(
        'response_format.json_schema.schema',
        'Anthropic backends need an object schema at the top.',
      );
    const description = str(format.json_schema.description);
    return {
      name: RESPONSE_FORMAT_TOOL,
      description: description ?? 'Answer with JSON that matches this schema.',
      input_schema: schema,
    };
  }
  throw unsupportedField('response_format.type', 'must be text, json_object or json_schema.');
}

// ---- response ------------------------------------------------------------------------------

const FINISH: Readonly<Record<string, string>> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  pause_turn: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
};

export function finishReason(stop: unknown, formatTool: boolean): string | null {
  if (typeof stop !== 'string') return null;
  // The forced response_format tool is how the answer came, not a tool call to run.
  if (stop === 'tool_use' && formatTool) return 'stop';
  return FINISH[stop] ?? 'stop';
}

/** Anthropic usage → OpenAI's: cache reads and writes are prompt tokens too. */
export function openaiUsage(u: Json | undefined): Json | undefined {
  if (!u) return undefined;
  const cached = num(u.cache_read_input_tokens) ?? 0;
  const prompt = (num(u.input_tokens) ?? 0) + cached + (num(u.cache_creation_input_tokens) ?? 0);
  const completion = num(u.output_tokens) ?? 0;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached },
  };
}

/** An Anthropic error body (or anything else a backend sent with an error status) → OpenAI's. */
export function openaiError(status: number, body: Buffer): Buffer {
  let message = `The backend answered with status ${status}.`;
  let type = status >= 500 ? 'server_error' : 'invalid_request_error';
  let code: string | null = null;
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    if (isObject(v) && isObject(v.error)) {
      message = str(v.error.message) ?? message;
      const t = str(v.error.type);
      if (t) {
        type = t === 'api_error' || t === 'overloaded_error' ? 'server_error' : t;
        code = t;
      }
    }
  } catch {
    // Not JSON (a proxy's page): the status says it.
  }
  return Buffer.from(JSON.stringify({ error: { message, type, param: null, code } }), 'utf8');
}

class AnthropicToOpenaiResponse implements ResponseTranslator {
  private readonly formatTool: boolean;
  private readonly usageChunk: boolean;
  private parser: SseParser | undefined;
  private id = '';
  private model = '';
  private inputUsage: Json | undefined;
  private outputTokens = 0;
  /** Anthropic block index → OpenAI tool call index, for tool_use blocks. */
  private readonly toolIndex = new Map<number, number>();
  private readonly formatBlocks = new Set<number>();
  private finish: string | null = null;
  private done = false;

  constructor(
    req: ExchangeRequest,
    private readonly ctx: ResponseContext,
  ) {
    this.formatTool =
      isObject(req.body.response_format) && req.body.response_format.type !== 'text';
    const so = req.body.stream_options;
    this.usageChunk = req.forcedUsage || (isObject(so) && so.include_usage === true);
  }

  headers(status: number, headers: ReadonlyMap<string, string>): ResponseStart {
    const { start, parser } = sseResponseStart(status, headers, this.ctx.maxEventBytes);
    this.parser = parser;
    return start;
  }

  json(body: Buffer): Buffer {
    const m = backendJson(body);
    const content = Array.isArray(m.content) ? m.content : [];
    let text = '';
    let reasoning = '';
    const calls: Json[] = [];
    for (const b of content) {
      if (!isObject(b)) continue;
      if (b.type === 'text' && typeof b.text === 'string') text += b.text;
      else if (b.type === 'thinking' && typeof b.thinking === 'string') reasoning += b.thinking;
      else if (b.type === 'tool_use') {
        const args = JSON.stringify(b.input ?? {});
        if (this.formatTool && b.name === RESPONSE_FORMAT_TOOL) text += args;
        else
          calls.push({ id: b.id, type: 'function', function: { name: b.name, arguments: args } });
      }
    }
    const message = assistantMessage(text, reasoning, calls);
    if (m.stop_reason === 'refusal')
      message.refusal = text.length > 0 ? text : 'The model refused.';
    const out: Json = {
      id: str(m.id) ?? '',
      object: 'chat.completion',
      created: this.ctx.created,
      model: str(m.model) ?? '',
      choices: [
        {
          index: 0,
          message,
          logprobs: null,
          finish_reason: finishReason(m.stop_reason, this.formatTool) ?? 'stop',
        },
      ],
    };
    const usage = openaiUsage(isObject(m.usage) ? m.usage : undefined);
    if (usage) out.usage = usage;
    return Buffer.from(JSON.stringify(out), 'utf8');
  }

  error(status: number, body: Buffer): Buffer {
    return openaiError(status, body);
  }

  stream(chunk: Buffer, end: boolean): Buffer {
    let out = '';
    for (const e of sseEvents(this.parser!, chunk, end, this.ctx.maxEventBytes))
      out += this.onEvent(e);
    // A stream cut before message_stop still ends as an OpenAI stream does.
    if (end && !this.done) out += this.close();
    return Buffer.from(out, 'utf8');
  }

  private chunk(delta: Json, finish: string | null = null): string {
    return chatChunk({ id: this.id, created: this.ctx.created, model: this.model }, delta, finish);
  }

  private onEvent(e: SseEvent): string {
    if (this.done || e.data === '') return '';
    const d = eventJson(e.data);
    if (!d) return '';
    switch (d.type) {
      case 'message_start': {
        const m = isObject(d.message) ? d.message : {};
        this.id = str(m.id) ?? '';
        this.model = str(m.model) ?? '';
        if (isObject(m.usage)) {
          this.inputUsage = m.usage;
          this.outputTokens = num(m.usage.output_tokens) ?? 0;
        }
        return this.chunk({ role: 'assistant', content: '' });
      }
      case 'content_block_start': {
        const index = num(d.index) ?? 0;
        const b = isObject(d.content_block) ? d.content_block : {};
        if (b.type === 'tool_use') {
          if (this.formatTool && b.name === RESPONSE_FORMAT_TOOL) {
            this.formatBlocks.add(index);
            return '';
          }
          const n = this.toolIndex.size;
          this.toolIndex.set(index, n);
          return this.chunk({
            tool_calls: [
              { index: n, id: b.id, type: 'function', function: { name: b.name, arguments: '' } },
            ],
          });
        }
        if (b.type === 'text' && typeof b.text === 'string' && b.text.length > 0)
          return this.chunk({ content: b.text });
        return '';
      }
      case 'content_block_delta': {
        const index = num(d.index) ?? 0;
        const delta = isObject(d.delta) ? d.delta : {};
        switch (delta.type) {
          case 'text_delta':
            return this.chunk({ content: str(delta.text) ?? '' });
          case 'thinking_delta':
            return this.chunk({ reasoning_content: str(delta.thinking) ?? '' });
          case 'input_json_delta': {
            const part = str(delta.partial_json) ?? '';
            if (this.formatBlocks.has(index)) return part ? this.chunk({ content: part }) : '';
            const n = this.toolIndex.get(index);
            if (n === undefined || part === '') return '';
            return this.chunk({ tool_calls: [{ index: n, function: { arguments: part } }] });
          }
          default:
            return '';
        }
      }
      case 'message_delta': {
        const delta = isObject(d.delta) ? d.delta : {};
        if (isObject(d.usage)) {
          this.outputTokens = num(d.usage.output_tokens) ?? this.outputTokens;
          // Newer API versions restate input counts here (server tools can add to them).
          if (num(d.usage.input_tokens) !== undefined)
            this.inputUsage = { ...this.inputUsage, ...d.usage };
        }
        this.finish = finishReason(delta.stop_reason, this.formatTool);
        return '';
      }
      case 'message_stop':
        return this.close();
      case 'error': {
        this.done = true;
        const err = isObject(d.error) ? d.error : {};
        const type = str(err.type);
        return (
          dataEvent({
            error: {
              message: str(err.message) ?? 'The backend failed mid-stream.',
              type:
                type === 'overloaded_error' || type === 'api_error'
                  ? 'server_error'
                  : (type ?? 'server_error'),
              param: null,
              code: type ?? null,
            },
          }) + 'data: [DONE]\n\n'
        );
      }
      default:
        // ping, and event types added later.
        return '';
    }
  }

  private close(): string {
    this.done = true;
    let out = this.chunk({}, this.finish ?? 'stop');
    if (this.usageChunk) {
      const usage = openaiUsage({ ...this.inputUsage, output_tokens: this.outputTokens });
      out += usageOnlyChunk({ id: this.id, created: this.ctx.created, model: this.model }, usage);
    }
    return out + 'data: [DONE]\n\n';
  }
}
