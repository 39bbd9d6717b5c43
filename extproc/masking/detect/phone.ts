import {
  afterNumberGroup,
  charBefore,
  hasContextBefore,
  isAlpha,
  isDigit,
  isEscapedLetter,
  isWord,
} from './chars.js';
import type { Detector, Finding, TextView } from './types.js';

const SEP_SPACE = 1;
const SEP_DASH = 2;
const SEP_DOT = 4;
const SEP_NONE = 8;
// Only after the area code, as in German 089/1234567.
const SEP_SLASH = 16;

// Words that make an otherwise ambiguous digit string (no '+', no trunk '0', no North American
// shape) a phone number. "number" is deliberately absent: "order number 4155552671".
const CONTEXT = [
  'phone',
  'tel',
  'telephone',
  'mobile',
  'cell',
  'call',
  'text',
  'sms',
  'whatsapp',
  'fax',
  'reach',
  'dial',
  'ring',
  'hotline',
];
// Right before the number (see phoneWordBefore) a few more words say "phone": `Desk: 439 4166`,
// `not answering at …`, `messages to …`.
const CONTEXT_SET = new Set([
  ...CONTEXT,
  'contact',
  'desk',
  'answering',
  'messages',
  'texts',
  'calls',
]);

interface Chain {
  start: number;
  end: number;
  /** End of the span to mask: `end`, or past an extension written after it (`x549`, ` ext. 12`). */
  spanEnd: number;
  hasPlus: boolean;
  /** Digits of each group, and where each starts: the first `count` entries. */
  groups: Int32Array;
  groupStarts: Int32Array;
  count: number;
  parens: number;
  seps: number;
  digits: number;
}

function badBefore(c: number, hasPlus: boolean): boolean {
  if (isWord(c)) return true;
  switch (c) {
    case 46: // .
    case 45: // -
    case 47: // /
    case 35: // #
    case 36: // $
    case 43: // +
    case 64: // @
    case 37: // %
    case 0xa3: // £
    case 0xa5: // ¥
    case 0x20ac: // €
      return true;
    case 58: // ':' before a bare number is a time or port; "tel:+1..." is fine.
      return !hasPlus;
    default:
      return false;
  }
}

/**
 * The chain parseChain returns, reused: scanPhones reads each one before it parses the next, and
 * a text has a candidate per digit run (two arrays and an object each, otherwise).
 */
const CHAIN: Chain = {
  start: 0,
  end: 0,
  spanEnd: 0,
  hasPlus: false,
  // A chain has at most 17 digits, and so at most 18 groups before it is given up.
  groups: new Int32Array(32),
  groupStarts: new Int32Array(32),
  count: 0,
  parens: 0,
  seps: 0,
  digits: 0,
};

function parseChain(text: string, runStart: number): Chain | null {
  let start = runStart;
  let hasPlus = false;
  const before = text.charCodeAt(runStart - 1);
  if (before === 43) {
    hasPlus = true;
    start--;
  } else if (before === 40) {
    start--;
  }
  if (badBefore(charBefore(text, start), hasPlus)) return null;
  const { groups, groupStarts } = CHAIN;
  let count = 0;
  let parens = 0;
  let seps = 0;
  let digits = 0;
  let i = hasPlus ? start + 1 : start;
  let end = i;
  let pending = 0;
  for (;;) {
    let paren = false;
    let j = i;
    if (text.charCodeAt(j) === 40) {
      paren = true;
      j++;
    }
    const digitStart = j;
    while (isDigit(text.charCodeAt(j))) j++;
    const len = j - digitStart;
    if (len === 0) break;
    if (paren) {
      if (text.charCodeAt(j) !== 41) break;
      j++;
      parens++;
    }
    seps |= pending;
    groups[count] = len;
    groupStarts[count] = digitStart;
    count++;
    digits += len;
    if (digits > 17) return null;
    end = paren ? j - 1 : j;
    i = j;
    const c = text.charCodeAt(i);
    pending = 0;
    if (c === 32) pending = SEP_SPACE;
    else if (c === 45) pending = SEP_DASH;
    else if (c === 46) pending = SEP_DOT;
    else if (c === 47 && count === 1) pending = SEP_SLASH;
    if (pending !== 0) {
      const n = text.charCodeAt(i + 1);
      if (!(isDigit(n) || n === 40)) break;
      i++;
    } else if (paren && isDigit(c)) {
      pending = SEP_NONE;
    } else {
      break;
    }
  }
  if (count === 0) return null;
  // After "digits + space" the run may continue a longer grouped number (a tracking or card
  // number). It opens a phone only after a token of its own (`ORD-123456 415-555-0132`) and when
  // written with dashes, dots or a parenthesized area code, which grouped numbers never use.
  if (!hasPlus && text.charCodeAt(start - 1) === 32 && isDigit(text.charCodeAt(start - 2))) {
    const spacedOnly = (seps & ~SEP_SPACE) === 0 && text.charCodeAt(start) !== 40;
    if (spacedOnly || afterNumberGroup(text, start)) return null;
  }
  const spanEnd = extensionEnd(text, end);
  const after = text.charCodeAt(spanEnd);
  if (spanEnd === end && isWord(after)) return null;
  if (
    (after === 46 || after === 45 || after === 47 || after === 58 || after === 44) &&
    isDigit(text.charCodeAt(spanEnd + 1))
  ) {
    return null;
  }
  // A chain that ends on a closing paren ends with its last digit; the span keeps the ')' out.
  CHAIN.start = start;
  CHAIN.end = end;
  CHAIN.spanEnd = spanEnd;
  CHAIN.hasPlus = hasPlus;
  CHAIN.count = count;
  CHAIN.parens = parens;
  CHAIN.seps = seps;
  CHAIN.digits = digits;
  return CHAIN;
}

