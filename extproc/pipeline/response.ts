/**
 * The response side of the router filter. JSON answers arrive whole (BUFFERED) when their declared
 * length fits the buffer; one of unknown or larger length is switched to STREAMED and goes on
 * chunk by chunk (a masking route holds it up to maxResponseBodyBytes), its usage read as it
 * passes (usage/json-usage.ts), so an answer of any size reaches the caller and is billed. SSE
 * answers are switched to STREAMED at the headers and handled chunk by chunk with a carry-over,
 * so the work per chunk is proportional to the chunk and time to first token is kept.
 *
 * Bytes are forwarded untouched unless something must change: a gzip/deflate/br body is decoded
 * (headers then say so), and the usage chunk the gateway forced into a stream is removed. In that
 * rewrite mode a partial event is held back until it is complete, because it might be the one
 * to drop.
 */
import type { BodyTap } from '../telemetry/content.js';
import type { Limits } from '../config/contract.js';
import { SluiceError } from '../errors.js';
import type { OutputTransform } from '../masking/engine.js';
import { responseSlots } from '../masking/fields.js';
import { spliceValues, withValueEdit, type ValueEditMap } from '../masking/json-splice.js';
import { VAULT_DEGRADED } from '../policy/state.js';
import { POLICY_FAILURE_HEADER, policyFault } from './policy-failure.js';
import { SseMasking } from '../masking/sse.js';
import { createBodyDecoder, isBodyDecoder, type BodyDecoder } from '../usage/decode.js';
import { estimateUsage } from '../usage/estimate.js';
import { StreamUsage, usageFromJson, type TokenUsage } from '../usage/extract.js';
import { JsonUsageScanner } from '../usage/json-usage.js';
import { SseParser, type SseEvent } from '../usage/sse.js';
import { CONTINUE, proceed, type Mutation, type Outcome } from '../wire/mutation.js';
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
  /** Usage and model of a JSON answer, read as it passes, whatever its size. */
  private readonly jsonUsage = new JsonUsageScanner();
  /**
   * A JSON answer switched to STREAMED: its size was unknown or over what Envoy buffers (Envoy
   * answers an over-limit BUFFERED response with its own 500, ActiveStreamEncoderFilter::
   * responseDataTooLarge, so neither the caller nor usage would ever see it).
   */
  private streamedJson = false;
  private firstByteAt: number | undefined;
  /** Scans and restores model output when the route's policy masks. */
  private output: OutputTransform | undefined;
  private sseMasking: SseMasking | undefined;
  /** JSON pieces held back until the whole body could be restored. */
  private heldChunks = 0;
  /** A cache miss's capture (cache/cache.ts): sees the decoded answer before restoration. */
  capture: BodyTap | undefined;

  constructor(
    private readonly req: RequestState,
    private readonly limits: Limits,
    private readonly now: () => number,
    private readonly startedAt: number,
  ) {}

  /**
   * A backend's response, errors included, goes on as it came. Envoy's own replies never come
   * here (Filter::onLocalReply ends processing for them, 1.34+): Envoy shapes them in the caller's
   * format itself (local_reply_config, operator/compile/to-envoy.ts). The one exception, a local
   * reply of the upstream filter chain (1.37+, envoyproxy/envoy PR #41769), is the upstream
   * phase's own refusal or Envoy's reply already shaped by local_reply_config, and goes on too.
   */
  headers(h: ReadonlyMap<string, string>, endOfStream: boolean): Outcome {
    const status = Number(h.get(':status') ?? '0');
    this.ok = status >= 200 && status < 300;
    const m: Mutation = { setHeaders: [[REQUEST_ID_HEADER, this.req.id]], removeHeaders: [] };
    if (this.req.policy?.failedOpen) m.setHeaders!.push([POLICY_FAILURE_HEADER, 'open']);
    else if (this.req.policy?.verdicts.has(VAULT_DEGRADED))
      m.setHeaders!.push([POLICY_FAILURE_HEADER, 'degraded']);
    if (!this.ok || endOfStream) return proceed(m);
    const output = this.req.policy?.output;
    if (output && (output.scans || output.restores)) this.output = output;
    const contentType = (h.get('content-type') ?? '').toLowerCase();
    this.sse = contentType.startsWith('text/event-stream');
    const encoding = h.get('content-encoding');
    // A stream may run long, so its bound is per chunk: no chunk expands past it in memory.
    const decoder = createBodyDecoder(encoding, {
      maxOutputBytes: this.limits.maxResponseBodyBytes,
      perChunk: this.sse,
    });
    if (isBodyDecoder(decoder)) {
      this.decoder = decoder;
      m.removeHeaders!.push('content-encoding', 'content-length');
    } else if (decoder !== null) {
      this.unreadable = true;
      // An encoding we cannot decode passes unread, like an answer over the limit: said so.
      if (this.output) {
        this.req.policy!.verdicts.add('response_unscanned');
        this.output = undefined;
      }
    }
    if (this.sse) {
      this.parser = new SseParser({ maxEventBytes: this.limits.maxSseEventBytes });
      this.streamUsage = new StreamUsage(this.req.operation);
      if (this.output) this.sseMasking = new SseMasking(this.req.operation, this.output);
      this.rewrite =
        this.decoder !== undefined || this.req.forcedUsage || this.sseMasking !== undefined;
      if (!m.removeHeaders!.includes('content-length')) m.removeHeaders!.push('content-length');
      // Body modes are copied whole from an override: restate the request side too.
      m.modeOverride = { requestBody: 'BUFFERED', responseBody: 'STREAMED' };
    } else if (!fitsBuffer(h.get('content-length'), this.limits.maxResponseBodyBytes)) {
      this.streamedJson = true;
      m.modeOverride = { requestBody: 'BUFFERED', responseBody: 'STREAMED' };
      // Restoring masked values changes the length; Envoy keeps the header in STREAMED mode.
      if (this.output && !m.removeHeaders!.includes('content-length'))
        m.removeHeaders!.push('content-length');
    }
    this.capture?.start(status, this.sse, !this.unreadable);
    return proceed(m);
  }

  /**
   * `buffered`: the filter's configured response mode is BUFFERED, so a JSON body message is the
   * whole body even without end_of_stream (trailers follow). SSE is switched to STREAMED.
   */
  body(
    chunk: Buffer,
    endOfStream: boolean,
    configuredBuffered = false,
  ): Outcome | Promise<Outcome> {
    if (!this.ok || this.unreadable) return CONTINUE;
    const buffered = configuredBuffered && !this.streamedJson;
    const whole = endOfStream || (buffered && !this.sse);
    // Only decoding waits (zlib runs off the main thread): a plain body is answered at once.
    if (!this.decoder) return this.decoded(chunk, endOfStream, whole, buffered);
    return decode(this.decoder, chunk, whole).then((data) =>
      this.decoded(data, endOfStream, whole, buffered),
    );
  }

  private decoded(data: Buffer, endOfStream: boolean, whole: boolean, buffered: boolean): Outcome {
    this.capture?.push(data);
    return this.sse
      ? this.streamChunk(data, endOfStream)
      : this.jsonChunk(data, whole, buffered && !this.sse);
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
      const drop = usageOnly && this.req.forcedUsage;
      if (this.sseMasking) {
        const bufs = this.withMaskingFailureMode(
          () => this.sseMasking!.onEvent(e),
          () => [e.raw],
        );
        // The event's own bytes come last; text released before it stays.
        if (drop) bufs.pop();
        out.push(...bufs);
      } else if (!drop) {
        out.push(e.raw);
      }
    }
    if (endOfStream) {
      const rest = this.parser!.end();
      if (this.sseMasking) {
        // An unterminated last event is terminated, so held text can follow it as an event.
        if (rest.length > 0) out.push(...this.lastEvents(rest));
        out.push(
          ...this.withMaskingFailureMode(
            () => this.sseMasking!.end(),
            () => [],
          ),
        );
      } else if (rest.length > 0) {
        out.push(rest);
      }
    }
    const body = out.length === 1 ? out[0]! : Buffer.concat(out);
    if (body.length > 0) this.firstByteAt ??= this.now();
    return proceed({ body });
  }

  private lastEvents(rest: Buffer): Buffer[] {
    const p = new SseParser({ maxEventBytes: this.limits.maxSseEventBytes });
    const events: SseEvent[] = p.push(Buffer.concat([rest, Buffer.from('\n\n')]));
    return events.flatMap((e) =>
      this.withMaskingFailureMode(
        () => this.sseMasking!.onEvent(e),
        () => [e.raw],
      ),
    );
  }

  /**
   * Runs a masking step of the response under the policy's failure mode: a fault (not a
   * SluiceError) is refused when the policy fails closed (the stream is cut, or the buffered
   * answer replaced by an error), and passed unprocessed from then on when it fails open.
   */
  private withMaskingFailureMode<T>(fn: () => T, fallback: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof SluiceError) throw err;
      policyFault(
        this.req.policy!,
        'The gateway could not apply its data-protection policy to the response.',
      );
      this.sseMasking = undefined;
      this.output = undefined;
      return fallback();
    }
  }

  private jsonChunk(data: Buffer, endOfStream: boolean, buffered = false): Outcome {
    this.jsonUsage.push(data);
    if (this.output) return this.maskedJsonChunk(data, endOfStream, buffered);
    this.firstByteAt ??= this.now();
    return this.decoder ? proceed({ body: data }) : CONTINUE;
  }

  /** JSON answers of a masking route: held whole, restored, then sent with a matching length. */
  private maskedJsonChunk(data: Buffer, whole: boolean, buffered: boolean): Outcome {
    this.firstByteAt ??= this.now();
    this.jsonBytes += data.length;
    this.json.push(data);
    if (this.jsonBytes > this.limits.maxResponseBodyBytes) {
      // Too large to read: what was held goes on unprocessed, and so does the rest.
      const p = this.req.policy!;
      p.verdicts.add('response_unscanned');
      this.output = undefined;
      this.jsonOverflow = true;
      const held = Buffer.concat(this.json);
      this.json = [];
      return this.heldChunks > 0 || this.decoder ? proceed({ body: held }) : CONTINUE;
    }
    if (!whole) {
      this.heldChunks++;
      return proceed({ body: Buffer.alloc(0) });
    }
    const all = this.json.length === 1 ? this.json[0]! : Buffer.concat(this.json);
    this.json = [];
    let parsed: unknown;
    try {
      parsed = JSON.parse(all.toString('utf8'));
    } catch {
      // Not JSON although 2xx: nothing to restore.
    }
    let out: Buffer | undefined;
    const output = this.output!;
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
      const body = parsed as Record<string, unknown>;
      // Restored values by where they sit, while each is a plain value's (engine.ts maskRequest).
      // Made at the first change (most answers restore nothing): no Map per answer otherwise.
      let edits: ValueEditMap | undefined;
      let splicing = true;
      const changed = this.withMaskingFailureMode(
        () => {
          const list = responseSlots(this.req.operation, body);
          let any = false;
          for (const slot of list.slots) {
            const to = output.whole(slot.text, slot.json);
            if (to !== slot.text) {
              slot.set(to);
              any = true;
              if (splicing) {
                edits = withValueEdit(edits, slot, slot.text, to);
                splicing = edits !== undefined;
              }
            }
          }
          if (list.commit()) {
            splicing = false;
            edits = undefined;
          }
          return any;
        },
        () => false,
      );
      // Spliced into the answer's own bytes when they hold exactly what was parsed; else written
      // again from the parsed answer.
      if (changed)
        out =
          (edits && spliceValues(all, body, edits)) ?? Buffer.from(JSON.stringify(body), 'utf8');
    }
    if (!out && this.heldChunks === 0 && !this.decoder) return CONTINUE;
    const body = out ?? all;
    // BUFFERED keeps content-length until this answer: it must match what now goes on.
    return proceed(
      buffered ? { body, setHeaders: [['content-length', String(body.length)]] } : { body },
    );
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
    const reported = usageFromJson(this.req.operation, this.jsonUsage.result());
    return { usage: reported.usage ?? this.unreportedUsage(), model: reported.model, ttftMs };
  }

  /**
   * A 2xx JSON answer that reports no usage, or could not be read (an encoding we do not decode):
   * its output is charged as reserved (the cap the provider was held to, per choice), not as
   * nothing, so a budget is never charged less than what may have been generated. The prompt
   * is estimated. Without limits nothing was reserved and only the prompt is estimated.
   */
  private unreportedUsage(): TokenUsage {
    const u = estimateUsage(this.req.operation, this.req.body, '');
    const out = this.req.governance?.outputReserved ?? 0;
    return out > 0 ? { ...u, outputTokens: out, totalTokens: u.inputTokens + out } : u;
  }
}

/** What `chunk` decodes to; `whole`: the body ends with it, and so does the decoder. */
async function decode(d: BodyDecoder, chunk: Buffer, whole: boolean): Promise<Buffer> {
  const data = await d.push(chunk);
  if (!whole) return data;
  const tail = await d.end();
  return tail.length === 0 ? data : data.length === 0 ? tail : Buffer.concat([data, tail]);
}

/** A declared length as Envoy passes it (one RegExp, not one per answer). */
const DECIMAL_LENGTH = /^\d{1,15}$/;

/** Whether a body of this declared length fits the buffer (unknown: it may not). */
function fitsBuffer(contentLength: string | undefined, limit: number): boolean {
  if (contentLength === undefined || !DECIMAL_LENGTH.test(contentLength)) return false;
  return Number(contentLength) <= limit;
}
