/**
 * Anthropic Messages callers to Google's generateContent (Gemini API).
 *
 * Request: `system` → `systemInstruction`; text and base64 image / PDF blocks → parts
 * (`inlineData`); `tool_use` → `functionCall`, `tool_result` → `functionResponse` named after the
 * call it answers; tools → `functionDeclarations`, tool_choice → `functionCallingConfig`;
 * max_tokens (held to the gateway's cap), temperature, top_p, top_k, stop_sequences →
 * `generationConfig`. Server tools, URL sources, `thinking` and other fields Gemini cannot express
 * are refused with a 400 naming them; past thinking blocks are not carried (Gemini takes no
 * reasoning back).
 *
 * Response: a Messages object (text, tool_use with `toolu_gem_<n>` ids when Gemini gives none,
 * thinking), stop_reason and usage from `usageMetadata`; a safety block is an Anthropic error; the
 * SSE stream rebuilt as Messages events (content_block_* with indices in order, message_delta with
 * the stop reason and usage).
 */
import { SseParser, type SseEvent } from '../usage/sse.js';
import {
  backendJson,
  eventJson,
  isObject,
  namedEvent,
  str,
  unsupportedField,
  type Json,
  sseResponseStart,
} from './common.js';
import {
  cappedMaxTokens,
  functionResponse,
  generatePath,
  generationConfig,
  geminiTools,
  googleError,
  isBlockedFinish,
  pushContent,
  readChunk,
  safetyError,
  toolConfig,
  usageCounts,
  type CallingMode,
  type FunctionDef,
} from './gemini-generate.js';
import type {
  ExchangeRequest,
  ResponseContext,
  ResponseStart,
  ResponseTranslator,
  Translator,
} from './translator.js';

const HANDLED = new Set([
  'model',
  'messages',
  'system',
  'max_tokens',
  'temperature',
  'top_p',
  'top_k',
  'stop_sequences',
  'stream',
  'tools',
  'tool_choice',
  'metadata',
]);

export const anthropicToGemini: Translator = {
  from: 'anthropic',
  to: 'gemini',
  operations: ['messages'],
  request(req, backend) {
    const stream = req.body.stream === true;
    return {
      path: generatePath(backend, backend.modelOverride ?? req.model, stream),
      headers: [['content-type', 'application/json']],
      body: Buffer.from(JSON.stringify(toGeminiFromMessages(req)), 'utf8'),
    };
  },
  response(req, _backend, ctx) {
    return new GeminiToAnthropicResponse(req, ctx);
  },
};

export function toGeminiFromMessages(req: ExchangeRequest): Json {
  const b = req.body;
  for (const [k, v] of Object.entries(b)) {
    if (HANDLED.has(k) || v === undefined) continue;
    if (k === 'thinking' && isObject(v) && v.type === 'disabled') continue;
    throw unsupportedField(k, 'Gemini backends have no equivalent of this field.');
  }
  const system = systemParts(b.system);
  if (!Array.isArray(b.messages) || b.messages.length === 0)
    throw unsupportedField('messages', 'must be a non-empty array.');
  const contents: Json[] = [];
  const names = new Map<string, string>();
  b.messages.forEach((m: unknown, i) => {
    const at = `messages[${i}]`;
    if (!isObject(m) || (m.role !== 'user' && m.role !== 'assistant'))
      throw unsupportedField(`${at}.role`, 'must be user or assistant.');
    const parts = blocks(m.content, `${at}.content`, names);
    pushContent(contents, m.role === 'user' ? 'user' : 'model', parts);
  });
  if (contents.length === 0)
    throw unsupportedField('messages', 'needs at least one non-empty message.');
  const stop = b.stop_sequences;
  if (stop !== undefined && !(Array.isArray(stop) && stop.every((s) => typeof s === 'string')))
    throw unsupportedField('stop_sequences', 'must be an array of strings.');
  const out: Json = { contents };
  if (system.length > 0) out.systemInstruction = { parts: system };
  const tools = geminiTools(convertTools(b.tools));
  if (tools) out.tools = tools;
  const tc = toolConfig(convertToolChoice(b.tool_choice));
  if (tc) out.toolConfig = tc;
  const generation = generationConfig({
    maxOutputTokens: cappedMaxTokens(b.max_tokens, req.outputTokenCap),
    temperature: b.temperature,
    topP: b.top_p,
    topK: b.top_k,
    stopSequences: stop,
  });
  if (generation) out.generationConfig = generation;
  return out;
}

