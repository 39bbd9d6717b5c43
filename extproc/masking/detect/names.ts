// The dictionaries the PERSON detector reads, built once per process, the first time a policy
// that lists PERSON is compiled, and shared by every compiled policy after that.
//
// They are built by names-build.ts in a child process (same Node, same loader): reading the
// sources (three name lists, faker's locales, an English word list; see that file) costs about a
// second of CPU and ~80 MiB while it runs, and faker's module alone would keep ~20 MiB of heap
// for the life of a process that loaded it. What the sidecar keeps is compact: each list is one
// string of its words and a table of where they start, hashed (CompactSet).
import { spawnSync } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A read-only set of lower-cased words. */
export interface WordSet {
  has(word: string): boolean;
  readonly size: number;
}

/**
 * Words kept in one string (`\nada\nbob\n…`) and an open-addressing table of where each
 * starts, keyed by a hash of the word: a few bytes per word where a Set of strings costs ~60,
 * and a lookup allocates nothing. Membership is exact (the hash only picks where to look).
 */
export class CompactSet implements WordSet {
  readonly size: number;
  private readonly text: string;
  private readonly slots: Int32Array;
  private readonly mask: number;

  /** `lines`: distinct words, one a line (`ada\nbob`), none empty. */
  constructor(lines: string) {
    const text = `\n${lines}\n`;
    let count = 0;
    for (let i = text.indexOf('\n', 1); i !== -1; i = text.indexOf('\n', i + 1)) count++;
    let capacity = 8;
    while (capacity < count * 2) capacity *= 2;
    const slots = new Int32Array(capacity);
    const mask = capacity - 1;
    let size = 0;
    // Each word once, hashed where it lies: no string per word is made.
    for (let at = 1; at < text.length;) {
      const end = text.indexOf('\n', at);
      if (end > at) {
        let i = hashRange(text, at, end) & mask;
        while (slots[i] !== 0) i = (i + 1) & mask;
        slots[i] = at;
        size++;
      }
      at = end + 1;
    }
    this.text = text;
    this.slots = slots;
    this.mask = mask;
    this.size = size;
  }

  has(word: string): boolean {
    const text = this.text;
    const mask = this.mask;
    for (let i = hashRange(word, 0, word.length) & mask; ; i = (i + 1) & mask) {
      const at = this.slots[i]!;
      if (at === 0) return false;
      if (text.charCodeAt(at + word.length) === 10 && text.startsWith(word, at)) return true;
    }
  }
}

/** FNV-1a over the UTF-16 code units of `s` from `start` to `end`. */
function hashRange(s: string, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

interface Lists {
  names: CompactSet;
  english: CompactSet;
  curated: number;
  added: number;
}

let lists: Lists | undefined;

function load(): Lists {
  if (lists !== undefined) return lists;
  // The build script beside this module, as this module runs: `.ts` under a TypeScript loader
  // (tests, the bench), `.js` once compiled.
  const here = fileURLToPath(import.meta.url);
  const script =
    here.slice(0, -extname(here).length).replace(/names$/, 'names-build') + extname(here);
  const run = spawnSync(process.execPath, [...loaderFlags(process.execArgv), script], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: 120_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (run.error !== undefined || run.status !== 0) {
    const why =
      run.error?.message ?? `exit ${run.status ?? run.signal}: ${run.stderr.slice(0, 400)}`;
    throw new Error(`building the PERSON name lists failed (${why})`);
  }
  const out = run.stdout;
  const first = out.indexOf('\n');
  const split = out.indexOf('\n\n', first);
  const [curated, added] = out.slice(0, first).split(' ').map(Number);
  lists = {
    names: new CompactSet(out.slice(first + 1, split)),
    english: new CompactSet(out.slice(split + 2, out.length - 1)),
    curated: curated!,
    added: added!,
  };
  return lists;
}

/**
 * The flags that make this Node load the code as it does here (`--import tsx`, `--require …`,
 * `--loader …`, `--conditions …`), and none other (`--inspect` would clash, `--cpu-prof` would
 * profile the build).
 */
export function loaderFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  const withValue = new Set([
    '--import',
    '--require',
    '-r',
    '--loader',
    '--experimental-loader',
    '--conditions',
    '-C',
  ]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.split('=', 1)[0]!;
    if (!withValue.has(name)) continue;
    if (a.includes('=')) out.push(a);
    else if (i + 1 < argv.length) out.push(a, argv[++i]!);
  }
  return out;
}

/** Lower-cased names of people; built on first use (about a second of CPU, see load). */
export function personNames(): WordSet {
  return load().names;
}

/** How many names each source gave (for the README and the bench). */
export function personNameCounts(): { curated: number; added: number } {
  const { curated, added } = load();
  return { curated, added };
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

/**
 * True when `lower` has a surname ending and is not an English word (`Jurković`, `Sultygov`,
 * `Björgvinsdóttir`; not `Moscow`… which has none, nor `Seven` which is English).
 */
export function surnameShaped(lower: string): boolean {
  if (lower.length < 5 || !hasSurnameEnding(lower)) return false;
  return !load().english.has(lower);
}

export function hasSurnameEnding(lower: string): boolean {
  for (let n = Math.min(MAX_ENDING, lower.length - 3); n >= 2; n--) {
    if (ENDING_SET.has(lower.slice(-n))) return true;
  }
  return false;
}

/**
 * Builds the lists now: a detector set is built when a policy is compiled, so the first request
 * that scans for names does not pay the build (about a second).
 */
export function loadNameLists(): void {
  load();
}
