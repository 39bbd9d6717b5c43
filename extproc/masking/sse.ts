/**
 * Masking and restoring streamed model output, event by event. Each streamed text (a choice's
 * content, one tool call's arguments, an Anthropic content block, a Responses output part) is a
 * channel: its deltas go through the channel, which may hold back a short suffix; the held text
 * is released in the channel's next delta or, when the channel ends, in one extra delta event
 * cloned from the channel's last one and placed right before the event that ends it.
 *
 * An event is re-serialized only when its text changed, and then only the changed string
 * literals are replaced: every other byte of the provider's event is kept.
 */
import type { Operation } from '../providers/endpoints.js';
import type { SseEvent } from '../usage/sse.js';
import type { OutputTransform, TextChannel } from './engine.js';
import { responseSlots, responsesEventSlots } from './fields.js';
import { spliceJsonStrings, type StringEdit } from './json-splice.js';

type Obj = Record<string, unknown>;

/** A chat delta's texts (one array, not one per event). */
const DELTA_TEXTS = ['content', 'refusal'] as const;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

interface Open {
  channel: TextChannel;
  /** Builds the event that carries `text` as this channel's delta. */
  synth: (text: string) => Obj;
  event: string | undefined;
}

/** Where a delta sits inside its event, so the new value can be written back. */
interface Target {
  holder: Obj;
  key: string;
}

export class SseMasking {
  private readonly open = new Map<string, Open>();

  constructor(
    private readonly op: Operation,
    private readonly t: OutputTransform,
  ) {}

  /** The bytes to send for this event: usually the event, changed or not; maybe an extra delta first. */
  onEvent(e: SseEvent): Buffer[] {
    const data = e.data;
    if (data.length === 0 || data.charCodeAt(0) !== 0x7b /* { */) {
      // `[DONE]` or a keep-alive: the stream is over or idle; a terminal marker flushes.
      return data === '[DONE]' ? [...this.flushAll(), e.raw] : [e.raw];
    }
    // Restoring only, nothing held, no bracket: the event cannot change, so it is not parsed.
    if (!this.t.scans && !data.includes('[') && !this.holding()) return [e.raw];
    let ev: unknown;
    try {
      ev = JSON.parse(data);
    } catch {
      return [e.raw];
    }
    if (!isObj(ev)) return [e.raw];
    switch (this.op) {
      case 'chat':
      case 'completions':
        return this.openai(e, ev);
      case 'messages':
        return this.anthropic(e, ev);
      case 'responses':
        return this.responses(e, ev);
      case 'embeddings':
        return [e.raw];
    }
  }

  private holding(): boolean {
    for (const o of this.open.values()) if (o.channel.held > 0) return true;
    return false;
  }

  /** The stream ended without its terminal events: send what is still held. */
  end(): Buffer[] {
    return this.flushAll();
  }

  private channel(
    key: string,
    json: boolean,
    synth: Open['synth'],
    event: string | undefined,
  ): Open {
    let o = this.open.get(key);
    if (!o) {
      o = { channel: this.t.channel(json), synth, event };
      this.open.set(key, o);
    } else {
      o.synth = synth;
    }
    return o;
  }

  private flush(key: string): Buffer | undefined {
    const o = this.open.get(key);
    if (!o) return undefined;
    this.open.delete(key);
    const text = o.channel.flush();
    return text.length === 0 ? undefined : frame(o.event, o.synth(text));
  }

  private flushWhere(pred: (key: string) => boolean, except?: Set<string>): Buffer[] {
    const out: Buffer[] = [];
    for (const key of [...this.open.keys()]) {
      if (!pred(key) || except?.has(key)) continue;
      const b = this.flush(key);
      if (b) out.push(b);
    }
    return out;
  }

  private flushAll(): Buffer[] {
    return this.flushWhere(() => true);
  }

  /** Pushes a delta through its channel and, if the channel ends in this event, its rest too. */
  private delta(
    key: string,
    target: Target,
    json: boolean,
    synth: Open['synth'],
    event: string | undefined,
    edits: StringEdit[],
    ends: boolean,
  ): void {
    const from = target.holder[target.key] as string;
    const o = this.channel(key, json, synth, event);
    let to = o.channel.push(from);
    if (ends) {
      to += o.channel.flush();
      this.open.delete(key);
    }
    if (to !== from) {
      edits.push({ key: target.key, from, to });
      target.holder[target.key] = to;
    }
  }

