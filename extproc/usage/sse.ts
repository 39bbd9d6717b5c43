import { SluiceError } from '../errors.js';

/**
 * One Server-Sent-Events block, i.e. everything up to and including the blank line that ends it.
 *
 * Blocks without any `data` line (comment-only keep-alives, stray blank lines) are returned too,
 * with `data: ''`: the spec would not dispatch them, but the gateway forwards bytes by event and
 * must not lose any.
 */
export interface SseEvent {
  /**
   * The exact original bytes, terminator included; concatenating every `raw` (plus `end()`) gives
   * back the input. May share memory with a pushed chunk, so treat it as read-only.
   */
  raw: Buffer;
  event?: string;
  /** The event's data lines joined with `\n`, per the SSE spec. */
  data: string;
  id?: string;
}

/** An upstream sent an event larger than the configured bound (likely hostile or broken). */
export class SseEventTooLargeError extends SluiceError {
  readonly limit: number;
  constructor(limit: number) {
    super('response_too_large', `A streamed response event exceeded ${limit} bytes.`);
    this.name = 'SseEventTooLargeError';
    this.limit = limit;
  }
}

/**
 * Large enough for a Responses API `response.completed`, which echoes the whole response
 * (output, instructions, tool definitions); everything else is a few hundred bytes.
 */
export const DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024;

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
const BOM = [0xef, 0xbb, 0xbf] as const;

/**
 * Incremental SSE splitter. Every input byte is looked at once: the partial tail of an event is
 * kept with the line boundaries already found in it, so a slow event arriving in many chunks
 * costs O(event), not O(event x chunks). Text is decoded only for complete events, which is what
 * makes multibyte characters split across chunks safe.
 */
export class SseParser {
  private readonly maxEventBytes: number;
  /** Copies of the current event's bytes from earlier chunks. */
  private parts: Buffer[] = [];
  private partsLen = 0;
  /** Flat [start, end) pairs of the current event's non-blank lines, event-relative. */
  private lines: number[] = [];
  private lineStart = 0;
  /** The previous chunk ended in CR; a leading LF in the next one belongs to that terminator. */
  private afterCR = false;
  private bomSeen = 0;
  private bomDone = false;
  private failed: Error | null = null;
  /**
   * Bytes examined by the line-terminator search (at most two passes over each input byte, one per
   * terminator kind); tests use it to prove buffered tails are never scanned again.
   */
  scannedBytes = 0;

  constructor(opts: { maxEventBytes?: number } = {}) {
    this.maxEventBytes = opts.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
  }

  push(chunk: Buffer): SseEvent[] {
    if (this.failed) throw this.failed;
    const n = chunk.length;
    const out: SseEvent[] = [];
    if (n === 0) return out;
    if (!this.bomDone) this.checkBom(chunk);

    // Start of the not-yet-stored part of the current event within `chunk`.
    let seg = 0;
    let i = 0;
    // Cached positions of the next LF / CR at or after i (n = none left), so each indexOf call
    // scans fresh bytes only; recomputing both per line would be quadratic on CR-free input.
    let nextLF = -1;
    let nextCR = -1;

    if (this.afterCR) {
      this.afterCR = false;
      if (chunk[0] === LF) {
        i = 1;
        this.lineStart = this.partsLen + 1;
      }
    }

    while (i < n) {
      if (nextLF < i) {
        nextLF = chunk.indexOf(LF, i);
        if (nextLF === -1) nextLF = n;
        this.scannedBytes += Math.min(nextLF + 1, n) - i;
      }
      if (nextCR < i) {
        nextCR = chunk.indexOf(CR, i);
        if (nextCR === -1) nextCR = n;
        this.scannedBytes += Math.min(nextCR + 1, n) - i;
      }
      const t = nextLF < nextCR ? nextLF : nextCR;
      if (t === n) break;
      let after = t + 1;
      if (t === nextCR) {
        if (after < n) {
          if (chunk[after] === LF) after++;
        } else {
          this.afterCR = true;
        }
      }
      const lineEnd = this.partsLen + (t - seg);
      if (lineEnd === this.lineStart) {
        out.push(this.dispatch(chunk.subarray(seg, after)));
        seg = after;
      } else {
        this.lines.push(this.lineStart, lineEnd);
        this.lineStart = this.partsLen + (after - seg);
      }
      i = after;
    }

    if (seg < n) {
      const tailLen = n - seg;
      if (this.partsLen + tailLen > this.maxEventBytes) this.fail();
      // A copy, so a small tail does not pin a large upstream chunk in memory.
      this.parts.push(Buffer.from(chunk.subarray(seg)));
      this.partsLen += tailLen;
    }
    return out;
  }

  /** Bytes of an unterminated final event (empty if the stream ended cleanly); resets the parser. */
  end(): Buffer {
    const rest =
      this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.partsLen);
    this.parts = [];
    this.partsLen = 0;
    this.lines = [];
    this.lineStart = 0;
    this.afterCR = false;
    return rest;
  }

  private fail(): never {
    this.failed = new SseEventTooLargeError(this.maxEventBytes);
    this.parts = [];
    this.partsLen = 0;
    this.lines = [];
    throw this.failed;
  }

  /** A UTF-8 BOM may open the stream (possibly split over chunks); it is kept in raw, not parsed. */
  private checkBom(chunk: Buffer): void {
    for (let j = 0; j < chunk.length && this.bomSeen < 3; j++) {
      if (chunk[j] !== BOM[this.bomSeen]) {
        this.bomDone = true;
        return;
      }
      this.bomSeen++;
    }
    if (this.bomSeen === 3) {
      this.bomDone = true;
      this.lineStart = 3;
    }
  }

  private dispatch(last: Buffer): SseEvent {
    const len = this.partsLen + last.length;
    if (len > this.maxEventBytes) this.fail();
    let raw: Buffer;
    if (this.parts.length === 0) raw = last;
    else {
      this.parts.push(last);
      raw = Buffer.concat(this.parts, len);
    }
    const ev = parseFields(raw, this.lines);
    this.parts = [];
    this.partsLen = 0;
    this.lines = [];
    this.lineStart = 0;
    return ev;
  }
}

function fieldIs(raw: Buffer, s: number, e: number, name: string): boolean {
  if (e - s !== name.length) return false;
  for (let k = 0; k < name.length; k++) if (raw[s + k] !== name.charCodeAt(k)) return false;
  return true;
}

function parseFields(raw: Buffer, lines: number[]): SseEvent {
  const ev: SseEvent = { raw, data: '' };
  let data: string | undefined;
  for (let k = 0; k < lines.length; k += 2) {
    const s = lines[k]!;
    const e = lines[k + 1]!;
    if (raw[s] === COLON) continue;
    // Bounded to this line: searching raw from s could run to the event's end on every line.
    const c = raw.subarray(s, e).indexOf(COLON);
    const nameEnd = c === -1 ? e : s + c;
    let vs = c === -1 ? e : nameEnd + 1;
    if (vs < e && raw[vs] === SPACE) vs++;
    if (fieldIs(raw, s, nameEnd, 'data')) {
      const v = raw.toString('utf8', vs, e);
      data = data === undefined ? v : data + '\n' + v;
    } else if (fieldIs(raw, s, nameEnd, 'event')) {
      ev.event = raw.toString('utf8', vs, e);
    } else if (fieldIs(raw, s, nameEnd, 'id')) {
      const v = raw.toString('utf8', vs, e);
      if (!v.includes('\0')) ev.id = v;
    }
    // `retry` and unknown fields are ignored, as the spec says.
  }
  if (data !== undefined) ev.data = data;
  return ev;
}
