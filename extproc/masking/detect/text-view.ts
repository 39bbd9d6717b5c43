import { Buffer } from 'node:buffer';
import type { TextView } from './types.js';

// Invisible characters that can be slipped inside a value to break pattern matching: zero-width
// space/joiners, word joiner and the invisible math operators (U+2061-2064), BOM, bidi
// embeddings/overrides/isolates and marks, deprecated format controls, soft hyphen, the Arabic
// letter mark, the combining grapheme joiner, Hangul and Khmer fillers, Mongolian variation
// selectors and vowel separator, variation selectors (U+FE00-FE0F and the supplement), shorthand
// format controls and tag characters (U+E0000-E007F). They carry no content, so dropping them
// cannot create a false match that a human reader would not also see.
function isInvisible(cp: number): boolean {
  return (
    cp === 0xad ||
    cp === 0x34f ||
    cp === 0x61c ||
    cp === 0x115f ||
    cp === 0x1160 ||
    cp === 0x17b4 ||
    cp === 0x17b5 ||
    (cp >= 0x180b && cp <= 0x180f) ||
    (cp >= 0x200b && cp <= 0x200f) ||
    (cp >= 0x202a && cp <= 0x202e) ||
    (cp >= 0x2060 && cp <= 0x2064) ||
    (cp >= 0x2066 && cp <= 0x206f) ||
    cp === 0x3164 ||
    (cp >= 0xfe00 && cp <= 0xfe0f) ||
    cp === 0xfeff ||
    cp === 0xffa0 ||
    (cp >= 0x1bca0 && cp <= 0x1bca3) ||
    (cp >= 0xe0000 && cp <= 0xe007f) ||
    (cp >= 0xe0100 && cp <= 0xe01ef)
  );
}

// Cyrillic, Greek and Armenian letters drawn like Latin ones. Folded only inside a token that
// also holds ASCII letters, digits, '@' or '.' (see createTextView): a homoglyph slipped into an
// address is read as the Latin letter, while words of those scripts stay as they are.
const CONFUSABLE = new Map<number, string>(
  [
    ['а', 'a'],
    ['в', 'b'],
    ['с', 'c'],
    ['ԁ', 'd'],
    ['е', 'e'],
    ['һ', 'h'],
    ['і', 'i'],
    ['ј', 'j'],
    ['к', 'k'],
    ['м', 'm'],
    ['н', 'h'],
    ['о', 'o'],
    ['р', 'p'],
    ['ԛ', 'q'],
    ['ѕ', 's'],
    ['т', 't'],
    ['у', 'y'],
    ['ԝ', 'w'],
    ['х', 'x'],
    ['ү', 'y'],
    ['А', 'A'],
    ['В', 'B'],
    ['С', 'C'],
    ['Е', 'E'],
    ['Н', 'H'],
    ['І', 'I'],
    ['Ј', 'J'],
    ['К', 'K'],
    ['М', 'M'],
    ['О', 'O'],
    ['Р', 'P'],
    ['Ѕ', 'S'],
    ['Т', 'T'],
    ['Х', 'X'],
    ['У', 'Y'],
    ['Ү', 'Y'],
    ['α', 'a'],
    ['ο', 'o'],
    ['ν', 'v'],
    ['ρ', 'p'],
    ['υ', 'u'],
    ['ι', 'i'],
    ['κ', 'k'],
    ['χ', 'x'],
    ['Α', 'A'],
    ['Β', 'B'],
    ['Ε', 'E'],
    ['Ζ', 'Z'],
    ['Η', 'H'],
    ['Ι', 'I'],
    ['Κ', 'K'],
    ['Μ', 'M'],
    ['Ν', 'N'],
    ['Ο', 'O'],
    ['Ρ', 'P'],
    ['Τ', 'T'],
    ['Υ', 'Y'],
    ['Χ', 'X'],
    ['օ', 'o'],
    ['ս', 'u'],
    ['ı', 'i'],
  ].map(([from, to]) => [from!.codePointAt(0)!, to!]),
);

