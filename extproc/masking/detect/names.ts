// The dictionaries the PERSON detector reads, all shipped inside npm packages and read from disk
// once, never fetched:
// - @cspell/dict-people-names: ~39,000 given names and surnames, curated (no common words);
// - humannames: ~197,000 given names and surnames gathered from censuses and social sites, with
//   broad international coverage (Czech, Hungarian, Nordic, Slavic, Japanese…), but also many
//   English words (`With`, `Great`, `Service`). Its names that are English words are left out
//   unless the curated list has them too (`Grace` yes, `Great` no);
// - word-list: ~274,000 English words (SCOWL), used only for that filter and not kept.
// Then the words that are names in those lists but in prose are mostly something else.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let names: ReadonlySet<string> | undefined;

/** Lower-cased names of people; loaded on first use (about 100 ms, 15 MB). */
export function personNames(): ReadonlySet<string> {
  if (names === undefined) {
    const require = createRequire(import.meta.url);
    const set = new Set<string>();
    // The package exports only its cspell config; the word list sits beside it.
    const cspell = require.resolve('@cspell/dict-people-names');
    for (const w of words(
      readFileSync(join(dirname(cspell), 'dict', 'people-names.txt'), 'utf8'),
    )) {
      set.add(w);
    }
    const curated = set.size;
    const more = new Set<string>();
    const human = require.resolve('humannames/list.txt');
    for (const w of words(readFileSync(human, 'utf8'))) if (!set.has(w)) more.add(w);
    const endings = new Set<string>();
    for (const w of words(readFileSync(wordListPath(), 'utf8'))) {
      more.delete(w);
      if (hasSurnameEnding(w)) endings.add(w);
    }
    english ??= endings;
    for (const w of more) set.add(w);
    for (const w of NOT_NAMES) set.delete(w);
    names = set;
    loaded = { curated, added: more.size };
  }
  return names;
}

let loaded = { curated: 0, added: 0 };

/** How many names each source gave (for the README and the bench). */
export function personNameCounts(): { curated: number; added: number } {
  personNames();
  return loaded;
}

// word-list exports only an ES module that names its file; the file sits beside it.
function wordListPath(): string {
  return join(dirname(fileURLToPath(import.meta.resolve('word-list'))), 'words.txt');
}

function* words(text: string): Generator<string> {
  let i = 0;
  while (i < text.length) {
    let e = text.indexOf('\n', i);
    if (e === -1) e = text.length;
    const w = text.slice(i, e).trim();
    i = e + 1;
    if (w.length < 2 || w.startsWith('#')) continue;
    yield w.toLowerCase();
  }
}

// Endings that mark a word as a surname in the languages that form surnames by suffix: Icelandic
// patronymics (-son, -sson, -dóttir), South Slavic (-ović, -ić), Czech and Slovak (-ová, -ský),
// Polish (-ski, -cka), East Slavic and Caucasian (-enko, -ov, -eva, -shvili, -dze), Romanian
// (-escu), Greek (-poulos, -akis, -idis), Turkish (-oğlu), Finnish (-nen, -aho, -lä), Nordic
// (-sen, -ssen, -strøm) and Japanese given names (-hiko, -rou, -suke). A word with one of these
// that is not an English word reads as a name where a known name would (see person.ts).
const SURNAME_ENDINGS = [
  'sson',
  'son',
  'sdóttir',
  'dóttir',
  'dottir',
  'ović',
  'ević',
  'vić',
  'ić',
  'ová',
  'ská',
  'ský',
  'cká',
  'ski',
  'ska',
  'cki',
  'cka',
  'wicz',
  'enko',
  'chenko',
  'ov',
  'ova',
  'ev',
  'eva',
  'yev',
  'yeva',
  'shvili',
  'dze',
  'escu',
  'eanu',
  'poulos',
  'poulou',
  'akis',
  'idis',
  'opoulos',
  'oğlu',
  'oglu',
  'nen',
  'inen',
  'ainen',
  'aho',
  'lä',
  'sen',
  'ssen',
  'strøm',
  'ström',
  'qvist',
  'hiko',
  'rou',
  'tarou',
  'suke',
  'yuki',
  'hiro',
];
const ENDING_SET = new Set(SURNAME_ENDINGS);
const MAX_ENDING = Math.max(...SURNAME_ENDINGS.map((e) => e.length));

let english: ReadonlySet<string> | undefined;

/**
 * True when `lower` has a surname ending and is not an English word (`Jurković`, `Sultygov`,
 * `Björgvinsdóttir`; not `Moscow`… which has none, nor `Seven` which is English).
 */
export function surnameShaped(lower: string): boolean {
  if (lower.length < 5 || !hasSurnameEnding(lower)) return false;
  return !englishWords().has(lower);
}

function hasSurnameEnding(lower: string): boolean {
  for (let n = Math.min(MAX_ENDING, lower.length - 3); n >= 2; n--) {
    if (ENDING_SET.has(lower.slice(-n))) return true;
  }
  return false;
}

/**
 * Loads both lists now: a detector set is built when a policy is compiled, so the first request
 * that scans for names does not pay the load (about a second).
 */
export function loadNameLists(): void {
  personNames();
  englishWords();
}

/** The English words of word-list that have a surname ending, kept for surnameShaped. */
function englishWords(): ReadonlySet<string> {
  if (english === undefined) {
    const set = new Set<string>();
    for (const w of words(readFileSync(wordListPath(), 'utf8')))
      if (hasSurnameEnding(w)) set.add(w);
    english = set;
  }
  return english;
}

// In the name lists, but written capitalised in prose mostly as something else: calendar words,
// greetings and sentence openers, places, brands, and words of addresses and forms. Measured on
// the labelled sets and the project's own prose; a name lost here is still found after a title
// or a cue ("my name is May").
const NOT_NAMES = (
  'january february march april may june july august september october november december ' +
  'monday tuesday wednesday thursday friday saturday sunday jan feb mar apr jun jul aug sep ' +
  'sept oct nov dec mon tue wed thu fri sat sun ' +
  'will can may might must shall hope grace faith joy love dawn summer winter autumn spring ' +
  'god lord king queen prince princess bishop father mother brother sister son daughter ' +
  'hi hello hey dear thanks thank yes no ok okay please sorry well so then now here there ' +
  'the a an and or but if this that these those what when where why how who which ' +
  'north south east west new old great little big long young street road lane park hill ' +
  'lake river bay mount port field wood woods ford bridge church hall court rose lily ' +
  'apple amazon google windows jordan paris london berlin florence victoria georgia ' +
  'virginia carolina dakota washington lincoln jackson houston austin dallas phoenix ' +
  'orlando denver chester lancaster york boston sydney china india israel chad ' +
  'bill page mark art rich sky star gay bob guy major general private ' +
  'name address phone mobile desk fax date email mail website info personal customer ' +
  'user bot admin office home work team group company bank union city state county ' +
  'black white green brown gray grey red gold silver ' +
  'helm service azure true false running converse claude gemini lua kind roles role node ' +
  'deno bun rust go java ruby perl swift julia dart elixir envoy kong istio redis postgres ' +
  'mongo kafka spark hadoop jenkins docker ubuntu debian fedora mint arch alpine chrome ' +
  'safari opera edge siri alexa cortana bard llama mistral grok sonnet haiku opus ' +
  'just then so how nice good well first last check read keep call show tell fix test close ' +
  'every many most few both such lease warning gen real'
).split(' ');
