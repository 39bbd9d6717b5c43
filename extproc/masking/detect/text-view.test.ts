import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createTextView } from './text-view.js';

test('pure ASCII is scanned as is', () => {
  const v = createTextView('plain text 123');
  assert.equal(v.mapped, false);
  assert.equal(v.text, 'plain text 123');
  assert.deepEqual(v.digitRuns(), [11, 14]);
});

test('non-ASCII that NFKC leaves alone is not mapped', () => {
  const v = createTextView('café, naïve, 谢谢 😀');
  assert.equal(v.mapped, false);
});

test('zero-width and bidi characters are removed and offsets map back', () => {
  const original = 'x jo\u200Bhn@ex\u202Eample.com\u202C y';
  const v = createTextView(original);
  assert.equal(v.mapped, true);
  assert.equal(v.text, 'x john@example.com y');
  const s = v.text.indexOf('john');
  const e = s + 'john@example.com'.length;
  const o = v.toOriginal(s, e);
  assert.equal(original.slice(o.start, o.end), 'jo\u200Bhn@ex\u202Eample.com');
});

test('full-width characters fold to ASCII and map to their original code units', () => {
  const original = 'card ４１１１ done';
  const v = createTextView(original);
  assert.equal(v.text, 'card 4111 done');
  const o = v.toOriginal(5, 9);
  assert.equal(original.slice(o.start, o.end), '４１１１');
});

test('an expansion maps every produced unit to the whole original character', () => {
  const original = 'a\uFB01b'; // the "fi" ligature
  const v = createTextView(original);
  assert.equal(v.text, 'afib');
  assert.deepEqual(v.toOriginal(1, 2), { start: 1, end: 2 });
  assert.deepEqual(v.toOriginal(2, 3), { start: 1, end: 2 });
  assert.deepEqual(v.toOriginal(0, 4), { start: 0, end: 3 });
});

test('astral characters and Unicode dashes keep offsets right', () => {
  const original = '😀 4111\u20111111';
  const v = createTextView(original);
  assert.equal(v.text, '😀 4111-1111');
  const o = v.toOriginal(3, v.text.length);
  assert.equal(original.slice(o.start, o.end), '4111\u20111111');
});

test('invisible format, tag and variation characters are removed', () => {
  for (const inv of ['\u2062', '\u2063', '\u034F', '\u180E', '\uFE0F', '\u{E0020}', '\u{E007F}']) {
    const original = `jo${inv}hn@exam${inv}ple.com`;
    const v = createTextView(original);
    assert.equal(v.text, 'john@example.com', JSON.stringify(inv));
    const o = v.toOriginal(0, v.text.length);
    assert.equal(original.slice(o.start, o.end), original);
  }
});

test('Latin look-alikes fold inside an address-like token, not in words of their own script', () => {
  const original = 'mail jane@ex\u0430mpl\u0435.com or \u0440aypal.com';
  const v = createTextView(original);
  assert.equal(v.text, 'mail jane@example.com or paypal.com');
  const russian = 'Мы ждём вас в офисе, пишите.';
  assert.equal(createTextView(russian).text, russian);
});

test('character references and percent escapes read as their character, mapped whole', () => {
  const original = 'to jane&#64;example.com, bob&#x40;x.org, ann&commat;y.net, tim%40z.io';
  const v = createTextView(original);
  assert.equal(v.text, 'to jane@example.com, bob@x.org, ann@y.net, tim@z.io');
  const s = v.text.indexOf('jane');
  const o = v.toOriginal(s, s + 'jane@example.com'.length);
  assert.equal(original.slice(o.start, o.end), 'jane&#64;example.com');
});

test('escapes of no value character are left as they are', () => {
  for (const t of ['50%20off', 'Tom &amp; Jerry', '&#xZZ;', '&#12345678;', '100%', '&#55296;']) {
    assert.equal(createTextView(t).text, t);
  }
});

test('look-alikes right beside an escape are folded too', () => {
  assert.equal(createTextView('jane&#64;\u0435xample.com').text, 'jane@example.com');
  assert.equal(createTextView('jan\u0435%40example.com').text, 'jane@example.com');
});

test('digit runs: every run of ASCII digits, as a regex finds them', () => {
  const reference = (text: string): number[] =>
    [...text.matchAll(/[0-9]+/g)].flatMap((m) => [m.index, m.index + m[0].length]);
  for (const text of [
    '',
    'no digits at all',
    '7',
    '12345',
    'a1b22c333',
    'ends with 42',
    '0044 20 7946 0958 and 4111-1111-1111-1111.',
    'Arabic-Indic ٣٤٥ and 9',
    '1\u00002\n\n3',
  ]) {
    assert.deepEqual(createTextView(text).digitRuns(), reference(createTextView(text).text), text);
  }
});
