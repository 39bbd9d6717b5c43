import type { Operation } from '../providers/endpoints.js';
import type { SseEvent } from './sse.js';

export type { Operation } from '../providers/endpoints.js';

/**
 * Token usage, normalised across providers.
 *
 * `inputTokens` is every prompt token the caller is charged for, whether it was served from a
 * cache, written to one, or neither; `cachedInputTokens` (cache reads) and
 * `cacheCreationInputTokens` (cache writes) are subsets of it. OpenAI already counts this way
 * (`prompt_tokens` includes `cached_tokens`); Anthropic's `input_tokens` excludes both cache
 * counts, so for Anthropic inputTokens = input_tokens + cache_read_input_tokens +
 * cache_creation_input_tokens. `reasoningTokens` is a subset of `outputTokens`.
 * `totalTokens` = inputTokens + outputTokens unless the provider reports its own total.
 */
export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
  cachedInputTokens: number;
  cacheCreationInputTokens: number;
  reasoningTokens: number;
  estimated: boolean;
}

export const DEFAULT_MAX_TEXT_BYTES = 256 * 1024;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0;
}

function has(u: Obj, key: string): boolean {
  return u[key] !== undefined && u[key] !== null;
}

function fromOpenAiChat(u: Obj): TokenUsage {
  const input = count(u.prompt_tokens);
  const output = count(u.completion_tokens);
  const pd = isObj(u.prompt_tokens_details) ? u.prompt_tokens_details : undefined;
  const cd = isObj(u.completion_tokens_details) ? u.completion_tokens_details : undefined;
  return {
    inputTokens: input,
    outputTokens: output,
    totalTokens: has(u, 'total_tokens') ? count(u.total_tokens) : input + output,
    cachedInputTokens: count(pd?.cached_tokens),
    cacheCreationInputTokens: 0,
    reasoningTokens: count(cd?.reasoning_tokens),
    estimated: false,
  };
}

function fromResponses(u: Obj): TokenUsage {
  const input = count(u.input_tokens);
  const output = count(u.output_tokens);
  const id = isObj(u.input_tokens_details) ? u.input_tokens_details : undefined;
  const od = isObj(u.output_tokens_details) ? u.output_tokens_details : undefined;
  return {
    inputTokens: input,
    outputTokens: output,
    totalTokens: has(u, 'total_tokens') ? count(u.total_tokens) : input + output,
    cachedInputTokens: count(id?.cached_tokens),
    cacheCreationInputTokens: 0,
    reasoningTokens: count(od?.reasoning_tokens),
    estimated: false,
  };
}

interface AnthropicCounts {
  input: number;
  cacheRead: number;
  cacheCreation: number;
  output: number;
}

function fromAnthropic(c: AnthropicCounts): TokenUsage {
  const input = c.input + c.cacheRead + c.cacheCreation;
  return {
    inputTokens: input,
    outputTokens: c.output,
    totalTokens: input + c.output,
    cachedInputTokens: c.cacheRead,
    cacheCreationInputTokens: c.cacheCreation,
    reasoningTokens: 0,
    estimated: false,
  };
}

/** Later Anthropic events repeat only some fields; absent or null ones keep the earlier value. */
function mergeAnthropic(into: AnthropicCounts, u: Obj): void {
  if (has(u, 'input_tokens')) into.input = count(u.input_tokens);
  if (has(u, 'cache_read_input_tokens')) into.cacheRead = count(u.cache_read_input_tokens);
  if (has(u, 'cache_creation_input_tokens'))
    into.cacheCreation = count(u.cache_creation_input_tokens);
  if (has(u, 'output_tokens')) into.output = count(u.output_tokens);
}

/**
 * The usage object's shape decides its family, with the operation only breaking ties: a route may
 * translate between APIs, and the key sets do not overlap except `input_tokens`, whose meaning
 * differs (Anthropic excludes cache tokens, the Responses API includes them).
 */
function normalize(op: Operation, u: Obj): TokenUsage | undefined {
  if (has(u, 'prompt_tokens') || has(u, 'completion_tokens')) return fromOpenAiChat(u);
  if (
    op === 'messages' ||
    has(u, 'cache_read_input_tokens') ||
    has(u, 'cache_creation_input_tokens')
  ) {
    if (!has(u, 'input_tokens') && !has(u, 'output_tokens')) return undefined;
    const c: AnthropicCounts = { input: 0, cacheRead: 0, cacheCreation: 0, output: 0 };
    mergeAnthropic(c, u);
    return fromAnthropic(c);
  }
  if (has(u, 'input_tokens') || has(u, 'output_tokens')) return fromResponses(u);
  return undefined;
}

