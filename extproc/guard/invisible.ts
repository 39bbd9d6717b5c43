/**
 * Characters that render as nothing (or reorder what is shown) and so let text reach a model that
 * a human reviewing the prompt never sees. Legitimate uses are kept apart: joiners inside emoji and
 * inside scripts that need them (Persian, Indic), subdivision-flag tag sequences, a single
 * variation selector after its base character, and the plain direction marks of right-to-left
 * writing (LRM, RLM, ALM).
 */

export const INVISIBLE_KINDS = [
  'tag',
  'zero_width',
  'bidi_control',
  'filler',
  'variation_selector',
] as const;
export type InvisibleKind = (typeof INVISIBLE_KINDS)[number];

export interface InvisibleScan {
  /** Per kind, how many suspicious characters (code points) were found. */
  counts: Partial<Record<InvisibleKind, number>>;
  total: number;
  /** The text with every counted character removed. */
  stripped: string;
  /** ASCII smuggled in tag characters, decoded; empty when there is none. */
  hiddenTagText: string;
  /** Text inside right-to-left overrides, in the order a reader sees it. */
  reversedSpans: readonly string[];
}

const WAVING_BLACK_FLAG = 0x1f3f4;
const CANCEL_TAG = 0xe007f;
const RLO = 0x202e;
const PDF = 0x202c;

function isTag(cp: number): boolean {
  return cp >= 0xe0000 && cp <= 0xe007f;
}

function isVariationSelector(cp: number): boolean {
  return (cp >= 0xfe00 && cp <= 0xfe0f) || (cp >= 0xe0100 && cp <= 0xe01ef);
}

function isBidiControl(cp: number): boolean {
  return (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

function isFiller(cp: number): boolean {
  return cp === 0x115f || cp === 0x1160 || cp === 0x3164 || cp === 0xffa0;
}

function isAsciiAt(text: string, i: number): boolean {
  return i < 0 || i >= text.length || text.charCodeAt(i) < 0x80;
}

/** Cheap pre-check: every character this module cares about is outside ASCII. */
export function mayHaveInvisible(text: string): boolean {
  return Buffer.byteLength(text, 'utf8') !== text.length;
}

// What a text without invisible characters (nearly every one) shares: read, never written.
const NO_COUNTS: InvisibleScan['counts'] = Object.freeze({});
const NO_SPANS: readonly string[] = Object.freeze([]);

export function scanInvisible(text: string): InvisibleScan {
  const empty: InvisibleScan = {
    counts: NO_COUNTS,
    total: 0,
    stripped: text,
    hiddenTagText: '',
    reversedSpans: NO_SPANS,
  };
  if (!mayHaveInvisible(text)) return empty;
  const counts: Partial<Record<InvisibleKind, number>> = {};
  let total = 0;
  const keep: string[] = [];
  let copyFrom = 0;
  let hidden = '';
  const reversed: string[] = [];
  let rloStart = -1;
  const drop = (kind: InvisibleKind, at: number, len: number): void => {
    counts[kind] = (counts[kind] ?? 0) + 1;
    total++;
    keep.push(text.slice(copyFrom, at));
    copyFrom = at + len;
  };
  let prevWasSelector = false;
  for (let i = 0; i < text.length;) {
    const cp = text.codePointAt(i)!;
    const len = cp > 0xffff ? 2 : 1;
    if (cp < 0x80) {
      prevWasSelector = false;
      i += len;
      continue;
    }
    if (cp === WAVING_BLACK_FLAG) {
      // A subdivision flag: the black flag, a short run of tags, then CANCEL TAG.
      let j = i + 2;
      let n = 0;
      while (j < text.length && n < 8) {
        const t = text.codePointAt(j)!;
        if (t >= 0xe0020 && t <= 0xe007e) {
          j += 2;
          n++;
        } else break;
      }
      if (n > 0 && text.codePointAt(j) === CANCEL_TAG) {
        i = j + 2;
        prevWasSelector = false;
        continue;
      }
    }
    const selector = isVariationSelector(cp);
    if (isTag(cp)) {
      if (cp >= 0xe0020 && cp <= 0xe007e) hidden += String.fromCharCode(cp - 0xe0000);
      drop('tag', i, len);
    } else if (cp === 0x200b || cp === 0x2060 || cp === 0x180e || (cp >= 0x2061 && cp <= 0x2064)) {
      drop('zero_width', i, len);
    } else if (cp === 0xfeff) {
      // At the very start it is a byte-order mark left by an editor, not an attempt to hide.
      if (i !== 0) drop('zero_width', i, len);
    } else if (cp === 0x200c || cp === 0x200d) {
      if (isAsciiAt(text, i - 1) || isAsciiAt(text, i + 1)) drop('zero_width', i, len);
    } else if (isBidiControl(cp)) {
      if (cp === RLO) rloStart = i + len;
      else if ((cp === PDF || cp === 0x2069) && rloStart >= 0) {
        reversed.push([...text.slice(rloStart, i)].reverse().join(''));
        rloStart = -1;
      }
      drop('bidi_control', i, len);
    } else if (isFiller(cp)) {
      drop('filler', i, len);
    } else if (selector && prevWasSelector) {
      drop('variation_selector', i, len);
    }
    prevWasSelector = selector;
    i += len;
  }
  if (rloStart >= 0) reversed.push([...text.slice(rloStart)].reverse().join(''));
  if (total === 0) return empty;
  keep.push(text.slice(copyFrom));
  return { counts, total, stripped: keep.join(''), hiddenTagText: hidden, reversedSpans: reversed };
}