/** ASCII that makes a neighbouring non-ASCII run part of an address-like token. */
function bindsRun(c: number): boolean {
  return (
    (c >= 48 && c <= 57) ||
    (c >= 65 && c <= 90) ||
    (c >= 97 && c <= 122) ||
    c === 64 ||
    c === 46 ||
    c === 95 ||
    c === 45
  );
}

/**
 * True when the character at `at` (beside a non-ASCII run, `dir` pointing away from it) ties
 * the run to an address: an ASCII letter, digit or '@', or '.', '-', '_' with one of those (or
 * more non-ASCII) beyond. Sentence punctuation after a word of another script does not.
 */
function bindsSide(s: string, at: number, dir: 1 | -1): boolean {
  const c = s.charCodeAt(at);
  if (!bindsRun(c)) return false;
  if (c !== 46 && c !== 45 && c !== 95) return true;
  const beyond = s.charCodeAt(at + dir);
  return (bindsRun(beyond) && beyond !== 46 && beyond !== 45 && beyond !== 95) || beyond >= 0x80;
}

// Escapes a model reads as the character they stand for. Percent-encoding is decoded only for
// the characters values are made of; named entities only for the punctuation of addresses.
const NAMED_ENTITIES = new Map<string, string>([
  ['commat', '@'],
  ['period', '.'],
  ['plus', '+'],
  ['lowbar', '_'],
  ['hyphen', '-'],
  ['dash', '-'],
  ['nbsp', ' '],
  ['colon', ':'],
]);

