/**
 * OpenAI Chat Completions callers to Google's generateContent (Gemini API).
 *
 * Request: system and developer messages become `systemInstruction`; user parts (text, base64
 * images and PDFs as `inlineData`) become `parts`; assistant `tool_calls` become `functionCall`
 * parts and `tool` messages `functionResponse` parts (named after the call they answer);
 * tools → `functionDeclarations` (the caller's JSON Schema as `parametersJsonSchema`),
 * tool_choice → `functionCallingConfig`; the output limit (held to the gateway's cap), temperature,
 * top_p, stop and `response_format` → `generationConfig`. What Gemini cannot express (image URLs
 * it cannot fetch, n > 1, …) is refused with a 400 naming the field.
 *
 * Response: text, function calls (ids `call_<n>` when Gemini gives none), thoughts as
 * `reasoning_content`, finish reason and usage from `usageMetadata`; a prompt or answer blocked by
 * the safety system is an error in OpenAI's format; the SSE stream translated event by event.
 */
import { SseParser, type SseEvent } from '../usage/sse.js';
import {
  openaiErrorObject,
  backendJson,
  dataEvent,
  dataUrl,
  eventJson,
  isObject,
  openaiToolCall,
  openaiTextParts,
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
  type GeminiChunk,
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
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'stop',
  'stream',
  'stream_options',
  'tools',
  'tool_choice',
  'response_format',
  'n',
  'store',
  'metadata',
  'service_tier',
  'user',
]);
const NEUTRAL: Readonly<Record<string, (v: unknown) => boolean>> = {
  presence_penalty: (v) => v === 0 || v === null,
  frequency_penalty: (v) => v === 0 || v === null,
  logprobs: (v) => v === false || v === null,
  logit_bias: (v) => v === null || (isObject(v) && Object.keys(v).length === 0),
  seed: (v) => v === null,
  modalities: (v) => v === null || (Array.isArray(v) && v.every((m) => m === 'text')),
  parallel_tool_calls: (v) => v === null || v === true,
  reasoning_effort: (v) => v === null || v === 'none',
};

export const openaiToGemini: Translator = {
  from: 'openai',
  to: 'gemini',
  operations: ['chat'],
  request(req, backend) {
    const stream = req.body.stream === true;
    return {
      path: generatePath(backend, backend.modelOverride ?? req.model, stream),
      headers: [['content-type', 'application/json']],
      body: Buffer.from(JSON.stringify(toGeminiRequest(req)), 'utf8'),
    };
  },
  response(req, _backend, ctx) {
    return new GeminiToOpenaiResponse(req, ctx);
  },
};

export function toGeminiRequest(req: ExchangeRequest): Json {
  const b = req.body;
  for (const [k, v] of Object.entries(b)) {
    if (HANDLED.has(k) || v === undefined) continue;
    if (NEUTRAL[k]?.(v)) continue;
    throw unsupportedField(k, 'Gemini backends have no equivalent of this field.');
  }
  if (b.n !== undefined && b.n !== null && b.n !== 1)
    throw unsupportedField('n', 'this gateway asks Gemini backends for one choice per request.');
  const { system, contents } = convertMessages(b.messages);
  const stop = typeof b.stop === 'string' ? [b.stop] : Array.isArray(b.stop) ? b.stop : [];
  if (!stop.every((s): s is string => typeof s === 'string'))
    throw unsupportedField('stop', 'must be a string or an array of strings.');
  const generation =
    generationConfig({
      maxOutputTokens: cappedMaxTokens(b.max_completion_tokens ?? b.max_tokens, req.outputTokenCap),
      temperature: b.temperature,
      topP: b.top_p,
      stopSequences: stop,
    }) ?? {};
  const format = b.response_format;
  if (isObject(format) && format.type === 'json_object') {
    generation.responseMimeType = 'application/json';
  } else if (isObject(format) && format.type === 'json_schema') {
    const schema = isObject(format.json_schema) ? format.json_schema.schema : undefined;
    if (!isObject(schema))
      throw unsupportedField('response_format.json_schema.schema', 'must be an object.');
    generation.responseMimeType = 'application/json';
    generation.responseJsonSchema = schema;
  } else if (
    format !== undefined &&
    format !== null &&
    !(isObject(format) && format.type === 'text')
  ) {
    throw unsupportedField('response_format.type', 'must be text, json_object or json_schema.');
  }
  const out: Json = { contents };
  if (system.length > 0) out.systemInstruction = { parts: system };
  const tools = geminiTools(convertTools(b.tools));
  if (tools) out.tools = tools;
  const tc = toolConfig(convertToolChoice(b.tool_choice));
  if (tc) out.toolConfig = tc;
  if (Object.keys(generation).length > 0) out.generationConfig = generation;
  return out;
}

