/**
 * Reads `usage` and `model` out of a JSON answer of any size as it streams past, keeping only
 * those values: a 2xx answer too large to buffer (embeddings of thousands of inputs, many choices,
 * long tool output) is still billed for what the provider says it used.
 *
 * One pass over the bytes, each looked at once, whatever the chunking: the state between chunks
 * is a handful of numbers plus the bytes of the value being kept, which are bounded. What is kept
 * is the value of these members and nothing else:
 * - `usage` and `model` of the top-level object (OpenAI chat, completions, embeddings, Responses;
 *   Anthropic messages);
 * - `usage` and `model` of a top-level `response` object (wrappers that answer the Responses API
 *   with the response nested, as in its stream events).
 * A member named so deeper down (inside a choice, a tool's arguments, a string) is never taken for
 * it. Names are compared as raw bytes: a name spelled with escapes (`"\u0075sage"`) is not seen,
 * which only loses usage (an estimate then stands in), never misreads it.
 */

/** Larger than any usage object or model name a provider sends; a larger value is not kept. */
export const MAX_KEPT_VALUE_BYTES = 64 * 1024;

/** The members read, as a JSON-shaped object usageFromJson() understands. */
export interface JsonUsageFields {
  usage?: unknown;
  model?: unknown;
  response?: { usage?: unknown; model?: unknown };
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/** Where an object whose members we follow stands: before a name, after it, in its value. */
type Member = 'name' | 'colon' | 'value';

/** A name longer than this is none of ours; its bytes are not kept. */
const MAX_NAME_BYTES = 16;

const WANTED_TOP = ['usage', 'model', 'response'] as const;
const WANTED_IN_RESPONSE = ['usage', 'model'] as const;

export class JsonUsageScanner {
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** Member state of the followed objects: the top level (depth 1) and `response` (depth 2). */
  private member: (Member | undefined)[] = [undefined, undefined, undefined];
  /**
   * The bytes of the member name being read (compared with the wanted names, never made a
   * string: a string and an array per name were most of what reading an answer allocated), and
   * per followed depth the wanted name whose value is in progress.
   */
  private readonly name = new Uint8Array(MAX_NAME_BYTES + 1);
  private nameLength = 0;
  private readingName = false;
  private current: (string | undefined)[] = [undefined, undefined, undefined];
  private valueStarted = false;
  /** The top-level member `response` opened an object: depth 2 is followed. */
  private inResponse = false;
  private keep: { depth: number; parts: Buffer[]; bytes: number; tooLarge: boolean } | undefined;
  private readonly found: JsonUsageFields = {};
  /**
   * Bytes examined: one per byte outside string contents, plus what the two searches through
   * string contents covered (each covers a byte at most once). Tests use it to prove the work is
   * at most three looks per byte, whatever the chunking.
   */
  scannedBytes = 0;

