import { isEscapedLetter } from './chars.js';
import type { Detector, Finding, TextView } from './types.js';

/**
 * DATE_OF_BIRTH: a calendar date that a birth word introduces (`born on`, `DOB`, `d.o.b.`, `date
 * of birth`, `birthday`, and the words of the languages names in the corpus come from:
 * `Geburtsdatum`, `né le`, `fecha de nacimiento`, `data urodzenia`, `datum narození`, `született`,
 * `födelsedatum`, `doğum tarihi`, `生年月日`…) within a short window before it, the next line
 * included, or that a `(DOB)` / `(date of birth)` label follows. Dates: `1985-04-12`,
 * `12/04/1985`, `12.04.1985`, `12. 4. 1985`, `1985.04.12.`, `April 12, 1985`, `12 April 1985`,
 * `12th of April 1985`, `12 de abril de 1985`, `12. května 1985`, `1985. április 12.`,
 * `12-Apr-1985`, `12APR1985`, `1985年4月12日`, with month names in those languages too.
 * Any other date is not personal data by itself and is left alone, and so is a date that another
 * date word stands between the birth word and (`born in Leeds; the invoice is due 2024-05-12`,
 * `birthday party on …`, `born 1950, hired on …`).
 *
 * Scanning starts at runs of two or four digits (every date here holds one near its start):
 * date starts are tried at most once each in the few characters before such a run, and a birth
 * word is looked for only in the bounded stretch before a date found: linear.
 */

// Birth words, matched as whole words (letters of any script count as word characters), so
// `newborn`, `airborne` and `NATO` do not count. CJK words have no spaces around them and are
// matched anywhere. Abbreviations (`b.`, `geb.`, `ur.`, `nar.`, `szül.`, `f.`) count only
// right before the date (ABBREVIATED).
const BIRTH = new RegExp(
  [
    '(?:' +
      [
        // English
        'born',
        'birth(?:s|days?|dates?|place)?',
        'dob',
        'd\\.o\\.b\\.?',
        'b\\.',
        // German, Dutch
        'geburts(?:datum|tag)',
        'geboren',
        'geb\\.',
        'geboortedatum',
        // French, Spanish, Portuguese, Italian, Romanian
        'naissance',
        'n[ée]e',
        'né',
        'nacimiento',
        'nacid[oa]',
        'nascimento',
        'nascid[oa]',
        'nascita',
        'nat[oa]',
        'na[șşs]terii',
        'n[ăa]scut[ăa]?',
        // Polish, Czech, Slovak, Croatian, Serbian, Slovene
        'urodzeni[ae]',
        'urodzon[ya]',
        'ur\\.',
        'narozen[íia]?',
        'nar\\.',
        'narodeni[ae]',
        'narodený',
        'narodená',
        'ro(?:đ|d|dj)enja',
        'rođena?',
        'rodjena?',
        'rojstva',
        'rojena?',
        // Hungarian, Finnish, Estonian, Turkish
        'születési',
        'született',
        'szül\\.',
        'syntymäaika',
        'syntymäpäivä',
        'syntynyt',
        'sünniaeg',
        'sündinud',
        'doğum',
        'dogum',
        // Nordic, Icelandic
        'födelsedatum',
        'födelsedag',
        'född',
        'fødselsdato',
        'fødselsdag',
        'født',
        'fæðingardagur',
        'fædd(?:ur)?',
        // Greek, Russian, Ukrainian, Vietnamese
        'γέννησης',
        'рождения',
        'родил(?:ся|ась)',
        'народження',
        'народил(?:ся|ася)',
        'ngày sinh',
        'sinh ngày',
      ].join('|') +
      ')',
    // Chinese, Japanese, Korean
    '生年月日|出生日期|出生|誕生日|生日|생년월일|출생',
  ].join('|'),
  // Not `u`: case-insensitive Unicode matching runs several times slower, and every letter
  // here is in the BMP, where the plain `i` flag folds case the same.
  'gi',
);
const ABBREVIATED = new Set(['b.', 'geb.', 'ur.', 'nar.', 'szül.']);
// The birth word may end this far before the date (a label, `was born on the`, a line break).
const WINDOW = 36;
// A birth word right after the date: `12/04/1985 (DOB)`, `[date of birth]`.
const LABEL_AFTER = /^ ?[([](?:dob|d\.o\.b\.?|born|birth ?date|date of birth|birthday)[)\]]/i;
// Every date read here holds a run of two digits (its year, or its day) no further than this
// from its start (`Thursday, 3rd of September, 1984` is not a date itself: `3rd of…` is).
const LONGEST_LEAD = 28;
// The longest birth word, for the stretch looked back over before a date.
const LONGEST_WORD = 16;
// Where scanning starts: every run of two digits (dates are far rarer than birth-word letters,
// and a digit-led regex runs at memory speed).

