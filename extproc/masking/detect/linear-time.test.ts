import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDetectors } from './index.js';

// Names and addresses look around each candidate (cues, titles, tails, names repeated elsewhere
// in the text). Any of those walking the text again per candidate would make a prompt of
// capitalised words quadratic. Not a wall-clock threshold: the CPU time of 4× the input must
// stay near 4× (quadratic work would be 16×), the fastest of a few runs on a warmed-up set.
const set = createDetectors({ types: ['PERSON', 'STREET_ADDRESS', 'DATE_OF_BIRTH'] });

function cpuMs(text: string): number {
  const runs: number[] = [];
  for (let r = 0; r < 3; r++) {
    const c0 = process.cpuUsage();
    set.detect(text);
    const c = process.cpuUsage(c0);
    runs.push((c.user + c.system) / 1000);
  }
  // The fastest run: other processes on a shared machine only ever add time.
  return Math.min(...runs);
}

function sized(unit: string, bytes: number): string {
  return unit.repeat(Math.ceil(bytes / unit.length)).slice(0, bytes);
}

const UNITS: [string, string][] = [
  ['capitalised words', 'Ada Lovelace Zork Qwerty Jurković and Caird, '],
  ['one long chain of capitalised words', 'Ada Zork Qwerty Blim Vrok '],
  ['repeated names and lists', "Cecilie Josefsen, Cecilie and Jones, Dorothy's address "],
  ['titles and roles', 'Mr. Producer Dr songwriter '],
  ['possessives', "Ada's Bob's Zork's "],
  ['street lines with tails', '12 Main St Apt. 4 Springfield, IL 62704\n'],
  ['untyped streets', 'Spinatsch 94\nUulu, PR 13249 '],
  ['numbers before streets', '0462 1 2 3 Ålfjordgata 150 '],
  ['units and cities', 'Suite 1 Laurel Springs United States '],
  ['name questions and vocatives', "What's your name? User: Ada Zork, can I "],
  ['quoted units and corners', '> 12 Main St and Pisano Row\n> Apt. 1\n'],
  ['labels before names', 'Billing address: Krisztián Péter\\n'],
  ['units before streets and estates', 'Apt. 1 2 3 Main St Harrison Park Valley Ways\n Flat 4, '],
  ['towns after commas and dotted numbers', '5 Main Rd, Leeds Oslo, 6 Tas vezér u. 7. Suite 8 '],
  ['short words after a unit', '1 Main St Apt. 2 O O St O '],
  ['locality lines', '1 Rue du A B\\n    Cenes de la v Vega 3\\n, 41\\n 93503-123 (Greek) nan , '],
  ['cues and look-alikes', 'drops you off at Ab 12 order 3 Main St since 2019 C/ Bc 4 $1,2 '],
  ['birth dates printed day first', 'DOB 12APR85 12-Apr-1985 12. April 19 born 1 '],
  [
    'birth words and dates in many languages',
    'née 12. 4. 19 születési 1985. május 1 生年月日1985年4 ',
  ],
];

for (const [name, unit] of UNITS) {
  test(`names and addresses stay linear: 1 MB of ${name}`, () => {
    cpuMs(sized(unit, 64 * 1024)); // warm up
    const small = Math.max(cpuMs(sized(unit, 256 * 1024)), 1);
    const large = cpuMs(sized(unit, 1024 * 1024));
    assert.ok(
      large / small < 9,
      `${name}: 4× the text took ${(large / small).toFixed(1)}× the time`,
    );
  });
}
