import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BUILTIN_TYPES, createDetectors } from './index.js';

// Inputs built to make a naive scanner quadratic. Nothing here is timed: a regression shows up
// as this file taking minutes instead of milliseconds.
const inputs: [string, string][] = [
  ['at signs', 'a@'.repeat(100_000)],
  ['domain runs', ('@' + 'b'.repeat(250)).repeat(2_000)],
  ['colons', '1:'.repeat(100_000)],
  ['digit groups', '1 '.repeat(100_000)],
  ['jwt headers', 'eyJ'.repeat(100_000)],
  ['pem headers', '-----BEGIN PRIVATE KEY-----'.repeat(20_000)],
  ['url schemes', 'a://'.repeat(100_000)],
  ['key values', 'password='.repeat(50_000)],
  ['bearer', 'Bearer '.repeat(50_000)],
  ['dots', '1.'.repeat(100_000)],
  ['dotted digit groups', '4111.'.repeat(50_000)],
  ['whitespace digit groups', '4111 \t\n'.repeat(50_000)],
  ['character references', '&#64;&#x'.repeat(50_000)],
  ['unterminated references', '&#6464646'.repeat(50_000)],
  ['percent escapes', '%40%4'.repeat(50_000)],
  ['mixed-script runs', 'a\u0430\u0435\u2063'.repeat(50_000)],
  ['tag characters', 'a\u{E0041}@'.repeat(50_000)],
  ['capitalised words', 'Ada '.repeat(100_000)],
  ['names and initials', 'Ada J. van '.repeat(50_000)],
  ['titles', 'Mr. '.repeat(100_000)],
  ['long capitalised word', 'A' + 'b'.repeat(300_000) + ' Ada'],
  ['street lines', '12 Main '.repeat(50_000)],
  ['street prefixes', 'Via Roma '.repeat(50_000)],
  ['unit and box', 'Unit 1 Box '.repeat(50_000)],
  ['locality segments', '1 Main St, A, B, C, D\n'.repeat(20_000)],
  ['escaped line breaks', '\\n'.repeat(100_000)],
  ['birth dates', 'born 1/1/'.repeat(50_000)],
  ['month names', 'born March 1, '.repeat(50_000)],
];

for (const [name, text] of inputs) {
  test(`stays linear on ${name}`, () => {
    const found = createDetectors({ types: BUILTIN_TYPES }).detect(text);
    assert.ok(Array.isArray(found));
  });
}
