import { isEscapedLetter } from './chars.js';
import type { Detector, Finding, TextView } from './types.js';

/**
 * STREET_ADDRESS: a street line and what follows it on the envelope, by rules, no model.
 *
 * Street lines, in the forms postal services print:
 * - number first, street type last: `221B Baker Street`, `1600 Pennsylvania Ave NW`,
 *   `50 Point Walter Road`, `12 W. 5th St.` (street types: the USPS suffix names and their
 *   abbreviations, and the British and Commonwealth ones);
 * - street type first, number last: `Via Guantai Nuovi 58`, `Rue de la Sarthe 45`,
 *   `ul. Nobla Alfreda 144`, `Avenida Noruega 42`;
 * - one word with a street ending, number last: `Strepestraat 143`, `Norrbyvägen 21`,
 *   `Eichendorffstr. 31`, `Aðalgata 37`, `Csabai kapu 60`;
 * - military and box addresses: `Unit 8399 Box 9219`, `PSC 1708, Box 0531`, `USNS Nagel`,
 *   `P.O. Box 255`;
 * - after an address cue (`address:`, `live at`, `located at`, `ship to`), any
 *   number-and-capitalised-words line.
 * A unit (`Apt. 904`, `Suite 938`, `Unit 4`, `#12`) may follow, then up to three locality
 * segments on the same or the next lines: a city, a state or region code, a ZIP or postcode, a
 * country (`, Springfield, IL 62704`, `\nDPO AE 27653`, `\nKøbenhavn K\n, SJ\n 16416`).
 *
 * Candidates start only at a digit run or a street-type word; each look ahead is bounded (a few
 * words, three segments), so the scan is linear in the text.
 */

// Street types written after the name (USPS Publication 28 suffix names and common
// abbreviations, plus British, Irish, Australian and Canadian usage), lower case, no dot.
const SUFFIX = new Set(
  (
    'street st str avenue ave av road rd boulevard blvd bvd lane ln drive dr court ct place pl ' +
    'square sq terrace ter terr way wy parkway pkwy highway hwy freeway fwy expressway expy ' +
    'circle cir trail trl crescent cres close alley aly row walk plaza plz path loop run ' +
    'ridge heights hts gardens gdns park grove grv mews hill hills point pt pike turnpike ' +
    'tpke causeway cswy crossing xing junction jct vista vis view vw village vlg ville vl ' +
    'meadow meadows mdw mdws green glen gln harbor harbour hbr haven hvn landing lndg manor ' +
    'mnr mill mills orchard orch pass passage psge pines plains port prairie ranch rnch ' +
    'shore shores shr spring springs spg station sta summit smt track trak trace trce ' +
    'tunnel tunl underpass upas union un valley vly viaduct via wall wells wl wls bend bnd ' +
    'bluff blf bottom btm branch br bridge brg brook brk burg byp bypass camp cmp canyon cyn ' +
    'cape cpe center ctr centre cliff clf club clb common commons corner cor corners cors ' +
    'course crse cove cv creek crk crest crst curve curv dale dl dam divide dv estate est ' +
    'estates ests extension ext falls fls ferry fry field fld fields flds flat flt flats ' +
    'ford frd forest frst forge frg fork frk forks frks fort ft garden gdn gateway gtwy ' +
    'harbors island is isle junctions key ky knoll knl knolls lake lk lakes lks light lgt ' +
    'lock lck locks lodge ldg mission msn motorway mount mt mountain mtn neck nck oval ' +
    'overpass opas radial radl ramp rapids rpd rest rst route rte shoal shl skyway spur ' +
    'stravenue stra stream strm throughway trwy traffic trafficway trfy wharf quay quays ' +
    'gate gardens embankment esplanade broadway rise chase wynd parade pde promenade prom ' +
    // The rest of USPS Publication 28's suffix names.
    'crossroad crossroads fall hollow holw inlet inlt land loaf lf mall pine pne plain pln ' +
    'rapid rpds river riv rvr well lights mountains plains shoals squares streets views'
  ).split(' '),
);

// Street types written before the name: Romance, Slavic, Greek and others.
const PREFIX = new Set(
  (
    'via viale vicolo corso piazza piazzale largo strada rue avenue av boulevard bd chemin ' +
    'route allée allee impasse quai place calle avenida av avda carrer carretera camino ' +
    'paseo plaza pasaje rua r travessa praça praca estrada alameda rodovia ul ulica al aleja ' +
    'os osiedle trg akti odos leoforos plateia str strada bulevardul calea sokak cadde ' +
    'caddesi jalan jl soi thanon οδός οδος λεωφόρος λεωφορος λεωφ πλατεία πλατεια ' +
    // Spanish and French abbreviations and forms: carretera (`Ctra.`, `Crta.`), faubourg, rambla.
    'ctra crta cra fbg faubourg rambla ronda travesía travesia plazuela glorieta bulevar ' +
    'rruga prospekt'
  ).split(' '),
);

// Street types written first that are no English word: after a house number they make a street
// line on their own (`98 Rue du Niger`), where `12 Place Settings` would not.
const STREET_WORD_FIRST = new Set(
  (
    'via viale vicolo corso piazza piazzale largo rue allée allee chemin impasse quai calle ' +
    'avenida avda carrer carretera camino paseo pasaje rua travessa praça praca estrada ' +
    'alameda rodovia ulica aleja osiedle strada bulevardul calea sokak caddesi jalan ' +
    'λεωφόρος οδός ctra crta faubourg rambla ronda'
  ).split(' '),
);

// Endings of one-word street names: straße/strasse/str. (German), straat/laan/weg/gracht/plein
// (Dutch), gatan/vägen/gata/gade/vej/veien/vei (Nordic), tie/katu/kuja (Finnish), utca/út/tér
// (Hungarian), ulica/cesta (Slavic), allee/platz/gasse/ring/damm/ufer/weg (German).
const ENDINGS = [
  'straße',
  'strasse',
  'str',
  'straat',
  'laan',
  'weg',
  'gracht',
  'plein',
  'kade',
  'singel',
  'gatan',
  'vägen',
  'gata',
  'gade',
  'vej',
  'veien',
  'vegen',
  'vei',
  'tie',
  'katu',
  'kuja',
  'utca',
  'út',
  'tér',
  'ulica',
  'cesta',
  'allee',
  'platz',
  'gasse',
  'ring',
  'damm',
  'ufer',
  'steig',
  'pfad',
  'stieg',
];

// Words written as separate words before a number that end a street name in their language.
const TRAILING_TYPE = new Set([
  'veg',
  'vegur',
  'tänav',
  'tee',
  'põik',
  'iela',
  'gatve',
  'katu',
  'tie',
  'väg',
  'vägen',
  'utca',
  'út',
  'tér',
  'kapu',
  'sor',
  'köz',
  'körút',
  'útja',
  'rakpart',
  'fasor',
  'sétány',
  'ulica',
  'gate',
  'gata',
  'gatan',
  'gade',
  'vej',
  'vei',
  'veien',
  'straße',
  'strasse',
  'weg',
  'laan',
  'straat',
  'allee',
  'platz',
  'gasse',
]);

// Abbreviated trailing types, written with their dot (Hungarian `u.` utca, `rkp.` rakpart,
// `krt.` körút).
const DOTTED_TRAILING_TYPE = new Set(['u', 'rkp', 'krt']);

