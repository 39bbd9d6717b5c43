import {
  afterNumberGroup,
  charBefore,
  hasContextBefore,
  isDigit,
  isSpace,
  isWord,
} from './chars.js';
import { luhnValid } from './checksums.js';
import type { Detector, Finding, TextView } from './types.js';

const MIN_DIGITS = 13;
// Maestro also issues 12-digit cards.
const MAESTRO_DIGITS = 12;
// Maestro's 12-digit ranges (IIN prefixes). A 12-digit Luhn-valid number is a card only with one
// of these, which keeps order ids and tracking numbers of that length out.
const MAESTRO_12 = new Set([
  '5018',
  '5020',
  '5038',
  '5893',
  '6304',
  '6759',
  '6761',
  '6762',
  '6763',
]);
const CARD_WORDS = ['card', 'maestro', 'debit', 'credit', 'cc', 'pan'];
const MAX_DIGITS = 19;
const MAX_SPACES = 3;

/**
 * Issuer prefixes of the card networks in use (Visa, Mastercard incl. 2-series, Amex, Discover,
 * JCB, Diners, UnionPay, Maestro, Mir, RuPay). Luhn alone passes one random number in ten; the
 * prefix check removes most Luhn-valid order and tracking numbers.
 */
function knownIssuer(text: string, at: number, digits: number): boolean {
  const d1 = text.charCodeAt(at) - 48;
  const d2 = text.charCodeAt(at + 1) - 48;
  // Twelve digits only for Maestro, fifteen from 1800/2131 only for JCB's old ranges.
  if (digits === MAESTRO_DIGITS) {
    if (MAESTRO_12.has(text.slice(at, at + 4))) return true;
    // Maestro's wider ranges (56-58, 6390, 0604) only where the text speaks of a card.
    const wide =
      (d1 === 5 && d2 >= 6 && d2 <= 8) ||
      text.startsWith('6390', at) ||
      text.startsWith('0604', at);
    return wide && hasContextBefore(text, at, 60, CARD_WORDS);
  }
  switch (d1) {
    case 4:
      return true;
    case 5:
      return d2 <= 8;
    case 1:
      return digits === 15 && text.startsWith('800', at + 1);
    case 2:
      if (digits === 15 && text.startsWith('131', at + 1)) return true;
      return d2 >= 2 && d2 <= 7;
    case 3:
      if (d2 === 4 || d2 === 7) return digits === 15;
      return d2 === 0 || d2 === 5 || d2 === 6 || d2 === 8 || d2 === 9;
    case 6:
      return true;
    default:
      return false;
  }
}

function badBefore(c: number): boolean {
  // '.', '-', '/', '+', '#', ':' and '$' before the digits mean the run belongs to something
  // else (a decimal, a longer identifier, a price, a phone number, an order reference).
  return (
    isWord(c) || c === 46 || c === 45 || c === 47 || c === 43 || c === 35 || c === 58 || c === 36
  );
}

/**
 * Each group's end and length while a candidate is matched (scratch, one candidate at a time): at
 * most MAX_DIGITS + 6 digits, so as many groups before it is given up.
 */
const ENDS = new Int32Array(MAX_DIGITS + 8);
const LENS = new Int32Array(MAX_DIGITS + 8);

/** Returns the end of a valid card number starting at `start`, or -1. */
function matchCard(text: string, start: number): number {
  const ends = ENDS;
  const lens = LENS;
  let groups = 0;
  let digits = 0;
  let sep = 0;
  let i = start;
  for (;;) {
    const g = i;
    while (isDigit(text.charCodeAt(i))) i++;
    const len = i - g;
    digits += len;
    if (digits > MAX_DIGITS + 6) return -1;
    ends[groups] = i;
    lens[groups] = len;
    groups++;
    // Between groups: '-' or '.', or up to three whitespace characters (double spaces, a tab, a
    // line break), the same kind throughout, as a reader would still see one number.
    const c = text.charCodeAt(i);
    let skip = 0;
    let kind = c;
    if (c === 45 || c === 46) skip = 1;
    else if (isSpace(c)) {
      kind = 32;
      while (skip < MAX_SPACES && isSpace(text.charCodeAt(i + skip))) skip++;
    }
    if (skip > 0 && (sep === 0 || sep === kind) && isDigit(text.charCodeAt(i + skip))) {
      sep = kind;
      i += skip;
      continue;
    }
    break;
  }
  const after = text.charCodeAt(i);
  if (isWord(after) || ((after === 46 || after === 44) && isDigit(text.charCodeAt(i + 1)))) {
    return -1;
  }
  // Try the whole chain, then without its last group (a CVV or expiry typed right after).
  for (let n = groups; n >= Math.max(1, groups - 1); n--) {
    let total = 0;
    for (let k = 0; k < n; k++) total += lens[k]!;
    if ((total < MIN_DIGITS && total !== MAESTRO_DIGITS) || total > MAX_DIGITS) continue;
    if (n > 1) {
      // Grouped cards always open with four digits; inner groups are 4-6 (Visa 4-4-4-4,
      // Amex 4-6-5, Diners 4-6-4), the last may be short (19-digit 4-4-4-4-3).
      if (lens[0] !== 4) continue;
      let ok = true;
      for (let k = 1; k < n - 1; k++) if (lens[k]! < 4 || lens[k]! > 6) ok = false;
      if (!ok) continue;
    }
    const end = ends[n - 1]!;
    if (knownIssuer(text, start, total) && luhnValid(text, start, end)) return end;
  }
  return -1;
}

export function scanCards(view: TextView, type = 'CREDIT_CARD'): Finding[] {
  const text = view.text;
  const runs = view.digitRuns();
  const out: Finding[] = [];
  let consumed = 0;
  for (let r = 0; r < runs.length; r += 2) {
    const s = runs[r]!;
    if (s < consumed) continue;
    const e = runs[r + 1]!;
    // Cheapest rejection first: a run longer than any card, or a lone short run.
    if (e - s > MAX_DIGITS) continue;
    if (e - s < 3 || badBefore(charBefore(text, s))) continue;
    // A space-grouped run right after a group of digits is the tail of a longer grouped number
    // (tracking numbers, IBANs), not the start of a card. After a token of its own
    // (`ORD-123456 4111-1111-…`, `qty 3 4111 1111 …`), or written whole or with dashes, it may
    // open one. A bare four-digit number before a space-grouped card stays ambiguous with
    // tracking numbers and is not taken for a card's start.
    if (e - s < MIN_DIGITS && text.charCodeAt(e) !== 45 && afterNumberGroup(text, s)) continue;
    const end = matchCard(text, s);
    if (end !== -1) {
      out.push({ type, start: s, end });
      consumed = end;
    }
  }
  return out;
}

export function creditCardDetector(): Detector {
  return { type: 'CREDIT_CARD', scan: (view: TextView) => scanCards(view) };
}
