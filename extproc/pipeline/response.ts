/**
 * The response side of the router filter. JSON answers arrive whole (BUFFERED); SSE answers are
 * switched to STREAMED at the headers and handled chunk by chunk with a carry-over, so the work
 * per chunk is proportional to the chunk and time to first token is kept.
 *
 * Bytes are forwarded untouched unless something must change: a gzip/deflate/br body is decoded
 * (headers then say so), and the usage chunk the gateway forced into a stream is removed. In that
 * rewrite mode a partial event is held back until it is complete, because it might be the one
 * to drop.
 */
import type { Limits } from '../config/contract.js';
import { createBodyDecoder, isBodyDecoder, type BodyDecoder } from '../usage/decode.js';
import { estimateUsage } from '../usage/estimate.js';
import { StreamUsage, usageFromJson, type TokenUsage } from '../usage/extract.js';
import { SseParser } from '../usage/sse.js';
import { CONTINUE, proceed, type Mutation, type Outcome } from './mutation.js';
import type { RequestState } from './request-store.js';
import { REQUEST_ID_HEADER } from './verdict.js';

export interface ResponseResult {
  usage: TokenUsage | undefined;
  model: string | undefined;
  ttftMs: number | undefined;
}

export class ResponseProcessor {
  private ok = false;
  private sse = false;
  private decoder: BodyDecoder | undefined;
  /** Unknown encodings pass through unread: usage is then estimated. */
  private unreadable = false;
  private parser: SseParser | undefined;
  private streamUsage: StreamUsage | undefined;
  private rewrite = false;
  private json: Buffer[] = [];
  private jsonBytes = 0;
  private jsonOverflow = false;
  private reported: { usage?: TokenUsage; model?: string } = {};
  private firstByteAt: number | undefined;

  constructor(
    private readonly req: RequestState,
    private readonly limits: Limits,
    private readonly now: () => number,
    private readonly startedAt: number,
  ) {}

  headers(h: ReadonlyMap<string, string>, endOfStream: boolean): Outcome {
    const status = Number(h.get(':status') ?? '0');
    this.ok = status >= 200 && status < 300;
    const m: Mutation = { setHeaders: [[REQUEST_ID_HEADER, this.req.id]], removeHeaders: [] };
    if (!this.ok || endOfStream) return proceed(m);
    const contentType = (h.get('content-type') ?? '').toLowerCase();
    this.sse = contentType.startsWith('text/event-stream');
    const encoding = h.get('content-encoding');
    const decoder = createBodyDecoder(encoding, {
      maxOutputBytes: this.sse ? Number.MAX_SAFE_INTEGER : this.limits.maxResponseBodyBytes,
    });
    if (isBodyDecoder(decoder)) {
      this.decoder = decoder;
      m.removeHeaders!.push('content-encoding', 'content-length');
    } else if (decoder !== null) {
      this.unreadable = true;
    }
    if (this.sse) {
      this.parser = new SseParser({ maxEventBytes: this.limits.maxSseEventBytes });
      this.streamUsage = new StreamUsage(this.req.operation);
      this.rewrite = this.decoder !== undefined || this.req.forcedUsage;
      if (!m.removeHeaders!.includes('content-length')) m.removeHeaders!.push('content-length');
      // Body modes are copied whole from an override: restate the request side too.
      m.modeOverride = { requestBody: 'BUFFERED', responseBody: 'STREAMED' };
    }
    return proceed(m);
  }

  /**
   * `buffered`: the filter's configured response mode is BUFFERED, so a JSON body message is the
   * whole body even without end_of_stream (trailers follow). SSE is switched to STREAMED.
   */
  async body(chunk: Buffer, endOfStream: boolean, buffered = false): Promise<Outcome> {
    if (!this.ok || this.unreadable) return CONTINUE;
    const whole = endOfStream || (buffered && !this.sse);
    let data = this.decoder ? await this.decoder.push(chunk) : chunk;
    if (whole && this.decoder) {
      const tail = await this.decoder.end();
      if (tail.length > 0) data = data.length === 0 ? tail : Buffer.concat([data, tail]);
    }
    return this.sse ? this.streamChunk(data, endOfStream) : this.jsonChunk(data, whole);
  }

  private streamChunk(data: Buffer, endOfStream: boolean): Outcome {
    const events = this.parser!.push(data);
    const usage = this.streamUsage!;
    if (!this.rewrite) {
      for (const e of events) usage.onEvent(e);
      if (endOfStream) this.parser!.end();
      if (data.length > 0) this.firstByteAt ??= this.now();
      return CONTINUE;
    }
    const out: Buffer[] = [];
    for (const e of events) {
      const { usageOnly } = usage.onEvent(e);
      if (!(usageOnly && this.req.forcedUsage)) out.push(e.raw);
    }
    if (endOfStream) {
      const rest = this.parser!.end();
      if (rest.length > 0) out.push(rest);
    }
    const body = out.length === 1 ? out[0]! : Buffer.concat(out);
    if (body.length > 0) this.firstByteAt ??= this.now();
    return proceed({ body });
  }

  private jsonChunk(data: Buffer, endOfStream: boolean): Outcome {
    this.firstByteAt ??= this.now();
    if (!this.jsonOverflow) {
      this.jsonBytes += data.length;
      if (this.jsonBytes > this.limits.maxResponseBodyBytes) {
        this.jsonOverflow = true;
        this.json = [];
      } else {
        this.json.push(data);
      }
    }
    if (endOfStream && !this.jsonOverflow) {
      const whole = this.json.length === 1 ? this.json[0]! : Buffer.concat(this.json);
      this.json = [];
      try {
        this.reported = usageFromJson(this.req.operation, JSON.parse(whole.toString('utf8')));
      } catch {
        // Not JSON although 2xx: nothing to read; usage falls back to an estimate.
      }
    }
    return this.decoder ? proceed({ body: data }) : CONTINUE;
  }

  result(): ResponseResult {
    const ttftMs = this.firstByteAt === undefined ? undefined : this.firstByteAt - this.startedAt;
    if (!this.ok) return { usage: undefined, model: undefined, ttftMs };
    if (this.streamUsage) {
      const r = this.streamUsage.result();
      const usage =
        r.usage ??
        estimateUsage(this.req.operation, this.req.body, r.outputText, {
          outputTextBytes: r.outputTextBytes,
          ...(r.partialUsage ? { reported: r.partialUsage } : {}),
        });
      return { usage, model: r.model, ttftMs };
    }
    const usage = this.reported.usage ?? estimateUsage(this.req.operation, this.req.body, '');
    return { usage, model: this.reported.model, ttftMs };
  }
}
