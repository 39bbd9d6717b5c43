/**
 * Anthropic Messages callers to AWS Bedrock's Converse / ConverseStream.
 *
 * Request: `system` (a string or text blocks), text / base64 image / base64 PDF blocks, `tool_use`
 * and `tool_result` blocks (is_error → status error), past `thinking` blocks (with their
 * signatures), `cache_control` as a Converse cache point after the block; tools and tool_choice to
 * `toolConfig`; max_tokens (held to the gateway's cap), temperature, top_p and stop_sequences to
 * `inferenceConfig`; `top_k` and `thinking` go to the model as additionalModelRequestFields (the
 * fields Claude on Bedrock reads there); the backend's guardrail to `guardrailConfig`. Server
 * tools, image URLs and other fields Converse cannot express are refused with a 400 naming them.
 *
 * Response: a Messages object (text, tool_use, thinking blocks; stop_reason; usage with cache
 * counts); errors as Anthropic error objects; the event stream re-sent as Messages events as it
 * arrives — message_start, content_block_* with indices in order, and message_delta carrying the
 * stop reason and usage once Converse's `metadata` event (which follows `messageStop`) has them.
 */
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import {
  anthropicBedrockInvoke,
  anthropicErrorObject,
  bedrockAnthropicError,
} from './anthropic-bedrock-invoke.js';
import {
  cappedMaxTokens,
  converseAnswer,
  converseBody,
  conversePath,
  ConverseStreamDecoder,
  exceptionStatus,
  guardrailConfig,
  imageBlock,
  inferenceConfig,
  pdfBlock,
  pushTurn,
  toolConfig,
  usageCounts,
  type ConverseEvent,
  type ToolChoice,
  type ToolDef,
} from './bedrock-converse.js';
import { backendJson, isObject, namedEvent, str, unsupportedField, type Json } from './common.js';
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
  'thinking',
  // Anthropic-side bookkeeping with no effect on the answer.
  'metadata',
]);

export const anthropicToBedrock: Translator = {
  from: 'anthropic',
  to: 'bedrock-converse',
  operations: ['messages'],
  request(req, backend) {
    if (backend.aws?.anthropicInvoke) return anthropicBedrockInvoke.request(req, backend);
    const stream = req.body.stream === true;
    return {
      path: conversePath(backend, backend.modelOverride ?? req.model, stream),
      headers: [
        ['content-type', 'application/json'],
        ['accept', stream ? 'application/vnd.amazon.eventstream' : 'application/json'],
      ],
      body: Buffer.from(JSON.stringify(toConverseFromMessages(req, backend)), 'utf8'),
    };
  },
  response(req, backend, ctx) {
    if (backend.aws?.anthropicInvoke) return anthropicBedrockInvoke.response(req, backend, ctx);
    return new ConverseToAnthropicResponse(req, ctx);
  },
};