function isHexCode(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

/** A percent escape of a character values are made of (alnum, '@', '.', '+', '_', '-'). */
function percentAt(s: string, i: number): { text: string; len: number } | undefined {
  const a = s.charCodeAt(i + 1);
  const b = s.charCodeAt(i + 2);
  if (!isHexCode(a) || !isHexCode(b)) return undefined;
  const c = parseInt(s.slice(i + 1, i + 3), 16);
  return bindsRun(c) || c === 43 ? { text: String.fromCharCode(c), len: 3 } : undefined;
}

/** `&#64;`, `&#x40;` or `&commat;` at `i`: what it reads as (normalized) and its length. */
function entityAt(s: string, i: number): { text: string; len: number } | undefined {
  if (s.charCodeAt(i + 1) === 35 /* # */) {
    const hex = s.charCodeAt(i + 2) === 120 || s.charCodeAt(i + 2) === 88;
    let k = i + (hex ? 3 : 2);
    const from = k;
    while (k - from < 7 && (hex ? isHexCode(s.charCodeAt(k)) : isDigitCode(s.charCodeAt(k)))) k++;
    if (k === from || s.charCodeAt(k) !== 59 /* ; */) return undefined;
    const cp = parseInt(s.slice(from, k), hex ? 16 : 10);
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return undefined;
    const text =
      cp < 0x80 ? String.fromCharCode(cp) : (replacement(cp) ?? String.fromCodePoint(cp));
    return { text, len: k + 1 - i };
  }
  let k = i + 1;
  while (k - i <= 8 && (s.charCodeAt(k) | 32) >= 97 && (s.charCodeAt(k) | 32) <= 122) k++;
  if (s.charCodeAt(k) !== 59) return undefined;
  const text = NAMED_ENTITIES.get(s.slice(i + 1, k));
  return text === undefined ? undefined : { text, len: k + 1 - i };
}

/** What the escape at `i` reads as, or '' when there is none. */
function escapedAt(s: string, i: number): string {
  const c = s.charCodeAt(i);
  const e = c === 37 ? percentAt(s, i) : c === 38 ? entityAt(s, i) : undefined;
  return e?.text ?? '';
}

function isDigitCode(c: number): boolean {
  return c >= 48 && c <= 57;
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
    private readonly segText: readonly number[],
    private readonly segOrig: readonly number[],
    // Original length of a replaced segment (a code point or an escape), or -1 for a copy segment.
    private readonly segFold: readonly number[],
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

const DIGIT = /[0-9]/g;

function computeDigitRuns(text: string): number[] {
  // A global regex search finds the next digit several times faster than a charCodeAt loop in
  // V8, and digit runs are sparse in chat text; test() builds no match array per run (exec
  // did), and the run's short rest is read directly.
  const out: number[] = [];
  DIGIT.lastIndex = 0;
  while (DIGIT.test(text)) {
    let end = DIGIT.lastIndex;
    while (end < text.length && isDigitCode(text.charCodeAt(end))) end++;
    out.push(DIGIT.lastIndex - 1, end);
    DIGIT.lastIndex = end;
  }
  return out;
}

// Per code point: its replacement, or null when normalization leaves it as it is. Shared by all
// views, as the same few hundred code points recur in every message of a language; bounded, as
// a crafted text could visit all of Unicode.
const REPLACEMENTS = new Map<number, string | null>();
const MAX_REPLACEMENTS = 8192;
/**
 * Per BMP code unit (surrogates aside): 0 not seen yet, 1 left as it is, 2 replaced, 3 a Latin
 * look-alike (folded or not depending on the run it is in).
 */
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
 * The normalized text and its segments as createTextView builds them: a class rather than
 * closures made on every call.
 */
class ViewBuilder {
  readonly parts: string[] = [];
  readonly segText: number[] = [];
  readonly segOrig: number[] = [];
  readonly segFold: number[] = [];
  textLen = 0;
  copyStart = 0;
  constructor(private readonly original: string) {}

  flushCopy(upTo: number): void {
    if (upTo > this.copyStart) {
      this.segText.push(this.textLen);
      this.segOrig.push(this.copyStart);
      this.segFold.push(-1);
      this.parts.push(this.original.slice(this.copyStart, upTo));
      this.textLen += upTo - this.copyStart;
    }
  }

  /** `original[at, at+len)` reads as `out`. */
  replace(at: number, len: number, out: string): void {
    this.flushCopy(at);
    if (out.length > 0) {
      this.segText.push(this.textLen);
      this.segOrig.push(at);
      this.segFold.push(len);
      this.parts.push(out);
      this.textLen += out.length;
    }
    this.copyStart = at + len;
  }
}

const NON_ASCII = /[\u0080-\uffff]/g;

/** The first non-ASCII code unit at or after `from`, or -1 (test() allocates no match). */
function nextNonAscii(s: string, from: number): number {
  NON_ASCII.lastIndex = from;
  return NON_ASCII.test(s) ? NON_ASCII.lastIndex - 1 : -1;
}

/**
 * Builds the view detectors scan. Pure ASCII text without '&' or '%' (the common case) is used as
 * is; otherwise the text is NFKC-normalized per code point with invisible characters removed,
 * Unicode dashes folded to '-', Latin look-alikes folded inside address-like tokens, and
 * character references (`&#64;`, `&commat;`) and percent escapes (`%40`) decoded, keeping a map
 * from every normalized code unit back to the original (a decoded escape maps to all of it).
 */
/** How far the start of a text is read for a non-ASCII character before the whole is checked. */
const PROBE = 128;

/** A non-ASCII character among the first PROBE: the text is not pure ASCII, no need to measure. */
function nonAsciiNearStart(s: string): boolean {
  const n = Math.min(s.length, PROBE);
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) >= 0x80) return true;
  return false;
}

