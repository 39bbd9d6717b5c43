// Builds the lists names.ts serves, in a process of its own: names.ts runs this file with the
// same Node and loader and reads what it prints. Reading the sources costs about a second and
// ~80 MiB while it runs (faker's ~60 locales alone keep ~20 MiB of heap for as long as the
// process that loaded them lives); the sidecar keeps only the result, a few MiB.
//
// The sources, all shipped inside npm packages and read from disk, never fetched:
// - @cspell/dict-people-names: ~39,000 given names and surnames, curated (no common words);
// - humannames: ~197,000 given names and surnames gathered from censuses and social sites, with
//   broad international coverage (Czech, Hungarian, Nordic, Slavic, Japanese…), but also many
//   English words (`With`, `Great`, `Service`). Its names that are English words are left out
//   unless the curated list has them too (`Grace` yes, `Great` no);
// - @faker-js/faker: the given names and surnames it keeps per locale (Czech, Hungarian, Polish,
//   Croatian, Finnish, Dutch, Turkish, Vietnamese… ~60 locales; Cyrillic and Greek ones
//   transliterated to Latin letters as they are written in English text). Its English locales are
//   left out: the lists above cover English names, and measured they add nothing;
// - word-list: ~274,000 English words (SCOWL), used only for that filter and for the English
//   words with a surname ending (surnameShaped), not kept otherwise.
// Then the words that are names in those lists but in prose are mostly something else.
//
// Output on stdout, one word a line: `<curated> <added>`, the names, an empty line, the English
// words with a surname ending.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasSurnameEnding } from './names.js';

function build(): string {
  const require = createRequire(import.meta.url);
  const set = new Set<string>();
  // The package exports only its cspell config; the word list sits beside it.
  const cspell = require.resolve('@cspell/dict-people-names');
  for (const w of words(readFileSync(join(dirname(cspell), 'dict', 'people-names.txt'), 'utf8'))) {
    set.add(w);
  }
  const curated = set.size;
  const more = new Set<string>();
  const human = require.resolve('humannames/list.txt');
  for (const w of words(readFileSync(human, 'utf8'))) if (!set.has(w)) more.add(w);
  for (const w of localeNames(require)) if (!set.has(w)) more.add(w);
  const endings = new Set<string>();
  for (const w of words(readFileSync(wordListPath(), 'utf8'))) {
    more.delete(w);
    if (hasSurnameEnding(w)) endings.add(w);
  }
  for (const w of more) set.add(w);
  for (const w of NOT_NAMES) set.delete(w);
  return `${curated} ${more.size}\n${[...set].join('\n')}\n\n${[...endings].join('\n')}\n`;
}

interface FakerLocale {
  person?: { first_name?: unknown; last_name?: unknown; middle_name?: unknown };
}

/**
 * The person names of every non-English faker locale, lower-cased, in Latin letters. faker is
 * an ES module; Node 20.19+ loads it synchronously with require (about 0.3 s, once).
 */
function* localeNames(require: NodeRequire): Generator<string> {
  const { allLocales } = require('@faker-js/faker') as {
    allLocales: Record<string, FakerLocale>;
  };
  for (const [locale, def] of Object.entries(allLocales)) {
    if (locale.startsWith('en') || def.person === undefined) continue;
    const { first_name, last_name, middle_name } = def.person;
    for (const list of [first_name, last_name, middle_name]) {
      for (const entry of strings(list)) {
        for (const part of entry.split(/[\s]+/)) {
          const w = latin(part.toLowerCase());
          if (w !== undefined && w.length >= 2) yield w;
        }
      }
    }
  }
}

/** Strings in a faker definition: an array, or an object of arrays (`{ female, male }`). */
function* strings(v: unknown): Generator<string> {
  if (typeof v === 'string') yield v;
  else if (Array.isArray(v)) for (const x of v) yield* strings(x);
  else if (v !== null && typeof v === 'object') for (const x of Object.values(v)) yield* strings(x);
}

// Cyrillic and Greek letters as English text writes them (`Балашова` → `balashova`).
const TRANSLIT: Record<string, string> = {
  а: 'a',
  б: 'b',
  в: 'v',
  г: 'g',
  д: 'd',
  е: 'e',
  ё: 'e',
  ж: 'zh',
  з: 'z',
  и: 'i',
  й: 'y',
  к: 'k',
  л: 'l',
  м: 'm',
  н: 'n',
  о: 'o',
  п: 'p',
  р: 'r',
  с: 's',
  т: 't',
  у: 'u',
  ф: 'f',
  х: 'kh',
  ц: 'ts',
  ч: 'ch',
  ш: 'sh',
  щ: 'shch',
  ъ: '',
  ы: 'y',
  ь: '',
  э: 'e',
  ю: 'yu',
  я: 'ya',
  і: 'i',
  ї: 'yi',
  є: 'ye',
  ґ: 'g',
  ј: 'j',
  љ: 'lj',
  њ: 'nj',
  ћ: 'ć',
  ђ: 'đ',
  џ: 'dž',
  ѓ: 'gj',
  ќ: 'kj',
  ѕ: 'dz',
  α: 'a',
  ά: 'a',
  β: 'v',
  γ: 'g',
  δ: 'd',
  ε: 'e',
  έ: 'e',
  ζ: 'z',
  η: 'i',
  ή: 'i',
  θ: 'th',
  ι: 'i',
  ί: 'i',
  ϊ: 'i',
  ΐ: 'i',
  κ: 'k',
  λ: 'l',
  μ: 'm',
  ν: 'n',
  ξ: 'x',
  ο: 'o',
  ό: 'o',
  π: 'p',
  ρ: 'r',
  σ: 's',
  ς: 's',
  τ: 't',
  υ: 'y',
  ύ: 'y',
  ϋ: 'y',
  ΰ: 'y',
  φ: 'f',
  χ: 'ch',
  ψ: 'ps',
  ω: 'o',
  ώ: 'o',
};
const LATIN = /^[\p{Script=Latin}'’-]+$/u;
const CYRILLIC_OR_GREEK = /^[\p{Script=Cyrillic}\p{Script=Greek}'’-]+$/u;

/** `w` in Latin letters (transliterated from Cyrillic or Greek), or undefined for other scripts. */
function latin(w: string): string | undefined {
  if (LATIN.test(w)) return w;
  if (!CYRILLIC_OR_GREEK.test(w)) return undefined;
  let out = '';
  for (const c of w) {
    const t = TRANSLIT[c];
    if (t === undefined && !(c === "'" || c === '’' || c === '-')) return undefined;
    out += t ?? c;
  }
  return out;
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

process.stdout.write(build());