/**
 * The end of an extension written right after a number — `x549`, ` x549`, ` ext. 549`,
 * `ext549` — which is masked with it; `end` itself when there is none (or it runs into a word).
 */
function extensionEnd(text: string, end: number): number {
  let i = end;
  if (text.charCodeAt(i) === 32) i++;
  const c = text.charCodeAt(i) | 32;
  if (c === 120) {
    i++;
  } else if (
    c === 101 &&
    (text.charCodeAt(i + 1) | 32) === 120 &&
    (text.charCodeAt(i + 2) | 32) === 116
  ) {
    i += 3;
    if (text.charCodeAt(i) === 46) i++;
    if (text.charCodeAt(i) === 32) i++;
  } else {
    return end;
  }
  const s = i;
  while (isDigit(text.charCodeAt(i)) && i - s < 7) i++;
  if (i === s || i - s > 6 || isWord(text.charCodeAt(i))) return end;
  return i;
}

function digitAt(text: string, chain: Chain, group: number): number {
  return text.charCodeAt(chain.groupStarts[group]!) - 48;
}

function isInternational(text: string, ch: Chain): boolean {
  if (ch.hasPlus) {
    return digitAt(text, ch, 0) !== 0 && ch.digits >= 8 && ch.digits <= 15;
  }
  // "00" international call prefix: 0044 20 7946 0958.
  const g0 = ch.groups[0]!;
  const s0 = ch.groupStarts[0]!;
  return (
    ch.count >= 2 &&
    g0 >= 3 &&
    g0 <= 5 &&
    text.charCodeAt(s0) === 48 &&
    text.charCodeAt(s0 + 1) === 48 &&
    text.charCodeAt(s0 + 2) !== 48 &&
    ch.digits - 2 >= 8 &&
    ch.digits - 2 <= 15
  );
}

function isNorthAmerican(text: string, ch: Chain): boolean {
  let first = 0;
  if (ch.count === 4 && ch.groups[0] === 1 && digitAt(text, ch, 0) === 1) first = 1;
  if (ch.count - first !== 3) return false;
  if (ch.groups[first] !== 3 || ch.groups[first + 1] !== 3 || ch.groups[first + 2] !== 4) {
    return false;
  }
  if (digitAt(text, ch, first) < 2 || digitAt(text, ch, first + 1) < 2) return false;
  if ((ch.seps & SEP_SLASH) !== 0) return false;
  // Dots only as the sole separator (415.555.2671), never mixed into other styles.
  return (ch.seps & SEP_DOT) === 0 || ch.seps === SEP_DOT;
}

function isTrunkNational(text: string, ch: Chain): boolean {
  const g = ch.groups;
  const n = ch.count;
  if (n < 2 || ch.digits < 9 || ch.digits > 12) return false;
  if (digitAt(text, ch, 0) !== 0 || g[0]! < 2 || g[0]! > 5) return false;
  for (let k = 0; k < n; k++) if (g[k]! < 2 || g[k]! > 8) return false;
  // 3-2-4 is the SSN shape, even with a leading zero.
  if (n === 3 && g[0] === 3 && g[1] === 2 && g[2] === 4) return false;
  const plain = ch.seps & ~(SEP_NONE | SEP_SLASH);
  return (
    plain === SEP_SPACE ||
    plain === SEP_DASH ||
    plain === SEP_DOT ||
    plain === (SEP_SPACE | SEP_DASH) ||
    plain === 0
  );
}

/** An area code in parentheses without a trunk zero: (11) 91234-5678, (212) 555 0100. */
function isParenArea(text: string, ch: Chain): boolean {
  if (ch.hasPlus || text.charCodeAt(ch.start) !== 40) return false;
  const g = ch.groups;
  const n = ch.count;
  if (n < 2 || g[0]! < 2 || g[0]! > 4 || ch.digits < 9 || ch.digits > 11) return false;
  for (let k = 1; k < n; k++) if (g[k]! < 3) return false;
  return (ch.seps & (SEP_DOT | SEP_SLASH)) === 0;
}

function isContextual(text: string, ch: Chain): boolean {
  if (ch.digits < 10 || ch.digits > 13 || (ch.seps & (SEP_DOT | SEP_SLASH)) !== 0) return false;
  for (let k = 0; k < ch.count; k++) if (ch.groups[k]! < 2) return false;
  return (
    hasContextBefore(text, ch.start, 40, CONTEXT) ||
    phoneWordBefore(text, ch.start) ||
    phoneWordAfter(text, ch.spanEnd)
  );
}