function convertMessages(raw: unknown): { system: Json[]; contents: Json[] } {
  if (!Array.isArray(raw) || raw.length === 0)
    throw unsupportedField('messages', 'must be a non-empty array.');
  const system: Json[] = [];
  const contents: Json[] = [];
  /** tool_call_id → function name: Gemini names the function a response answers. */
  const names = new Map<string, string>();
  raw.forEach((m: unknown, i) => {
    const at = `messages[${i}]`;
    if (!isObject(m)) throw unsupportedField(at, 'must be an object.');
    switch (m.role) {
      case 'system':
      case 'developer':
        system.push(...openaiTextParts(m.content, `${at}.content`));
        return;
      case 'user':
        pushContent(contents, 'user', userParts(m.content, `${at}.content`));
        return;
      case 'assistant': {
        const parts =
          m.content === undefined || m.content === null
            ? []
            : openaiTextParts(m.content, `${at}.content`, true);
        if (Array.isArray(m.tool_calls)) {
          m.tool_calls.forEach((c: unknown, j) => {
            const here = `${at}.tool_calls[${j}]`;
            const { id, name, input: args } = openaiToolCall(c, here);
            names.set(id, name);
            parts.push({ functionCall: { name, args } });
          });
        } else if (m.tool_calls !== undefined && m.tool_calls !== null) {
          throw unsupportedField(`${at}.tool_calls`, 'must be an array.');
        }
        pushContent(contents, 'model', parts);
        return;
      }
      case 'tool': {
        const id = str(m.tool_call_id);
        if (!id) throw unsupportedField(`${at}.tool_call_id`, 'is required.');
        const name = names.get(id);
        if (!name)
          throw unsupportedField(
            `${at}.tool_call_id`,
            'must name a tool call of an earlier assistant message.',
          );
        const output = openaiTextParts(m.content, `${at}.content`)
          .map((p) => p.text as string)
          .join('');
        pushContent(contents, 'user', [functionResponse(name, undefined, output)]);
        return;
      }
      default:
        throw unsupportedField(
          `${at}.role`,
          'Gemini backends take system, developer, user, assistant and tool messages.',
        );
    }
  });
  if (contents.length === 0)
    throw unsupportedField('messages', 'needs at least one user or assistant message.');
  return { system, contents };
}

function userParts(content: unknown, at: string): Json[] {
  if (typeof content === 'string') return content.length > 0 ? [{ text: content }] : [];
  if (!Array.isArray(content)) throw unsupportedField(at, 'must be a string or an array of parts.');
  return content.map((p: unknown, j) => {
    const here = `${at}[${j}]`;
    if (!isObject(p)) throw unsupportedField(here, 'must be an object.');
    if (p.type === 'text' && typeof p.text === 'string') return { text: p.text };
    if (p.type === 'image_url') {
      const image = p.image_url;
      const url = isObject(image) ? str(image.url) : str(image);
      const inline = url ? dataUrl(url) : undefined;
      if (!inline)
        throw unsupportedField(
          `${here}.image_url.url`,
          'Gemini backends take images as base64 data URLs only, not by URL.',
        );
      return { inlineData: { mimeType: inline.mediaType, data: inline.data } };
    }
    if (p.type === 'file' && isObject(p.file)) {
      const inline = typeof p.file.file_data === 'string' ? dataUrl(p.file.file_data) : undefined;
      if (inline) return { inlineData: { mimeType: inline.mediaType, data: inline.data } };
      throw unsupportedField(here, 'Gemini backends take files as base64 data only.');
    }
    throw unsupportedField(`${here}.type`, 'Gemini backends take text, image and file parts.');
  });
}

function convertTools(raw: unknown): FunctionDef[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw unsupportedField('tools', 'must be an array.');
  return raw.map((t: unknown, i) => {
    const at = `tools[${i}]`;
    if (!isObject(t) || t.type !== 'function' || !isObject(t.function))
      throw unsupportedField(at, 'Gemini backends take function tools only.');
    const name = str(t.function.name);
    if (!name) throw unsupportedField(`${at}.function.name`, 'is required.');
    return {
      name,
      description: str(t.function.description),
      schema: isObject(t.function.parameters) ? t.function.parameters : undefined,
    };
  });
}

function convertToolChoice(raw: unknown): CallingMode | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (raw === 'auto') return { mode: 'AUTO' };
  if (raw === 'none') return { mode: 'NONE' };
  if (raw === 'required') return { mode: 'ANY' };
  if (isObject(raw) && raw.type === 'function' && isObject(raw.function)) {
    const name = str(raw.function.name);
    if (name) return { mode: 'ANY', allowed: [name] };
  }
  throw unsupportedField('tool_choice', 'must be auto, none, required or a function.');
}

// ---- response ------------------------------------------------------------------------------

function finishReason(reason: string | undefined, calls: boolean): string {
  if (calls) return 'tool_calls';
  if (reason === 'MAX_TOKENS') return 'length';
  if (isBlockedFinish(reason)) return 'content_filter';
  return 'stop';
}

function openaiUsage(u: Json | undefined): Json {
  const c = usageCounts(u);
  return {
    prompt_tokens: c.prompt,
    completion_tokens: c.output,
    total_tokens: c.prompt + c.output,
    prompt_tokens_details: { cached_tokens: c.cached },
  };
}

