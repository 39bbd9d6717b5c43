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
];

for (const [name, text] of inputs) {
  test(`stays linear on ${name}`, () => {
    const found = createDetectors().detect(text);
    assert.ok(Array.isArray(found));
  });
}