  private openai(e: SseEvent, ev: Obj): Buffer[] {
    const choices = ev.choices;
    if (!Array.isArray(choices) || choices.length === 0) {
      // The usage chunk after the last choice finished, or an error object.
      return [...this.flushAll(), e.raw];
    }
    const edits: StringEdit[] = [];
    const touched = new Set<string>();
    const before: Buffer[] = [];
    const base: Obj = { ...ev };
    delete base.choices;
    delete base.usage;
    choices.forEach((c, pos) => {
      if (!isObj(c)) return;
      const i = typeof c.index === 'number' ? c.index : pos;
      const ends = c.finish_reason !== null && c.finish_reason !== undefined;
      const one = (choice: Obj): Obj => ({
        ...base,
        choices: [{ index: i, ...choice, finish_reason: null }],
      });
      if (typeof c.text === 'string') {
        const key = `${i}:x`;
        touched.add(key);
        this.delta(
          key,
          { holder: c, key: 'text' },
          false,
          (text) => one({ text }),
          e.event,
          edits,
          ends,
        );
      }
      const d = c.delta;
      if (isObj(d)) {
        for (const field of DELTA_TEXTS) {
          if (typeof d[field] !== 'string') continue;
          const key = `${i}:${field}`;
          touched.add(key);
          this.delta(
            key,
            { holder: d, key: field },
            false,
            (text) => one({ delta: { [field]: text } }),
            e.event,
            edits,
            ends,
          );
        }
        if (Array.isArray(d.tool_calls)) {
          d.tool_calls.forEach((tc, tpos) => {
            if (!isObj(tc) || !isObj(tc.function) || typeof tc.function.arguments !== 'string')
              return;
            const k = typeof tc.index === 'number' ? tc.index : tpos;
            const key = `${i}:tool${k}`;
            touched.add(key);
            this.delta(
              key,
              { holder: tc.function, key: 'arguments' },
              true,
              (text) =>
                one({ delta: { tool_calls: [{ index: k, function: { arguments: text } }] } }),
              e.event,
              edits,
              ends,
            );
          });
        }
        if (isObj(d.function_call) && typeof d.function_call.arguments === 'string') {
          const key = `${i}:fn`;
          touched.add(key);
          this.delta(
            key,
            { holder: d.function_call, key: 'arguments' },
            true,
            (text) => one({ delta: { function_call: { arguments: text } } }),
            e.event,
            edits,
            ends,
          );
        }
      }
      if (ends) before.push(...this.flushWhere((key) => key.startsWith(`${i}:`), touched));
    });
    return [...before, rewrite(e, ev, edits)];
  }

  private anthropic(e: SseEvent, ev: Obj): Buffer[] {
    switch (ev.type) {
      case 'content_block_delta': {
        const d = ev.delta;
        const index = ev.index;
        if (!isObj(d) || typeof index !== 'number') return [e.raw];
        const field =
          d.type === 'text_delta'
            ? 'text'
            : d.type === 'input_json_delta'
              ? 'partial_json'
              : undefined;
        if (field === undefined || typeof d[field] !== 'string') return [e.raw];
        const edits: StringEdit[] = [];
        this.delta(
          String(index),
          { holder: d, key: field },
          field === 'partial_json',
          (text) => ({
            type: 'content_block_delta',
            index,
            delta: { type: d.type, [field]: text },
          }),
          e.event,
          edits,
          false,
        );
        return [rewrite(e, ev, edits)];
      }
      case 'content_block_start': {
        // A block arrives whole here when it is not streamed in deltas (server-tool results,
        // citations, text already started): walked like a block of a whole answer.
        const b = ev.content_block;
        if (!isObj(b)) return [e.raw];
        const list = responseSlots('messages', { content: [b] });
        const edits: StringEdit[] = [];
        for (const slot of list.slots) {
          const to = this.t.whole(slot.text, slot.json);
          if (to !== slot.text) {
            edits.push({ key: slot.key, from: slot.text, to });
            slot.set(to);
          }
        }
        if (list.commit()) return [frame(e.event, ev)];
        return [rewrite(e, ev, edits)];
      }
      case 'content_block_stop': {
        const b = typeof ev.index === 'number' ? this.flush(String(ev.index)) : undefined;
        return b ? [b, e.raw] : [e.raw];
      }
      case 'message_delta':
      case 'message_stop':
      case 'error':
        return [...this.flushAll(), e.raw];
      default:
        return [e.raw];
    }
  }

