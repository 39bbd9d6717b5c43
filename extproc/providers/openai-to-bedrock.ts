/**
 * OpenAI Chat Completions callers to AWS Bedrock's Converse / ConverseStream.
 *
 * Request: system and developer messages become `system`; user parts (text, base64 images, base64
 * PDFs) become content blocks; assistant `tool_calls` become `toolUse` blocks and `tool` messages
 * `toolResult` blocks in the user turn that follows; tools and tool_choice map to `toolConfig`;
 * max_completion_tokens / max_tokens (held to the gateway's cap), temperature, top_p and `stop`
 * to `inferenceConfig`; the backend's guardrail to `guardrailConfig`. What Converse cannot express
 * (image URLs — Converse takes bytes —, tool_choice none, n > 1, response_format, …) is refused
 * with a 400 naming the field.
 *
 * Response: the answer's text, `toolUse` and reasoning blocks, stop reason and usage in OpenAI's
 * form; errors as OpenAI error objects; the event stream decoded frame by frame and re-sent as
 * chat.completion.chunk events as it arrives (usage from the `metadata` event, which follows
 * `messageStop`).
 */
import type { ResolvedBackend } from '../config/runtime.js';
import {
  bedrockError,
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
  toolInputText,
  usageCounts,
  type ConverseEvent,
} from './bedrock-converse.js';
import {
  openaiErrorObject,
  backendJson,
  dataEvent,
  dataUrl,
  isObject,
  str,
  unsupportedField,
  type Json,
  assistantMessage,
  chatChunk,
  usageOnlyChunk,
} from './common.js';
import {
  openaiConversation,
  openaiTextParts,
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
  'n',
  // OpenAI-side bookkeeping with no effect on the answer: nothing to carry.
  'store',
  'metadata',
  'service_tier',
  'user',
]);
/** Refused only when set to something other than their no-op value. */
const NEUTRAL: Neutral = {
  ...OPENAI_NEUTRAL,
  response_format: (v) => v === null || (isObject(v) && v.type === 'text'),
  reasoning_effort: (v) => v === null || v === 'none',
};

export const openaiToBedrock: Translator = {
  from: 'openai',
  to: 'bedrock-converse',
  operations: ['chat'],
  request(req, backend) {
    return converseRequest(req, backend, () => toConverseRequest(req, backend));
  },
  response(req, _backend, ctx) {
    return new ConverseToOpenaiResponse(req, ctx);
  },
};

export function toConverseRequest(req: ExchangeRequest, backend: ResolvedBackend): Json {
  const b = req.body;
  refuseUnhandled(b, HANDLED, NEUTRAL, 'Bedrock');
  if (b.n !== undefined && b.n !== null && b.n !== 1)
    throw unsupportedField('n', 'Bedrock backends return one choice per request.');

  let documents = 0;
  const { system, messages } = openaiConversation(
    b.messages,
    conversation(() => ++documents),
  );
  const stop = openaiStop(b.stop);
  const requested = b.max_completion_tokens ?? b.max_tokens;
  const inference = inferenceConfig(
    {
      maxTokens: cappedMaxTokens(requested, req.outputTokenCap),
      temperature: b.temperature,
      topP: b.top_p,
      stopSequences: stop,
    },
    { temperature: 'temperature' },
  );

  const tools = openaiTools(b.tools, 'Bedrock');
  const config = toolConfig(tools, openaiToolChoice(b.tool_choice));
  if (b.parallel_tool_calls === false && tools.length > 0)
    throw unsupportedField(
      'parallel_tool_calls',
      'Bedrock backends cannot be told to call one tool at a time.',
    );
  // Converse needs toolConfig whenever the conversation holds tool blocks.
  return converseBody({
    messages,
    system,
    inference,
    tools: config,
    guardrail: guardrailConfig(backend, req.body.stream === true),
  });
}