function systemParts(raw: unknown): Json[] {
  if (raw === undefined || raw === null) return [];
  if (typeof raw === 'string') return raw.length > 0 ? [{ text: raw }] : [];
  if (!Array.isArray(raw)) throw unsupportedField('system', 'must be a string or text blocks.');
  return raw.map((blk: unknown, i) => {
    if (!isObject(blk) || blk.type !== 'text' || typeof blk.text !== 'string')
      throw unsupportedField(`system[${i}]`, 'only text blocks are taken.');
    return { text: blk.text };
  });
}

function inline(src: unknown, at: string): Json {
  if (isObject(src) && src.type === 'base64' && typeof src.data === 'string')
    return { inlineData: { mimeType: str(src.media_type) ?? '', data: src.data } };
  throw unsupportedField(`${at}.source`, 'Gemini backends take base64 data only, not URLs.');
}

function blocks(content: unknown, at: string, names: Map<string, string>): Json[] {
  if (typeof content === 'string') return content.length > 0 ? [{ text: content }] : [];
  if (!Array.isArray(content))
    throw unsupportedField(at, 'must be a string or an array of blocks.');
  const out: Json[] = [];
  content.forEach((blk: unknown, j) => {
    const here = `${at}[${j}]`;
    if (!isObject(blk)) throw unsupportedField(here, 'must be an object.');
    switch (blk.type) {
      case 'text':
        if (typeof blk.text !== 'string') throw unsupportedField(`${here}.text`, 'is required.');
        if (blk.text.length > 0) out.push({ text: blk.text });
        return;
      case 'image':
      case 'document':
        out.push(inline(blk.source, here));
        return;
      case 'tool_use': {
        const id = str(blk.id);
        const name = str(blk.name);
        if (!id || !name) throw unsupportedField(here, 'needs an id and a name.');
        names.set(id, name);
        out.push({ functionCall: { name, args: isObject(blk.input) ? blk.input : {} } });
        return;
      }
      case 'tool_result': {
        const id = str(blk.tool_use_id);
        const name = id === undefined ? undefined : names.get(id);
        if (!name)
          throw unsupportedField(
            `${here}.tool_use_id`,
            'must name a tool_use block of an earlier assistant message.',
          );
        let text = '';
        if (typeof blk.content === 'string') text = blk.content;
        else if (Array.isArray(blk.content))
          blk.content.forEach((c: unknown, k) => {
            if (isObject(c) && c.type === 'text' && typeof c.text === 'string') text += c.text;
            else throw unsupportedField(`${here}.content[${k}]`, 'tool results take text only.');
          });
        out.push(
          functionResponse(name, undefined, blk.is_error === true ? `Error: ${text}` : text),
        );
        return;
      }
      case 'thinking':
      case 'redacted_thinking':
        // Gemini takes no reasoning back; the answer it led to is carried.
        return;
      default:
        throw unsupportedField(
          `${here}.type`,
          'Gemini backends take text, image, document, tool_use and tool_result blocks.',
        );
    }
  });
  return out;
}