export function toConverseFromMessages(req: ExchangeRequest, backend: ResolvedBackend): Json {
  const b = req.body;
  for (const [k, v] of Object.entries(b)) {
    if (HANDLED.has(k) || v === undefined) continue;
    throw unsupportedField(k, 'Bedrock backends have no equivalent of this field.');
  }
  let documents = 0;
  const nextDocument = (): number => ++documents;
  const system = systemBlocks(b.system);
  if (!Array.isArray(b.messages) || b.messages.length === 0)
    throw unsupportedField('messages', 'must be a non-empty array.');
  const messages: Json[] = [];
  b.messages.forEach((m: unknown, i) => {
    const at = `messages[${i}]`;
    if (!isObject(m) || (m.role !== 'user' && m.role !== 'assistant'))
      throw unsupportedField(`${at}.role`, 'must be user or assistant.');
    pushTurn(messages, m.role, contentBlocks(m.content, `${at}.content`, nextDocument));
  });
  if (messages.length === 0)
    throw unsupportedField('messages', 'needs at least one non-empty message.');

  const stop = b.stop_sequences;
  if (stop !== undefined && !(Array.isArray(stop) && stop.every((s) => typeof s === 'string')))
    throw unsupportedField('stop_sequences', 'must be an array of strings.');
  const inference = inferenceConfig(
    {
      maxTokens: cappedMaxTokens(b.max_tokens, req.outputTokenCap),
      temperature: b.temperature,
      topP: b.top_p,
      stopSequences: stop,
    },
    { temperature: 'temperature' },
  );
  const additional: Json = {};
  if (b.top_k !== undefined && b.top_k !== null) additional.top_k = b.top_k;
  if (isObject(b.thinking) && b.thinking.type !== 'disabled') additional.thinking = b.thinking;

  const tools = convertTools(b.tools);
  const choice = convertToolChoice(b.tool_choice, tools.length > 0);
  return converseBody({
    messages,
    system,
    inference,
    tools: tools.length > 0 ? toolConfig(tools, choice) : undefined,
    guardrail: guardrailConfig(backend, b.stream === true),
    additional,
  });
}

const CACHE_POINT: Json = { cachePoint: { type: 'default' } };

function systemBlocks(raw: unknown): Json[] {
  if (raw === undefined || raw === null) return [];
  if (typeof raw === 'string') return raw.length > 0 ? [{ text: raw }] : [];
  if (!Array.isArray(raw)) throw unsupportedField('system', 'must be a string or text blocks.');
  const out: Json[] = [];
  raw.forEach((blk: unknown, i) => {
    if (!isObject(blk) || blk.type !== 'text' || typeof blk.text !== 'string')
      throw unsupportedField(`system[${i}]`, 'only text blocks are taken.');
    if (blk.text.length > 0) out.push({ text: blk.text });
    if (blk.cache_control) out.push(CACHE_POINT);
  });
  return out;
}

function contentBlocks(content: unknown, at: string, nextDocument: () => number): Json[] {
  if (typeof content === 'string') return content.length > 0 ? [{ text: content }] : [];
  if (!Array.isArray(content))
    throw unsupportedField(at, 'must be a string or an array of blocks.');
  const out: Json[] = [];
  content.forEach((blk: unknown, j) => {
    const here = `${at}[${j}]`;
    if (!isObject(blk)) throw unsupportedField(here, 'must be an object.');
    const converted = block(blk, here, nextDocument);
    if (converted) out.push(converted);
    if (blk.cache_control) out.push(CACHE_POINT);
  });
  return out;
}

function base64Source(src: unknown, at: string): { mediaType: string; data: string } {
  if (isObject(src) && src.type === 'base64' && typeof src.data === 'string')
    return { mediaType: str(src.media_type) ?? '', data: src.data };
  throw unsupportedField(`${at}.source`, 'Bedrock backends take base64 data only, not URLs.');
}

function block(b: Json, at: string, nextDocument: () => number): Json | undefined {
  switch (b.type) {
    case 'text': {
      const text = str(b.text);
      if (text === undefined) throw unsupportedField(`${at}.text`, 'is required.');
      return text.length > 0 ? { text } : undefined;
    }
    case 'image': {
      const s = base64Source(b.source, at);
      return imageBlock(s.mediaType, s.data, `${at}.source.media_type`);
    }
    case 'document': {
      const s = base64Source(b.source, at);
      if (s.mediaType !== 'application/pdf')
        throw unsupportedField(`${at}.source.media_type`, 'Bedrock backends take PDF documents.');
      return pdfBlock(s.data, nextDocument());
    }
    case 'tool_use': {
      const id = str(b.id);
      const name = str(b.name);
      if (!id || !name) throw unsupportedField(at, 'needs an id and a name.');
      return { toolUse: { toolUseId: id, name, input: isObject(b.input) ? b.input : {} } };
    }
    case 'tool_result': {
      const id = str(b.tool_use_id);
      if (!id) throw unsupportedField(`${at}.tool_use_id`, 'is required.');
      const inner = toolResultContent(b.content, `${at}.content`);
      const result: Json = { toolUseId: id, content: inner.length > 0 ? inner : [{ text: '' }] };
      if (b.is_error === true) result.status = 'error';
      return { toolResult: result };
    }
    case 'thinking': {
      const text = str(b.thinking) ?? '';
      const reasoningText: Json = { text };
      if (typeof b.signature === 'string') reasoningText.signature = b.signature;
      return { reasoningContent: { reasoningText } };
    }
    case 'redacted_thinking':
      return { reasoningContent: { redactedContent: str(b.data) ?? '' } };
    default:
      throw unsupportedField(
        `${at}.type`,
        'Bedrock backends take text, image, document, tool_use, tool_result and thinking blocks.',
      );
  }
}