// Words that give the date after them another meaning even after a birth word: deadlines,
// invoices, orders, events, other milestones of a life (`born 1950; hired on 1980-05-03`).
const OTHER_DATE_WORDS = new Set(
  (
    'due deadline invoice invoiced dated issued issue expires expired expiry expiration valid ' +
    'until till since paid payment shipped shipping delivered delivery ordered order released ' +
    'release published updated created modified effective started ended scheduled meeting ' +
    'appointment booked booking renewal renewed registered closed opened joined hired ' +
    'graduated married divorced died death deceased admitted discharged visit arrival arrived ' +
    'departure flight party celebration dinner cake gift event reminder today yesterday ' +
    'tomorrow fällig rechnung échéance facture vencimiento factura'
  ).split(' '),
);

const MONTHS = new Map<string, number>();
for (const row of [
  // English, with the abbreviations forms print
  'january february march april may june july august september october november december',
  'jan feb mar apr may jun jul aug sep oct nov dec',
  // German, Dutch, Nordic
  'januar februar märz april mai juni juli august september oktober november dezember',
  'jänner feb mär apr mai jun jul aug sep okt nov dez',
  'januari februari maart april mei juni juli augustus september oktober november december',
  'januari februari mars april maj juni juli augusti september oktober november december',
  'januar februar marts april maj juni juli august september oktober november december',
  'januar februar mars april mai juni juli august september oktober november desember',
  // French, Spanish, Portuguese, Italian, Romanian
  'janvier février mars avril mai juin juillet août septembre octobre novembre décembre',
  'enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre',
  'janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro',
  'gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre',
  'ianuarie februarie martie aprilie mai iunie iulie august septembrie octombrie noiembrie decembrie',
  // Polish, Czech, Croatian (genitive, as dates write them), Hungarian, Finnish, Turkish
  'stycznia lutego marca kwietnia maja czerwca lipca sierpnia września października listopada grudnia',
  'ledna února března dubna května června července srpna září října listopadu prosince',
  'siječnja veljače ožujka travnja svibnja lipnja srpnja kolovoza rujna listopada studenoga prosinca',
  'január február március április május június július augusztus szeptember október november december',
  'tammikuuta helmikuuta maaliskuuta huhtikuuta toukokuuta kesäkuuta heinäkuuta elokuuta syyskuuta lokakuuta marraskuuta joulukuuta',
  'ocak şubat mart nisan mayıs haziran temmuz ağustos eylül ekim kasım aralık',
]) {
  row.split(' ').forEach((m, i) => MONTHS.set(m, i + 1));
}
MONTHS.set('sept', 9);
MONTHS.set('setiembre', 9);
MONTHS.set('mayis', 5);
const LONGEST_MONTH = 14;

const LETTER = /\p{L}/u;

