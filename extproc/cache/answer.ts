/**
 * An answer in its stored form, and back. One canonical form per caller API, the non-streamed
 * answer (an OpenAI `chat.completion`, an Anthropic `message`, an embeddings list), because
 * either delivery can be rebuilt from it: a streamed miss is assembled into it here, and a
 * streamed hit is replayed from it as the caller's event stream. Only complete answers are
 * assembled (a stream that ends before `[DONE]` / `message_stop`, or a choice without a finish
 * reason, is not an answer to serve again); what this module cannot rebuild faithfully (logprobs
 * in a stream, citation deltas) is not stored rather than stored lossy.
 */
import type { Operation } from '../providers/endpoints.js';
import type { SseEvent } from '../usage/sse.js';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The operations whose answers the cache stores and serves; others bypass it. */
export function cacheable(operation: Operation, stream: boolean): boolean {
  if (operation === 'chat' || operation === 'messages') return true;
  return operation === 'embeddings' && !stream;
}

/** A whole answer as the caller's API returns it, if it is complete. */
export function completeAnswer(operation: Operation, body: unknown): body is Obj {
  if (!isObj(body)) return false;
  switch (operation) {
    case 'chat':
      return (
        Array.isArray(body.choices) &&
        body.choices.length > 0 &&
        body.choices.every((c) => isObj(c) && typeof c.finish_reason === 'string')
      );
    case 'messages':
      return body.type === 'message' && typeof body.stop_reason === 'string';
    case 'embeddings':
      return Array.isArray(body.data);
    default:
      return false;
  }
}

/** Whether the answer calls a tool (stored only when the policy allows it). */
export function callsTools(operation: Operation, body: Obj): boolean {
  if (operation === 'chat') {
    return (body.choices as unknown[]).some((c) => {
      const m = isObj(c) ? c.message : undefined;
      return (
        isObj(m) &&
        ((Array.isArray(m.tool_calls) && m.tool_calls.length > 0) || isObj(m.function_call))
      );
    });
  }
  if (operation === 'messages') {
    return (
      Array.isArray(body.content) &&
      body.content.some((b) => isObj(b) && (b.type === 'tool_use' || b.type === 'server_tool_use'))
    );
  }
  return false;
}

class Unsupported extends Error {}

/** Rebuilds the non-streamed answer from a stream's events; undefined: incomplete or unsupported. */
export class StreamAssembler {
  private done = false;
  private failed = false;
  // OpenAI chat
  private head: Obj | undefined;
  private readonly choices = new Map<number, Obj>();
  private usage: unknown;
  // Anthropic messages
  private message: Obj | undefined;
  private readonly blocks = new Map<number, { block: Obj; json: string }>();

  constructor(private readonly operation: Operation) {}

  onEvent(e: SseEvent): void {
    if (this.failed || this.done) return;
    try {
      if (this.operation === 'chat') this.chat(e);
      else if (this.operation === 'messages') this.anthropic(e);
      else throw new Unsupported();
    } catch {
      // Anything unexpected (not JSON, a shape we do not rebuild): not stored.
      this.failed = true;
    }
  }

  private chat(e: SseEvent): void {
    if (e.data === '[DONE]') {
      this.done = true;
      return;
    }
    if (e.data === '') return;
    const chunk = JSON.parse(e.data) as unknown;
    if (!isObj(chunk) || chunk.object !== 'chat.completion.chunk') throw new Unsupported();
    if (!this.head) {
      this.head = { id: chunk.id, created: chunk.created, model: chunk.model };
      if (chunk.system_fingerprint != null) this.head.system_fingerprint = chunk.system_fingerprint;
      if (chunk.service_tier != null) this.head.service_tier = chunk.service_tier;
    }
    if (isObj(chunk.usage)) this.usage = chunk.usage;
    if (!Array.isArray(chunk.choices)) return;
    for (const c of chunk.choices) {
      if (!isObj(c) || typeof c.index !== 'number') throw new Unsupported();
      if (c.logprobs != null) throw new Unsupported();
      let choice = this.choices.get(c.index);
      if (!choice) {
        choice = {
          index: c.index,
          message: { role: 'assistant', content: null },
          logprobs: null,
          finish_reason: null,
        };
        this.choices.set(c.index, choice);
      }
      const m = choice.message as Obj;
      const d = c.delta;
      if (isObj(d)) {
        if (typeof d.role === 'string') m.role = d.role;
        if (typeof d.content === 'string')
          m.content = ((m.content as string | null) ?? '') + d.content;
        if (typeof d.refusal === 'string')
          m.refusal = ((m.refusal as string | undefined) ?? '') + d.refusal;
        if (Array.isArray(d.tool_calls)) this.toolCalls(m, d.tool_calls);
        if (d.function_call !== undefined) throw new Unsupported();
      }
      if (typeof c.finish_reason === 'string') choice.finish_reason = c.finish_reason;
    }
  }