function trailingType(w: Word, text?: string): boolean {
  // `Kongens gate 5` is Norwegian; `at Gate 12` is an airport's.
  if (w.lower === 'gate' && text !== undefined && isUpperAt(text, w.start)) return false;
  return TRAILING_TYPE.has(w.lower) || (w.dot && DOTTED_TRAILING_TYPE.has(w.lower));
}

const UNIT = new Set([
  'apt',
  'apartment',
  'suite',
  'ste',
  'unit',
  'flat',
  'floor',
  'fl',
  'room',
  'rm',
  'bldg',
  'building',
  'dept',
  'office',
]);
const DIRECTIONS = new Set([
  'n',
  's',
  'e',
  'w',
  'ne',
  'nw',
  'se',
  'sw',
  'north',
  'south',
  'east',
  'west',
]);

const CALENDAR = new Set(
  (
    'january february march april may june july august september october november december ' +
    'jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday ' +
    'friday saturday sunday mon tue wed thu fri sat sun week day page chapter section ' +
    'version step item line room level floor gate table figure'
  ).split(' '),
);

// Cues after which a number-and-words line is an address even without a street type.
const CUES = [
  'address:',
  'address is',
  'address',
  'addresses',
  'live at',
  'lives at',
  'living at',
  'lived at',
  'live in',
  'lived in',
  'located at',
  'located in',
  'is at',
  'are at',
  'ship to',
  'send to',
  'sent to',
  'deliver to',
  'delivered to',
  'moved to',
  'meet me at',
  'meet you at',
  'return to',
  'arrived at',
  'offices are at',
  'lives on',
  'live on',
  'living on',
  'is on',
  'located on',
  'enter on',
  'side of',
  'corner of',
  // Moving, sending, meeting and staying somewhere, as people write it.
  'address to',
  'addressed to',
  'reside at',
  'resides at',
  'residing at',
  'resident at',
  'stay at',
  'stays at',
  'staying at',
  'stayed at',
  'move to',
  'moving to',
  'relocated to',
  'relocating to',
  'mail to',
  'mailed to',
  'post to',
  'posted to',
  'ship it to',
  'shipped to',
  'shipping to',
  'forward to',
  'forwarded to',
  'redirect to',
  'delivery to',
  'pick up at',
  'pick me up at',
  'picked up at',
  'pickup at',
  'drop off at',
  'dropped off at',
  'drops you off at',
  'stop at',
  'taxi to',
  'take me to',
  'drive to',
  'office at',
  'based at',
  'headquartered at',
  'registered at',
  'visit us at',
  'find us at',
  'home at',
  'house at',
  'house on',
  'flat at',
  'apartment at',
  'apartment on',
];
const CUE_WINDOW = 24;
// The cues by their last word, so a candidate's context is looked up once, not against each cue.
const CUES_BY_LAST_WORD = new Map<string, string[]>();
for (const cue of CUES) {
  const bare = cue.endsWith(':') ? cue.slice(0, -1) : cue;
  const last = bare.slice(bare.lastIndexOf(' ') + 1);
  CUES_BY_LAST_WORD.set(last, [...(CUES_BY_LAST_WORD.get(last) ?? []), bare]);
}

const LOCALITY_PARTICLES = new Set([
  'de',
  'del',
  'da',
  'do',
  'dos',
  'la',
  'le',
  'am',
  'an',
  'im',
  'sur',
  'sous',
  'lès',
  'les',
  'en',
  'upon',
  'on',
  'bei',
  // Slavic: `Šmartno ob Paki`, `Dole pri Litiji`, `Ždár nad Sázavou`, `Bystré u Poličky`.
  'ob',
  'pri',
  'nad',
  'pod',
  'na',
  'u',
  'v',
  // `Sankt Andrä am Zicken`, `Bergen op Zoom`, `Castiglione della Pescaia`, `Treinta y Tres`.
  'di',
  'della',
  'du',
  'des',
  'der',
  'den',
  'aan',
  'op',
  'y',
]);

// Lower-case words inside a street's name: `Rue du Niger`, `Avenue of the Americas`.
const STREET_PARTICLES = new Set([
  'de',
  'la',
  'of',
  'du',
  'des',
  'del',
  'di',
  'da',
  'do',
  'van',
  'von',
  'der',
  'den',
  'het',
  'ter',
  'à',
  'au',
  'aux',
  'y',
]);

const LETTER = /\p{L}/u;
const UPPER = /\p{Lu}/u;

function isLetter(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  if (c < 128) return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
  return !Number.isNaN(c) && LETTER.test(text[i]!);
}
function isDigitAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return c >= 48 && c <= 57;
}
function isUpperAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  if (c < 128) return c >= 65 && c <= 90;
  return !Number.isNaN(c) && UPPER.test(text[i]!);
}

interface Word {
  start: number;
  end: number;
  lower: string;
  /** Ends with a '.' right after it (`St.`, `ul.`), not counted in `end`. */
  dot: boolean;
}

/** The letter word (letters, inner `'`/`-`) at `i`, or null. */
function wordAt(text: string, i: number): Word | null {
  if (!isLetter(text, i)) return null;
  let e = i + 1;
  while (e - i < 40) {
    if (isLetter(text, e)) e++;
    else if ((text.charCodeAt(e) === 39 || text.charCodeAt(e) === 45) && isLetter(text, e + 1))
      e += 2;
    else break;
  }
  if (isLetter(text, e) || isDigitAt(text, e)) return null;
  return {
    start: i,
    end: e,
    lower: text.slice(i, e).toLowerCase(),
    dot: text.charCodeAt(e) === 46,
  };
}

/**
 * A word that is capitalised after an elision counts as capitalised: `l'Etoile`, `d'Orange`,
 * `dell'Arte`.
 */
function capitalisedAt(text: string, w: Word): boolean {
  if (isUpperAt(text, w.start)) return true;
  const a = w.lower.indexOf("'");
  return a > 0 && a <= 4 && isUpperAt(text, w.start + a + 1);
}

/** A house number at `i`: 1-6 digits, an optional letter or `-12`/`/3` part; its end or -1. */
function numberAt(text: string, i: number): number {
  let e = i;
  while (isDigitAt(text, e) && e - i < 7) e++;
  if (e === i || e - i > 6) return -1;
  if ((text.charCodeAt(e) === 45 || text.charCodeAt(e) === 47) && isDigitAt(text, e + 1)) {
    const s = ++e;
    while (isDigitAt(text, e) && e - s < 5) e++;
  }
  if (isLetter(text, e) && !isLetter(text, e + 1)) e++;
  if (isLetter(text, e) || isDigitAt(text, e)) {
    // Ordinals are street names, not house numbers: 5th, 21st.
    return -1;
  }
  // `5.75`, `1,200`, `2.0.1`: an amount or a version, not a house number.
  const c = text.charCodeAt(e);
  if ((c === 46 || c === 44) && isDigitAt(text, e + 1)) return -1;
  return e;
}

/** Skips spaces (one run, at most 3) from `i`. */
function skipSpaces(text: string, i: number): number {
  let k = i;
  while (text.charCodeAt(k) === 32 && k - i < 3) k++;
  return k;
}

