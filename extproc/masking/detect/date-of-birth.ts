import { hasContextBefore, isAlpha, isDigit, isWord } from './chars.js';
import type { Detector, Finding, TextView } from './types.js';

/**
 * DATE_OF_BIRTH: a calendar date that a birth word introduces (`born on`, `DOB`, `date of
 * birth`, `birthday`, `Geburtsdatum`, `né le`) within a short window before it, or that a
 * `(DOB)`/`(born)` label follows. Dates: `1985-04-12`, `12/04/1985`, `12.04.1985`, `12-04-1985`,
 * `April 12, 1985`, `12 April 1985`, `Apr 12 1985`. Any other date is not personal data by
 * itself and is left alone.
 *
 * Candidates start at digit runs and month names only and each is matched in a bounded number
 * of steps: linear.
 */

const CONTEXT = [
  'born',
  'birth',
  'birthday',
  'birthdate',
  'dob',
  'd.o.b',
  'b.',
  'geburtsdatum',
  'geboren',
  'né',
  'née',
  'nacimiento',
  'nascimento',
  'nato',
  'nata',
];
const WINDOW = 40;

const MONTHS = new Map<string, number>(
  [
    'january february march april may june july august september october november december',
    'jan feb mar apr may jun jul aug sep oct nov dec',
  ].flatMap((row) => row.split(' ').map((m, i) => [m, i + 1] as [string, number])),
);
MONTHS.set('sept', 9);

function num(text: string, i: number, min: number, max: number): number {
  let e = i;
  while (isDigit(text.charCodeAt(e)) && e - i <= max) e++;
  return e - i >= min && e - i <= max ? e : -1;
}

function value(text: string, s: number, e: number): number {
  return Number(text.slice(s, e));
}

/** A numeric date at `s` (digits first): its end, or -1. */
function numericDate(text: string, s: number): number {
  const a = num(text, s, 1, 4);
  if (a === -1) return -1;
  const sep = text.charCodeAt(a);
  if (sep !== 45 && sep !== 47 && sep !== 46) return -1;
  const b = num(text, a + 1, 1, 2);
  if (b === -1 || text.charCodeAt(b) !== sep) return -1;
  const c = num(text, b + 1, 2, 4);
  if (c === -1) return -1;
  const x = value(text, s, a);
  const y = value(text, a + 1, b);
  const z = value(text, b + 1, c);
  if (a - s === 4) {
    // Year first: 1985-04-12.
    if (c - b - 1 > 2 || y < 1 || y > 12 || z < 1 || z > 31) return -1;
  } else {
    if (a - s > 2 || c - b - 1 === 3) return -1;
    // Day and month in either order: 12/04/1985 or 04/12/1985.
    if (x < 1 || y < 1 || x > 31 || y > 31 || (x > 12 && y > 12)) return -1;
  }
  if (
    isWord(text.charCodeAt(c)) ||
    (text.charCodeAt(c) === sep && isDigit(text.charCodeAt(c + 1)))
  ) {
    return -1;
  }
  return c;
}

function monthAt(text: string, i: number): number {
  let e = i;
  while (isAlpha(text.charCodeAt(e)) && e - i < 10) e++;
  if (!MONTHS.has(text.slice(i, e).toLowerCase())) return -1;
  if (text.charCodeAt(e) === 46) e++;
  return e;
}

/** `April 12, 1985` / `Apr 12 1985` at a month name: end or -1. */
function monthFirst(text: string, s: number): number {
  const m = monthAt(text, s);
  if (m === -1 || text.charCodeAt(m) !== 32) return -1;
  const d = num(text, m + 1, 1, 2);
  if (d === -1) return -1;
  let i = d;
  const suf = text.slice(i, i + 2).toLowerCase();
  if (suf === 'st' || suf === 'nd' || suf === 'rd' || suf === 'th') i += 2;
  if (text.charCodeAt(i) === 44) i++;
  if (text.charCodeAt(i) !== 32) return -1;
  const y = num(text, i + 1, 4, 4);
  return y === -1 || isWord(text.charCodeAt(y)) ? -1 : y;
}