  private toolCalls(m: Obj, deltas: unknown[]): void {
    const calls = (m.tool_calls ??= []) as Obj[];
    for (const t of deltas) {
      if (!isObj(t) || typeof t.index !== 'number') throw new Unsupported();
      let call = calls[t.index];
      if (!call) {
        call = { id: '', type: 'function', function: { name: '', arguments: '' } };
        calls[t.index] = call;
      }
      if (typeof t.id === 'string') call.id = t.id;
      if (typeof t.type === 'string') call.type = t.type;
      const f = t.function;
      const cf = call.function as Obj;
      if (isObj(f)) {
        if (typeof f.name === 'string') cf.name = (cf.name as string) + f.name;
        if (typeof f.arguments === 'string') cf.arguments = (cf.arguments as string) + f.arguments;
      }
    }
  }

  private anthropic(e: SseEvent): void {
    if (e.data === '') return;
    const ev = JSON.parse(e.data) as unknown;
    if (!isObj(ev)) throw new Unsupported();
    switch (ev.type) {
      case 'message_start':
        if (!isObj(ev.message)) throw new Unsupported();
        this.message = { ...ev.message, content: [] };
        return;
      case 'content_block_start': {
        if (typeof ev.index !== 'number' || !isObj(ev.content_block)) throw new Unsupported();
        const block = { ...ev.content_block };
        if (block.type === 'tool_use' || block.type === 'server_tool_use') block.input = {};
        this.blocks.set(ev.index, { block, json: '' });
        return;
      }
      case 'content_block_delta': {
        const b = typeof ev.index === 'number' ? this.blocks.get(ev.index) : undefined;
        const d = ev.delta;
        if (!b || !isObj(d)) throw new Unsupported();
        if (d.type === 'text_delta' && typeof d.text === 'string')
          b.block.text = ((b.block.text as string | undefined) ?? '') + d.text;
        else if (d.type === 'input_json_delta' && typeof d.partial_json === 'string')
          b.json += d.partial_json;
        else if (d.type === 'thinking_delta' && typeof d.thinking === 'string')
          b.block.thinking = ((b.block.thinking as string | undefined) ?? '') + d.thinking;
        else if (d.type === 'signature_delta' && typeof d.signature === 'string')
          b.block.signature = ((b.block.signature as string | undefined) ?? '') + d.signature;
        else throw new Unsupported();
        return;
      }
      case 'content_block_stop': {
        const b = typeof ev.index === 'number' ? this.blocks.get(ev.index) : undefined;
        if (!b) throw new Unsupported();
        if (b.json !== '') b.block.input = JSON.parse(b.json) as unknown;
        return;
      }
      case 'message_delta': {
        if (!this.message) throw new Unsupported();
        if (isObj(ev.delta)) {
          if (ev.delta.stop_reason !== undefined) this.message.stop_reason = ev.delta.stop_reason;
          if (ev.delta.stop_sequence !== undefined)
            this.message.stop_sequence = ev.delta.stop_sequence;
        }
        if (isObj(ev.usage)) {
          const u = isObj(this.message.usage) ? this.message.usage : {};
          // message_delta's counts are cumulative: they replace message_start's.
          for (const [k, v] of Object.entries(ev.usage)) if (v !== null) u[k] = v;
          this.message.usage = u;
        }
        return;
      }
      case 'message_stop':
        this.done = true;
        return;
      case 'ping':
        return;
      default:
        throw new Unsupported();
    }
  }

  /** The assembled answer, when the stream was complete and every part of it understood. */
  result(): Obj | undefined {
    if (this.failed || !this.done) return undefined;
    let out: Obj | undefined;
    if (this.operation === 'chat' && this.head) {
      const choices = [...this.choices.values()].sort(
        (a, b) => (a.index as number) - (b.index as number),
      );
      out = { ...this.head, object: 'chat.completion', choices };
      if (this.usage !== undefined) out.usage = this.usage;
    } else if (this.operation === 'messages' && this.message) {
      const indices = [...this.blocks.keys()].sort((a, b) => a - b);
      out = { ...this.message, content: indices.map((i) => this.blocks.get(i)!.block) };
    }
    return out && completeAnswer(this.operation, out) ? out : undefined;
  }
}

