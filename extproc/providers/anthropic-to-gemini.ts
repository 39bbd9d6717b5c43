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
import type { SseEvent, SseParser } from '../usage/sse.js';
import {
  backendJson,
  eventJson,
  isObject,
  messageEnd,
  messageStart,
  namedEvent,
  str,
  unsupportedField,
  type Json,
  sseEvents,
  sseResponseStart,
} from './common.js';
import { anthropicErrorObject } from './error-body.js';
import {
  cappedMaxTokens,
  functionResponse,
  generateRequest,
  generationConfig,
  geminiTools,
  googleError,
  isBlockedFinish,
  pushContent,
  readChunk,
  safetyError,
  toolConfig,
  usageCounts,
} from './gemini-generate.js';
import {
  anthropicStop,
  anthropicSystem,
  anthropicText,
  anthropicToolChoice,
  anthropicTools,
  anthropicToolUse,
  anthropicTurns,
  base64Source,
  refuseUnhandled,
  type Neutral,
} from './request-walk.js';
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

/** Gemini takes no thinking config: only thinking turned off is carried (as nothing). */
const NEUTRAL: Neutral = {
  thinking: (v) => isObject(v) && v.type === 'disabled',
};

export const anthropicToGemini: Translator = {
  from: 'anthropic',
  to: 'gemini',
  operations: ['messages'],
  request(req, backend) {
    return generateRequest(req, backend, () => toGeminiFromMessages(req));
  },
  response(req, _backend, ctx) {
    return new GeminiToAnthropicResponse(req, ctx);
  },
};

export function toGeminiFromMessages(req: ExchangeRequest): Json {
  const b = req.body;
  refuseUnhandled(b, HANDLED, NEUTRAL, 'Gemini');
  const system = anthropicSystem(b.system).map(({ text }) => ({ text }));
  const names = new Map<string, string>();
  const contents = anthropicTurns(
    b.messages,
    (blk, at) => part(blk, at, names),
    (c, role, parts) => pushContent(c, role === 'user' ? 'user' : 'model', parts),
  );
  const stop = anthropicStop(b.stop_sequences);
  const out: Json = { contents };
  if (system.length > 0) out.systemInstruction = { parts: system };
  const tools = geminiTools(
    anthropicTools(b.tools, 'Gemini backends take custom tools only, not server tools.'),
  );
  if (tools) out.tools = tools;
  const tc = toolConfig(anthropicToolChoice(b.tool_choice, 'Gemini'));
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

/**
 * One content block as Gemini parts. `names` (tool_use id → function name) is filled as tool_use
 * blocks go by: Gemini names the function a response answers.
 */
function part(blk: Json, at: string, names: Map<string, string>): Json[] {
  switch (blk.type) {
    case 'text':
      return anthropicText(blk, at);
    case 'image':
    case 'document': {
      const s = base64Source(blk.source, at, 'Gemini');
      return [{ inlineData: { mimeType: s.mediaType, data: s.data } }];
    }
    case 'tool_use': {
      const { id, name, input: args } = anthropicToolUse(blk, at);
      names.set(id, name);
      return [{ functionCall: { name, args } }];
    }
    case 'tool_result': {
      const id = str(blk.tool_use_id);
      const name = id === undefined ? undefined : names.get(id);
      if (!name)
        throw unsupportedField(
          `${at}.tool_use_id`,
          'must name a tool_use block of an earlier assistant message.',
        );
      let text = '';
      if (typeof blk.content === 'string') text = blk.content;
      else if (Array.isArray(blk.content))
        blk.content.forEach((c: unknown, k) => {
          if (isObject(c) && c.type === 'text' && typeof c.text === 'string') text += c.text;
          else throw unsupportedField(`${at}.content[${k}]`, 'tool results take text only.');
        });
      return [functionResponse(name, undefined, blk.is_error === true ? `Error: ${text}` : text)];
    }
    case 'thinking':
    case 'redacted_thinking':
      // Gemini takes no reasoning back; the answer it led to is carried.
      return [];
    default:
      throw unsupportedField(
        `${at}.type`,
        'Gemini backends take text, image, document, tool_use and tool_result blocks.',
      );
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
      JSON.stringify(anthropicErrorObject(status, googleError(status, body).message)),
      'utf8',
    );
  }

  stream(chunk: Buffer, end: boolean): Buffer {
    let out = '';
    for (const e of sseEvents(this.parser!, chunk, end, this.ctx.maxEventBytes))
      out += this.onEvent(e);
    if (end && !this.done) {
      this.done = true;
      out +=
        this.stop === undefined
          ? namedEvent(anthropicErrorObject(502, 'The backend stream ended early.'))
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
      return namedEvent(anthropicErrorObject(500, googleError(500, Buffer.from(e.data)).message));
    }
    const c = readChunk(v);
    if (c.blocked) {
      this.done = true;
      return namedEvent(anthropicErrorObject(400, safetyError(c.blocked).message));
    }
    let out = '';
    if (!this.started) {
      this.started = true;
      out += messageStart(
        `msg_gem_${(c.responseId ?? '').replace(/[^A-Za-z0-9]/g, '')}`,
        this.req.model,
      );
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
    return (
      this.closeBlock() +
      messageEnd(this.stop ?? 'end_turn', this.usage ? anthropicUsage(this.usage) : undefined)
    );
  }
}
