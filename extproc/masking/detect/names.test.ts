import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CompactSet, loaderFlags, personNameCounts, personNames, surnameShaped } from './names.js';

test('CompactSet: exact membership, whatever the hash', () => {
  const words = ['ada', 'lovelace', 'jurković', 'ζωή', 'o’brien', 'an', 'anne-lotte'];
  const set = new CompactSet(words.join('\n'));
  assert.equal(set.size, words.length);
  for (const w of words) assert.ok(set.has(w), w);
  // Prefixes, extensions and neighbours of a stored word are not in it.
  for (const w of ['', 'a', 'ad', 'adaa', 'lovelac', 'ada\nlovelace', 'jurkovic', 'anne', 'x']) {
    assert.equal(set.has(w), false, JSON.stringify(w));
  }
  // Many words in a small table: every probe chain ends, and only stored words are found.
  const many = Array.from({ length: 5000 }, (_, i) => `w${i.toString(36)}`);
  const big = new CompactSet(many.join('\n'));
  assert.equal(big.size, 5000);
  for (const w of many) assert.ok(big.has(w), w);
  for (let i = 5000; i < 10000; i++) assert.equal(big.has(`w${i.toString(36)}`), false);
  assert.equal(new CompactSet('').size, 0);
  assert.equal(new CompactSet('').has('a'), false);
});

test('the name lists are built once, out of process, and answer as the sources say', () => {
  const names = personNames();
  assert.equal(personNames(), names, 'one set per process, shared');
  assert.ok(names.size > 200_000, `${names.size} names`);
  const { curated, added } = personNameCounts();
  assert.ok(curated > 30_000 && added > 100_000, `${curated} + ${added}`);
  // Curated, census and faker-locale names; not English words, nor the words taken out.
  for (const w of ['ada', 'patricia', 'csanád', 'leigha']) {
    assert.ok(names.has(w), w);
  }
  for (const w of ['great', 'service', 'january', 'monday', 'docker', 'Ada']) {
    assert.equal(names.has(w), false, w);
  }
  // A surname ending makes a name where no list has it, unless the word is English (`person`).
  for (const w of ['jurković', 'sultygov', 'björgvinsdóttir']) assert.ok(surnameShaped(w), w);
  assert.equal(surnameShaped('person'), false);
});

test('the build runs with the loader flags of this process and no others', () => {
  assert.deepEqual(
    loaderFlags([
      '--import',
      'tsx',
      '--inspect=9229',
      '--max-old-space-size=100',
      '--require=./x.cjs',
      '--cpu-prof',
      '--conditions',
      'dev',
      '--loader',
    ]),
    ['--import', 'tsx', '--require=./x.cjs', '--conditions', 'dev'],
  );
});
