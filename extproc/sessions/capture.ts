/**
 * Reads the Response a caller received, from the bytes as they leave the gateway (placeholders
 * restored): a whole JSON body, or the final `response.completed` / `response.incomplete` event
 * of a stream (which carries every output item). Bounded: a JSON body over `maxBytes`, or an
 * event over the SSE limit, is given up (the turn is then not stored) rather than held.
 */
import { SseParser } from '../usage/sse.js';

type Json = Record<string, unknown>;

const KEPT = new Set(['response.completed', 'response.incomplete']);

export class ResponseCapture {
  private sse = false;
  private parser: SseParser | undefined;
  private chunks: Buffer[] = [];
  private bytes = 0;
  private failed = false;
  private final: Json | undefined;
  /** The id the answer carries, from the first event that names it (a passthrough stream). */
  private firstId: string | undefined;

  constructor(
    private readonly maxBytes: number,
    private readonly maxEventBytes: number,
  ) {}

  start(sse: boolean): void {
    this.sse = sse;
    if (sse) this.parser = new SseParser({ maxEventBytes: this.maxEventBytes });
  }

  push(delivered: Buffer): void {
    if (this.failed || delivered.length === 0) return;
    if (!this.sse) {
      this.bytes += delivered.length;
      if (this.bytes > this.maxBytes) {
        this.failed = true;
        this.chunks = [];
        return;
      }
      this.chunks.push(delivered);
      return;
    }
    try {
      for (const e of this.parser!.push(delivered)) {
        const name = e.event;
        if (name !== undefined && !KEPT.has(name) && this.firstId !== undefined) continue;
        if (name === undefined && !e.data.includes('"response.')) continue;
        const ev = parse(e.data);
        const r = ev?.response;
        if (!ev || typeof r !== 'object' || r === null) continue;
        const id = (r as Json).id;
        if (typeof id === 'string') this.firstId ??= id;
        if (typeof ev.type === 'string' && KEPT.has(ev.type)) this.final = r as Json;
      }
    } catch {
      // An event over the limit: nothing more is read.
      this.failed = true;
    }
  }

  /** Whether the final Response has been seen (a stream's last event may come before its end). */
  get complete(): boolean {
    return this.final !== undefined;
  }

  /** The Response the caller received, or undefined (not complete, not readable, too large). */
  result(): Json | undefined {
    if (this.failed) return undefined;
    if (this.sse) return this.final;
    if (this.final) return this.final;
    const v = parse(Buffer.concat(this.chunks).toString('utf8'));
    this.chunks = [];
    if (v && v.object === 'response') this.final = v;
    return this.final;
  }

  /** The response id the answer carries, even when the whole was not kept. */
  id(): string | undefined {
    const r = this.result();
    return typeof r?.id === 'string' ? r.id : this.firstId;
  }
}

function parse(s: string): Json | undefined {
  try {
    const v: unknown = JSON.parse(s);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined;
  } catch {
    return undefined;
  }
}