function endsWithStreetEnding(lower: string): boolean {
  for (const e of ENDINGS) if (lower.length > e.length + 2 && lower.endsWith(e)) return true;
  return false;
}

function isOrdinal(text: string, i: number): number {
  let e = i;
  while (isDigitAt(text, e) && e - i < 4) e++;
  if (e === i) return -1;
  // Compared by code, any case: a two-letter string sliced and lower-cased per number cost
  // ~0.8 KiB per request with every detector on (issue 16). Only 'S'/'s' and so on have these
  // codes once bit 5 is set (NaN past the end matches none).
  const a = text.charCodeAt(e) | 32;
  const b = text.charCodeAt(e + 1) | 32;
  const suffix =
    (a === 115 && b === 116) || // st
    (a === 110 && b === 100) || // nd
    (a === 114 && b === 100) || // rd
    (a === 116 && b === 104); // th
  if (suffix && !isLetter(text, e + 2)) return e + 2;
  return -1;
}

/**
 * Number first: `221B Baker Street`, `12 W. 5th St.`. Returns the end of the street line (type
 * word, and a direction after it), or -1. After an address cue before `cueAt`, capitalised words without a street type
 * do.
 */
function numberFirst(text: string, s: number, cueAt: number): number {
  const n = numberAt(text, s);
  if (n === -1 || text.charCodeAt(n) !== 32) return -1;
  let i = skipSpaces(text, n);
  let words = 0;
  let lastEnd = -1;
  let capitalised = 0;
  let lastCapitalEnd = -1;
  let named = 0;
  let romance = false;
  while (words < 6) {
    const ord = isOrdinal(text, i);
    let w: Word | null = null;
    let end: number;
    if (ord !== -1) {
      end = ord;
    } else {
      w = wordAt(text, i);
      if (w === null) break;
      end = w.end;
      // `54352 P.O. Box 178`: the box address starts at `P.O.`, the number joins it there.
      if (words === 0 && w.lower === 'p' && text.startsWith('P.O. Box ', w.start)) return -1;
      // `28 March 2018`: a date.
      if (words === 0 && CALENDAR.has(w.lower)) return -1;
      if (words === 0 && w.lower === 'c' && text.charCodeAt(w.end) === 47) {
        // `2299 C/ Pablo Iglesias 93`: calle after a building number.
        return prefixFirstBody(text, { ...w, end: w.end + 1 });
      }
      if (words === 0 && !isUpperAt(text, i) && PREFIX.has(w.lower)) {
        // `40 rue des six frères Ruellan`, `69 boulevard Aristide Briand`: a street type written
        // in lower case after the number, then the name.
        const named = lowerPrefixBody(text, w);
        if (named !== -1) return named;
        break;
      }
      // Title-case prose (`5 Musicians Of The 70s`), not a street name.
      if (isUpperAt(text, i) && words > 0 && NOT_CITY.has(w.lower)) break;
      // `13 Faubourg Saint Honoré Apt. 014`: a unit follows the street, it is not in its name.
      if (words > 0 && UNIT.has(w.lower)) break;
      if (capitalisedAt(text, w)) {
        capitalised++;
        lastCapitalEnd = w.end;
        if (text.slice(w.start, w.end) !== w.lower.toUpperCase()) named++;
      } else if (
        words > 1 &&
        !romance &&
        SUFFIX.has(w.lower) &&
        lineEndsAt(text, w.dot ? w.end + 1 : w.end)
      ) {
        // `92 Vasileos Pavlou str`: a type written in lower case ends the line.
        return w.dot ? w.end + 1 : w.end;
      } else if (!(words > 0 && (STREET_PARTICLES.has(w.lower) || trailingType(w)))) {
        // `Árpád fejedelem útja 45`: a lower-case word right before a trailing street type.
        const t = words > 0 ? wordAt(text, skipSpaces(text, w.end)) : null;
        if (t === null || t.start !== w.end + 1 || !trailingType(t)) break;
      }
    }
    words++;
    if (w !== null && words > 1 && SUFFIX.has(w.lower) && isUpperAt(text, w.start)) {
      // The dot of an abbreviation (`St.`, `Blvd.`) is part of it; after `Street.` it ends the
      // sentence.
      let e = w.dot && w.end - w.start <= 4 ? w.end + 1 : w.end;
      const t = wordAt(text, e + 1);
      if (
        t !== null &&
        text.charCodeAt(e) === 32 &&
        SUFFIX.has(t.lower) &&
        isUpperAt(text, t.start)
      ) {
        // `3256 Masonic Hill Road`: the type is the last of two.
        e = t.dot ? t.end + 1 : t.end;
      }
      const d = wordAt(text, skipSpaces(text, e));
      if (
        d !== null &&
        DIRECTIONS.has(d.lower) &&
        isUpperAt(text, d.start) &&
        text.charCodeAt(e) === 32
      ) {
        e = d.dot ? d.end + 1 : d.end;
      } else if (
        (w.lower === 'str' || w.lower === 'strasse' || w.lower === 'straße') &&
        text.charCodeAt(e) === 32
      ) {
        // `Koepenicker Str. 38`: German order, the number after the street.
        const h = numberAt(text, e + 1);
        if (h !== -1) e = h;
      }
      return e;
    }
    lastEnd = w !== null && w.dot && w.end - w.start <= 3 ? end + 1 : end;
    if (w !== null && words === 1 && (PREFIX.has(w.lower) || endsWithStreetEnding(w.lower))) {
      // `52 Rue Abdelkader`, `65 R. Mongi Bali`: a prefix-type street after its number.
      const rest = prefixFirstBody(text, w);
      if (rest !== -1) return rest;
      const h = skipSpaces(text, w.dot ? w.end + 1 : w.end);
      if (endsWithStreetEnding(w.lower) && h > end && isDigitAt(text, h)) {
        // `2845 Motzstr. 49`: a one-word street and its number after a building number.
        const m = numberAt(text, h);
        if (m !== -1) return m;
      }
      romance = STREET_WORD_FIRST.has(w.lower) && isUpperAt(text, w.start);
    }
    if (text.charCodeAt(lastEnd) !== 32) break;
    i = skipSpaces(text, lastEnd);
    if (isDigitAt(text, i) && isOrdinal(text, i) === -1) {
      // `Spinatsch 94`, `Männi 53`: a name-then-number street after a building number; four
      // words when the last is a street type (`Apáczai Csere János u. 55.`).
      const m = numberAt(text, i);
      if (
        m !== -1 &&
        // `1000 SRS Z 6`: abbreviations in capitals name a security, not a street.
        named > 0 &&
        (words <= 3 || (words === 4 && w !== null && trailingType(w)))
      )
        return m;
      break;
    }
  }
  if (capitalised >= 1 && lastEnd !== -1 && (cueBefore(text, cueAt) || confirmed(text, lastEnd))) {
    return lastEnd;
  }
  // `98 Rue du Niger`, `5 Via Roma`: a number, a street type that is written first, and a name.
  if (romance && capitalised >= 2) return lastCapitalEnd;
  return -1;
}

