import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newKey } from '../../../operator/keys/format.js';
import { createDetectors } from './index.js';

function values(text: string): string[] {
  return createDetectors({ types: ['SECRET'] })
    .detect(text)
    .map((f) => text.slice(f.start, f.end));
}

test('SECRET: Sluice virtual keys, whatever characters their random part holds', () => {
  // All letters: the generic sk- rule wants a digit and a letter, this prefix does not.
  const letters = 'sk-sluice-' + 'AbCdEfGhIjKlMnOpQrStUvWxYz'.repeat(2).slice(0, 43);
  const digits = 'sk-sluice-' + '0123456789'.repeat(5).slice(0, 43);
  for (const key of [letters, digits, newKey()]) {
    assert.deepEqual(values(`curl -H "Authorization: Bearer ${key}"`), [key], key);
    assert.deepEqual(values(`my key is ${key}.`), [key], key);
  }
  // Too short for a generated key and without a digit: prose, not a key.
  assert.deepEqual(values('the sk-sluice-prefix marks Sluice keys'), []);
});
