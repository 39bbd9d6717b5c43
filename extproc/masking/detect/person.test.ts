import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDetectors } from './index.js';

const set = createDetectors({ types: ['PERSON', 'DATE_OF_BIRTH'] });
function found(text: string): string[] {
  return set.detect(text).map((f) => `${f.type}:${text.slice(f.start, f.end)}`);
}

test('PERSON: a form field labelled with a word the name lists hold is no person', () => {
  // `Born`, `Race`, `Price`… are surnames in the lists; before a colon they label a field.
  assert.deepEqual(found('Born: Apr. 12, 1985'), ['DATE_OF_BIRTH:Apr. 12, 1985']);
  assert.deepEqual(found('Born: Leeds, England'), []);
  assert.deepEqual(found('Name: Ada, Born: May 3'), ['PERSON:Ada']);
  assert.deepEqual(found('Ada Lovelace, Maiden Name: Byron'), [
    'PERSON:Ada Lovelace',
    'PERSON:Byron',
  ]);
  for (const text of [
    'Race: white',
    'Price: $5',
    'Hair: brown',
    'Reason: travel',
    'Key: abc',
    'Blood: A+',
    'Doctor: on call',
    'Driver: none',
  ]) {
    assert.deepEqual(found(text), [], text);
  }
});

test('PERSON: the same words stay names where they name someone', () => {
  assert.deepEqual(found('Max Born was a physicist'), ['PERSON:Max Born']);
  assert.deepEqual(found('Max Born: a physicist'), ['PERSON:Max Born']);
  assert.deepEqual(found('Mr. Born: hello'), ['PERSON:Born']);
  // A label, then the name it labels.
  assert.deepEqual(found('Driver: Ada Lovelace'), ['PERSON:Ada Lovelace']);
  // A speaker's colon before a name that is no field label still marks a person.
  assert.deepEqual(found('Hello all.\nPatricia: "see you at ten"'), ['PERSON:Patricia']);
});