// Words after which a number is something else's: `order 4417 Park Avenue Edition`, `chapter 12
// Park Lane`, `since 2019 Main Street has`, `May 3 Oak Road`.
const NUMBER_LABELS = new Set(
  (
    'order orders invoice ticket ref reference id no nr number case account acct tracking ' +
    'sku item model version release build step page chapter section figure table line ' +
    'week day level room floor gate platform track episode season volume vol issue'
  ).split(' '),
);
const YEAR_WORDS = new Set('in since until till by before after from during of circa'.split(' '));

/**
 * Whether the number at `i` is labelled as something other than a house number by the word
 * before it (`Order 4417`, `Chapter 12`, `May 3`), or is a year after a preposition of time
 * (`Since 2019 Main Street has`); an address cue before it wins (`live in 2019 Main Street`).
 */
function labelledNumber(text: string, i: number): boolean {
  let e = i;
  while (e > 0 && e > i - 4 && (text.charCodeAt(e - 1) === 32 || text.charCodeAt(e - 1) === 35))
    e--;
  if (text.charCodeAt(e - 1) === 46 || text.charCodeAt(e - 1) === 58) e--; // `No.`, `Order:`
  if (e === i) return false;
  let b = e;
  while (b > 0 && e - b < 12 && isLetter(text, b - 1)) b--;
  if (b === e || (b > 0 && isLetter(text, b - 1))) return false;
  const word = text.slice(b, e).toLowerCase();
  if (NUMBER_LABELS.has(word) || CALENDAR.has(word)) return !cueBefore(text, i);
  if (!YEAR_WORDS.has(word)) return false;
  let k = i;
  while (isDigitAt(text, k)) k++;
  const y = k - i === 4 ? Number(text.slice(i, k)) : 0;
  return y >= 1900 && y <= 2099 && !cueBefore(text, i);
}

/**
 * After a street line's number, an estate named like a street and then a unit (`Pod Strání 10
 * Luca Spring\n Apt. 070`): the envelope's tail that confirms a street without a type.
 */
function estateWithUnit(text: string, e: number): boolean {
  const p = namedPlaceAfter(text, e);
  return p !== e && unitAfter(text, p) !== p;
}

/** The start of `Word and ` right before `i` (one capitalised word), or -1. */
function cornerBefore(text: string, i: number): number {
  // ` and ` before `i`, read as codes: this runs at the start of every token, where startsWith
  // cost more than the rest of the scan's work on a plain word (issue 16).
  if (
    i < 6 ||
    text.charCodeAt(i - 1) !== 32 ||
    text.charCodeAt(i - 2) !== 100 ||
    text.charCodeAt(i - 3) !== 110 ||
    text.charCodeAt(i - 4) !== 97 ||
    text.charCodeAt(i - 5) !== 32
  )
    return -1;
  let b = i - 5;
  while (b > 0 && i - 5 - b < 24 && isLetter(text, b - 1) && !isEscapedLetter(text, b - 1)) b--;
  if (b === i - 5 || !isUpperAt(text, b) || (b > 0 && isDigitAt(text, b - 1))) return -1;
  return b;
}

/** A house number's dot then a comma at `i`: `71., Nässuma`. */
function hungarianDotComma(text: string, i: number): boolean {
  return text.charCodeAt(i) === 46 && isDigitAt(text, i - 1) && text.charCodeAt(i + 1) === 44;
}

/** Whether a line ends at `i`: the text's end, a line break, a comma, or a sentence's period. */
function lineEndsAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return (
    i === text.length ||
    c === 44 ||
    lineBreak(text, i) > 0 ||
    (c === 46 && (i + 1 === text.length || text.charCodeAt(i + 1) === 32))
  );
}

/**
 * A street line without a street type is still one when an envelope's tail follows it: a unit
 * (`Letališka 75\n Suite 432`, `98 Rue du Niger\n Apt. 529`) or a locality with a postcode
 * (`Spinatsch 94\nUulu, PR 13249`).
 */
function confirmed(text: string, e: number): boolean {
  if (unitAfter(text, e) !== e) return true;
  const l = localityAfter(text, e);
  if (l === e) return false;
  // A place name and a postcode: `, 2024` after `April 12` is a year, not a locality.
  let digits = 0;
  let code = false;
  let place = false;
  for (let i = e; i < l; i++) {
    digits = isDigitAt(text, i) ? digits + 1 : 0;
    if (digits >= 4) code = true;
    if (isUpperAt(text, i) && isLetter(text, i + 1)) place = true;
  }
  return code && place;
}

/**
 * After a lower-case street type that followed the house number: up to six words, ending with
 * the last capitalised one (`des six frères Ruellan`, `La Boétie`); a unit word ends it. End or -1.
 */
function lowerPrefixBody(text: string, w: Word): number {
  let i = skipSpaces(text, w.dot ? w.end + 1 : w.end);
  if (i === (w.dot ? w.end + 1 : w.end)) return -1;
  let end = -1;
  for (let words = 0; words < 6; words++) {
    let x = wordAt(text, i);
    if (x === null && (text.charCodeAt(i + 1) === 39 || text.charCodeAt(i + 1) === 0x2019)) {
      x = wordAt(text, i + 2); // l'Etoile, d'Alsace
    }
    if (x === null || UNIT.has(x.lower)) break;
    if (capitalisedAt(text, x)) end = x.end;
    if (text.charCodeAt(x.end) !== 32) break;
    i = skipSpaces(text, x.end);
    if (isDigitAt(text, i) && end === x.end) {
      // `446 ul. Siostrzana 48`: the house number after the name.
      const h = numberAt(text, i);
      return h === -1 ? end : h;
    }
  }
  return end;
}

/** After a prefix word `w` (`Via`, `ul.`): name words then a house number; its end or -1. */
function prefixFirstBody(text: string, w: Word): number {
  let i = skipSpaces(text, w.dot ? w.end + 1 : w.end);
  if (i === (w.dot ? w.end + 1 : w.end)) return -1;
  let words = 0;
  while (words < 6) {
    if (isDigitAt(text, i)) {
      if (words === 0) return -1;
      return numberAt(text, i);
    }
    const x = wordAt(text, i);
    // `Rue de Marrakech Apt. 244`: the number after a unit word is the unit's.
    if (x === null || UNIT.has(x.lower)) return -1;
    words++;
    const e = x.dot ? x.end + 1 : x.end;
    if (text.charCodeAt(e) !== 32) return -1;
    i = skipSpaces(text, e);
  }
  return -1;
}