/** Usage and model from a complete (non-streamed) JSON response body. */
export function usageFromJson(
  op: Operation,
  body: unknown,
): { usage?: TokenUsage; model?: string } {
  const out: { usage?: TokenUsage; model?: string } = {};
  if (!isObj(body)) return out;
  // Some wrappers answer the Responses API with the response nested as in stream events.
  const root =
    op === 'responses' && isObj(body.response) && !isObj(body.usage) ? body.response : body;
  if (typeof root.model === 'string' && root.model !== '') out.model = root.model;
  if (isObj(root.usage)) {
    const usage = normalize(op, root.usage);
    if (usage) out.usage = usage;
  }
  return out;
}

export interface StreamUsageResult {
  /** Final usage as reported by the provider; absent when the stream ended before it. */
  usage?: TokenUsage;
  /**
   * What the provider reported before the stream was cut (Anthropic's message_start gives exact
   * input counts but a placeholder output count); only set when `usage` is not. Feed it to
   * estimateUsage so the exact parts are kept.
   */
  partialUsage?: TokenUsage;
  model?: string;
  /** Generated text and tool-call arguments, at most maxTextBytes of UTF-8. */
  outputText: string;
  /** UTF-8 size of all generated text seen, including what did not fit in outputText. */
  outputTextBytes: number;
}

const RESPONSES_TEXT_EVENTS = new Set([
  'response.output_text.delta',
  'response.refusal.delta',
  'response.function_call_arguments.delta',
  'response.custom_tool_call_input.delta',
  'response.reasoning_text.delta',
  'response.reasoning_summary_text.delta',
]);
const RESPONSES_TERMINAL_EVENTS = new Set([
  'response.completed',
  'response.incomplete',
  'response.failed',
]);
const RESPONSES_MODEL_EVENTS = new Set(['response.created', 'response.in_progress']);
const ANTHROPIC_EVENTS = new Set(['message_start', 'message_delta', 'content_block_delta']);

/**
 * Follows one streamed response event by event. Each event is JSON-parsed at most once, and not at
 * all when its SSE `event:` name shows it cannot carry usage, model or text (pings, block
 * start/stop, `[DONE]`).
 */
export class StreamUsage {
  private readonly op: Operation;
  private readonly maxTextBytes: number;
  private text: string[] = [];
  private textBytes = 0;
  private seenTextBytes = 0;
  private model: string | undefined;
  private usage: TokenUsage | undefined;
  private anthropic: AnthropicCounts | undefined;
  private anthropicFinal = false;

  constructor(op: Operation, opts: { maxTextBytes?: number } = {}) {
    this.op = op;
    this.maxTextBytes = opts.maxTextBytes ?? DEFAULT_MAX_TEXT_BYTES;
  }

  /**
   * `usageOnly` marks OpenAI's extra chunk produced by `stream_options.include_usage` (empty
   * `choices`, usage set): when the gateway forced include_usage on, it drops exactly that event.
   */
  onEvent(e: SseEvent): { usageOnly: boolean } {
    const data = e.data;
    if (data.length === 0 || data.charCodeAt(0) !== 0x7b /* { */) {
      // `[DONE]`, keep-alives, comments, or a non-JSON payload: nothing to account for.
      return NOT_USAGE_ONLY;
    }
    switch (this.op) {
      case 'chat':
      case 'completions':
      case 'embeddings':
        return this.onOpenAiChunk(data);
      case 'responses':
        if (e.event !== undefined && !this.responsesEventMatters(e.event)) return NOT_USAGE_ONLY;
        this.onResponsesEvent(data);
        return NOT_USAGE_ONLY;
      case 'messages':
        if (e.event !== undefined && !ANTHROPIC_EVENTS.has(e.event)) return NOT_USAGE_ONLY;
        this.onAnthropicEvent(data);
        return NOT_USAGE_ONLY;
    }
  }

  result(): StreamUsageResult {
    const out: StreamUsageResult = {
      outputText: this.text.length === 1 ? this.text[0]! : this.text.join(''),
      outputTextBytes: this.seenTextBytes,
    };
    if (this.text.length > 1) this.text = [out.outputText];
    if (this.model !== undefined) out.model = this.model;
    if (this.anthropic) {
      const u = fromAnthropic(this.anthropic);
      if (this.anthropicFinal) out.usage = u;
      else out.partialUsage = u;
    } else if (this.usage) out.usage = this.usage;
    return out;
  }

  private responsesEventMatters(name: string): boolean {
    return (
      RESPONSES_TEXT_EVENTS.has(name) ||
      RESPONSES_TERMINAL_EVENTS.has(name) ||
      (this.model === undefined && RESPONSES_MODEL_EVENTS.has(name))
    );
  }