export function createTextView(original: string): TextView {
  // UTF-8 length equals UTF-16 length only for pure ASCII; Node computes it with SIMD, about
  // five times faster than a /[^\x00-\x7F]/ test, but only for strings V8 stores one byte per
  // character: for the others (any character past U+00FF) it is a pass over every character. Text
  // in another language usually shows a non-ASCII character early, which settles it at once.
  if (
    !nonAsciiNearStart(original) &&
    Buffer.byteLength(original, 'utf8') === original.length &&
    original.indexOf('&') < 0 &&
    original.indexOf('%') < 0
  )
    return new IdentityView(original);
  const b = new ViewBuilder(original);
  // Only runs of non-ASCII and escapes are visited, in order of position; everything between them
  // stays one copy segment. A run's start is found by the regex engine; the run is then walked by
  // hand. Escapes are found with indexOf, which costs nothing without them.
  let run = nextNonAscii(original, 0);
  let amp = original.indexOf('&');
  let pct = original.indexOf('%');
  // The last decoded escape, so a look-alike right after `&#64;` is read as part of the address.
  let escapeEnd = -1;
  let escapeChar = 0;
  for (;;) {
    const esc = amp < 0 ? pct : pct < 0 ? amp : Math.min(amp, pct);
    if (esc >= 0 && (run < 0 || esc < run)) {
      const e = esc === amp ? entityAt(original, esc) : percentAt(original, esc);
      const next = e !== undefined ? esc + e.len : esc + 1;
      if (e !== undefined) {
        b.replace(esc, e.len, e.text);
        escapeEnd = next;
        escapeChar = e.text.charCodeAt(0);
      }
      if (amp >= 0 && amp < next) amp = original.indexOf('&', next);
      if (pct >= 0 && pct < next) pct = original.indexOf('%', next);
      continue;
    }
    if (run < 0) break;
    // A run of non-ASCII. Its look-alikes are folded when ASCII of an address touches the run.
    // The left side is known now; the right one only at the run's end, so a run whose first
    // look-alike came before that is walked again from there (only when the right side binds:
    // words of other scripts between spaces are walked once).
    let i = run;
    let bound: boolean | undefined =
      bindsSide(original, run - 1, -1) || (escapeEnd === run && bindsRun(escapeChar)) || undefined;
    // Where to walk again from (-1: nowhere) and the output state there.
    let redoAt = -1;
    let redoSegs = 0;
    let redoParts = 0;
    let redoTextLen = 0;
    let redoCopyStart = 0;
    for (;;) {
      const c = original.charCodeAt(i);
      if (!(c >= 0x80)) {
        // `c` is the character after the run (NaN at the end of the text).
        if (
          redoAt < 0 ||
          !(bindsRun(c) || c === 37 || c === 38) ||
          !(bindsSide(original, i, 1) || bindsRun(escapedAt(original, i).charCodeAt(0)))
        )
          break;
        b.segText.length = b.segOrig.length = b.segFold.length = redoSegs;
        b.parts.length = redoParts;
        b.textLen = redoTextLen;
        b.copyStart = redoCopyStart;
        i = redoAt;
        bound = true;
        redoAt = -1;
        continue;
      }
      if (c < 0xd800 || c > 0xdfff) {
        let state = BMP_STATE[c]!;
        if (state === 0) {
          state = CONFUSABLE.has(c) ? 3 : replacement(c) === null ? 1 : 2;
          BMP_STATE[c] = state;
        }
        if (state === 1) {
          i++;
          continue;
        }
        if (state === 3) {
          if (bound) b.replace(i, 1, CONFUSABLE.get(c)!);
          else if (redoAt < 0) {
            redoAt = i;
            redoSegs = b.segText.length;
            redoParts = b.parts.length;
            redoTextLen = b.textLen;
            redoCopyStart = b.copyStart;
          }
          i++;
          continue;
        }
      }
      const cp = original.codePointAt(i)!;
      const len = cp > 0xffff ? 2 : 1;
      const out = replacement(cp);
      if (out !== null) b.replace(i, len, out);
      i += len;
    }
    run = nextNonAscii(original, i);
  }
  if (b.segText.length === 0) return new IdentityView(original);
  b.flushCopy(original.length);
  // The builder's arrays as they are: copying a few dozen numbers into typed arrays cost more
  // than the lookups they would speed up (a binary search per finding).
  return new MappedView(original, b.parts.join(''), b.segText, b.segOrig, b.segFold);
}