/** Name first: `Via Guantai Nuovi 58`, `Strepestraat 143`, `Csabai kapu 60.` at word `w`. */
function nameFirst(text: string, w: Word, cueAt: number): number {
  if (!isUpperAt(text, w.start) && !(w.dot && PREFIX.has(w.lower))) return -1;
  // `on May 10`, `is on Friday 3`: a date, not a street; `Suite 12`: a unit.
  if (CALENDAR.has(w.lower) || UNIT.has(w.lower)) return -1;
  if (PREFIX.has(w.lower)) {
    const e = prefixFirstBody(text, w);
    if (e !== -1) return e;
  }
  if (w.lower === 'c' && text.charCodeAt(w.end) === 47) {
    // `C/ Pablo Iglesias 93`: calle, as Spanish addresses abbreviate it.
    return prefixFirstBody(text, { ...w, end: w.end + 1 });
  }
  let i = w.start;
  let words = 0;
  let typed = false;
  while (words < 4) {
    const x = wordAt(text, i);
    if (x === null) return -1;
    if (words > 0 && !capitalisedAt(text, x) && !trailingType(x)) {
      const t = wordAt(text, skipSpaces(text, x.end));
      if (
        !(STREET_PARTICLES.has(x.lower) || x.lower === 'y') &&
        // `Tas vezér u. 66.`: a lower-case word right before a trailing street type.
        (t === null || t.start !== x.end + 1 || !trailingType(t, text))
      )
        return -1;
    }
    if (endsWithStreetEnding(x.lower) || trailingType(x, text)) typed = true;
    words++;
    const e = x.dot ? x.end + 1 : x.end;
    if (text.charCodeAt(e) !== 32) return -1;
    i = skipSpaces(text, e);
    if (isDigitAt(text, i)) {
      const e2 = numberAt(text, i);
      if (
        !typed &&
        !cueBefore(text, cueAt) &&
        (e2 === -1 || (!confirmed(text, e2) && !estateWithUnit(text, e2)))
      )
        return -1;
      return e2;
    }
  }
  return -1;
}

/** `Unit 8399 Box 9219`, `PSC 1708, Box 0531`, `P.O. Box 255`, `USNS Nagel`: end or -1. */
function boxAddress(text: string, w: Word): number {
  if (w.lower === 'unit' || w.lower === 'psc') {
    let i = skipSpaces(text, w.end);
    let e = i;
    while (isDigitAt(text, e) && e - i < 6) e++;
    if (e === i) return -1;
    if (text.charCodeAt(e) === 44) e++;
    i = skipSpaces(text, e);
    if (text.slice(i, i + 4) !== 'Box ') return -1;
    i += 4;
    e = i;
    while (isDigitAt(text, e) && e - i < 6) e++;
    return e === i ? -1 : e;
  }
  if (w.lower === 'usns' || w.lower === 'uss' || w.lower === 'usnv' || w.lower === 'uscgc') {
    if (w.end - w.start !== w.lower.length || !isUpperAt(text, w.start + 1)) return -1;
    const x = wordAt(text, skipSpaces(text, w.end));
    if (x === null || !isUpperAt(text, x.start) || x.start === w.end) return -1;
    return x.end;
  }
  if (w.lower === 'p' && text.startsWith('P.O. Box ', w.start)) {
    let i = w.start + 9;
    const s = i;
    while (isDigitAt(text, i) && i - s < 7) i++;
    return i === s ? -1 : i;
  }
  return -1;
}

/** A unit after the street: `Apt. 904`, `Suite 938`, `#12`, `, Unit 4`. */
function unitAfter(text: string, e: number): number {
  let i = e;
  // `Nagytétényi út 86. Suite 769`: a house number written with a dot, as in Hungarian.
  if (text.charCodeAt(i) === 46 && isDigitAt(text, i - 1) && text.charCodeAt(i + 1) === 32) i++;
  else if (text.charCodeAt(i) === 44) i++;
  const lb = lineBreak(text, i);
  if (lb > 0) i = quoteMarks(text, i + lb);
  else if (text.charCodeAt(i) !== 32) return e;
  i = skipSpaces(text, i);
  if (text.charCodeAt(i) === 35) {
    const s = i + 1;
    let k = s;
    while (isDigitAt(text, k) && k - s < 6) k++;
    return k === s ? e : k;
  }
  const w = wordAt(text, i);
  if (w === null || !UNIT.has(w.lower)) return e;
  let k = skipSpaces(text, w.dot ? w.end + 1 : w.end);
  const s = k;
  let digits = 0;
  while ((isDigitAt(text, k) || isUpperAt(text, k)) && k - s < 6) {
    if (isDigitAt(text, k)) digits++;
    k++;
  }
  // `Apt. 4B`, `Suite A`; `FL NON` (a security's name) is no unit.
  if (k === s || isLetter(text, k) || (digits === 0 && k - s > 2)) return e;
  return k;
}

/**
 * Past the marks a quoted or forwarded message puts before each line (`> `, `}}`, `??? `, `| `),
 * at most four, from the start of a line at `i`.
 */
function quoteMarks(text: string, i: number): number {
  let k = i;
  while (k - i < 4) {
    const c = text.charCodeAt(k);
    if (c === 62 || c === 125 || c === 63 || c === 124) k++;
    else break;
  }
  return k;
}

/** Length of a line break at `i`: a real one, or `\n` written out; 0 if none. */
function lineBreak(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === 10) return 1;
  if (c === 13) return text.charCodeAt(i + 1) === 10 ? 2 : 1;
  if (c === 92 && text.charCodeAt(i + 1) === 110) return 2;
  return 0;
}

/**
 * Locality segments after a street line: `, Springfield, IL 62704`, `\nDPO AE 27653`,
 * `\n Amersfoort\n Netherlands 33971`. Each segment is one to four tokens that are capitalised
 * words, 2-3 letter codes or postcodes; at most three segments. Returns the new end.
 */
function localityAfter(text: string, e: number, afterUnit = false): number {
  let end = e;
  for (let seg = 0; seg < 3; seg++) {
    let i = end;
    // `Síp utca 71., Nässuma`: the dot of a house number written as in Hungarian.
    if (seg === 0 && hungarianDotComma(text, i)) i++;
    let sep = false;
    let breaks = 0;
    let commas = 0;
    // `,\n Spain`, `\n    JC`: a comma, line breaks, the indentation of the next line; bounded,
    // so the look ahead stays short.
    for (let k = 0; k < 12; k++) {
      const lb = lineBreak(text, i);
      if (lb > 0) {
        if (++breaks > 2) return end;
        i += lb;
        sep = true;
      } else if (text.charCodeAt(i) === 44) {
        if (++commas > 1) return end;
        sep = true;
        i++;
      } else if (text.charCodeAt(i) === 32) i++;
      else break;
    }
    // Without a comma or line break only a city in capitals goes on: `Apt. 542 KÖTTMANNSDORF`.
    // After a unit a city may follow with only a space: `Suite 210 Laurel Springs United States`.
    if (
      !sep &&
      !(i > end && (capitalsWord(text, i) || (afterUnit && seg === 0 && cityWord(text, i))))
    ) {
      return end;
    }
    const segEnd = localitySegment(text, i);
    if (segEnd === -1) return end;
    end = segEnd;
  }
  return end;
}

// Country names (their last word where there are several: `Czech Republic`, `New Zealand`).
const COUNTRIES = new Set(
  (
    'afghanistan albania algeria andorra angola argentina armenia australia austria ' +
    'azerbaijan bahamas bahrain bangladesh barbados belarus belgium belize benin bhutan ' +
    'bolivia herzegovina botswana brazil brunei bulgaria burundi cambodia cameroon canada ' +
    'chad chile china colombia comoros congo rica croatia cuba cyprus czechia republic ' +
    'denmark djibouti dominica ecuador egypt salvador eritrea estonia eswatini ethiopia fiji ' +
    'finland france gabon gambia georgia germany ghana greece greenland grenada guatemala ' +
    'guinea guyana haiti honduras hungary iceland india indonesia iran iraq ireland israel ' +
    'italy jamaica japan jordan kazakhstan kenya kiribati kosovo kuwait kyrgyzstan laos ' +
    'latvia lebanon lesotho liberia libya liechtenstein lithuania luxembourg madagascar ' +
    'malawi malaysia maldives mali malta mauritania mauritius mexico micronesia moldova ' +
    'monaco mongolia montenegro morocco mozambique myanmar namibia nauru nepal netherlands ' +
    'zealand nicaragua niger nigeria macedonia norway oman pakistan palau panama paraguay ' +
    'peru philippines poland portugal qatar romania russia rwanda samoa marino arabia ' +
    'senegal serbia seychelles singapore slovakia slovenia somalia africa korea spain lanka ' +
    'sudan suriname sweden switzerland syria taiwan tajikistan tanzania thailand togo tonga ' +
    'tobago tunisia turkey türkiye turkmenistan tuvalu uganda ukraine emirates kingdom ' +
    'states usa uk uruguay uzbekistan vanuatu venezuela vietnam yemen zambia zimbabwe'
  ).split(' '),
);