function toolResultContent(content: unknown, at: string): Json[] {
  if (content === undefined || content === null) return [];
  if (typeof content === 'string') return content.length > 0 ? [{ text: content }] : [];
  if (!Array.isArray(content))
    throw unsupportedField(at, 'must be a string or an array of blocks.');
  const out: Json[] = [];
  content.forEach((blk: unknown, j) => {
    const here = `${at}[${j}]`;
    if (isObject(blk) && blk.type === 'text' && typeof blk.text === 'string') {
      if (blk.text.length > 0) out.push({ text: blk.text });
    } else if (isObject(blk) && blk.type === 'image') {
      const s = base64Source(blk.source, here);
      out.push(imageBlock(s.mediaType, s.data, `${here}.source.media_type`));
    } else {
      throw unsupportedField(here, 'tool results take text and image blocks.');
    }
  });
  return out;
}

function convertTools(raw: unknown): ToolDef[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw unsupportedField('tools', 'must be an array.');
  return raw.map((t: unknown, i) => {
    const at = `tools[${i}]`;
    if (!isObject(t) || (t.type !== undefined && t.type !== 'custom'))
      throw unsupportedField(at, 'Bedrock backends take custom tools only, not server tools.');
    const name = str(t.name);
    if (!name) throw unsupportedField(`${at}.name`, 'is required.');
    return {
      name,
      description: str(t.description),
      schema: isObject(t.input_schema) ? t.input_schema : { type: 'object', properties: {} },
    };
  });
}

function convertToolChoice(raw: unknown, tools: boolean): ToolChoice | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isObject(raw)) throw unsupportedField('tool_choice', 'must be an object.');
  if (raw.disable_parallel_tool_use === true)
    throw unsupportedField(
      'tool_choice.disable_parallel_tool_use',
      'Bedrock backends cannot be told to call one tool at a time.',
    );
  switch (raw.type) {
    case 'auto':
      return undefined;
    case 'none':
      if (!tools) return undefined;
      throw unsupportedField(
        'tool_choice',
        'Bedrock backends cannot be told not to call tools that are offered; send no tools instead.',
      );
    case 'any':
      return { any: {} };
    case 'tool': {
      const name = str(raw.name);
      if (name) return { tool: { name } };
      throw unsupportedField('tool_choice.name', 'is required.');
    }
    default:
      throw unsupportedField('tool_choice.type', 'must be auto, any, tool or none.');
  }
}

// ---- response ------------------------------------------------------------------------------

const STOP: Readonly<Record<string, string>> = {
  end_turn: 'end_turn',
  stop_sequence: 'stop_sequence',
  max_tokens: 'max_tokens',
  tool_use: 'tool_use',
  model_context_window_exceeded: 'model_context_window_exceeded',
  guardrail_intervened: 'refusal',
  content_filtered: 'refusal',
};

function stopReason(s: unknown): string {
  return (typeof s === 'string' && STOP[s]) || 'end_turn';
}