  push(chunk: Buffer): void {
    const n = chunk.length;
    // Start of the part of `chunk` that belongs to the value being kept.
    let keptFrom = 0;
    // Cached positions of the next quote / backslash at or after i (n: none left), so string
    // contents, most of a large answer, are skipped by indexOf and each search covers new bytes.
    let nextQuote = -1;
    let nextBackslash = -1;
    for (let i = 0; i < n; i++) {
      if (this.inString && !this.escaped && !this.readingName) {
        if (nextQuote < i) {
          nextQuote = chunk.indexOf(QUOTE, i);
          if (nextQuote === -1) nextQuote = n;
          this.scannedBytes += Math.min(nextQuote + 1, n) - i;
        }
        if (nextBackslash < i) {
          nextBackslash = chunk.indexOf(BACKSLASH, i);
          if (nextBackslash === -1) nextBackslash = n;
          this.scannedBytes += Math.min(nextBackslash + 1, n) - i;
        }
        i = nextQuote < nextBackslash ? nextQuote : nextBackslash;
        if (i >= n) break;
      } else {
        this.scannedBytes++;
      }
      const b = chunk[i]!;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (b === BACKSLASH) {
          this.escaped = true;
          // A name spelled with an escape is never one of ours (see the module comment).
          if (this.readingName) this.nameLength = MAX_NAME_BYTES + 1;
        } else if (b === QUOTE) {
          this.inString = false;
          if (this.readingName) this.endName();
        } else if (this.readingName && this.nameLength <= MAX_NAME_BYTES) {
          this.name[this.nameLength++] = b;
        }
        continue;
      }
      const d = this.depth;
      const followed = this.followed(d) ? this.member[d] : undefined;
      if (followed === 'name') {
        if (b === QUOTE) {
          this.inString = true;
          this.readingName = true;
          this.nameLength = 0;
        } else if (b === CLOSE_OBJECT) this.close();
        continue;
      }
      if (followed === 'colon') {
        if (b === COLON) {
          this.member[d] = 'value';
          this.valueStarted = false;
        }
        continue;
      }
      if (followed === 'value') {
        if (b === COMMA || b === CLOSE_OBJECT) {
          if (this.keep && this.keep.depth === d) this.finishKeep(d, chunk, keptFrom, i);
          this.current[d] = undefined;
          this.member[d] = 'name';
          if (b === CLOSE_OBJECT) this.close();
          continue;
        }
        if (!this.valueStarted) {
          if (isSpace(b)) continue;
          this.valueStarted = true;
          const name = this.current[d];
          if (name === 'usage' || name === 'model') {
            this.keep = { depth: d, parts: [], bytes: 0, tooLarge: false };
            keptFrom = i;
          } else if (d === 1 && name === 'response' && b === OPEN_OBJECT) {
            this.inResponse = true;
          }
        }
      }
      if (b === QUOTE) this.inString = true;
      else if (b === OPEN_OBJECT || b === OPEN_ARRAY) this.open(b);
      else if (b === CLOSE_OBJECT || b === CLOSE_ARRAY) this.close();
    }
    if (this.keep) this.keepPart(chunk.subarray(keptFrom));
  }

  /** What was read; call once the body has ended. */
  result(): JsonUsageFields {
    return this.found;
  }

  private followed(d: number): boolean {
    return d === 1 || (d === 2 && this.inResponse);
  }

  private open(b: number): void {
    this.depth++;
    const d = this.depth;
    if (d === 1) this.member[1] = b === OPEN_OBJECT ? 'name' : undefined;
    else if (d === 2 && this.inResponse) {
      this.member[2] = 'name';
    }
  }

  private close(): void {
    const d = this.depth;
    if (d === 2 && this.inResponse) this.inResponse = false;
    if (d <= 2) this.member[d] = undefined;
    this.depth = Math.max(0, d - 1);
  }

  private endName(): void {
    this.readingName = false;
    const d = this.depth;
    this.current[d] = this.wantedName(d === 1 ? WANTED_TOP : WANTED_IN_RESPONSE);
    this.member[d] = 'colon';
  }

  /** The wanted name the bytes just read spell, if any. */
  private wantedName(wanted: readonly string[]): string | undefined {
    const n = this.nameLength;
    for (const w of wanted) {
      if (w.length !== n) continue;
      let i = 0;
      while (i < n && this.name[i] === w.charCodeAt(i)) i++;
      if (i === n) return w;
    }
    return undefined;
  }

  private keepPart(part: Buffer): void {
    const k = this.keep!;
    if (k.tooLarge || part.length === 0) return;
    k.bytes += part.length;
    if (k.bytes > MAX_KEPT_VALUE_BYTES) {
      k.tooLarge = true;
      k.parts = [];
      return;
    }
    // A copy: the chunk is not ours to pin.
    k.parts.push(Buffer.from(part));
  }

  /** The kept value ends at `end` of `chunk` (it began at `from`, or in an earlier chunk). */
  private finishKeep(d: number, chunk: Buffer, from: number, end: number): void {
    const k = this.keep!;
    // A value within one chunk (the usual case) is read from it; one begun earlier was copied.
    const whole = k.parts.length === 0 && !k.tooLarge;
    if (!whole) this.keepPart(chunk.subarray(from, end));
    this.keep = undefined;
    const name = this.current[d];
    if (k.tooLarge || name === undefined || (whole && end - from > MAX_KEPT_VALUE_BYTES)) return;
    let value: unknown;
    try {
      value = JSON.parse(
        whole
          ? chunk.toString('utf8', from, end)
          : Buffer.concat(k.parts, k.bytes).toString('utf8'),
      );
    } catch {
      return;
    }
    const into =
      d === 1
        ? this.found
        : (this.found.response ??= {} as NonNullable<JsonUsageFields['response']>);
    if (name === 'usage') into.usage = value;
    else if (name === 'model') into.model = value;
  }
}