// Capitalised words that start a new sentence or clause, not a city.
const NOT_CITY = new Set(
  'the a an i we you he she they it my our your please thanks thank for in on at to and or but if so then this that there here when where what how why is are was'.split(
    ' ',
  ),
);

/** A part of a British or Canadian postcode at `i` (`OX1`, `4AB`, `SW1A`, `K1A`): its end or -1. */
function postcodePart(text: string, i: number): number {
  let k = i;
  let digits = 0;
  let letters = 0;
  while (k - i < 5) {
    if (isDigitAt(text, k)) digits++;
    else if (text.charCodeAt(k) >= 65 && text.charCodeAt(k) <= 90) letters++;
    else break;
    k++;
  }
  if (digits === 0 || letters === 0 || k - i < 2 || k - i > 4 || isLetter(text, k)) return -1;
  return isDigitAt(text, k) ? -1 : k;
}

/** Between `s` and `e`: a postcode (3+ digits, `OX1 4AB`), a region code in capitals, a country. */
function placeEvidence(text: string, s: number, e: number): boolean {
  let i = s;
  while (i < e) {
    if (postcodePart(text, i) !== -1) return true;
    if (isDigitAt(text, i)) {
      let k = i;
      while (isDigitAt(text, k)) k++;
      if (k - i >= 3) return true;
      i = k;
      continue;
    }
    const w = wordAt(text, i);
    if (w === null) {
      i++;
      continue;
    }
    const len = w.end - w.start;
    if (len >= 2 && len <= 3 && text.slice(w.start, w.end) === w.lower.toUpperCase()) return true;
    if (COUNTRIES.has(w.lower)) return true;
    i = w.end;
  }
  return false;
}

function cityWord(text: string, i: number): boolean {
  const w = wordAt(text, i);
  if (w === null || !isUpperAt(text, i) || NOT_CITY.has(w.lower)) return false;
  if (w.end - w.start >= 3) return true;
  // `St Hyacinthe`, `O Saviñao`: a short first word of a town's name, before a longer one.
  const e = w.dot ? w.end + 1 : w.end;
  if (text.charCodeAt(e) !== 32) return false;
  const x = wordAt(text, e + 1);
  return x !== null && isUpperAt(text, e + 1) && x.end - x.start >= 3 && !NOT_CITY.has(x.lower);
}

/** The start of a building number and a space right before `start` (not before `floor`). */
function numberBefore(text: string, start: number, floor: number): number {
  if (text.charCodeAt(start - 1) !== 32) return start;
  let b = start - 1;
  while (b > floor && b > start - 8 && isDigitAt(text, b - 1)) b--;
  if (b === start - 1 || b < floor) return start;
  if (b > 0 && (isLetter(text, b - 1) || isDigitAt(text, b - 1)) && !isEscapedLetter(text, b - 1)) {
    return start;
  }
  // `Apt. 961 01836 Democracia 9967`: the number before belongs to the unit.
  let u = b - 1;
  while (u > 0 && text.charCodeAt(u - 1) === 32) u--;
  if (text.charCodeAt(u - 1) === 46) u--;
  let w = u;
  while (w > 0 && isLetter(text, w - 1)) w--;
  if (w < u && UNIT.has(text.slice(w, u).toLowerCase())) return start;
  return b;
}

/**
 * A unit written before the street line: `Apt. 961 01836 Democracia 9967`, `Flat 3, 12 High
 * Street` (the British order). Its start, or `start`.
 */
function unitBefore(text: string, start: number, floor: number): number {
  if (!isDigitAt(text, start)) return start;
  let k = start;
  if (text.charCodeAt(k - 1) !== 32) return start;
  k--;
  if (text.charCodeAt(k - 1) === 44) k--;
  // The unit's number (`961`, `4B`), unless it already opens the street line.
  let d = k;
  while (d > floor && k - d < 6 && (isDigitAt(text, d - 1) || isUpperAt(text, d - 1))) d--;
  if (d < k && isDigitAt(text, d)) {
    if (text.charCodeAt(d - 1) !== 32) return start;
    k = d - 1;
  } else if (k !== start - 1 || !isDigitAt(text, start)) {
    return start;
  } else {
    // `Apt. 961 01836 …`: the scan started at the unit's number.
    k = start - 1;
    let n = start;
    while (isDigitAt(text, n)) n++;
    if (text.charCodeAt(n) !== 32 || !isDigitAt(text, n + 1)) return start;
  }
  if (text.charCodeAt(k - 1) === 46) k--;
  let w = k;
  while (w > floor && k - w < 12 && isLetter(text, w - 1)) w--;
  if (w === k || (w > 0 && (isLetter(text, w - 1) || isDigitAt(text, w - 1)))) return start;
  if (!isUpperAt(text, w) || !UNIT.has(text.slice(w, k).toLowerCase())) return start;
  return w;
}

function capitalsWord(text: string, i: number): boolean {
  const w = wordAt(text, i);
  if (w === null || w.end - w.start < 3) return false;
  return text.slice(w.start, w.end) === text.slice(w.start, w.end).toUpperCase();
}

// What a spreadsheet export or a template writes for an empty field (`Þorlákshöfn, nan 54843`):
// a token of the envelope that carries nothing, not the end of it.
const EMPTY_FIELD = new Set(['nan', 'null']);

/**
 * After one or two particles at `i` (`de la Vega`, `v Podkrkonoší`, `nad Sázavou`): the start of
 * the capitalised word they lead to, or -1.
 */
function afterParticles(text: string, i: number): number {
  let k = i;
  for (let n = 0; n < 2; n++) {
    const p = wordAt(text, k);
    if (p === null || !LOCALITY_PARTICLES.has(p.lower) || text.charCodeAt(p.end) !== 32) return -1;
    k = p.end + 1;
    if (isUpperAt(text, k)) return k;
  }
  return -1;
}

/**
 * A postcode of digits at `i`: `62704`, `6409`, `62704-1234`, `00-950`, `1000-001`, `383 01`. Its
 * end, or -1; a longer run of digit groups is a phone number (`26-40-53-54`, `040-430-125`).
 */