function anthropicUsageOf(u: unknown): Json {
  const c = usageCounts(u);
  return {
    input_tokens: c.input,
    output_tokens: c.output,
    cache_read_input_tokens: c.cacheRead,
    cache_creation_input_tokens: c.cacheWrite,
  };
}

type Open = { kind: 'text' | 'thinking' | 'tool'; index: number };

class ConverseToAnthropicResponse implements ResponseTranslator {
  private decoder: ConverseStreamDecoder | undefined;
  private id = '';
  private errorType: string | undefined;
  private started = false;
  /** The Converse block being streamed and the Anthropic index it was given. */
  private open: (Open & { from: number }) | undefined;
  private next = 0;
  private stop: string | undefined;
  private done = false;

  constructor(
    private readonly req: ExchangeRequest,
    private readonly ctx: ResponseContext,
  ) {}

  headers(status: number, headers: ReadonlyMap<string, string>): ResponseStart {
    const type = (headers.get('content-type') ?? '').toLowerCase();
    const ok = status >= 200 && status < 300;
    this.id = `msg_bdrk_${(headers.get('x-amzn-requestid') ?? '').replace(/[^A-Za-z0-9]/g, '')}`;
    this.errorType = headers.get('x-amzn-errortype');
    const stream = ok && type.startsWith('application/vnd.amazon.eventstream');
    if (stream) this.decoder = new ConverseStreamDecoder(this.ctx.maxEventBytes);
    return {
      body: stream ? 'stream' : 'whole',
      setHeaders: [['content-type', stream ? 'text/event-stream' : 'application/json']],
      removeHeaders: ['x-amzn-errortype'],
    };
  }

  json(body: Buffer): Buffer {
    const { content, stopReason: s, usage } = converseAnswer(backendJson(body));
    const blocks: Json[] = [];
    for (const b of content) {
      if (typeof b.text === 'string') blocks.push({ type: 'text', text: b.text });
      else if (isObject(b.toolUse))
        blocks.push({
          type: 'tool_use',
          id: str(b.toolUse.toolUseId) ?? '',
          name: str(b.toolUse.name) ?? '',
          input: isObject(b.toolUse.input) ? b.toolUse.input : {},
        });
      else if (isObject(b.reasoningContent)) {
        const r = b.reasoningContent;
        if (isObject(r.reasoningText))
          blocks.push({
            type: 'thinking',
            thinking: str(r.reasoningText.text) ?? '',
            signature: str(r.reasoningText.signature) ?? '',
          });
        else if (typeof r.redactedContent === 'string')
          blocks.push({ type: 'redacted_thinking', data: r.redactedContent });
      }
    }
    const out: Json = {
      id: this.id,
      type: 'message',
      role: 'assistant',
      model: this.req.model,
      content: blocks,
      stop_reason: stopReason(s),
      stop_sequence: null,
      usage: anthropicUsageOf(usage),
    };
    return Buffer.from(JSON.stringify(out), 'utf8');
  }

  error(status: number, body: Buffer): Buffer {
    return bedrockAnthropicError(status, this.errorType, body);
  }

  stream(chunk: Buffer, end: boolean): Buffer {
    let out = '';
    try {
      for (const e of this.decoder!.push(chunk)) out += this.onEvent(e);
      if (end) this.decoder!.end();
    } catch (err) {
      if (!this.done) {
        this.done = true;
        const message = err instanceof SluiceError ? err.message : 'The backend stream broke.';
        out += namedEvent(anthropicErrorObject(502, message));
      }
      return Buffer.from(out, 'utf8');
    }
    // A stream cut before its metadata event is no answer: the caller hears so, the usage is
    // estimated.
    if (end && !this.done) {
      this.done = true;
      out += namedEvent(anthropicErrorObject(502, 'The backend stream ended early.'));
    }
    return Buffer.from(out, 'utf8');
  }

