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
import type { SseEvent, SseParser } from '../usage/sse.js';
import {
  openaiErrorObject,
  backendJson,
  dataEvent,
  dataUrl,
  eventJson,
  isObject,
  str,
  unsupportedField,
  type Json,
  sseEvents,
  sseResponseStart,
  assistantMessage,
  chatChunk,
  usageOnlyChunk,
} from './common.js';
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
  type GeminiChunk,
} from './gemini-generate.js';
import {
  openaiConversation,
  openaiTexts,
  openaiToolChoice,
  openaiTools,
  type OpenaiConversation,
  OPENAI_NEUTRAL,
  openaiStop,
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
/** Refused only when set to something other than their no-op value. */
const NEUTRAL: Neutral = {
  ...OPENAI_NEUTRAL,
  parallel_tool_calls: (v) => v === null || v === true,
  reasoning_effort: (v) => v === null || v === 'none',
};

export const openaiToGemini: Translator = {
  from: 'openai',
  to: 'gemini',
  operations: ['chat'],
  request(req, backend) {
    return generateRequest(req, backend, () => toGeminiRequest(req));
  },
  response(req, _backend, ctx) {
    return new GeminiToOpenaiResponse(req, ctx);
  },
};

export function toGeminiRequest(req: ExchangeRequest): Json {
  const b = req.body;
  refuseUnhandled(b, HANDLED, NEUTRAL, 'Gemini');
  if (b.n !== undefined && b.n !== null && b.n !== 1)
    throw unsupportedField('n', 'this gateway asks Gemini backends for one choice per request.');
  const { system, messages: contents } = openaiConversation(b.messages, CONVERSATION);
  const stop = openaiStop(b.stop);
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
  const tools = geminiTools(openaiTools(b.tools, 'Gemini'));
  if (tools) out.tools = tools;
  const tc = toolConfig(openaiToolChoice(b.tool_choice));
  if (tc) out.toolConfig = tc;
  if (Object.keys(generation).length > 0) out.generationConfig = generation;
  return out;
}

/** The OpenAI conversation in Gemini's words: `contents` of user and model turns. */
const CONVERSATION: OpenaiConversation = {
  backend: 'Gemini',
  texts: (texts) => texts.filter((text) => text.length > 0).map((text) => ({ text })),
  user: userParts,
  toolCall: ({ name, input: args }) => ({ functionCall: { name, args } }),
  toolResult(_id, name, content, at) {
    if (!name)
      throw unsupportedField(
        `${at}.tool_call_id`,
        'must name a tool call of an earlier assistant message.',
      );
    const output = openaiTexts(content, `${at}.content`).join('');
    return functionResponse(name, undefined, output);
  },
  push: (contents, role, parts) => pushContent(contents, role === 'user' ? 'user' : 'model', parts),
};

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
    const message = assistantMessage(text, reasoning, calls);
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
    let out = '';
    for (const e of sseEvents(this.parser!, chunk, end, this.ctx.maxEventBytes))
      out += this.onEvent(e);
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
    return chatChunk(
      { id: this.id, created: this.ctx.created, model: this.req.model },
      delta,
      finish,
    );
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
      out += usageOnlyChunk(
        { id: this.id, created: this.ctx.created, model: this.req.model },
        openaiUsage(this.usage),
      );
    return out + 'data: [DONE]\n\n';
  }
}