function postcodeAt(text: string, i: number): number {
  let k = i;
  while (isDigitAt(text, k) && k - i < 7) k++;
  const first = k - i;
  if (first > 6) return -1;
  const c = text.charCodeAt(k);
  if (c === 45 && first >= 2 && first <= 5) {
    const s = k + 1;
    k = s;
    while (isDigitAt(text, k) && k - s < 5) k++;
    if (k - s < 3 || k - s > 4) return -1;
  } else if (c === 32 && first === 3 && isDigitAt(text, k + 1) && isDigitAt(text, k + 2)) {
    k += 3;
  } else if (first < 4) {
    return -1;
  }
  const n = text.charCodeAt(k);
  if (isLetter(text, k) || isDigitAt(text, k) || n === 45) return -1;
  // `917 05 503`, `96 209344`: another group of digits makes it a phone number.
  if (n === 32 && isDigitAt(text, k + 1)) return -1;
  // `4.500`, `12345,67`: an amount.
  if ((n === 46 || n === 44 || n === 47) && isDigitAt(text, k + 1)) return -1;
  return k;
}

/** Past separators from `i` (spaces, one comma, one line break and its quote marks). */
function skipSeparators(text: string, i: number): number {
  let k = i;
  let breaks = 0;
  let commas = 0;
  for (let n = 0; n < 10; n++) {
    const lb = lineBreak(text, k);
    if (lb > 0 && breaks++ === 0) k = quoteMarks(text, k + lb);
    else if (text.charCodeAt(k) === 44 && commas++ === 0) k++;
    else if (text.charCodeAt(k) === 32) k++;
    else break;
  }
  return k;
}

/**
 * A short number in a locality at `i`: a district after a place's name (`Chrudim 3 PA`, `Melník 1
 * Czech Republic`) when `named`, or a numeric region code before the postcode (`, 41\n 93503`).
 * Its end, or -1.
 */
function shortNumberAt(text: string, i: number, named: boolean): number {
  let k = i;
  while (isDigitAt(text, k) && k - i < 4) k++;
  if (k - i > (named ? 2 : 3) || isLetter(text, k) || isDigitAt(text, k)) return -1;
  if (!named) {
    // Only right after a comma, before a postcode: a line of digit groups is a phone number.
    let b = i - 1;
    while (b > 0 && text.charCodeAt(b) === 32) b--;
    const next = skipSeparators(text, k);
    return text.charCodeAt(b) === 44 && next > k && postcodeAt(text, next) !== -1 ? k : -1;
  }
  const c = text.charCodeAt(k);
  if (k === text.length || c === 44 || lineBreak(text, k) > 0) return k;
  // `Chrudim 3 PA`, `Praha 1 (Czech Republic)`.
  return c === 32 && (isUpperAt(text, k + 1) || text.charCodeAt(k + 1) === 40) ? k : -1;
}

function localitySegment(text: string, s: number): number {
  let i = s;
  let tokens = 0;
  let end = -1;
  while (tokens < 6) {
    const pc = postcodePart(text, i);
    if (pc !== -1) {
      end = pc;
    } else if (isDigitAt(text, i)) {
      let k = postcodeAt(text, i);
      if (k === -1) k = shortNumberAt(text, i, end !== -1);
      if (k === -1) return end;
      end = k;
    } else if (text.charCodeAt(i) === 40) {
      // `Cyprus (Greek)`: a qualifier in parentheses after the name.
      const w = end === -1 ? null : wordAt(text, i + 1);
      if (w === null || !isUpperAt(text, i + 1) || text.charCodeAt(w.end) !== 41) return end;
      end = w.end + 1;
    } else {
      const w = wordAt(text, i);
      if (w === null) return end;
      if (!isUpperAt(text, i) && !EMPTY_FIELD.has(w.lower)) return end;
      // A phone or mail label starts the next part of a signature, not the address; a unit
      // word, another street line.
      if (
        w.lower === 'mobile' ||
        w.lower === 'phone' ||
        w.lower === 'fax' ||
        w.lower === 'desk' ||
        (UNIT.has(w.lower) && isDigitAt(text, skipSpaces(text, w.dot ? w.end + 1 : w.end)))
      ) {
        return end;
      }
      end = w.end;
    }
    tokens++;
    if (text.charCodeAt(end) !== 32) break;
    i = end + 1;
    if (!isDigitAt(text, i) && !isUpperAt(text, i) && text.charCodeAt(i) !== 40) {
      const w = wordAt(text, i);
      if (w !== null && EMPTY_FIELD.has(w.lower)) continue;
      // `Reguengos de Monsaraz`: particles go on only before another capitalised word.
      const k = afterParticles(text, i);
      if (k === -1) break;
      i = k;
    }
  }
  return end;
}

/**
 * Cheap test before a word is read: a street that starts with a word starts with a capital (or
 * a dotted prefix such as `ul.`) and has its house number within a few words.
 */
function mayStartStreet(text: string, i: number, digit: number): boolean {
  if (digit - i > 64) return false;
  if (isUpperAt(text, i)) return true;
  let e = i;
  while (e - i < 4 && isLetter(text, e)) e++;
  return text.charCodeAt(e) === 46 && e - i <= 3;
}

function cueBefore(text: string, start: number): boolean {
  const floor = Math.max(0, start - CUE_WINDOW);
  // Past the separators before the candidate (spaces, `:`, tabs, line breaks, written-out `\n`),
  // then the last word, looked up once: most contexts end in no cue's last word.
  let e = start;
  while (e > floor) {
    const c = text.charCodeAt(e - 1);
    if (c === 32 || c === 58 || c === 10 || c === 9) e--;
    else if (c === 110 && isEscapedLetter(text, e - 1)) e -= 2;
    else break;
  }
  let w = e;
  while (w > floor && isLetter(text, w - 1) && !isEscapedLetter(text, w - 1)) w--;
  if (w === e) return false;
  const cues = CUES_BY_LAST_WORD.get(text.slice(w, e).toLowerCase());
  if (cues === undefined) return false;
  for (const bare of cues) {
    const s = e - bare.length;
    if (s < floor || text.slice(s, e).toLowerCase() !== bare) continue;
    if (s === 0 || !isLetter(text, s - 1) || isEscapedLetter(text, s - 1)) return true;
  }
  return false;
}

function isAsciiAlnum(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

/**
 * The end of the run of letters and digits from `i`. The scan's own loop, small enough for V8 to
 * keep apart from scanStreetAddresses (too large to inline helpers into): it visits most of the
 * text's characters, and isLetter/isDigitAt called per character were half of the detector's time
 * on prose (issue 16). ASCII is read as codes; other characters as isLetter reads them.
 */
function tokenEnd(text: string, i: number): number {
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c < 128) {
      if (!isAsciiAlnum(c)) break;
    } else if (!LETTER.test(text[i]!)) break;
    i++;
  }
  return i;
}