  private start(): string {
    if (this.started) return '';
    this.started = true;
    return namedEvent({
      type: 'message_start',
      message: {
        id: this.id,
        type: 'message',
        role: 'assistant',
        model: this.req.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        // Converse states usage only at the end (metadata): message_delta carries it then.
        usage: { input_tokens: 0, output_tokens: 0 },
      },
    });
  }

  /** Opens a block for Converse block `from` unless it is the one open; closes the previous. */
  private ensure(from: number, kind: Open['kind'], startBlock: Json): string {
    if (this.open && this.open.from === from && this.open.kind === kind) return '';
    let out = this.closeBlock();
    const index = this.next++;
    this.open = { kind, index, from };
    out += namedEvent({ type: 'content_block_start', index, content_block: startBlock });
    return out;
  }

  private closeBlock(): string {
    if (!this.open) return '';
    const index = this.open.index;
    this.open = undefined;
    return namedEvent({ type: 'content_block_stop', index });
  }

  private onEvent(e: ConverseEvent): string {
    if (this.done) return '';
    if (e.kind === 'exception') {
      this.done = true;
      return namedEvent(anthropicErrorObject(exceptionStatus(e.type), e.message));
    }
    const p = e.payload;
    const from = typeof p.contentBlockIndex === 'number' ? p.contentBlockIndex : 0;
    switch (e.type) {
      case 'messageStart':
        return this.start();
      case 'contentBlockStart': {
        const start = isObject(p.start) ? p.start : {};
        if (!isObject(start.toolUse)) return this.start();
        return (
          this.start() +
          this.ensure(from, 'tool', {
            type: 'tool_use',
            id: str(start.toolUse.toolUseId) ?? '',
            name: str(start.toolUse.name) ?? '',
            input: {},
          })
        );
      }
      case 'contentBlockDelta': {
        const d = isObject(p.delta) ? p.delta : {};
        if (typeof d.text === 'string')
          return (
            this.start() +
            this.ensure(from, 'text', { type: 'text', text: '' }) +
            namedEvent({
              type: 'content_block_delta',
              index: this.open!.index,
              delta: { type: 'text_delta', text: d.text },
            })
          );
        if (isObject(d.toolUse)) {
          if (this.open?.from !== from || this.open.kind !== 'tool') return '';
          const part = str(d.toolUse.input) ?? '';
          if (part === '') return '';
          return namedEvent({
            type: 'content_block_delta',
            index: this.open.index,
            delta: { type: 'input_json_delta', partial_json: part },
          });
        }
        if (isObject(d.reasoningContent)) {
          const r = d.reasoningContent;
          const open =
            this.start() +
            this.ensure(from, 'thinking', { type: 'thinking', thinking: '', signature: '' });
          if (typeof r.text === 'string')
            return (
              open +
              namedEvent({
                type: 'content_block_delta',
                index: this.open!.index,
                delta: { type: 'thinking_delta', thinking: r.text },
              })
            );
          if (typeof r.signature === 'string')
            return (
              open +
              namedEvent({
                type: 'content_block_delta',
                index: this.open!.index,
                delta: { type: 'signature_delta', signature: r.signature },
              })
            );
          return open;
        }
        return '';
      }
      case 'contentBlockStop':
        return this.open?.from === from ? this.closeBlock() : '';
      case 'messageStop':
        this.stop = stopReason(p.stopReason);
        return this.closeBlock();
      case 'metadata':
        return this.close(isObject(p.usage) ? p.usage : {});
      default:
        return '';
    }
  }

  private close(usage: Json | undefined): string {
    this.done = true;
    let out = this.start() + this.closeBlock();
    const delta: Json = {
      type: 'message_delta',
      delta: { stop_reason: this.stop ?? 'end_turn', stop_sequence: null },
    };
    if (usage !== undefined) delta.usage = anthropicUsageOf(usage);
    out += namedEvent(delta as Json & { type: string });
    return out + namedEvent({ type: 'message_stop' });
  }
}
