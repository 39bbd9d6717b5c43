import { isEscapedLetter } from './chars.js';
import { personNames } from './names.js';
import type { Detector, Finding, TextView } from './types.js';

/**
 * PERSON: names of people in running text, by rules over a name list (names.ts), no model.
 *
 * A name is a chain of capitalised words (`Ada Lovelace`, `Marie J. Hamanová`, `Ludwig van
 * Beethoven`). A chain is a person when
 * - a title stands before it (`Mr.`, `Dr`, `Mrs`, `Prof.`), or a cue that introduces a person
 *   (`my name is`, `I'm`, `this is`, `call me`, `Name:`, `Dear`, `Hi`), or
 * - it has two or more words and its first or last is a known name, or
 * - it is one known name written capitalised inside a sentence (not as its first word), or
 *   followed by a possessive or a speaker's colon (`Ada's`, `Ada: hi`).
 * Chains holding an organisation, place or street word (`Inc`, `Bank`, `Street`, `City`) are not
 * people. Possessive `'s` stays outside the span, so `[PERSON_1]'s` reads right.
 *
 * One pass over the capitalised words (a global regex with no nested quantifiers) and a bounded
 * look around each chain: linear in the text.
 */

// A capitalised word, with inner capitals after an apostrophe, a hyphen or a prefix such as
// `Mc` (`O'Brien`, `Anne-Lotte`, `McGregor`).
const WORD = /\p{Lu}[\p{Ll}\p{M}]*(?:(?:['’-]\p{Lu}?|\p{Lu})[\p{Ll}\p{M}]+)*/gu;

const TITLES = new Set([
  'mr',
  'mrs',
  'ms',
  'mx',
  'miss',
  'dr',
  'prof',
  'professor',
  'sir',
  'madam',
  'dame',
  'lady',
  'lord',
  'mister',
  'herr',
  'frau',
  'mme',
  'mlle',
  'sr',
  'sra',
  'srta',
]);

// Words before a chain that say a person's name follows. Matched on the lower-cased text right
// before the chain (spaces and a colon or comma between are fine).
const CUES = [
  'my name is',
  'name is',
  'name',
  'name:',
  'names:',
  "i'm",
  'i’m',
  'i am',
  'this is',
  'call me',
  'called',
  'named',
  'dear',
  'hi',
  'hello',
  'hey',
  'thanks',
  'thank you',
  'regards',
  'sincerely',
  'cheers',
  'signed',
  'by',
  'with',
  'from:',
  'to:',
  'cc:',
  'contact:',
  'attn:',
  'patient',
  'customer',
  'client',
  'applicant',
  'employee',
  'user',
  'guardian',
  'beneficiary',
  'under',
  'meet',
  'ask for',
  'speak to',
  'talk to',
  'tell',
  'met',
  'said',
  'says',
  'wrote',
  'asked',
  'spoke',
];
const STRONG_CUES = new Set([
  'my name is',
  'name is',
  'name:',
  'names:',
  "i'm",
  'i’m',
  'i am',
  'this is',
  'call me',
  'called',
  'named',
  'dear',
  'hi',
  'hello',
  'hey',
  'regards',
  'sincerely',
  'signed',
  'from:',
  'to:',
  'cc:',
  'attn:',
]);

// A chain holding one of these is an organisation, a place or a street, not a person.
const NOT_PERSON = new Set(
  (
    'inc ltd llc llp plc corp co company corporation group holdings bank trust fund partners ' +
    'associates foundation institute university college school academy hospital clinic ' +
    'church council ministry department agency authority committee association society club ' +
    'team systems solutions services technologies labs airlines airport station hotel ' +
    'restaurant cafe store shop market center centre museum library gallery theatre theater ' +
    'street st road rd avenue ave boulevard blvd lane ln drive dr court ct place square sq ' +
    'terrace way parkway highway hwy circle trail crescent close alley plaza city county ' +
    'state province republic kingdom island islands valley mountain mountains river lake ' +
    'park beach north south east west new san santa los las el le la saint fort port ' +
    'ag gmbh sa nv bv ab oy as spa srl acquisition capital investment properties industries ' +
    'international global national federal royal united pharmaceuticals energy resources ' +
    'financial insurance motors media records entertainment press news times post journal ' +
    'act law court border force army navy police day eve christmas easter ' +
    'monday tuesday wednesday thursday friday saturday sunday january february march april ' +
    'june july august september october november december ' +
    'apt suite box rue villa vila creek stream row grand via calle rua ' +
    'america american england english britain british scotland scottish wales welsh ireland ' +
    'irish france french germany german spain spanish italy italian portugal portuguese ' +
    'netherlands dutch belgium belgian austria austrian switzerland swiss sweden swedish ' +
    'norway norwegian denmark danish finland finnish iceland icelandic poland polish czech ' +
    'slovak slovakia slovenia slovenian croatia croatian serbia serbian hungary hungarian ' +
    'greece greek cyprus turkey turkish russia russian ukraine ukrainian israel israeli ' +
    'egypt egyptian morocco tunisia algeria nigeria niger kenya ghana africa african india ' +
    'indian china chinese japan japanese korea korean vietnam vietnamese thailand thai ' +
    'indonesia malaysia philippines australia australian zealand canada canadian mexico ' +
    'mexican brazil brazilian argentina chile peru colombia uruguay venezuela cuba europe ' +
    'european asia asian greenland greenlander arabic persian latin'
  ).split(' '),
);

// Lower-case particles inside a name: Ludwig van Beethoven, Maria de la Cruz, Omar bin Laden.
const PARTICLES = new Set([
  'van',
  'von',
  'der',
  'den',
  'de',
  'del',
  'della',
  'di',
  'da',
  'dos',
  'du',
  'la',
  'le',
  'bin',
  'ibn',
  'al',
  'ter',
  'ten',
  'af',
]);

// Words that end or break a chain: pronouns, articles, prepositions and the verbs and nouns that
// title-case headlines and song titles capitalise (`Carry Me Back To Spain`).
const STOP = new Set(
  (
    "i i'm im i’m i've i'll i'd me my mine you your yours we our us he him his she her they " +
    'them their it its to in on at of for from by with and or but nor the a an is are was ' +
    'were be been am do does did not no yes so as if than then that this these those there ' +
    'here what who whom which when where why how all any some every each back up down out ' +
    'over under into onto about after before again very just also only even still baby ' +
    'carry love heart life time world night home way get got go going let make made take ' +
    'bot user name address phone mobile fax email e-mail website date note subject re fwd ' +
    'please thanks thank hi hello hey dear ok okay sorry'
  ).split(' '),
);

interface Tok {
  start: number;
  end: number;
  lower: string;
}

function isSpaceLike(c: number): boolean {
  return c === 32 || c === 9 || c === 0xa0;
}

/** True when the word at `start` opens a sentence, line or quoted turn (capitalised anyway). */
function opensSentence(text: string, start: number): boolean {
  let i = start - 1;
  while (i >= 0 && isSpaceLike(text.charCodeAt(i))) i--;
  if (i < 0) return true;
  const c = text.charCodeAt(i);
  // A literal `\n` (text escaped once more) ends a line as well.
  if (c === 110 && text.charCodeAt(i - 1) === 92) return true;
  return (
    c === 46 ||
    c === 33 ||
    c === 63 ||
    c === 10 ||
    c === 13 ||
    c === 58 ||
    c === 34 ||
    c === 0x201c ||
    c === 62 ||
    c === 45 ||
    c === 42 ||
    c === 0x2022 ||
    c === 40 ||
    c === 91 ||
    c === 0x2013 ||
    c === 0x2014
  );
}

const CUE_SET = new Set(CUES);

function isCueLetter(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 39 || c === 0x2019;
}

/**
 * 2 after a strong cue, 1 after a weak one, 0 after none: the one to three words right before
 * `start` (past spaces and commas; a colon only on the last) looked up as a phrase.
 */
function cueBefore(text: string, start: number): number {
  let i = start;
  for (;;) {
    const c = text.charCodeAt(i - 1);
    if (c === 32 || c === 44 || c === 9 || c === 10) i--;
    else break;
  }
  let phrase = '';
  for (let w = 0; w < 3; w++) {
    let e = i;
    const colon = w === 0 && text.charCodeAt(e - 1) === 58;
    if (colon) e--;
    let b = e;
    while (b > 0 && e - b < 12 && isCueLetter(text.charCodeAt(b - 1))) b--;
    if (b === e || (b > 0 && /\p{L}/u.test(text[b - 1]!))) return 0;
    const word = text.slice(b, e).toLowerCase() + (colon ? ':' : '');
    phrase = w === 0 ? word : `${word} ${phrase}`;
    if (CUE_SET.has(phrase)) return STRONG_CUES.has(phrase) ? 2 : 1;
    if (colon || text.charCodeAt(b - 1) !== 32) return 0;
    i = b - 1;
  }
  return 0;
}

/** The title right before `start` (`Mr. `, `Dr `), as the start of the title, or -1. */
function titleBefore(text: string, start: number): number {
  let i = start - 1;
  if (!isSpaceLike(text.charCodeAt(i))) return -1;
  i--;
  if (text.charCodeAt(i) === 46) i--;
  const e = i + 1;
  while (i >= 0 && e - i <= 10 && isCueLetter(text.charCodeAt(i))) i--;
  if (e - i - 1 < 2 || e - i - 1 > 9) return -1;
  return TITLES.has(text.slice(i + 1, e).toLowerCase()) ? i + 1 : -1;
}

export function scanPersons(view: TextView, type = 'PERSON'): Finding[] {
  const text = view.text;
  const known = personNames();
  const out: Finding[] = [];
  const toks: Tok[] = [];
  WORD.lastIndex = 0;
  for (let m = WORD.exec(text); m !== null; m = WORD.exec(text)) {
    const start = m.index;
    const end = start + m[0].length;
    // Part of a longer token (`iPhone`, `foo_Bar`, `x2Y`); a written-out `\n` is a line break.
    const prev = text.charCodeAt(start - 1);
    if (
      ((prev >= 48 && prev <= 57) || prev === 95 || (prev >= 97 && prev <= 122)) &&
      !isEscapedLetter(text, start - 1)
    ) {
      continue;
    }
    if (end - start < 2) continue;
    let lower = m[0].toLowerCase();
    if (lower.endsWith("'s") || lower.endsWith('’s')) lower = lower.slice(0, -2);
    toks.push({ start, end, lower });
  }
  let k = 0;
  while (k < toks.length) {
    // Grow a chain: words one space apart, with an initial (`J.`) or a particle between.
    if (STOP.has(toks[k]!.lower)) {
      k++;
      continue;
    }
    const chain: Tok[] = [toks[k]!];
    let j = k + 1;
    let initial = false;
    while (j < toks.length && chain.length < 4) {
      const last = chain[chain.length - 1]!;
      const next = toks[j]!;
      if (STOP.has(next.lower)) break;
      const gap = joins(text, last.end, next.start);
      if (gap === 0) break;
      if (gap === 2) initial = true;
      chain.push(next);
      j++;
      // A possessive ends the name: `Pete's Cautionary Tales`.
      if (/['’]s$/.test(text.slice(next.start, next.end))) break;
    }
    k = j;
    decide(text, chain, known, initial, type, out);
  }
  return out;
}

/**
 * Whether the gap between two capitalised words keeps them one name: 0 no, 1 a space or a
 * particle (` van `, ` de la `), 2 a middle initial (` J. `, ` J `), which marks a person.
 */
function joins(text: string, from: number, to: number): number {
  if (to - from > 12) return 0;
  const gap = text.slice(from, to);
  if (gap === ' ') return 1;
  if (gap.length > 12 || gap[0] !== ' ' || gap[gap.length - 1] !== ' ') return 0;
  const inner = gap.slice(1, -1);
  if (/^\p{Lu}\.?$/u.test(inner)) return 2;
  const words = inner.split(' ');
  // `Gijsbrecht L van Hecke`: an initial and particles.
  if (
    words.length <= 3 &&
    /^\p{Lu}\.?$/u.test(words[0]!) &&
    words.slice(1).every((w) => PARTICLES.has(w))
  ) {
    return 2;
  }
  return words.length <= 2 && words.every((w) => PARTICLES.has(w)) ? 1 : 0;
}

function decide(
  text: string,
  chain: Tok[],
  known: ReadonlySet<string>,
  initial: boolean,
  type: string,
  out: Finding[],
): void {
  // Leading words that cannot be part of a name (Hi, Dear, Please, a title written capitalised)
  // are cues rather than name words.
  let first = 0;
  let titled = titleBefore(text, chain[0]!.start) !== -1;
  while (first < chain.length) {
    const w = chain[first]!.lower;
    if (TITLES.has(w) && text.charCodeAt(chain[first]!.end) !== 39) {
      titled = true;
      first++;
      continue;
    }
    break;
  }
  const words = chain.slice(first);
  if (words.length === 0) return;
  for (const w of words) if (NOT_PERSON.has(w.lower)) return;
  const start = words[0]!.start;
  let end = words[words.length - 1]!.end;
  // The possessive stays outside: `[PERSON_1]'s`.
  const last = text.slice(end - 2, end);
  if (last === "'s" || last === '’s') end -= 2;
  const knownFirst = known.has(words[0]!.lower);
  const knownLast = known.has(words[words.length - 1]!.lower);
  const opens = first === 0 && opensSentence(text, start);
  let person = false;
  const cue = titled ? 2 : cueBefore(text, start);
  if (initial && words.length > 1) {
    person = true;
  } else if (cue !== 0) {
    // After a strong cue (`my name is`, `Dear`, a title) any capitalised chain; after a weak
    // one (`with`, `meet`, `said`) a known name or two words.
    person = words.length > 1 || knownFirst || (cue === 2 && !opens) || titled;
  } else if (afterNumber(text, start)) {
    // `40 Large Boxes`, `3 Grand Pianos`: a quantity, not a name.
    person = false;
  } else if (words.length > 1) {
    person = knownFirst || (knownLast && !opens) || wholeLine(text, start, end, words, known);
  } else if (knownFirst && words[0]!.lower.length > 2) {
    const after = text.charCodeAt(words[0]!.end);
    const possessive = after === 39 || after === 0x2019;
    person = !opens || possessive || (after === 58 && opens) || verbAfter(text, words[0]!.end);
  }
  if (person && end > start) out.push({ type, start, end });
}

// Verbs that make a known name opening a sentence the sentence's subject: `Charlotte spent a
// year…`, `Maika is from…`.
const SUBJECT_VERBS = new Set(
  (
    'is was has had will would can could did does said says spent lives lived works worked ' +
    'wrote asked called told shouted began joined left moved met went came sent gave took ' +
    'replied answered explained thinks thought wants wanted needs needed'
  ).split(' '),
);

function verbAfter(text: string, end: number): boolean {
  if (text.charCodeAt(end) !== 32) return false;
  let e = end + 1;
  while (e - end <= 10 && text.charCodeAt(e) >= 97 && text.charCodeAt(e) <= 122) e++;
  return SUBJECT_VERBS.has(text.slice(end + 1, e));
}

function afterNumber(text: string, start: number): boolean {
  const c = text.charCodeAt(start - 2);
  return text.charCodeAt(start - 1) === 32 && c >= 48 && c <= 57;
}

/**
 * A line that is only a name, as signatures and address blocks open (`Zeliha Sultygov\n…`):
 * two or three words, one of them a known name or written with letters beyond ASCII, and more
 * text on other lines.
 */
function wholeLine(
  text: string,
  start: number,
  end: number,
  words: readonly Tok[],
  known: ReadonlySet<string>,
): boolean {
  if (words.length > 3) return false;
  // A line may open with the quote marks of a reply (`> `, `}} `, `??? `).
  let b = start;
  while (b > 0 && start - b < 5 && /[>}?|*\- ]/.test(text[b - 1]!)) b--;
  const lineStart = b === 0 || text.charCodeAt(b - 1) === 10 || isEscapedLetter(text, b - 1);
  const after = text.charCodeAt(end);
  const lineEnd = after === 10 || (after === 92 && text.charCodeAt(end + 1) === 110);
  if (!lineStart || !lineEnd) return false;
  return words.some((w) => known.has(w.lower) || /[^\p{ASCII}]/u.test(w.lower));
}

export function personDetector(): Detector {
  return { type: 'PERSON', scan: (view: TextView) => scanPersons(view) };
}
