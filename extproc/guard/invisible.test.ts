import assert from 'node:assert/strict';
import { test } from 'node:test';
import { scanInvisible } from './invisible.js';

test('ASCII text is returned as is', () => {
  const s = scanInvisible('plain text');
  assert.equal(s.total, 0);
  assert.equal(s.stripped, 'plain text');
});

test('counts and strips each kind', () => {
  const text =
    'a\u200bb' + // zero width space
    ' c\u200dd' + // joiner between Latin letters
    ' \u202eevil\u202c' + // override and pop
    ' \u{e0068}\u{e0069}' + // tag text "hi"
    ' \u3164' + // Hangul filler
    ' \u{1f600}\ufe0f\u{e0100}\u{e0101}'; // selector run after an emoji
  const s = scanInvisible(text);
  assert.deepEqual(s.counts, {
    zero_width: 2,
    bidi_control: 2,
    tag: 2,
    filler: 1,
    variation_selector: 2,
  });
  assert.equal(s.total, 9);
  assert.equal(s.stripped, 'ab cd evil   \u{1f600}\ufe0f');
  assert.equal(s.hiddenTagText, 'hi');
  assert.deepEqual(s.reversedSpans, ['live']);
});

test('legitimate uses stay: emoji joiners, Persian ZWNJ, flags, RTL marks, leading BOM', () => {
  for (const t of [
    '\u{1f468}\u200d\u{1f469}\u200d\u{1f467}',
    'می\u200cخواهم',
    '\u{1f3f4}\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}',
    'שלום \u200f(x)\u200f',
    '\ufeffhello',
    'I \u2764\ufe0f it',
    'Donau\u00addampf',
  ]) {
    const s = scanInvisible(t);
    assert.equal(s.total, 0, JSON.stringify(t));
    assert.equal(s.stripped, t);
  }
});