class GeminiToOpenaiResponse implements ResponseTranslator {
  private readonly usageChunk: boolean;
  private parser: SseParser | undefined;
  private id = '';
  private started = false;
  private calls = 0;
  private finish: string | undefined;
  private usage: Json | undefined;
  private done = false;

  constructor(
    private readonly req: ExchangeRequest,
    private readonly ctx: ResponseContext,
  ) {
    const so = req.body.stream_options;
    this.usageChunk = req.forcedUsage || (isObject(so) && so.include_usage === true);
  }

  headers(status: number, headers: ReadonlyMap<string, string>): ResponseStart {
    const { start, parser } = sseResponseStart(status, headers, this.ctx.maxEventBytes);
    this.parser = parser;
    return start;
  }

  json(body: Buffer): Buffer {
    const c = readChunk(backendJson(body));
    if (c.blocked) throw safetyError(c.blocked);
    let text = '';
    let reasoning = '';
    const calls: Json[] = [];
    for (const p of c.parts) {
      if (p.kind === 'text') text += p.text;
      else if (p.kind === 'thought') reasoning += p.text;
      else
        calls.push({
          id: p.id ?? `call_${calls.length}`,
          type: 'function',
          function: { name: p.name, arguments: JSON.stringify(p.args ?? {}) },
        });
    }
    const message: Json = {
      role: 'assistant',
      content: text.length > 0 || calls.length === 0 ? text : null,
    };
    if (calls.length > 0) message.tool_calls = calls;
    if (reasoning.length > 0) message.reasoning_content = reasoning;
    const out: Json = {
      id: `chatcmpl-${c.responseId ?? ''}`,
      object: 'chat.completion',
      created: this.ctx.created,
      model: this.req.model,
      choices: [
        {
          index: 0,
          message,
          logprobs: null,
          finish_reason: finishReason(c.finishReason, calls.length > 0),
        },
      ],
      usage: openaiUsage(c.usage),
    };
    return Buffer.from(JSON.stringify(out), 'utf8');
  }

  error(status: number, body: Buffer): Buffer {
    const e = googleError(status, body);
    return Buffer.from(
      JSON.stringify(openaiErrorObject(status, e.message, e.type ?? null)),
      'utf8',
    );
  }

  stream(chunk: Buffer, end: boolean): Buffer {
    const parser = this.parser!;
    let out = '';
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
    for (const e of events) out += this.onEvent(e);
    if (end && !this.done) {
      this.done = true;
      // Gemini's last event carries the finish reason; a stream without one was cut short.
      out +=
        this.finish === undefined
          ? dataEvent(
              openaiErrorObject(502, 'The backend stream ended early.', 'bad_upstream_response'),
            ) + 'data: [DONE]\n\n'
          : this.close();
    }
    return Buffer.from(out, 'utf8');
  }

  private chunk(delta: Json, finish: string | null = null): string {
    return dataEvent({
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.ctx.created,
      model: this.req.model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    });
  }

  private onEvent(e: SseEvent): string {
    if (this.done || e.data === '') return '';
    const v = eventJson(e.data);
    if (!v) return '';
    if (isObject(v.error)) {
      this.done = true;
      const err = googleError(500, Buffer.from(e.data));
      return dataEvent(openaiErrorObject(500, err.message, err.type ?? null)) + 'data: [DONE]\n\n';
    }
    const c: GeminiChunk = readChunk(v);
    if (c.blocked) {
      this.done = true;
      const err = safetyError(c.blocked);
      return dataEvent(openaiErrorObject(400, err.message, 'content_filter')) + 'data: [DONE]\n\n';
    }
    let out = '';
    if (!this.started) {
      this.started = true;
      this.id = `chatcmpl-${c.responseId ?? ''}`;
      out += this.chunk({ role: 'assistant', content: '' });
    }
    for (const p of c.parts) {
      if (p.kind === 'text' && p.text) out += this.chunk({ content: p.text });
      else if (p.kind === 'thought' && p.text) out += this.chunk({ reasoning_content: p.text });
      else if (p.kind === 'call') {
        const index = this.calls++;
        out += this.chunk({
          tool_calls: [
            {
              index,
              id: p.id ?? `call_${index}`,
              type: 'function',
              function: { name: p.name, arguments: JSON.stringify(p.args ?? {}) },
            },
          ],
        });
      }
    }
    if (c.usage) this.usage = c.usage;
    if (c.finishReason) this.finish = finishReason(c.finishReason, this.calls > 0);
    return out;
  }

  private close(): string {
    let out = this.chunk({}, this.finish ?? 'stop');
    if (this.usageChunk && this.usage)
      out += dataEvent({
        id: this.id,
        object: 'chat.completion.chunk',
        created: this.ctx.created,
        model: this.req.model,
        choices: [],
        usage: openaiUsage(this.usage),
      });
    return out + 'data: [DONE]\n\n';
  }
}
