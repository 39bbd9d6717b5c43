import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDetectors } from './index.js';

const set = createDetectors({ types: ['PERSON', 'STREET_ADDRESS', 'DATE_OF_BIRTH'] });
function found(text: string): string[] {
  return set.detect(text).map((f) => `${f.type}:${text.slice(f.start, f.end)}`);
}

test('PERSON: titles, cues, known names in a sentence, initials, signature lines', () => {
  assert.deepEqual(found('Please ask Dr. Jane Goodall first.'), ['PERSON:Jane Goodall']);
  assert.deepEqual(found('Hello, this is Mr Hamanová.'), ['PERSON:Hamanová']);
  assert.deepEqual(found('My name is Zeliha Sultygov'), ['PERSON:Zeliha Sultygov']);
  assert.deepEqual(found('I met Patricia yesterday'), ['PERSON:Patricia']);
  assert.deepEqual(found('have you heard Monja J. Çiftçi speak?'), ['PERSON:Monja J. Çiftçi']);
  assert.deepEqual(found('Thanks to Ludwig van Beethoven'), ['PERSON:Ludwig van Beethoven']);
  // The possessive stays outside, so `[PERSON_1]'s` reads right.
  assert.deepEqual(found("That is Ada's laptop"), ['PERSON:Ada']);
  assert.deepEqual(found('Name: Juliusz A. Kwiatkowski\\nPhone: 1'), [
    'PERSON:Juliusz A. Kwiatkowski',
  ]);
});

test('PERSON: not sentence openers, calendar words, places, organisations or tech words', () => {
  for (const text of [
    'Will my account stay active?',
    'We meet on Monday in March.',
    'The Swiss Re AG office is closed.',
    'She moved here from Germany.',
    'Deploy the Helm chart to the Service on Azure.',
    'Carry Me Back To Spain',
    'Grace period ends soon.',
  ]) {
    assert.deepEqual(found(text), [], text);
  }
});

test('STREET_ADDRESS: number-first, type-first and one-word streets, units and localities', () => {
  assert.deepEqual(found('Ship it to 1600 Pennsylvania Ave NW, Washington, DC 20500 today'), [
    'STREET_ADDRESS:1600 Pennsylvania Ave NW, Washington, DC 20500',
  ]);
  assert.deepEqual(found('I live at 221B Baker Street Apt. 4'), [
    'STREET_ADDRESS:221B Baker Street Apt. 4',
  ]);
  assert.deepEqual(found('Meet me at Via Guantai Nuovi 58'), [
    'STREET_ADDRESS:Via Guantai Nuovi 58',
  ]);
  assert.deepEqual(found('Wohnung: Eichendorffstr. 31'), ['STREET_ADDRESS:Eichendorffstr. 31']);
  assert.deepEqual(found('Unit 0148 Box 9025\nDPO AE 27653'), [
    'STREET_ADDRESS:Unit 0148 Box 9025\nDPO AE 27653',
  ]);
  assert.deepEqual(found('The office is at 50 Point Walter Road\nSpringfield, IL 62704'), [
    'STREET_ADDRESS:50 Point Walter Road\nSpringfield, IL 62704',
  ]);
});

test('STREET_ADDRESS: not versions, quantities, prices or numbered headings', () => {
  for (const text of [
    'Windows 10 and Python 3 are installed.',
    'We shipped 40 Large Boxes yesterday.',
    'Chapter 12 Results and Discussion',
    'It costs 25 EUR per month.',
    'Upgrade to Node 20 first.',
    'Room 12 on floor 3.',
  ]) {
    assert.deepEqual(found(text), [], text);
  }
});

test('DATE_OF_BIRTH: a date in a birth context only', () => {
  assert.deepEqual(found('She was born on 1985-04-12.'), ['DATE_OF_BIRTH:1985-04-12']);
  assert.deepEqual(found('DOB: 12/04/1985'), ['DATE_OF_BIRTH:12/04/1985']);
  assert.deepEqual(found('date of birth April 12, 1985'), ['DATE_OF_BIRTH:April 12, 1985']);
  assert.deepEqual(found('Applicant 3 March 1990 (DOB)'), ['DATE_OF_BIRTH:3 March 1990']);
  for (const text of [
    'The invoice is due 2024-05-12.',
    'Released on April 12, 2024.',
    'born to run, version 1.2.3',
    'DOB field: 13/13/2020',
  ]) {
    assert.deepEqual(found(text), [], text);
  }
});