  private addText(s: unknown): void {
    if (typeof s !== 'string' || s.length === 0) return;
    const bytes = Buffer.byteLength(s);
    this.seenTextBytes += bytes;
    const room = this.maxTextBytes - this.textBytes;
    if (room <= 0) return;
    if (bytes <= room) {
      this.text.push(s);
      this.textBytes += bytes;
      return;
    }
    // A UTF-16 unit is at most 3 UTF-8 bytes, so this cut always fits; precision does not matter
    // for an estimate, the bound does.
    let cut = s.slice(0, room);
    if (Buffer.byteLength(cut) > room) cut = s.slice(0, Math.floor(room / 3));
    this.text.push(cut);
    this.textBytes = this.maxTextBytes;
  }

  private setModel(m: unknown): void {
    if (this.model === undefined && typeof m === 'string' && m !== '') this.model = m;
  }

  private onOpenAiChunk(data: string): { usageOnly: boolean } {
    const chunk = parse(data);
    if (!chunk) return NOT_USAGE_ONLY;
    this.setModel(chunk.model);
    let hasUsage = false;
    if (isObj(chunk.usage)) {
      const u = normalize(this.op, chunk.usage);
      if (u) {
        // Some servers repeat cumulative usage on every chunk; the last one is the total.
        this.usage = u;
        hasUsage = true;
      }
    }
    const choices = chunk.choices;
    if (!Array.isArray(choices)) return NOT_USAGE_ONLY;
    for (const c of choices) {
      if (!isObj(c)) continue;
      this.addText(c.text); // legacy completions
      const d = c.delta;
      if (!isObj(d)) continue;
      this.addText(d.content);
      this.addText(d.refusal);
      if (isObj(d.function_call)) this.addText(d.function_call.arguments);
      if (Array.isArray(d.tool_calls)) {
        for (const tc of d.tool_calls) {
          if (isObj(tc) && isObj(tc.function)) {
            this.addText(tc.function.name);
            this.addText(tc.function.arguments);
          }
        }
      }
    }
    return hasUsage && choices.length === 0 ? USAGE_ONLY : NOT_USAGE_ONLY;
  }

  private onResponsesEvent(data: string): void {
    const ev = parse(data);
    if (!ev) return;
    const type = ev.type;
    if (typeof type !== 'string') return;
    if (RESPONSES_TEXT_EVENTS.has(type)) {
      this.addText(ev.delta);
      return;
    }
    const resp = ev.response;
    if (!isObj(resp)) return;
    if (RESPONSES_TERMINAL_EVENTS.has(type)) {
      // The terminal event names the model that actually served, so it wins over earlier ones.
      if (typeof resp.model === 'string' && resp.model !== '') this.model = resp.model;
      if (isObj(resp.usage)) {
        const u = normalize('responses', resp.usage);
        if (u) this.usage = u;
      }
    } else if (RESPONSES_MODEL_EVENTS.has(type)) {
      this.setModel(resp.model);
    }
  }

  private onAnthropicEvent(data: string): void {
    const ev = parse(data);
    if (!ev) return;
    switch (ev.type) {
      case 'content_block_delta': {
        const d = ev.delta;
        if (!isObj(d)) return;
        if (d.type === 'text_delta') this.addText(d.text);
        else if (d.type === 'input_json_delta') this.addText(d.partial_json);
        else if (d.type === 'thinking_delta') this.addText(d.thinking);
        return;
      }
      case 'message_start': {
        const m = ev.message;
        if (!isObj(m)) return;
        this.setModel(m.model);
        if (isObj(m.usage)) {
          this.anthropic ??= { input: 0, cacheRead: 0, cacheCreation: 0, output: 0 };
          mergeAnthropic(this.anthropic, m.usage);
        }
        return;
      }
      case 'message_delta': {
        // output_tokens here is cumulative, not an increment: keep the latest.
        if (!isObj(ev.usage)) return;
        this.anthropic ??= { input: 0, cacheRead: 0, cacheCreation: 0, output: 0 };
        mergeAnthropic(this.anthropic, ev.usage);
        this.anthropicFinal = true;
        return;
      }
    }
  }
}

const USAGE_ONLY = Object.freeze({ usageOnly: true });
const NOT_USAGE_ONLY = Object.freeze({ usageOnly: false });

function parse(data: string): Obj | undefined {
  try {
    const v: unknown = JSON.parse(data);
    return isObj(v) ? v : undefined;
  } catch {
    // A malformed event is the upstream's problem; accounting falls back to estimates.
    return undefined;
  }
}