/** The OpenAI conversation in Converse's words; `documents` numbers the PDFs (names must differ). */
function conversation(documents: () => number): OpenaiConversation {
  return {
    backend: 'Bedrock',
    texts: (texts) => texts.filter((text) => text.length > 0).map((text) => ({ text })),
    user: (content, at) => userBlocks(content, at, documents),
    toolCall: ({ id, name, input }) => ({ toolUse: { toolUseId: id, name, input } }),
    toolResult(id, _name, content, at) {
      const text = openaiTextParts(content, `${at}.content`);
      return { toolResult: { toolUseId: id, content: text.length > 0 ? text : [{ text: '' }] } };
    },
    push: pushTurn,
  };
}

function userBlocks(content: unknown, at: string, nextDocument: () => number): Json[] {
  if (typeof content === 'string') return content.length > 0 ? [{ text: content }] : [];
  if (!Array.isArray(content)) throw unsupportedField(at, 'must be a string or an array of parts.');
  const out: Json[] = [];
  content.forEach((p: unknown, j) => {
    const here = `${at}[${j}]`;
    if (!isObject(p)) throw unsupportedField(here, 'must be an object.');
    if (p.type === 'text' && typeof p.text === 'string') {
      if (p.text.length > 0) out.push({ text: p.text });
      return;
    }
    if (p.type === 'image_url') {
      const image = p.image_url;
      const url = isObject(image) ? str(image.url) : str(image);
      if (!url) throw unsupportedField(`${here}.image_url.url`, 'is required.');
      const inline = dataUrl(url);
      if (!inline)
        throw unsupportedField(
          `${here}.image_url.url`,
          'Bedrock backends take images as base64 data URLs only, not by URL.',
        );
      out.push(imageBlock(inline.mediaType, inline.data, `${here}.image_url.url`));
      return;
    }
    if (p.type === 'file' && isObject(p.file)) {
      const inline = typeof p.file.file_data === 'string' ? dataUrl(p.file.file_data) : undefined;
      if (inline?.mediaType === 'application/pdf') {
        out.push(pdfBlock(inline.data, nextDocument()));
        return;
      }
      throw unsupportedField(here, 'Bedrock backends take files as base64 PDF data only.');
    }
    throw unsupportedField(`${here}.type`, 'Bedrock backends take text, image and PDF parts.');
  });
  return out;
}

// ---- response ------------------------------------------------------------------------------

const FINISH: Readonly<Record<string, string>> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  guardrail_intervened: 'content_filter',
  content_filtered: 'content_filter',
};

function finishReason(stop: unknown): string {
  return (typeof stop === 'string' && FINISH[stop]) || 'stop';
}

/** Converse usage → OpenAI's: cache reads and writes are prompt tokens too. */
export function openaiUsageOf(u: unknown): Json {
  const c = usageCounts(u);
  const prompt = c.input + c.cacheRead + c.cacheWrite;
  return {
    prompt_tokens: prompt,
    completion_tokens: c.output,
    total_tokens: prompt + c.output,
    prompt_tokens_details: { cached_tokens: c.cacheRead },
  };
}

class ConverseToOpenaiResponse extends EventStreamResponse implements ResponseTranslator {
  private readonly usageChunk: boolean;
  private id = '';
  /** Converse block index → OpenAI tool call index, for toolUse blocks. */
  private readonly toolIndex = new Map<number, number>();
  private finish: string | undefined;
  private started = false;

  constructor(
    private readonly req: ExchangeRequest,
    private readonly ctx: ResponseContext,
  ) {
    super(ctx.maxEventBytes);
    const so = req.body.stream_options;
    this.usageChunk = req.forcedUsage || (isObject(so) && so.include_usage === true);
  }

  override headers(status: number, headers: ReadonlyMap<string, string>): ResponseStart {
    this.id = `chatcmpl-${headers.get('x-amzn-requestid') ?? ''}`;
    return super.headers(status, headers);
  }