/**
 * `12 April 1985` at the day, and the forms forms and documents print: `12-Apr-1985`,
 * `12/Apr/85`, `12APR1985` (passports, medical records), `12. April 1985` (German), a two-digit
 * year after a month name (`12 Apr 85`). End or -1.
 */
function dayFirst(text: string, s: number): number {
  let i = num(text, s, 1, 2);
  if (i === -1) return -1;
  const suf = text.slice(i, i + 2).toLowerCase();
  if (suf === 'st' || suf === 'nd' || suf === 'rd' || suf === 'th') i += 2;
  else if (text.charCodeAt(i) === 46 && text.charCodeAt(i + 1) === 32) i++; // `12. April`
  const sep = text.charCodeAt(i);
  let m: number;
  if (sep === 32) {
    m = i + 1;
    if (text.startsWith('of ', m)) m += 3;
  } else if (sep === 45 || sep === 47) {
    m = i + 1;
  } else if (isAlpha(sep) && i === num(text, s, 2, 2)) {
    m = i; // `12APR1985`: two-digit day, month glued on
  } else {
    return -1;
  }
  const me = monthAt(text, m);
  if (me === -1) return -1;
  let k = me;
  if (sep === 32) {
    if (text.charCodeAt(k) === 44) k++;
    if (text.charCodeAt(k) !== 32) return -1;
    k++;
  } else if (sep === 45 || sep === 47) {
    if (text.charCodeAt(k) !== sep) return -1;
    k++;
  } else if (text.charCodeAt(me - 1) === 46) {
    return -1;
  }
  const y = num(text, k, 2, 4);
  if (y === -1 || y - k === 3 || isWord(text.charCodeAt(y))) return -1;
  return y;
}

function birthAfter(text: string, e: number): boolean {
  const after = text.slice(e, e + 10).toLowerCase();
  return /^ ?\((dob|born|d\.o\.b\.?)\)/.test(after);
}

// Where a birth word stands; dates are looked for only around these (a date of birth is written
// within WINDOW after one, or right before a `(DOB)` label), so text without one costs one pass.
const CONTEXT_ANYWHERE =
  /born|birth|dob|d\.o\.b|geburt|geboren|né|nacimiento|nascimento|nat[oa]|b\./giu;
const BEFORE_LABEL = 30;
const LONGEST_DATE = 20;

export function scanDatesOfBirth(view: TextView, type = 'DATE_OF_BIRTH'): Finding[] {
  const text = view.text;
  const out: Finding[] = [];
  const n = text.length;
  let i = 0;
  CONTEXT_ANYWHERE.lastIndex = 0;
  for (let m = CONTEXT_ANYWHERE.exec(text); m !== null; m = CONTEXT_ANYWHERE.exec(text)) {
    const regionEnd = Math.min(n, m.index + m[0].length + WINDOW + LONGEST_DATE);
    if (i < m.index - BEFORE_LABEL) i = Math.max(0, m.index - BEFORE_LABEL);
    while (i < regionEnd) {
      const c = text.charCodeAt(i);
      const prevWord = isWord(text.charCodeAt(i - 1));
      let end = -1;
      if (!prevWord && isDigit(c)) {
        end = numericDate(text, i);
        if (end === -1) end = dayFirst(text, i);
      } else if (!prevWord && isAlpha(c)) {
        end = monthFirst(text, i);
      }
      if (end !== -1 && (hasContextBefore(text, i, WINDOW, CONTEXT) || birthAfter(text, end))) {
        out.push({ type, start: i, end });
        i = end;
        continue;
      }
      i++;
      while (i < n && isWord(text.charCodeAt(i)) && isWord(text.charCodeAt(i - 1))) i++;
    }
    if (CONTEXT_ANYWHERE.lastIndex < i) CONTEXT_ANYWHERE.lastIndex = i;
  }
  return out;
}

export function dateOfBirthDetector(): Detector {
  return { type: 'DATE_OF_BIRTH', scan: (view: TextView) => scanDatesOfBirth(view) };
}
