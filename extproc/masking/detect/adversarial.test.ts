import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDetectors } from './index.js';

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
];

for (const [name, text] of inputs) {
  test(`stays linear on ${name}`, () => {
    const found = createDetectors().detect(text);
    assert.ok(Array.isArray(found));
  });
}