export function scanStreetAddresses(view: TextView, type = 'STREET_ADDRESS'): Finding[] {
  const text = view.text;
  const out: Finding[] = [];
  const n = text.length;
  // The next digit at or after a position, found by a pointer that only moves forward.
  let digit = -1;
  const runs = view.digitRuns();
  let run = 0;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    // Spaces and punctuation start nothing: the cheapest case first. The letter of a written-out
    // escape (`\nUSNS Nagel`) is a line break, not the start of a word.
    if ((c < 128 && !isAsciiAlnum(c)) || (c === 110 && isEscapedLetter(text, i))) {
      i++;
      continue;
    }
    const prev = text.charCodeAt(i - 1);
    const boundary =
      i === 0 ||
      !(
        (prev < 128 ? isAsciiAlnum(prev) : isLetter(text, i - 1)) ||
        prev === 46 ||
        prev === 45 ||
        prev === 47 ||
        prev === 58 ||
        prev === 36 ||
        prev === 35 ||
        // `$1,200 Main Street`, `€300 Oak Avenue`: part of an amount.
        (prev === 44 && isDigitAt(text, i - 2)) ||
        prev === 0x20ac ||
        prev === 0xa3 ||
        prev === 0xa5 ||
        prev === 0x20b9
      ) ||
      isEscapedLetter(text, i - 1);
    let end = -1;
    let start = i;
    // `address to Liberata and Nørrebrovænget 41`: a corner whose street line comes second; the
    // cue before the corner counts for it, and the corner is the address.
    const corner = boundary ? cornerBefore(text, i) : -1;
    const cueAt = corner !== -1 && cueBefore(text, corner) ? corner : i;
    if (boundary && c >= 48 && c <= 57 && !labelledNumber(text, i)) {
      end = numberFirst(text, i, cueAt);
      if (end === -1) {
        // `0348 65 R. Mongi Bali`: a building number before a numbered street.
        const n1 = numberAt(text, i);
        if (n1 !== -1 && text.charCodeAt(n1) === 32 && isDigitAt(text, n1 + 1)) {
          const e2 = numberFirst(text, n1 + 1, i);
          if (e2 !== -1) end = e2;
        }
      }
    } else if (boundary) {
      if (digit < i) {
        // The view's digit runs (shared with the numeric detectors): the first that ends after
        // `i` holds the next digit.
        while (run < runs.length && runs[run + 1]! <= i) run += 2;
        digit = run < runs.length ? Math.max(runs[run]!, i) : n;
      }
      const w = mayStartStreet(text, i, digit) ? wordAt(text, i) : null;
      if (w !== null) {
        end = boxAddress(text, w);
        if (end === -1) end = nameFirst(text, w, cueAt);
        if (end === -1) {
          i = w.end;
          continue;
        }
        start = w.start;
      }
    }
    if (end === -1) {
      // More than 64 characters before the next digit nothing can start (mayStartStreet; a
      // number-first street starts at its digit): the scan resumes at the last space before
      // those 64, a position it would have reached token by token (it steps onto every space),
      // with nothing found on the way. Prose between numbers is skipped without reading it.
      if (digit >= i && digit - i > 65) {
        const space = text.lastIndexOf(' ', digit - 65);
        if (space > i) {
          i = space;
          continue;
        }
      }
      // Skip the rest of this token (a candidate starts only at a token's start).
      i = tokenEnd(text, i + 1);
      continue;
    }
    // `0462 Ålfjordgata 150`, `141 P.O. Box 101`: a building number written before the street.
    const floor = out.length > 0 ? out[out.length - 1]!.end : 0;
    start = unitBefore(text, numberBefore(text, start, floor), floor);
    if (cueAt !== i && cueAt >= floor && start === i) start = cueAt;
    // `Ilmalankuja 57 Harrison Valley\n Suite 769`: an estate or district named like a street.
    end = namedPlaceAfter(text, end);
    // `Suite 629 Suite 680`, `Apt. 874 Apt. 027`: a unit may be written twice.
    const unitEnd = unitAfter(text, unitAfter(text, end));
    const placeEnd = localityAfter(text, unitEnd, unitEnd !== end);
    // `788 Fitjabraut 87, Keflavík`: a bare street line and a place after a comma on the same
    // line is a street and a town named in passing; the place joins only with an envelope's
    // evidence (a postcode, a state code, a country), as `, Springfield, IL 62704` has.
    end =
      unitEnd === end &&
      (text.charCodeAt(end) === 44 || hungarianDotComma(text, end)) &&
      !placeEvidence(text, end, placeEnd)
        ? end
        : placeEnd;
    out.push({ type, start, end });
    // `the corner of 99 Derry Street and Lillestøl Stream`: the cross street has no number.
    const cross = crossStreet(text, end);
    if (cross !== null) {
      out.push({ type, start: cross[0], end: cross[1] });
      end = cross[1];
    }
    i = end;
  }
  return out;
}

/** A street type, or its plural as USPS lists them (`Points`, `Burgs`, `Greens`). */
function isStreetType(lower: string): boolean {
  return (
    SUFFIX.has(lower) ||
    (lower.length >= 4 && lower.endsWith('s') && SUFFIX.has(lower.slice(0, -1)))
  );
}

/**
 * After a street line, one to three capitalised words ending in a street type (`Harrison
 * Valley`, `Petr Points`, `Rolando Run`) name an estate or district that is part of the address
 * when the line ends there (a line break, a comma, the end of the text) or a unit follows. The
 * new end, or `e`.
 */
function namedPlaceAfter(text: string, e: number): number {
  let i = e;
  if (text.charCodeAt(i) === 46 && isDigitAt(text, i - 1)) i++; // `Erzsébet tér 83. Rolando Run`
  if (text.charCodeAt(i) !== 32) return e;
  i++;
  for (let k = 0; k < 3; k++) {
    const w = wordAt(text, i);
    if (w === null || !isUpperAt(text, i) || NOT_CITY.has(w.lower) || UNIT.has(w.lower)) return e;
    if (k > 0 && isStreetType(w.lower)) {
      const c = text.charCodeAt(w.end);
      const ends =
        w.end === text.length ||
        c === 44 ||
        lineBreak(text, w.end) > 0 ||
        (c === 32 && unitAfter(text, w.end) !== w.end);
      return ends ? w.end : e;
    }
    if (text.charCodeAt(w.end) !== 32) return e;
    i = w.end + 1;
  }
  return e;
}

/**
 * After a street, ` and ` then one to three capitalised words ending in a street type (`and
 * Pisano Row`, `and Mstislav Radial St.`): the other street of a corner. [start, end] or null.
 */
function crossStreet(text: string, e: number): [number, number] | null {
  let a = e;
  // `Via Pisanelli 89 St. and …`: a type abbreviation written after the number is skipped.
  if (text.charCodeAt(a) === 46 && isDigitAt(text, a - 1)) a++;
  if (text.startsWith(' St. and ', a)) a += 4;
  if (!text.startsWith(' and ', a)) return null;
  let i = a + 5;
  const start = i;
  for (let k = 0; k < 4; k++) {
    const w = wordAt(text, i);
    if (w === null || !isUpperAt(text, i)) return null;
    if (k > 0 && isStreetType(w.lower)) {
      let end = w.dot ? w.end + 1 : w.end;
      const t = wordAt(text, skipSpaces(text, end));
      // `Mstislav Radial St.`: a type abbreviation after the type.
      if (t !== null && t.start === end + 1 && SUFFIX.has(t.lower) && isUpperAt(text, t.start)) {
        end = t.dot ? t.end + 1 : t.end;
      }
      return [start, end];
    }
    if (text.charCodeAt(w.end) !== 32) return null;
    i = w.end + 1;
  }
  return null;
}

export function streetAddressDetector(): Detector {
  return { type: 'STREET_ADDRESS', scan: (view: TextView) => scanStreetAddresses(view) };
}