function convertTools(raw: unknown): FunctionDef[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw unsupportedField('tools', 'must be an array.');
  return raw.map((t: unknown, i) => {
    const at = `tools[${i}]`;
    if (!isObject(t) || (t.type !== undefined && t.type !== 'custom'))
      throw unsupportedField(at, 'Gemini backends take custom tools only, not server tools.');
    const name = str(t.name);
    if (!name) throw unsupportedField(`${at}.name`, 'is required.');
    return {
      name,
      description: str(t.description),
      schema: isObject(t.input_schema) ? t.input_schema : undefined,
    };
  });
}

function convertToolChoice(raw: unknown): CallingMode | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isObject(raw)) throw unsupportedField('tool_choice', 'must be an object.');
  if (raw.disable_parallel_tool_use === true)
    throw unsupportedField(
      'tool_choice.disable_parallel_tool_use',
      'Gemini backends cannot be told to call one tool at a time.',
    );
  switch (raw.type) {
    case 'auto':
      return { mode: 'AUTO' };
    case 'none':
      return { mode: 'NONE' };
    case 'any':
      return { mode: 'ANY' };
    case 'tool': {
      const name = str(raw.name);
      if (name) return { mode: 'ANY', allowed: [name] };
      throw unsupportedField('tool_choice.name', 'is required.');
    }
    default:
      throw unsupportedField('tool_choice.type', 'must be auto, any, tool or none.');
  }
}

// ---- response ------------------------------------------------------------------------------

function stopReason(reason: string | undefined, calls: boolean): string {
  if (calls) return 'tool_use';
  if (reason === 'MAX_TOKENS') return 'max_tokens';
  if (isBlockedFinish(reason)) return 'refusal';
  return 'end_turn';
}

function anthropicUsage(u: Json | undefined): Json {
  const c = usageCounts(u);
  return {
    input_tokens: Math.max(0, c.prompt - c.cached),
    output_tokens: c.output,
    cache_read_input_tokens: c.cached,
    cache_creation_input_tokens: 0,
  };
}

function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 503) return 'overloaded_error';
  return status >= 500 ? 'api_error' : 'invalid_request_error';
}

function errorObject(status: number, message: string): Json & { type: string } {
  return { type: 'error', error: { type: errorType(status), message } };
}

class GeminiToAnthropicResponse implements ResponseTranslator {
  private parser: SseParser | undefined;
  private started = false;
  /** The open block: its kind and index; the next index. */
  private open: { kind: 'text' | 'thinking'; index: number } | undefined;
  private next = 0;
  private calls = 0;
  private stop: string | undefined;
  private usage: Json | undefined;
  private done = false;

  constructor(
    private readonly req: ExchangeRequest,
    private readonly ctx: ResponseContext,
  ) {}

  headers(status: number, headers: ReadonlyMap<string, string>): ResponseStart {
    const { start, parser } = sseResponseStart(status, headers, this.ctx.maxEventBytes);
    this.parser = parser;
    return start;
  }

  json(body: Buffer): Buffer {
    const c = readChunk(backendJson(body));
    if (c.blocked) throw safetyError(c.blocked);
    const content: Json[] = [];
    let calls = 0;
    for (const p of c.parts) {
      if (p.kind === 'text') content.push({ type: 'text', text: p.text });
      else if (p.kind === 'thought')
        content.push({ type: 'thinking', thinking: p.text, signature: '' });
      else
        content.push({
          type: 'tool_use',
          id: p.id ?? `toolu_gem_${calls++}`,
          name: p.name,
          input: p.args ?? {},
        });
    }
    const out: Json = {
      id: `msg_gem_${(c.responseId ?? '').replace(/[^A-Za-z0-9]/g, '')}`,
      type: 'message',
      role: 'assistant',
      model: this.req.model,
      content,
      stop_reason: stopReason(
        c.finishReason,
        content.some((b) => b.type === 'tool_use'),
      ),
      stop_sequence: null,
      usage: anthropicUsage(c.usage),
    };
    return Buffer.from(JSON.stringify(out), 'utf8');
  }

