/**
 * Prompt and completion text for traces, for routes whose masking policy opts in
 * (`masking.traceContent`), and then only masked.
 *
 * The prompt is the request as it left the gateway, after the route's masking; the completion is
 * the answer as the provider sent it, before placeholders are restored for the caller. Both pass
 * through the policy's detectors once more before they are recorded (maskString), so what a span
 * holds is masked even when the request's own masking did not apply (shadow mode, a policy that
 * failed open) and when the model wrote personal data of its own. Nothing is recorded for a route
 * that does not opt in: the capture is not even created.
 */
import type { CompiledMasking } from '../masking/compiled.js';
import { maskString } from '../masking/engine.js';
import { completeAnswer, StreamAssembler } from '../cache/answer.js';
import type { Operation } from '../providers/endpoints.js';
import { SseParser } from '../usage/sse.js';

/** The most characters of each text a span event carries; the rest is cut and marked. */
export const MAX_CONTENT_CHARS = 8192;
/** The most bytes of an answer read for its text (an SSE stream's events included). */
const MAX_CAPTURE_BYTES = 1024 * 1024;

export interface RecordedContent {
  /** The request's messages (or input) as JSON, masked. */
  prompt?: string;
  /** The answer's text, masked; absent when the answer could not be read whole. */
  completion?: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function cut(text: string): string {
  if (text.length <= MAX_CONTENT_CHARS) return text;
  return `${text.slice(0, MAX_CONTENT_CHARS)}…[+${text.length - MAX_CONTENT_CHARS} chars]`;
}

/** Masked once more with the policy's own detectors, then bounded. */
export function maskedForTrace(m: CompiledMasking, text: string): string {
  // Bounded before detection too: the detectors' work stays proportional to what is kept.
  const head = text.length > 4 * MAX_CONTENT_CHARS ? text.slice(0, 4 * MAX_CONTENT_CHARS) : text;
  return cut(maskString(m, head).text);
}

/** What the caller asked, as the request left the gateway: the conversation part of the body. */
export function promptText(operation: Operation, body: Readonly<Obj>): string | undefined {
  const pick = (...keys: string[]): string | undefined => {
    const o: Obj = {};
    for (const k of keys) if (body[k] !== undefined) o[k] = body[k];
    return Object.keys(o).length === 0 ? undefined : JSON.stringify(o);
  };
  switch (operation) {
    case 'chat':
      return pick('messages');
    case 'messages':
      return pick('system', 'messages');
    case 'responses':
      return pick('instructions', 'input');
    case 'completions':
      return pick('prompt');
    case 'embeddings':
      return pick('input');
    default:
      return undefined;
  }
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((p) => (isObj(p) && typeof p.text === 'string' ? p.text : ''))
    .filter((t) => t !== '')
    .join('\n');
}

/** The text of a whole answer in the caller's format (chat completion or Anthropic message). */
export function answerText(operation: Operation, answer: Obj): string | undefined {
  if (operation === 'chat' && Array.isArray(answer.choices)) {
    return answer.choices
      .map((c) => (isObj(c) && isObj(c.message) ? textOf(c.message.content) : ''))
      .join('\n');
  }
  if (operation === 'messages') return textOf(answer.content);
  return undefined;
}

/**
 * The answer as the provider sent it (decoded, before restoration): fed by the response side
 * like the cache's capture, read once at the end.
 */
export class CompletionCapture {
  private state: 'idle' | 'json' | 'sse' | 'off' = 'idle';
  private chunks: Buffer[] = [];
  private bytes = 0;
  private parser: SseParser | undefined;
  private assembler: StreamAssembler | undefined;

  constructor(private readonly operation: Operation) {}

  start(status: number, sse: boolean, readable: boolean): void {
    if (this.state !== 'idle') return;
    if (status < 200 || status >= 300 || !readable) {
      this.state = 'off';
      return;
    }
    this.state = sse ? 'sse' : 'json';
    if (sse) {
      this.parser = new SseParser({ maxEventBytes: MAX_CAPTURE_BYTES });
      this.assembler = new StreamAssembler(this.operation);
    }
  }

  push(data: Buffer): void {
    if (this.state !== 'json' && this.state !== 'sse') return;
    this.bytes += data.length;
    if (this.bytes > MAX_CAPTURE_BYTES) {
      this.off();
      return;
    }
    if (this.state === 'json') {
      this.chunks.push(data);
      return;
    }
    try {
      for (const e of this.parser!.push(data)) this.assembler!.onEvent(e);
    } catch {
      this.off();
    }
  }

  /** The answer's text, or undefined (not 2xx, unreadable, too large, incomplete). */
  text(): string | undefined {
    const state = this.state;
    this.state = 'off';
    try {
      let answer: Obj | undefined;
      if (state === 'json') {
        const parsed = JSON.parse(Buffer.concat(this.chunks).toString('utf8')) as unknown;
        if (completeAnswer(this.operation, parsed)) answer = parsed;
      } else if (state === 'sse') {
        for (const e of this.parser!.push(Buffer.from('\n\n'))) this.assembler!.onEvent(e);
        answer = this.assembler!.result();
      }
      return answer ? answerText(this.operation, answer) : undefined;
    } catch {
      return undefined;
    } finally {
      this.chunks = [];
    }
  }

  private off(): void {
    this.state = 'off';
    this.chunks = [];
    this.parser = undefined;
    this.assembler = undefined;
  }
}

/** Tees the response side's decoded body to two readers (the cache's and this one). */
export interface BodyTap {
  start(status: number, sse: boolean, readable: boolean): void;
  push(data: Buffer): void;
}

export function tee(a: BodyTap | undefined, b: BodyTap | undefined): BodyTap | undefined {
  if (!a) return b;
  if (!b) return a;
  return {
    start(status, sse, readable) {
      a.start(status, sse, readable);
      b.start(status, sse, readable);
    },
    push(data) {
      a.push(data);
      b.push(data);
    },
  };
}
