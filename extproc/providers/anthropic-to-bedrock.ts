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
import { anthropicBedrockInvoke, bedrockAnthropicError } from './anthropic-bedrock-invoke.js';
import {
  cappedMaxTokens,
  converseAnswer,
  converseBody,
  converseRequest,
  EventStreamResponse,
  exceptionStatus,
  guardrailConfig,
  imageBlock,
  inferenceConfig,
  pdfBlock,
  pushTurn,
  toolConfig,
  usageCounts,
  type ConverseEvent,
} from './bedrock-converse.js';
import {
  backendJson,
  isObject,
  messageEnd,
  messageStart,
  namedEvent,
  str,
  unsupportedField,
  type Json,
} from './common.js';
import { anthropicErrorObject } from './error-body.js';
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
    return converseRequest(req, backend, () => toConverseFromMessages(req, backend));
  },
  response(req, backend, ctx) {
    if (backend.aws?.anthropicInvoke) return anthropicBedrockInvoke.response(req, backend, ctx);
    return new ConverseToAnthropicResponse(req, ctx);
  },
};

export function toConverseFromMessages(req: ExchangeRequest, backend: ResolvedBackend): Json {
  const b = req.body;
  refuseUnhandled(b, HANDLED, {}, 'Bedrock');
  let documents = 0;
  const nextDocument = (): number => ++documents;
  const system = anthropicSystem(b.system).flatMap(({ text, cache }) => [
    ...(text.length > 0 ? [{ text }] : []),
    ...(cache ? [CACHE_POINT] : []),
  ]);
  const messages = anthropicTurns(
    b.messages,
    (blk, at) => {
      const converted = block(blk, at, nextDocument);
      // cache_control marks a cache breakpoint after its block: a Converse cachePoint.
      return [...(converted ? [converted] : []), ...(blk.cache_control ? [CACHE_POINT] : [])];
    },
    pushTurn,
  );

  const stop = anthropicStop(b.stop_sequences);
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

  const tools = anthropicTools(
    b.tools,
    'Bedrock backends take custom tools only, not server tools.',
  );
  return converseBody({
    messages,
    system,
    inference,
    tools: toolConfig(tools, anthropicToolChoice(b.tool_choice, 'Bedrock')),
    guardrail: guardrailConfig(backend, b.stream === true),
    additional,
  });
}

const CACHE_POINT: Json = { cachePoint: { type: 'default' } };

function block(b: Json, at: string, nextDocument: () => number): Json | undefined {
  switch (b.type) {
    case 'text':
      return anthropicText(b, at)[0];
    case 'image': {
      const s = base64Source(b.source, at, 'Bedrock');
      return imageBlock(s.mediaType, s.data, `${at}.source.media_type`);
    }
    case 'document': {
      const s = base64Source(b.source, at, 'Bedrock');
      if (s.mediaType !== 'application/pdf')
        throw unsupportedField(`${at}.source.media_type`, 'Bedrock backends take PDF documents.');
      return pdfBlock(s.data, nextDocument());
    }
    case 'tool_use': {
      const { id, name, input } = anthropicToolUse(b, at);
      return { toolUse: { toolUseId: id, name, input } };
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
      const s = base64Source(blk.source, here, 'Bedrock');
      out.push(imageBlock(s.mediaType, s.data, `${here}.source.media_type`));
    } else {
      throw unsupportedField(here, 'tool results take text and image blocks.');
    }
  });
  return out;
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

class ConverseToAnthropicResponse extends EventStreamResponse implements ResponseTranslator {
  private id = '';
  private started = false;
  /** The Converse block being streamed and the Anthropic index it was given. */
  private open: (Open & { from: number }) | undefined;
  private next = 0;
  private stop: string | undefined;

  constructor(
    private readonly req: ExchangeRequest,
    ctx: ResponseContext,
  ) {
    super(ctx.maxEventBytes);
  }

  override headers(status: number, headers: ReadonlyMap<string, string>): ResponseStart {
    this.id = `msg_bdrk_${(headers.get('x-amzn-requestid') ?? '').replace(/[^A-Za-z0-9]/g, '')}`;
    return super.headers(status, headers);
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

  protected failure(message: string): string {
    return namedEvent(anthropicErrorObject(502, message));
  }

  private start(): string {
    if (this.started) return '';
    this.started = true;
    return messageStart(this.id, this.req.model);
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

  protected onEvent(e: ConverseEvent): string {
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
    return (
      this.start() +
      this.closeBlock() +
      messageEnd(this.stop ?? 'end_turn', usage === undefined ? undefined : anthropicUsageOf(usage))
    );
  }
}