  json(body: Buffer): Buffer {
    const { content, stopReason, usage } = converseAnswer(backendJson(body));
    let text = '';
    let reasoning = '';
    const calls: Json[] = [];
    for (const b of content) {
      if (typeof b.text === 'string') text += b.text;
      else if (isObject(b.reasoningContent) && isObject(b.reasoningContent.reasoningText))
        reasoning += str(b.reasoningContent.reasoningText.text) ?? '';
      else if (isObject(b.toolUse))
        calls.push({
          id: str(b.toolUse.toolUseId) ?? '',
          type: 'function',
          function: { name: str(b.toolUse.name) ?? '', arguments: toolInputText(b.toolUse.input) },
        });
    }
    const message = assistantMessage(text, reasoning, calls);
    const out: Json = {
      id: this.id,
      object: 'chat.completion',
      created: this.ctx.created,
      model: this.req.model,
      choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason(stopReason) }],
      usage: openaiUsageOf(usage),
    };
    return Buffer.from(JSON.stringify(out), 'utf8');
  }

  error(status: number, body: Buffer): Buffer {
    const e = bedrockError(status, this.errorType, body);
    return Buffer.from(JSON.stringify(openaiErrorObject(status, e.message, e.type)), 'utf8');
  }

  protected failure(message: string): string {
    return dataEvent(openaiErrorObject(502, message, 'bad_upstream_response')) + 'data: [DONE]\n\n';
  }

  private chunk(delta: Json, finish: string | null = null): string {
    return chatChunk(
      { id: this.id, created: this.ctx.created, model: this.req.model },
      delta,
      finish,
    );
  }

  private start(): string {
    if (this.started) return '';
    this.started = true;
    return this.chunk({ role: 'assistant', content: '' });
  }

  protected onEvent(e: ConverseEvent): string {
    if (e.kind === 'exception') {
      this.done = true;
      const status = exceptionStatus(e.type);
      return dataEvent(openaiErrorObject(status, e.message, e.type)) + 'data: [DONE]\n\n';
    }
    const p = e.payload;
    const index = typeof p.contentBlockIndex === 'number' ? p.contentBlockIndex : 0;
    switch (e.type) {
      case 'messageStart':
        return this.start();
      case 'contentBlockStart': {
        const start = isObject(p.start) ? p.start : {};
        if (!isObject(start.toolUse)) return this.start();
        const n = this.toolIndex.size;
        this.toolIndex.set(index, n);
        return (
          this.start() +
          this.chunk({
            tool_calls: [
              {
                index: n,
                id: str(start.toolUse.toolUseId) ?? '',
                type: 'function',
                function: { name: str(start.toolUse.name) ?? '', arguments: '' },
              },
            ],
          })
        );
      }
      case 'contentBlockDelta': {
        const d = isObject(p.delta) ? p.delta : {};
        if (typeof d.text === 'string') return this.start() + this.chunk({ content: d.text });
        if (isObject(d.toolUse)) {
          const n = this.toolIndex.get(index);
          const part = str(d.toolUse.input) ?? '';
          if (n === undefined || part === '') return '';
          return this.chunk({ tool_calls: [{ index: n, function: { arguments: part } }] });
        }
        if (isObject(d.reasoningContent) && typeof d.reasoningContent.text === 'string')
          return this.start() + this.chunk({ reasoning_content: d.reasoningContent.text });
        return '';
      }
      case 'messageStop':
        this.finish = finishReason(p.stopReason);
        return '';
      case 'metadata':
        return this.close(isObject(p.usage) ? p.usage : {});
      default:
        // contentBlockStop, and event types added later.
        return '';
    }
  }

  private close(usage: Json | undefined): string {
    this.done = true;
    let out = this.start() + this.chunk({}, this.finish ?? 'stop');
    if (this.usageChunk && usage !== undefined) {
      out += usageOnlyChunk(
        { id: this.id, created: this.ctx.created, model: this.req.model },
        openaiUsageOf(usage),
      );
    }
    return out + 'data: [DONE]\n\n';
  }
}