  private responses(e: SseEvent, ev: Obj): Buffer[] {
    const type = ev.type;
    if (typeof type !== 'string') return [e.raw];
    const part = `${String(ev.output_index)}:${String(ev.content_index)}`;
    const clone = (field: string) => (text: string) => {
      const c: Obj = { ...ev, [field]: text };
      if (Array.isArray(c.logprobs)) c.logprobs = [];
      return c;
    };
    const edits: StringEdit[] = [];
    switch (type) {
      case 'response.output_text.delta':
      case 'response.refusal.delta':
      case 'response.function_call_arguments.delta': {
        if (typeof ev.delta !== 'string') return [e.raw];
        const fn = type === 'response.function_call_arguments.delta';
        const key = fn ? `fn:${String(ev.output_index)}` : `${type}:${part}`;
        this.delta(key, { holder: ev, key: 'delta' }, fn, clone('delta'), e.event, edits, false);
        return [rewrite(e, ev, edits)];
      }
      case 'response.output_text.done':
      case 'response.refusal.done':
      case 'response.function_call_arguments.done': {
        const key =
          type === 'response.function_call_arguments.done'
            ? `fn:${String(ev.output_index)}`
            : `${type.replace('.done', '.delta')}:${part}`;
        const b = this.flush(key);
        return [...(b ? [b] : []), this.whole(e, ev)];
      }
      case 'response.completed':
      case 'response.incomplete':
      case 'response.failed':
        return [...this.flushAll(), this.whole(e, ev)];
      default:
        return [this.whole(e, ev)];
    }
  }

  /** Events that repeat the whole text (done events, the final response) are treated whole. */
  private whole(e: SseEvent, ev: Obj): Buffer {
    const list = responsesEventSlots(ev);
    if (list.slots.length === 0) return e.raw;
    const edits: StringEdit[] = [];
    for (const s of list.slots) {
      // Counted already as deltas: these texts repeat them.
      const to = this.t.whole(s.text, s.json, false);
      if (to !== s.text) {
        edits.push({ key: s.key, from: s.text, to });
        s.set(to);
      }
    }
    // A renamed key or a value inside JSON carried in a string cannot be spliced: the event is
    // written again from the object.
    if (list.commit()) return frame(e.event, ev);
    return rewrite(e, ev, edits);
  }
}

function frame(event: string | undefined, obj: Obj): Buffer {
  return Buffer.from(
    `${event === undefined ? '' : `event: ${event}\n`}data: ${JSON.stringify(obj)}\n\n`,
  );
}

/**
 * The event with its edits applied to the one data line; a multi-line or unusual event is
 * re-serialized from the edited object instead.
 */
function rewrite(e: SseEvent, ev: Obj, edits: StringEdit[]): Buffer {
  if (edits.length === 0) return e.raw;
  if (!e.data.includes('\n')) {
    const raw = e.raw.toString('utf8');
    const at = findDataLine(raw);
    if (at !== undefined && raw.slice(at.start, at.end) === e.data) {
      const spliced = spliceJsonStrings(e.data, edits);
      if (spliced !== undefined)
        return Buffer.from(raw.slice(0, at.start) + spliced + raw.slice(at.end));
    }
  }
  return frame(e.event, ev);
}

function findDataLine(raw: string): { start: number; end: number } | undefined {
  let lineStart = 0;
  while (lineStart < raw.length) {
    let lineEnd = lineStart;
    while (lineEnd < raw.length && raw[lineEnd] !== '\n' && raw[lineEnd] !== '\r') lineEnd++;
    if (raw.startsWith('data:', lineStart)) {
      let start = lineStart + 5;
      if (raw[start] === ' ') start++;
      return { start, end: lineEnd };
    }
    if (lineEnd >= raw.length) return undefined;
    lineStart = lineEnd + (raw[lineEnd] === '\r' && raw[lineEnd + 1] === '\n' ? 2 : 1);
  }
  return undefined;
}
