import { Buffer } from 'node:buffer';
import type { TextView } from './types.js';

// Invisible characters that can be slipped inside a value to break pattern matching: zero-width
// space/joiners, word joiner, BOM, bidi embeddings/overrides/isolates and marks, soft hyphen and
// the Arabic letter mark. They carry no content, so dropping them cannot create a false match
// that a human reader would not also see.
function isInvisible(cp: number): boolean {
  return (
    cp === 0xad ||
    cp === 0x61c ||
    (cp >= 0x200b && cp <= 0x200f) ||
    (cp >= 0x202a && cp <= 0x202e) ||
    cp === 0x2060 ||
    (cp >= 0x2066 && cp <= 0x2069) ||
    cp === 0xfeff
  );
}

// Unicode dashes NFKC leaves alone but readers take for '-' in card or phone numbers.
function fold(cp: number): string {
  if ((cp >= 0x2010 && cp <= 0x2015) || cp === 0x2212) return '-';
  return String.fromCodePoint(cp).normalize('NFKC');
}

class IdentityView implements TextView {
  readonly mapped: boolean = false;
  readonly text: string;
  private runs: number[] | undefined;
  constructor(readonly original: string) {
    this.text = original;
  }
  toOriginal(start: number, end: number): { start: number; end: number } {
    return { start, end };
  }
  digitRuns(): readonly number[] {
    return (this.runs ??= computeDigitRuns(this.text));
  }
}

/**
 * Offsets map through segments: a copy segment maps code unit for code unit; a folded segment
 * (one original code point that normalized to one or more different units) maps every unit to
 * that whole code point. Only changed characters start segments, so a long text with one
 * full-width digit costs three segments rather than a map entry per character.
 */
class MappedView implements TextView {
  readonly mapped: boolean = true;
  private runs: number[] | undefined;
  constructor(
    readonly original: string,
    readonly text: string,
    private readonly segText: Int32Array,
    private readonly segOrig: Int32Array,
    // Original length of a folded segment's code point, or -1 for a copy segment.
    private readonly segFold: Int32Array,
  ) {}

  private segmentOf(pos: number): number {
    let lo = 0;
    let hi = this.segText.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segText[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private origStart(pos: number): number {
    const k = this.segmentOf(pos);
    return this.segFold[k]! < 0 ? this.segOrig[k]! + (pos - this.segText[k]!) : this.segOrig[k]!;
  }

  private origEnd(pos: number): number {
    const k = this.segmentOf(pos);
    const fold = this.segFold[k]!;
    return fold < 0 ? this.segOrig[k]! + (pos - this.segText[k]!) + 1 : this.segOrig[k]! + fold;
  }

  toOriginal(start: number, end: number): { start: number; end: number } {
    if (this.segText.length === 0) return { start: 0, end: 0 };
    if (end <= start) {
      const at = start < this.text.length ? this.origStart(start) : this.original.length;
      return { start: at, end: at };
    }
    return { start: this.origStart(start), end: this.origEnd(end - 1) };
  }

  digitRuns(): readonly number[] {
    return (this.runs ??= computeDigitRuns(this.text));
  }
}

const DIGIT_RUN = /[0-9]+/g;

function computeDigitRuns(text: string): number[] {
  // A global regex scan is several times faster than a charCodeAt loop in V8 and digit runs
  // are sparse in chat text, so the match-array allocation per run is cheap.
  const out: number[] = [];
  DIGIT_RUN.lastIndex = 0;
  for (let m = DIGIT_RUN.exec(text); m !== null; m = DIGIT_RUN.exec(text)) {
    out.push(m.index, m.index + m[0].length);
  }
  return out;
}

// Per code point: its replacement, or null when normalization leaves it as it is. Shared by all
// views, as the same few hundred code points recur in every message of a language; bounded, as
// a crafted text could visit all of Unicode.
const REPLACEMENTS = new Map<number, string | null>();
const MAX_REPLACEMENTS = 8192;
/** Per BMP code unit (surrogates aside): 0 not seen yet, 1 left as it is, 2 replaced. */
const BMP_STATE = new Uint8Array(0x10000);

function replacement(cp: number): string | null {
  let out = REPLACEMENTS.get(cp);
  if (out === undefined) {
    const folded = isInvisible(cp) ? '' : fold(cp);
    out = folded === String.fromCodePoint(cp) ? null : folded;
    if (REPLACEMENTS.size >= MAX_REPLACEMENTS) REPLACEMENTS.clear();
    REPLACEMENTS.set(cp, out);
  }
  return out;
}

/**
 * Builds the view detectors scan. Pure ASCII text (the common case) is used as is; otherwise the
 * text is NFKC-normalized per code point with invisible characters removed and Unicode dashes
 * folded to '-', keeping a map from every normalized code unit back to the original.
 */
export function createTextView(original: string): TextView {
  // UTF-8 length equals UTF-16 length only for pure ASCII; Node computes it with SIMD, about
  // five times faster than a /[^\x00-\x7F]/ test.
  if (Buffer.byteLength(original, 'utf8') === original.length) return new IdentityView(original);
  const parts: string[] = [];
  const segText: number[] = [];
  const segOrig: number[] = [];
  const segFold: number[] = [];
  let textLen = 0;
  let copyStart = 0;
  const flushCopy = (upTo: number): void => {
    if (upTo > copyStart) {
      segText.push(textLen);
      segOrig.push(copyStart);
      segFold.push(-1);
      parts.push(original.slice(copyStart, upTo));
      textLen += upTo - copyStart;
    }
  };
  // Only runs of non-ASCII are visited; everything between them stays one copy segment. test()
  // finds a run's start without allocating a match; the run is then walked by hand.
  const nonAscii = /[\u0080-\uffff]/g;
  while (nonAscii.test(original)) {
    let i = nonAscii.lastIndex - 1;
    for (;;) {
      const c = original.charCodeAt(i);
      if (!(c >= 0x80)) break;
      if (c < 0xd800 || c > 0xdfff) {
        let state = BMP_STATE[c]!;
        if (state === 0) BMP_STATE[c] = state = replacement(c) === null ? 1 : 2;
        if (state === 1) {
          i++;
          continue;
        }
      }
      const cp = original.codePointAt(i)!;
      const len = cp > 0xffff ? 2 : 1;
      const out = replacement(cp);
      if (out !== null) {
        flushCopy(i);
        if (out.length > 0) {
          segText.push(textLen);
          segOrig.push(i);
          segFold.push(len);
          parts.push(out);
          textLen += out.length;
        }
        copyStart = i + len;
      }
      i += len;
    }
    nonAscii.lastIndex = i;
  }
  if (segText.length === 0) return new IdentityView(original);
  flushCopy(original.length);
  const text = parts.join('');
  return new MappedView(
    original,
    text,
    Int32Array.from(segText),
    Int32Array.from(segOrig),
    Int32Array.from(segFold),
  );
}
