import { isEscapedLetter } from './chars.js';
import { loadNameLists, personNames, surnameShaped, type WordSet } from './names.js';
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
const WORD = /\p{Lu}[\p{Ll}\p{M}]*(?:(?:['’-]\p{Lu}?|\p{Lu})[\p{Ll}\p{M}]+)*/uy;
// Where WORD matches next: every part of it after its first capital is optional, so its leftmost
// match starts at the next capital. Found with test(), then WORD matched there, sticky: the two
// build no match array per word (exec did, a few KiB per request of prose: issue 16).
const CAPITAL = /\p{Lu}/gu;

// The patterns the rules test, once: a regex literal in a function body is a new RegExp object
// each time it runs (issue 16). None is global or sticky, so none keeps state between tests.
const LETTER = /\p{L}/u;
const INITIAL = /^\p{Lu}\.?$/u;
const LABEL_WORD = /^\p{L}{1,12}:$/u;
const NAME_WORD = /\bname\b/i;
const ASCII_LETTER = /[a-z]/i;
const NON_ASCII = /[^\p{ASCII}]/u;
const CENTURY = /^(1[89]|20)/;
const NUMBERED_STREET_BEFORE = /(?:^|[\s,])\d{1,6}[A-Za-z]? (?:[\p{L}.'-]+ ){1,4}$/u;
const QUOTE_MARK = /[>}?|*\- ]/;

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

// Roles written right before a name, capitalised or not (`Producer Sandra Bayer`, `songwriter
// Ljubica Galić`): they introduce a person as a title does and are not part of the name.
const ROLES = new Set(
  (
    'producer director songwriter singer author writer editor actor actress player manager ' +
    'president ceo cfo cto founder cofounder chairman chairwoman chair senator governor mayor ' +
    'minister coach captain officer agent judge nurse lawyer attorney artist composer drummer ' +
    'guitarist rapper designer engineer teacher student colleague boss assistant secretary ' +
    'reporter journalist photographer detective inspector sergeant lieutenant colonel ' +
    'commissioner councillor councilor congressman congresswoman representative ambassador ' +
    'customer client patient applicant employee member tenant guardian beneficiary'
  ).split(' '),
);

// Cues both lists hold: a header label, a credit, or a relative or companion before the name.
const LABEL_AND_RELATIVE_CUES = [
  'from:',
  'to:',
  'cc:',
  'attn:',
  'by:',
  'author:',
  'directed by',
  'written by',
  'produced by',
  'kid',
  'son',
  'daughter',
  'child',
  'wife',
  'husband',
  'friend',
  'brother',
  'sister',
  'mom',
  'dad',
  'uncle',
  'aunt',
  'cousin',
  'nephew',
  'niece',
  'grandson',
  'granddaughter',
  'grandmother',
  'grandfather',
  'partner',
  'girlfriend',
  'boyfriend',
  'fiancé',
  'fiancée',
  'colleague',
  'neighbour',
  'neighbor',
];

// Words before a chain that say a person's name follows. Matched on the lower-cased text right
// before the chain (spaces and a colon or comma between are fine).
// The strong ones first (cue strength 2 in cueBefore), then the rest (1; 3 for product cues).
const STRONG_CUE_LIST = [
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
  'named him',
  'named her',
  'called him',
  'called her',
  'tribute to',
  'dear',
  'hi',
  'hello',
  'hey',
  'regards',
  'sincerely',
  'signed',
  ...LABEL_AND_RELATIVE_CUES,
];
const CUES = [
  ...STRONG_CUE_LIST,
  'name',
  'thanks',
  'thank you',
  'cheers',
  'by',
  'with',
  'contact:',
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
const STRONG_CUES = new Set(STRONG_CUE_LIST);

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
    'rue villa vila creek stream row grand via calle rua ' +
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
    'european asia asian greenland greenlander arabic persian latin incorporated ' +
    'bancorporation bancorp worldwide lines tech oil gas loan cap total growth transit ' +
    'generale societe marble etf ucits shares series preference reit etc se nyse nasdaq'
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
    'while although though because since unless until once however thus whereas whether ' +
    'also both either neither nor yet instead meanwhile otherwise therefore ' +
    'over under into onto about after before again very just also only even still baby ' +
    'carry love heart life time world night home way get got go going let make made take ' +
    'bot user name address phone mobile fax email e-mail website date note subject re fwd ' +
    'please thanks thank hi hello hey dear ok okay sorry apt apartment suite unit box floor'
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
    c === 0x2014 ||
    // A Markdown heading or table cell starts capitalised too.
    c === 35 ||
    c === 124
  );
}

const CUE_SET = new Set(CUES);
// Weak cues that name products and services as often as people (`with Microsoft Entra`, `by
// Amazon Bedrock`, `under Apache License`): two unknown words after them are not a name.
const PRODUCT_CUES = new Set(['with', 'by', 'under']);

function isCueLetter(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 39 || c === 0x2019;
}

/**
 * 2 after a strong cue, 1 after a weak one (3 after a weak one that also introduces products),
 * 0 after none: the one to three words right before
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
    while (
      b > 0 &&
      e - b < 12 &&
      isCueLetter(text.charCodeAt(b - 1)) &&
      !isEscapedLetter(text, b - 1)
    ) {
      b--;
    }
    if (b === e || (b > 0 && LETTER.test(text[b - 1]!) && !isEscapedLetter(text, b - 1))) {
      return 0;
    }
    const word = text.slice(b, e).toLowerCase() + (colon ? ':' : '');
    phrase = w === 0 ? word : `${word} ${phrase}`;
    if (CUE_SET.has(phrase)) return STRONG_CUES.has(phrase) ? 2 : PRODUCT_CUES.has(phrase) ? 3 : 1;
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
  while (i >= 0 && e - i <= 14 && isCueLetter(text.charCodeAt(i)) && !isEscapedLetter(text, i)) i--;
  if (e - i - 1 < 2 || e - i - 1 > 13) return -1;
  const word = text.slice(i + 1, e).toLowerCase();
  return TITLES.has(word) || ROLES.has(word) ? i + 1 : -1;
}

export function scanPersons(view: TextView, type = 'PERSON'): Finding[] {
  const text = view.text;
  const known = personNames();
  const out: Finding[] = [];
  const single: Tok[] = [];
  const toks: Tok[] = [];
  CAPITAL.lastIndex = 0;
  while (CAPITAL.test(text)) {
    // The capital's first code unit (two units beyond the BMP).
    let start = CAPITAL.lastIndex - 1;
    const last = text.charCodeAt(start);
    if (last >= 0xdc00 && last <= 0xdfff) start--;
    WORD.lastIndex = start;
    if (!WORD.test(text)) continue;
    const end = WORD.lastIndex;
    CAPITAL.lastIndex = end;
    // Part of a longer token (`iPhone`, `foo_Bar`, `x2Y`); a written-out `\n` is a line break.
    const prev = text.charCodeAt(start - 1);
    if (
      ((prev >= 48 && prev <= 57) || prev === 95 || (prev >= 97 && prev <= 122)) &&
      !isEscapedLetter(text, start - 1)
    ) {
      continue;
    }
    if (end - start < 2) continue;
    // Part of a longer token after it (`SigV4`, `Foo2`, `Bar_x`).
    const next = text.charCodeAt(end);
    if ((next >= 48 && next <= 57) || next === 95 || (next >= 65 && next <= 90)) continue;
    let lower = text.slice(start, end).toLowerCase();
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
    while (j < toks.length && chain.length < 4 && !possessive(text, chain[chain.length - 1]!)) {
      const last = chain[chain.length - 1]!;
      const next = toks[j]!;
      if (STOP.has(next.lower)) break;
      const gap = joins(text, last.end, next.start);
      if (gap === 0) break;
      if (gap === 2) initial = true;
      chain.push(next);
      j++;
    }
    k = j;
    if (!decide(text, chain, known, initial, type, out) && chain.length === 1)
      single.push(chain[0]!);
  }
  if (single.length > 0 && out.length > 0) propagate(text, single, out, type);
  return out;
}

/** A possessive ends the name: `Pete's Cautionary Tales`, `Trulia's Ty Campbell`. */
function possessive(text: string, t: Tok): boolean {
  const c = text.charCodeAt(t.end - 2);
  return (c === 39 || c === 0x2019) && text.charCodeAt(t.end - 1) === 115;
}

/**
 * Second look at the single capitalised words the rules left out: the same word as part of a
 * name found elsewhere in the text (`Cecilie … Cecilie Josefsen`, `Echevarría … Eustacio T
 * Echevarría`), or a word joined by `and`, `&` or a comma to a one-word name found
 * (`Caird and Jones`, `Dorothy, Daniel, Keith`). Linear: one set of words, one sorted walk.
 */
function propagate(text: string, single: readonly Tok[], out: Finding[], type: string): void {
  const parts = new Set<string>();
  for (const f of out) {
    const span = text.slice(f.start, f.end);
    if (span.includes(' ')) {
      for (const w of span.split(' ')) if (w.length > 1) parts.add(w.toLowerCase());
    }
  }
  const ends = new Set<number>();
  const starts = new Set<number>();
  for (const f of out) {
    ends.add(f.end);
    starts.add(f.start);
  }
  const added: Finding[] = [];
  for (const t of single) {
    if (NOT_PERSON.has(t.lower) || t.lower.length < 3) continue;
    // `Name: Ada, Born: May 3`: the next field's label, not a name listed beside `Ada`.
    if (FIELD_LABELS.has(t.lower) && labelAfter(text, t.end)) continue;
    let end = t.end;
    if (possessive(text, t)) end -= 2;
    const linked =
      parts.has(t.lower) || ends.has(linkBefore(text, t.start)) || starts.has(linkAfter(text, end));
    if (linked) added.push({ type, start: t.start, end });
  }
  if (added.length === 0) return;
  out.push(...added);
  out.sort((a, b) => a.start - b.start);
}

/** What links two names in a list (one array, not one per word looked at). */
const LINKS: readonly string[] = [', ', ' and ', ' & '];

/** Where the word before a `, ` / ` and ` / ` & ` link right before `start` ends, or -1. */
function linkBefore(text: string, start: number): number {
  for (const sep of LINKS) {
    if (text.startsWith(sep, start - sep.length)) return start - sep.length;
  }
  return -1;
}

/** Where the word after a `, ` / ` and ` / ` & ` link right after `end` starts, or -1. */
function linkAfter(text: string, end: number): number {
  for (const sep of LINKS) if (text.startsWith(sep, end)) return end + sep.length;
  return -1;
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
  if (INITIAL.test(inner)) return 2;
  const words = inner.split(' ');
  // `Gijsbrecht L van Hecke`: an initial and particles.
  if (
    words.length <= 3 &&
    INITIAL.test(words[0]!) &&
    words.slice(1).every((w) => PARTICLES.has(w))
  ) {
    return 2;
  }
  return words.length <= 2 && words.every((w) => PARTICLES.has(w)) ? 1 : 0;
}

function decide(
  text: string,
  chain: Tok[],
  known: WordSet,
  initial: boolean,
  type: string,
  out: Finding[],
): boolean {
  // Leading words that cannot be part of a name (Hi, Dear, Please, a title or role written
  // capitalised) are cues rather than name words.
  let first = 0;
  let titled = titleBefore(text, chain[0]!.start) !== -1;
  while (first < chain.length - 1 || (first < chain.length && TITLES.has(chain[first]!.lower))) {
    const w = chain[first]!.lower;
    if ((TITLES.has(w) || ROLES.has(w)) && text.charCodeAt(chain[first]!.end) !== 39) {
      titled = true;
      first++;
      continue;
    }
    break;
  }
  const words = chain.slice(first);
  if (words.length === 0) return false;
  for (const w of words) if (NOT_PERSON.has(w.lower)) return false;
  const start = words[0]!.start;
  let end = words[words.length - 1]!.end;
  // `Born: Apr. 12, 1985`, `Race: white`, `Maiden name: Byron`: a form's field label, not a
  // speaker, though the name lists hold the word as a surname.
  if (words.length === 1 && !titled && FIELD_LABELS.has(words[0]!.lower) && labelAfter(text, end)) {
    return false;
  }
  // The possessive stays outside: `[PERSON_1]'s`.
  const last = text.slice(end - 2, end);
  const owner = last === "'s" || last === '’s';
  if (owner) end -= 2;
  const lastLower = words[words.length - 1]!.lower;
  const knownFirst = isName(known, words[0]!.lower);
  const knownLast = isName(known, lastLower);
  // `Semmens Greens`, `Rodriguez Crossing`: a street type closing the chain makes it a street.
  if (words.length > 1 && STREET_TYPES.has(lastLower) && !known.has(lastLower)) return false;
  const opens = first === 0 && opensSentence(text, start);
  let person = false;
  const cue = titled ? 2 : cueBefore(text, start) || (nameAsked(text, start) ? 2 : 0);
  if (initial && words.length > 1) {
    person = true;
  } else if (cue !== 0) {
    // After a strong cue (`my name is`, `Dear`, a title) any capitalised chain; after a weak
    // one (`with`, `meet`, `said`) a known name or two words.
    // (`with Microsoft Entra` is a product: two words after a weak cue need a known one.)
    person =
      (words.length > 1 && (cue !== 3 || knownFirst || knownLast || nonAscii(words))) ||
      knownFirst ||
      (cue === 2 && !opens) ||
      titled;
  } else if (
    afterNumber(text, start) ||
    placeBefore(text, start, words.length === 1 && !shaped(words[0]!.lower))
  ) {
    // `40 Large Boxes`: a quantity; `in Fortaleza`, `at São Paulo`: a place.
    person = false;
  } else if (words.length > 1) {
    person =
      knownFirst ||
      (knownLast && !opens) ||
      wholeLine(text, start, end, words, known) ||
      labelLine(text, start, end, words, known) ||
      (opens && verbAfter(text, end) && !STOP.has(words[0]!.lower));
  } else if (words[0]!.lower.length > 2 && !numberAfter(text, words[0]!.end)) {
    // (`Level 5`, `Windows 11`, `Room 12`: a word before a number names a thing.)
    const after = text.charCodeAt(words[0]!.end);
    if (knownFirst || nonAscii(words)) {
      person =
        (knownFirst &&
          (!opens ||
            owner ||
            (after === 58 && opens && !digitAfterLabel(text, words[0]!.end)) ||
            verbAfter(text, words[0]!.end))) ||
        vocative(text, words[0]!.end);
    } else {
      // Unknown words need the text to say it: `Avenall's address`, `Zizi: "Who are you?"`.
      person = (owner && personalNounAfter(text, words[0]!.end)) || speaker(text, words[0]!.end);
    }
  }
  if (!person || end <= start) return false;
  if (!owner) end = suffixAfter(text, end);
  out.push({ type, start, end });
  return true;
}

// Words a form writes as a field's label (`Born:`) that the name lists also hold as names.
const FIELD_LABELS = new Set(
  (
    'born died deceased married height weight age sex gender status nationality rank class ' +
    'level grade ref card price due reason place parent child husband wife doctor nurse ' +
    'blood hair eyes marks race pin code key tax branch maiden given full sender holder ' +
    'student seat carrier driver plate day via'
  ).split(' '),
);

/** A colon right after the label, or after `name`/`date`/`of birth` (`Maiden name:`). */
function labelAfter(text: string, end: number): boolean {
  return LABEL_TAIL.test(text.slice(end, end + 14));
}
const LABEL_TAIL = /^(?: (?:name|date|number|no\.|of birth|place))? ?:/i;

// Street types that end a place's name rather than a person's (USPS suffixes that are not
// also common surnames; `Hill`, `Lane`, `Brooks` are left to the name lists).
const STREET_TYPES = new Set(
  (
    'greens squares square knolls knoll crossing walks walk ways way run runs land landing ' +
    'mission springs spring summit heights plaza plads vei veien gata gate street avenue road ' +
    'drive court place terrace parkway circle trail crescent close alley boulevard highway ' +
    'expressway freeway junction viaduct causeway turnpike estates estate meadows orchard ' +
    'ridge harbor harbour haven inlet isle keys loop manor motorway overpass pass passage ' +
    'pines plains prairie ranch rapids shoals shores skyway stravenue throughway trace track ' +
    'trafficway tunnel underpass vista villages ville wharf pike row mews'
  ).split(' '),
);

// Street types as addresses abbreviate them (`Rd`, `Ave.`), before a town's comma.
const STREET_ABBREVIATIONS = new Set(
  'st rd ave av blvd ln dr ct pl sq ter pkwy hwy cir trl cres str'.split(' '),
);

// Prepositions after which a capitalised word is far more often a place than a person.
const PLACE_PREPOSITIONS = new Set([
  'in',
  'at',
  'on',
  'near',
  'around',
  'via',
  'outside',
  'inside',
]);
// Before one capitalised word, a determiner makes it a thing (`the Luhn check`, `a Slack
// channel`, `our Jira board`).
const DETERMINERS = new Set(['the', 'a', 'an', 'our', 'your', 'their', 'its']);

function placeBefore(text: string, start: number, single = false): boolean {
  if (text.charCodeAt(start - 1) !== 32) return false;
  let b = start - 1;
  while (
    b > 0 &&
    start - 1 - b < 7 &&
    text.charCodeAt(b - 1) >= 97 &&
    text.charCodeAt(b - 1) <= 122
  )
    b--;
  if (b > 0 && LETTER.test(text[b - 1]!)) return false;
  const word = text.slice(b, start - 1);
  return PLACE_PREPOSITIONS.has(word) || (single && DETERMINERS.has(word));
}

// Nouns that make a possessive a person's: `Avenall's address`, `Hilarion's wife`.
const PERSONAL_NOUNS = new Set(
  (
    'address phone number email e-mail birthday wife husband mother father son daughter ' +
    'sister brother friend boss family kids children parents account passport car house ' +
    'killers lawyer doctor partner girlfriend boyfriend'
  ).split(' '),
);

function personalNounAfter(text: string, end: number): boolean {
  let i = end;
  if (text.charCodeAt(i) !== 32) return false;
  i++;
  let e = i;
  while (
    e - i < 12 &&
    ((text.charCodeAt(e) >= 97 && text.charCodeAt(e) <= 122) || text.charCodeAt(e) === 45)
  )
    e++;
  return PERSONAL_NOUNS.has(text.slice(i, e));
}

/**
 * The answer to a question about a name: `What's your last name? Ogawa`, `the name on the
 * account? User: Csenger Gábor`. Looks back at most 64 characters.
 */
function nameAsked(text: string, start: number): boolean {
  let i = start;
  while (i > 0 && start - i < 64 && text.charCodeAt(i - 1) !== 63) {
    const c = text.charCodeAt(i - 1);
    // Only spaces and one speaker label (`User:`) between the question and the answer.
    if (c === 10 || c === 46 || c === 33) return false;
    i--;
  }
  if (text.charCodeAt(i - 1) !== 63 || start - i > 16) return false;
  const between = text.slice(i, start).trim();
  if (between !== '' && !LABEL_WORD.test(between)) return false;
  return NAME_WORD.test(text.slice(Math.max(0, i - 40), i));
}

// After a name and a comma, the words that make it someone spoken to: `Eira, can I speak…`.
const VOCATIVE_NEXT = new Set(
  (
    'can could would will please i you we do did are is have thanks thank how what where when ' +
    'why would'
  ).split(' '),
);

/** `Renátó, can I please speak to your boss?`: a name addressed at the start of a sentence. */
function vocative(text: string, end: number): boolean {
  if (text.charCodeAt(end) !== 44 || text.charCodeAt(end + 1) !== 32) return false;
  let e = end + 2;
  while (e - end < 10 && ASCII_LETTER.test(text[e] ?? '')) e++;
  return VOCATIVE_NEXT.has(text.slice(end + 2, e).toLowerCase());
}

/**
 * `Billing address: Krisztián Péter\n`: a name after a label, alone to the end of its line,
 * with a known name or letters beyond ASCII in it.
 */
function labelLine(
  text: string,
  start: number,
  end: number,
  words: readonly Tok[],
  known: WordSet,
): boolean {
  if (words.length > 3) return false;
  let b = start;
  while (b > 0 && start - b < 8 && text.charCodeAt(b - 1) === 32) b--;
  if (b === start || text.charCodeAt(b - 1) !== 58) return false;
  const after = text.charCodeAt(end);
  const lineEnd =
    after === 10 || (after === 92 && text.charCodeAt(end + 1) === 110) || end === text.length;
  if (!lineEnd) return false;
  return words.some((w) => isName(known, w.lower)) || nonAscii(words);
}

/** `Zizi: "Who are you?"`: a word at a line's start that speaks a quoted line. */
function speaker(text: string, end: number): boolean {
  if (text.charCodeAt(end) !== 58) return false;
  let i = end + 1;
  if (text.charCodeAt(i) === 32) i++;
  if (text.charCodeAt(i) === 92) i++;
  const q = text.charCodeAt(i);
  return q === 34 || q === 0x201c;
}

// Written after a name and part of it: `Maret Akhtakhanov MD`, `Felix Biermann III`.
const SUFFIX_AFTER = /^,? (?:Jr\.|Sr\.|Jr|Sr|II|III|IV|MD|DVM|PhD|DDS|Esq\.?)(?![\p{L}\p{N}])/u;

function suffixAfter(text: string, end: number): number {
  const c = text.charCodeAt(end);
  if (c !== 32 && c !== 44) return end;
  const m = SUFFIX_AFTER.exec(text.slice(end, end + 7));
  return m === null ? end : end + m[0].length;
}

// Verbs that make a known name opening a sentence the sentence's subject: `Charlotte spent a
// year…`, `Maika is from…`.
const SUBJECT_VERBS = new Set(
  (
    'is was has had will would can could did does said says spent lives lived works worked ' +
    'wrote asked called told shouted began joined left moved met went came sent gave took ' +
    'replied answered explained thinks thought wants wanted needs needed listed lives ' +
    'will began published founded released recorded became'
  ).split(' '),
);

/** Evidence in the word itself (`Björgvinsdóttir`, `Ágnes`), not only a list's say-so. */
function shaped(lower: string): boolean {
  return surnameShaped(lower) || NON_ASCII.test(lower);
}

/** `Card: 2490 3933…`: a label before a value, not a speaker. */
function digitAfterLabel(text: string, colon: number): boolean {
  let i = colon + 1;
  while (i - colon < 4 && text.charCodeAt(i) === 32) i++;
  const c = text.charCodeAt(i);
  return (c >= 48 && c <= 57) || c === 43 || c === 40;
}

/** A known name, or a word shaped as a surname (`Jurković`, `Björgvinsdóttir`). */
function isName(known: WordSet, lower: string): boolean {
  return known.has(lower) || surnameShaped(lower);
}

function verbAfter(text: string, end: number): boolean {
  if (text.charCodeAt(end) !== 32) return false;
  let e = end + 1;
  while (e - end <= 10 && text.charCodeAt(e) >= 97 && text.charCodeAt(e) <= 122) e++;
  return SUBJECT_VERBS.has(text.slice(end + 1, e));
}

/** Letters beyond ASCII (`Lukáš Ryška`): product names rarely have them, people's names do. */
function nonAscii(words: readonly Tok[]): boolean {
  // A loop, not some() with a closure per call.
  for (const w of words) if (NON_ASCII.test(w.lower)) return true;
  return false;
}

function numberAfter(text: string, end: number): boolean {
  const c = text.charCodeAt(end + 1);
  return text.charCodeAt(end) === 32 && c >= 48 && c <= 57;
}

function afterNumber(text: string, start: number): boolean {
  const c = text.charCodeAt(start - 2);
  if (text.charCodeAt(start - 1) === 32 && c >= 48 && c <= 57) return true;
  // `Schulstrasse 59, Winkel`: the town after a street's house number and a comma (not a year:
  // `In 2019, John`).
  if (text.charCodeAt(start - 1) !== 32 || text.charCodeAt(start - 2) !== 44) return false;
  // `90 Petworth Rd, Leeds`: the town after a numbered street's type and a comma (not `down
  // Baker Street, Maria`).
  let w = start - 2;
  if (text.charCodeAt(w - 1) === 46) w--;
  let ws = w;
  while (ws > 0 && w - ws < 12 && LETTER.test(text[ws - 1]!)) ws--;
  const type = text.slice(ws, w).toLowerCase();
  if (
    ws < w &&
    (STREET_TYPES.has(type) || STREET_ABBREVIATIONS.has(type)) &&
    NUMBERED_STREET_BEFORE.test(text.slice(Math.max(0, ws - 48), ws))
  ) {
    return true;
  }
  let b = start - 3;
  while (b >= 0 && text.charCodeAt(b) >= 48 && text.charCodeAt(b) <= 57) b--;
  const digits = start - 3 - b;
  const l = text.charCodeAt(b - 1);
  return (
    digits >= 1 &&
    digits <= 4 &&
    !(digits === 4 && CENTURY.test(text.slice(b + 1, b + 3))) &&
    text.charCodeAt(b) === 32 &&
    ((l >= 97 && l <= 122) || l === 46 || l > 127)
  );
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
  known: WordSet,
): boolean {
  if (words.length > 3) return false;
  // A line may open with the quote marks of a reply (`> `, `}} `, `??? `).
  let b = start;
  while (b > 0 && start - b < 5 && QUOTE_MARK.test(text[b - 1]!)) b--;
  const lineStart = b === 0 || text.charCodeAt(b - 1) === 10 || isEscapedLetter(text, b - 1);
  const after = text.charCodeAt(end);
  const lineEnd = after === 10 || (after === 92 && text.charCodeAt(end + 1) === 110);
  if (!lineStart || !lineEnd) return false;
  return words.some((w) => isName(known, w.lower)) || nonAscii(words);
}

export function personDetector(): Detector {
  loadNameLists();
  return { type: 'PERSON', scan: (view: TextView) => scanPersons(view) };
}