// Local on purpose: these run per character, and calls through a module binding are not
// inlined when the code runs transpiled (tsx, the bench).
function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isAlpha(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

function isWord(c: number): boolean {
  return isDigit(c) || isAlpha(c) || c === 95;
}

function isCjk(c: number): boolean {
  return c >= 0x3000;
}

/** A letter of any script. */
function isLetter(c: number): boolean {
  return isAlpha(c) || (c > 127 && LETTER.test(String.fromCharCode(c)));
}

/** A character that continues a word: ASCII word characters and letters of any script. */
function isWordChar(c: number): boolean {
  return isWord(c) || (c > 127 && LETTER.test(String.fromCharCode(c)));
}

function num(text: string, i: number, min: number, max: number): number {
  let e = i;
  while (isDigit(text.charCodeAt(e)) && e - i <= max) e++;
  return e - i >= min && e - i <= max ? e : -1;
}

function value(text: string, s: number, e: number): number {
  return Number(text.slice(s, e));
}

/**
 * A numeric date at `s` (digits first): its end, or -1. `1985-04-12`, `12/04/1985`,
 * `12.04.85`, and with a space after each dot as Czech and Slovak write it (`12. 4. 1985`).
 */
function numericDate(text: string, s: number): number {
  const a = num(text, s, 1, 4);
  if (a === -1) return -1;
  const sep = text.charCodeAt(a);
  if (sep !== 45 && sep !== 47 && sep !== 46) return -1;
  // `12. 4. 1985`: one space after each dot, never after only one of them.
  const gap = sep === 46 && text.charCodeAt(a + 1) === 32 ? 1 : 0;
  const b = num(text, a + 1 + gap, 1, 2);
  if (b === -1 || text.charCodeAt(b) !== sep) return -1;
  if (gap === 1 && text.charCodeAt(b + 1) !== 32) return -1;
  const c = num(text, b + 1 + gap, 2, 4);
  if (c === -1) return -1;
  const x = value(text, s, a);
  const y = value(text, a + 1 + gap, b);
  const z = value(text, b + 1 + gap, c);
  if (a - s === 4) {
    // Year first: 1985-04-12.
    if (c - b - 1 - gap > 2 || y < 1 || y > 12 || z < 1 || z > 31) return -1;
  } else {
    if (a - s > 2 || c - b - 1 - gap === 3) return -1;
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
  while (isLetter(text.charCodeAt(e)) && e - i <= LONGEST_MONTH) e++;
  if (!MONTHS.has(text.slice(i, e).toLowerCase())) return -1;
  if (text.charCodeAt(e) === 46) e++;
  return e;
}

function ordinal(text: string, i: number): number {
  const suf = text.slice(i, i + 2).toLowerCase();
  return suf === 'st' || suf === 'nd' || suf === 'rd' || suf === 'th' ? i + 2 : i;
}

/** `April 12, 1985` / `Apr 12 1985` / `May 3rd, 1984` at a month name: end or -1. */
function monthFirst(text: string, s: number): number {
  // Cheap test first: a word of 3 to 9 letters, perhaps a dot, a space and a digit.
  let w = s;
  while (isAlpha(text.charCodeAt(w)) && w - s < 10) w++;
  if (w - s < 3 || w - s > 9) return -1;
  if (text.charCodeAt(w) === 46) w++;
  if (text.charCodeAt(w) !== 32 || !isDigit(text.charCodeAt(w + 1))) return -1;
  const m = monthAt(text, s);
  if (m === -1 || text.charCodeAt(m) !== 32) return -1;
  const d = num(text, m + 1, 1, 2);
  if (d === -1) return -1;
  let i = ordinal(text, d);
  if (text.charCodeAt(i) === 44) i++;
  if (text.charCodeAt(i) !== 32) return -1;
  const y = num(text, i + 1, 4, 4);
  return y === -1 || isWordChar(text.charCodeAt(y)) ? -1 : y;
}

/**
 * `12 April 1985` at the day, and the forms forms and documents print: `12-Apr-1985`,
 * `12/Apr/85`, `12APR1985` (passports, medical records), `12. April 1985` (German, Czech,
 * Finnish), `12th of April 1985`, `12 de abril de 1985` (Spanish, Portuguese), a two-digit
 * year after a month name (`12 Apr 85`). End or -1.
 */
function dayFirst(text: string, s: number): number {
  let i = num(text, s, 1, 2);
  if (i === -1) return -1;
  const j = ordinal(text, i);
  if (j !== i) i = j;
  else if (text.charCodeAt(i) === 46 && text.charCodeAt(i + 1) === 32) i++; // `12. April`
  const sep = text.charCodeAt(i);
  let m: number;
  if (sep === 32) {
    m = i + 1;
    if (text.startsWith('of ', m) || text.startsWith('de ', m)) m += 3;
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
    if (text.startsWith('de ', k)) k += 3;
  } else if (sep === 45 || sep === 47) {
    if (text.charCodeAt(k) !== sep) return -1;
    k++;
  } else if (text.charCodeAt(me - 1) === 46) {
    return -1;
  }
  const y = num(text, k, 2, 4);
  if (y === -1 || y - k === 3 || isWordChar(text.charCodeAt(y))) return -1;
  return y;
}

/** `1985. április 12.` (Hungarian), `1985 April 12`: year, month name, day. End or -1. */
function yearFirstMonth(text: string, s: number): number {
  let i = num(text, s, 4, 4);
  if (i === -1) return -1;
  if (text.charCodeAt(i) === 46) i++;
  if (text.charCodeAt(i) !== 32) return -1;
  const me = monthAt(text, i + 1);
  if (me === -1 || text.charCodeAt(me) !== 32) return -1;
  const d = num(text, me + 1, 1, 2);
  if (d === -1 || isWordChar(text.charCodeAt(d)) || value(text, me + 1, d) > 31) return -1;
  return d;
}

/** `1985年4月12日` (Chinese, Japanese), `1985년 4월 12일` (Korean). End or -1. */
function yearFirstCjk(text: string, s: number): number {
  let i = num(text, s, 4, 4);
  if (i === -1) return -1;
  const unit = text.charCodeAt(i) === 0x5e74 ? 0 : text.charCodeAt(i) === 0xb144 ? 1 : -1;
  if (unit === -1) return -1;
  const marks = unit === 0 ? [0x6708, 0x65e5] : [0xc6d4, 0xc77c];
  for (const mark of marks) {
    i++;
    if (unit === 1 && text.charCodeAt(i) === 32) i++;
    const e = num(text, i, 1, 2);
    if (e === -1 || text.charCodeAt(e) !== mark) return -1;
    i = e;
  }
  return i + 1;
}

/** Whether a word between the birth word and the date gives the date another meaning. */
function otherDateWordBetween(text: string, from: number, to: number): boolean {
  let i = from;
  while (i < to) {
    while (i < to && !isLetter(text.charCodeAt(i))) i++;
    const s = i;
    while (i < to && isLetter(text.charCodeAt(i))) i++;
    if (i > s && OTHER_DATE_WORDS.has(text.slice(s, i).toLowerCase())) return true;
  }
  return false;
}

interface Birth {
  start: number;
  end: number;
  /** An abbreviation (`b.`, `geb.`): the date must follow right after it. */
  short: boolean;
}

/**
 * The last birth word that ends within WINDOW before `at`, or undefined. Looks only at that
 * stretch of text, so the work per date is bounded.
 */
function birthBefore(text: string, at: number): Birth | undefined {
  const lo = Math.max(0, at - WINDOW - LONGEST_WORD);
  const stretch = text.slice(lo, at);
  let found: Birth | undefined;
  BIRTH.lastIndex = 0;
  for (let m = BIRTH.exec(stretch); m !== null; m = BIRTH.exec(stretch)) {
    const word = m[0];
    const start = lo + m.index;
    const end = start + word.length;
    // Whole words only (`newborn`, `airborne`, `your.` are not birth words); checked here, as a
    // look-behind in the regex would cost every position.
    if (!isCjk(word.charCodeAt(0))) {
      if (isWordChar(text.charCodeAt(start - 1)) && !isEscapedLetter(text, start - 1)) continue;
      if (isWordChar(text.charCodeAt(end)) && !word.endsWith('.')) continue;
    }
    // `NATO` is no birth word.
    if (word === 'NATO' || word === 'NATA') continue;
    const lower = word.toLowerCase();
    // `a. 2024-01-01 b. 2024-05-12`: a list's letter after a value, not `Ada, b.`.
    if (lower === 'b.' && !abbreviationAfterName(text, start)) continue;
    found = { start, end, short: ABBREVIATED.has(lower) };
  }
  return found;
}

/** `Ada Lovelace, b. 1815`, `(b. 1815)`, `Ada Lovelace b. 1815`: `b.` after a name or a bracket. */
function abbreviationAfterName(text: string, at: number): boolean {
  let i = at - 1;
  if (text.charCodeAt(i) === 32) i--;
  const c = text.charCodeAt(i);
  return c === 40 || c === 91 || c === 44 || isLetter(c);
}

/** Whether the date starting at `start` is introduced by the birth word `b`. */
function introduces(text: string, b: Birth, start: number): boolean {
  if (b.end > start || start - b.end > WINDOW) return false;
  if (b.short) {
    // `b. 1985`, `geb.: 12.04.1985`.
    let i = b.end;
    if (text.charCodeAt(i) === 58) i++;
    if (text.charCodeAt(i) === 32) i++;
    return i === start;
  }
  return !otherDateWordBetween(text, b.end, start);
}

/** A date starting at `i`: its end, or -1. */
function dateAt(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (isDigit(c)) {
    let end = numericDate(text, i);
    if (end === -1) end = dayFirst(text, i);
    if (end === -1) end = yearFirstMonth(text, i);
    if (end === -1) end = yearFirstCjk(text, i);
    return end;
  }
  return isAlpha(c) ? monthFirst(text, i) : -1;
}

export function scanDatesOfBirth(view: TextView, type = 'DATE_OF_BIRTH'): Finding[] {
  const text = view.text;
  const out: Finding[] = [];
  const n = text.length;
  // Positions before this were tried as date starts already (each position is tried once).
  let tried = 0;
  // The view's digit runs (shared with the numeric detectors) give each next pair of digits
  // without a regex match array per pair: the first run with two digits at or after `from`.
  const runs = view.digitRuns();
  let r = 0;
  let from = 0;
  for (;;) {
    let pair = -1;
    for (; r < runs.length; r += 2) {
      const p = Math.max(runs[r]!, from);
      if (runs[r + 1]! - p >= 2) {
        pair = p;
        break;
      }
    }
    if (pair < 0) break;
    const run = runs[r + 1]!;
    // Past the rest of this digit run: its other pairs start no new date.
    from = run;
    // A date's runs of two or more digits have 2 or 4 (`12`, `85`, `1985`); phone, card and
    // order numbers have others.
    if (run - pair === 3 || run - pair > 4) continue;
    let i = Math.max(tried, pair - LONGEST_LEAD);
    while (i <= pair) {
      const prevWord = isWordChar(text.charCodeAt(i - 1)) && !isEscapedLetter(text, i - 1);
      const end = prevWord ? -1 : dateAt(text, i);
      if (end !== -1) {
        const birth = birthBefore(text, i);
        if (
          (birth !== undefined && introduces(text, birth, i)) ||
          LABEL_AFTER.test(text.slice(end, end + 18))
        ) {
          out.push({ type, start: i, end });
        }
        i = end;
        continue;
      }
      i++;
      // Past the rest of the word; a digit after a letter is looked at (a written-out `\n` before `1985`).
      while (i < n && isWordChar(text.charCodeAt(i))) {
        const p = text.charCodeAt(i - 1);
        if (!isWordChar(p) || (isDigit(text.charCodeAt(i)) && !isDigit(p))) break;
        i++;
      }
    }
    tried = Math.max(tried, i);
    if (from < tried) from = tried;
  }
  return out;
}

export function dateOfBirthDetector(): Detector {
  return { type: 'DATE_OF_BIRTH', scan: (view: TextView) => scanDatesOfBirth(view) };
}