function sse(data: unknown, event?: string): string {
  return `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`;
}

export interface ReplayOptions {
  /** OpenAI: the caller asked for stream_options.include_usage: a usage chunk ends the stream. */
  includeUsage: boolean;
}

/**
 * The stored answer as the caller's event stream: what the provider's stream of the same answer
 * carries, in the order its SDK expects, each part of the text in one delta.
 */
export function replayStream(operation: Operation, body: Obj, opts: ReplayOptions): string {
  if (operation === 'chat') return replayChat(body, opts);
  if (operation === 'messages') return replayMessages(body);
  throw new Error(`no stream replay for ${operation}`);
}

function replayChat(body: Obj, opts: ReplayOptions): string {
  const head: Obj = {
    id: body.id,
    object: 'chat.completion.chunk',
    created: body.created,
    model: body.model,
  };
  if (body.system_fingerprint != null) head.system_fingerprint = body.system_fingerprint;
  if (body.service_tier != null) head.service_tier = body.service_tier;
  const extra = opts.includeUsage ? { usage: null } : {};
  const chunk = (choice: Obj): string =>
    sse({ ...head, choices: [{ logprobs: null, finish_reason: null, ...choice }], ...extra });
  let out = '';
  for (const c of body.choices as Obj[]) {
    const index = c.index;
    const m = isObj(c.message) ? c.message : {};
    // A choice without text (tool calls only) starts with content null, as providers send it.
    const opening = typeof m.content === 'string' ? '' : null;
    out += chunk({ index, delta: { role: m.role ?? 'assistant', content: opening } });
    if (typeof m.content === 'string' && m.content !== '')
      out += chunk({ index, delta: { content: m.content } });
    if (typeof m.refusal === 'string' && m.refusal !== '')
      out += chunk({ index, delta: { refusal: m.refusal } });
    if (Array.isArray(m.tool_calls)) {
      m.tool_calls.forEach((t, i) => {
        if (!isObj(t)) return;
        out += chunk({ index, delta: { tool_calls: [{ index: i, ...t }] } });
      });
    }
    out += chunk({ index, delta: {}, finish_reason: c.finish_reason });
  }
  if (opts.includeUsage && body.usage !== undefined)
    out += sse({ ...head, choices: [], usage: body.usage });
  return out + 'data: [DONE]\n\n';
}

function replayMessages(body: Obj): string {
  const usage = isObj(body.usage) ? body.usage : {};
  const { output_tokens: output, ...startUsage } = usage;
  let out = sse(
    {
      type: 'message_start',
      message: {
        ...body,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...startUsage, output_tokens: 1 },
      },
    },
    'message_start',
  );
  const blocks = Array.isArray(body.content) ? body.content : [];
  blocks.forEach((b, index) => {
    if (!isObj(b)) return;
    let start: Obj = b;
    const deltas: Obj[] = [];
    if (b.type === 'text') {
      const { text, ...rest } = b;
      start = { ...rest, text: '' };
      if (typeof text === 'string' && text !== '') deltas.push({ type: 'text_delta', text });
    } else if (b.type === 'tool_use' || b.type === 'server_tool_use') {
      start = { ...b, input: {} };
      const json = JSON.stringify(b.input ?? {});
      if (json !== '{}') deltas.push({ type: 'input_json_delta', partial_json: json });
    } else if (b.type === 'thinking') {
      start = { ...b, thinking: '', signature: '' };
      if (typeof b.thinking === 'string' && b.thinking !== '')
        deltas.push({ type: 'thinking_delta', thinking: b.thinking });
      if (typeof b.signature === 'string' && b.signature !== '')
        deltas.push({ type: 'signature_delta', signature: b.signature });
    }
    out += sse({ type: 'content_block_start', index, content_block: start }, 'content_block_start');
    for (const delta of deltas)
      out += sse({ type: 'content_block_delta', index, delta }, 'content_block_delta');
    out += sse({ type: 'content_block_stop', index }, 'content_block_stop');
  });
  out += sse(
    {
      type: 'message_delta',
      delta: { stop_reason: body.stop_reason, stop_sequence: body.stop_sequence ?? null },
      usage: { output_tokens: typeof output === 'number' ? output : 0 },
    },
    'message_delta',
  );
  return out + sse({ type: 'message_stop' }, 'message_stop');
}
