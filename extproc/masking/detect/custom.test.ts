import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileCustomPattern, PatternError } from './custom.js';
import { createDetectors } from './index.js';

test('a backreference is refused at compile time with the reason', () => {
  assert.throws(
    () => createDetectors({ custom: [{ type: 'DUP', pattern: '(\\w+)\\s+\\1' }] }),
    (err: unknown) =>
      err instanceof PatternError &&
      err.message ===
        'custom pattern for DUP refused: it uses a backreference (\\1-\\9), which needs a ' +
          'backtracking regex engine whose running time can grow exponentially with the ' +
          'input; only linear-time RE2 syntax is accepted',
  );
});

test('lookarounds, atomic groups and possessive quantifiers are refused', () => {
  for (const p of ['foo(?=bar)', '(?<!x)y', '(?>a+)b', 'a++b', '(?<n>a)\\k<n>']) {
    assert.throws(() => compileCustomPattern('T', p), PatternError, p);
  }
});

test('invalid syntax, empty and empty-matching patterns are refused', () => {
  assert.throws(() => compileCustomPattern('T', '[a-'), /not valid RE2 syntax/);
  assert.throws(() => compileCustomPattern('T', ''), /empty/);
  assert.throws(() => compileCustomPattern('T', 'a*'), /matches the empty string/);
});

test('nested quantifiers are accepted because RE2 runs them in linear time', () => {
  const set = createDetectors({ types: [], custom: [{ type: 'AS', pattern: '(a+)+$' }] });
  // The classic catastrophic input for a backtracking engine; RE2 answers immediately.
  const evil = 'a'.repeat(50_000) + '!';
  assert.deepEqual(set.detect(evil), []);
  assert.deepEqual(set.detect('xx aaa'), [{ type: 'AS', start: 3, end: 6 }]);
});

test('custom patterns find every match, on the normalized view', () => {
  const set = createDetectors({
    types: [],
    custom: [{ type: 'EMPLOYEE_ID', pattern: 'EMP-[0-9]{6}' }],
  });
  const text = 'ids EMP-123456 and ＥＭＰ-654321';
  const found = set.detect(text).map((f) => text.slice(f.start, f.end));
  assert.deepEqual(found, ['EMP-123456', 'ＥＭＰ-654321']);
});

test('word lists match whole words, optionally case-insensitively, longest first', () => {
  const set = createDetectors({
    types: [],
    words: [
      { type: 'PROJECT', words: ['Bluebird', 'Bluebird Two', 'Kraken'], caseInsensitive: true },
      { type: 'NAME', words: ['Zoë'] },
    ],
  });
  const text = 'bluebird two ships; KRAKEN slips; krakens no; Zoë yes, zoë no, xBluebird';
  const found = set.detect(text).map((f) => `${f.type}:${text.slice(f.start, f.end)}`);
  assert.deepEqual(found, ['PROJECT:bluebird two', 'PROJECT:KRAKEN', 'NAME:Zoë']);
});

test('unknown built-in types and empty word lists are configuration errors', () => {
  assert.throws(() => createDetectors({ types: ['PASSPORT'] }), /unknown detector type PASSPORT/);
  assert.throws(() => createDetectors({ words: [{ type: 'X', words: [' '] }] }), /is empty/);
});