// Words that may stand between a phone word and the number: "call me at", "Phone number is".
const FILLER = new Set([
  'me',
  'us',
  'at',
  'on',
  'is',
  'my',
  'our',
  'his',
  'her',
  'their',
  'the',
  'no',
  'nr',
  'number',
  'to',
  'or',
  'new',
  'direct',
  'line',
]);
const MAX_FILLER = 4;
const MAX_GAP = 6;

/**
 * True when a phone word stands right before `pos`: back over punctuation and line breaks (so
 * `Phone:` on the line before counts) and at most a few filler words (`call me at`), never over
 * another number or any other word. Tighter than `hasContextBefore`, because it lets numbers of
 * six to nine digits — order ids, amounts and dates have those too — be phones.
 */
function phoneWordBefore(text: string, pos: number): boolean {
  let i = pos;
  for (let words = 0; words <= MAX_FILLER; words++) {
    let gap = 0;
    while (i > 0) {
      const c = text.charCodeAt(i - 1);
      if (isWord(c) && !isEscapedLetter(text, i - 1)) break;
      if (isDigit(c) || ++gap > MAX_GAP) return false;
      i--;
    }
    const e = i;
    while (i > 0 && isAlpha(text.charCodeAt(i - 1)) && !isEscapedLetter(text, i - 1)) i--;
    if (i === e || e - i > 12 || isDigit(text.charCodeAt(i - 1))) return false;
    const w = text.slice(i, e).toLowerCase();
    if (CONTEXT_SET.has(w)) return true;
    if (!FILLER.has(w)) return false;
  }
  return false;
}

// Said after a number: `6074681460 fax`, `5388918872-Fax`, `(0)20 7946 0958 (office)`.
const AFTER = new Set([
  'phone',
  'tel',
  'telephone',
  'mobile',
  'cell',
  'fax',
  'office',
  'home',
  'work',
  'desk',
  'direct',
]);

function phoneWordAfter(text: string, end: number): boolean {
  let i = end;
  while (i - end < 3) {
    const c = text.charCodeAt(i);
    if (c === 32 || c === 45 || c === 40 || c === 44 || c === 9) i++;
    else break;
  }
  const s = i;
  while (isAlpha(text.charCodeAt(i)) && i - s <= 9) i++;
  if (i === s || isWord(text.charCodeAt(i)) || !AFTER.has(text.slice(s, i).toLowerCase())) {
    return false;
  }
  // The word labels the number only where it closes the line or clause: `… fax`, `… office\n`,
  // `(home),`; `Invoice 952416 office supplies` and `ticket 1555255 mobile team` go on.
  if (text.charCodeAt(i) === 41) i++;
  const c = text.charCodeAt(i);
  return (
    Number.isNaN(c) ||
    c === 10 ||
    c === 13 ||
    c === 44 ||
    c === 46 ||
    c === 59 ||
    c === 92 ||
    c === 124 ||
    (c === 32 && !isAlpha(text.charCodeAt(i + 1)))
  );
}

/**
 * A number as written at home, without '+' or trunk zero — `730 064 218`, `96 466712`,
 * `72 805 20 53`, `439 4166`, `4394166` — when a phone word stands right before or after it.
 */
function isLocal(text: string, ch: Chain): boolean {
  if (ch.hasPlus || ch.digits < 6 || ch.digits > 9) return false;
  // An area code in parentheses only at the start: (72) 583-350.
  if (ch.parens > 1 || (ch.parens === 1 && text.charCodeAt(ch.start) !== 40)) return false;
  if ((ch.seps & ~(SEP_SPACE | SEP_DASH)) !== 0) return false;
  if (digitAt(text, ch, 0) === 0) return false;
  const g = ch.groups;
  const n = ch.count;
  for (let k = 0; k < n; k++) if (g[k]! < 2) return false;
  // 12 05 2024, 2024-05-12: dates written with spaces or dashes.
  if (
    n === 3 &&
    ((g[0] === 2 && g[1] === 2 && g[2] === 4) || (g[0] === 4 && g[1] === 2 && g[2] === 2))
  ) {
    return false;
  }
  return phoneWordBefore(text, ch.start) || phoneWordAfter(text, ch.spanEnd);
}

export function scanPhones(view: TextView, type = 'PHONE'): Finding[] {
  const text = view.text;
  const runs = view.digitRuns();
  const out: Finding[] = [];
  let consumed = 0;
  for (let r = 0; r < runs.length; r += 2) {
    const s = runs[r]!;
    if (s < consumed) continue;
    const ch = parseChain(text, s);
    if (ch === null) continue;
    if (
      isInternational(text, ch) ||
      isNorthAmerican(text, ch) ||
      isTrunkNational(text, ch) ||
      isParenArea(text, ch) ||
      isContextual(text, ch) ||
      isLocal(text, ch)
    ) {
      out.push({ type, start: ch.start, end: ch.spanEnd });
      consumed = ch.spanEnd;
    }
  }
  return out;
}

export function phoneDetector(): Detector {
  return { type: 'PHONE', scan: (view: TextView) => scanPhones(view) };
}