  error(status: number, body: Buffer): Buffer {
    return Buffer.from(
      JSON.stringify(errorObject(status, googleError(status, body).message)),
      'utf8',
    );
  }

  stream(chunk: Buffer, end: boolean): Buffer {
    const parser = this.parser!;
    const events: SseEvent[] = parser.push(chunk);
    if (end) {
      const rest = parser.end();
      if (rest.length > 0)
        events.push(
          ...new SseParser({ maxEventBytes: this.ctx.maxEventBytes }).push(
            Buffer.concat([rest, Buffer.from('\n\n')]),
          ),
        );
    }
    let out = '';
    for (const e of events) out += this.onEvent(e);
    if (end && !this.done) {
      this.done = true;
      out +=
        this.stop === undefined
          ? namedEvent(errorObject(502, 'The backend stream ended early.'))
          : this.close();
    }
    return Buffer.from(out, 'utf8');
  }

  private closeBlock(): string {
    if (!this.open) return '';
    const index = this.open.index;
    this.open = undefined;
    return namedEvent({ type: 'content_block_stop', index });
  }

  private delta(kind: 'text' | 'thinking', text: string): string {
    let out = '';
    if (this.open?.kind !== kind) {
      out += this.closeBlock();
      this.open = { kind, index: this.next++ };
      out += namedEvent({
        type: 'content_block_start',
        index: this.open.index,
        content_block:
          kind === 'text' ? { type: 'text', text: '' } : { type: 'thinking', thinking: '' },
      });
    }
    return (
      out +
      namedEvent({
        type: 'content_block_delta',
        index: this.open.index,
        delta:
          kind === 'text'
            ? { type: 'text_delta', text }
            : { type: 'thinking_delta', thinking: text },
      })
    );
  }

  private onEvent(e: SseEvent): string {
    if (this.done || e.data === '') return '';
    const v = eventJson(e.data);
    if (!v) return '';
    if (isObject(v.error)) {
      this.done = true;
      return namedEvent(errorObject(500, googleError(500, Buffer.from(e.data)).message));
    }
    const c = readChunk(v);
    if (c.blocked) {
      this.done = true;
      return namedEvent(errorObject(400, safetyError(c.blocked).message));
    }
    let out = '';
    if (!this.started) {
      this.started = true;
      out += namedEvent({
        type: 'message_start',
        message: {
          id: `msg_gem_${(c.responseId ?? '').replace(/[^A-Za-z0-9]/g, '')}`,
          type: 'message',
          role: 'assistant',
          model: this.req.model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: 0, output_tokens: 0 },
        },
      });
    }
    for (const p of c.parts) {
      if ((p.kind === 'text' || p.kind === 'thought') && p.text)
        out += this.delta(p.kind === 'text' ? 'text' : 'thinking', p.text);
      else if (p.kind === 'call') {
        out += this.closeBlock();
        const index = this.next++;
        out += namedEvent({
          type: 'content_block_start',
          index,
          content_block: {
            type: 'tool_use',
            id: p.id ?? `toolu_gem_${this.calls}`,
            name: p.name,
            input: {},
          },
        });
        this.calls++;
        out += namedEvent({
          type: 'content_block_delta',
          index,
          delta: { type: 'input_json_delta', partial_json: JSON.stringify(p.args ?? {}) },
        });
        out += namedEvent({ type: 'content_block_stop', index });
      }
    }
    if (c.usage) this.usage = c.usage;
    if (c.finishReason) this.stop = stopReason(c.finishReason, this.calls > 0);
    return out;
  }

  private close(): string {
    let out = this.closeBlock();
    const delta: Json & { type: string } = {
      type: 'message_delta',
      delta: { stop_reason: this.stop ?? 'end_turn', stop_sequence: null },
    };
    if (this.usage) delta.usage = anthropicUsage(this.usage);
    out += namedEvent(delta);
    return out + namedEvent({ type: 'message_stop' });
  }
}
