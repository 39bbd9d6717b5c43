import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDetectors } from './index.js';

const set = createDetectors();
function found(text: string): string[] {
  return set.detect(text).map((f) => `${f.type}:${text.slice(f.start, f.end)}`);
}

test('numbers written the local way are phones next to a phone word, not elsewhere', () => {
  assert.deepEqual(found('Mobile: 730 064 218'), ['PHONE:730 064 218']);
  assert.deepEqual(found('call me at 96 466712'), ['PHONE:96 466712']);
  assert.deepEqual(found('Phone:\n72 805 20 53'), ['PHONE:72 805 20 53']);
  assert.deepEqual(found('Desk: 439 4166'), ['PHONE:439 4166']);
  assert.deepEqual(found('6074681460 fax'), ['PHONE:6074681460']);
  assert.deepEqual(found('5388918872-Fax'), ['PHONE:5388918872']);
  assert.deepEqual(found('Phone: 21 234 614 7794'), ['PHONE:21 234 614 7794']);
  assert.deepEqual(found('(72) 583-350 office\n'), ['PHONE:(72) 583-350']);
  for (const text of [
    'Call me about order 123456 tomorrow.',
    'call me on 12 05 2024 at 3pm',
    'Invoice 952416 office supplies',
    'ticket 1555255 mobile team',
    '730 064 218 units shipped',
    'order number 439 4166',
  ]) {
    assert.deepEqual(found(text), [], text);
  }
});

test('an extension glued to a number is masked with it', () => {
  assert.deepEqual(found('650-752-7354x549'), ['PHONE:650-752-7354x549']);
  assert.deepEqual(found('call +1-469-864-3315x566 now'), ['PHONE:+1-469-864-3315x566']);
  assert.deepEqual(found('415.555.2671 ext. 12'), ['PHONE:415.555.2671 ext. 12']);
  assert.deepEqual(found('415-555-2671xyz'), []);
});

test("JCB's 15-digit 1800/2131 and Maestro's 12-digit cards pass, their look-alikes do not", () => {
  assert.deepEqual(found('card 180001234567899'), ['CREDIT_CARD:180001234567899']);
  assert.deepEqual(found('card 213100000000001'), ['CREDIT_CARD:213100000000001']);
  assert.deepEqual(found('pay with 501800000009'), ['CREDIT_CARD:501800000009']);
  assert.deepEqual(found('card # 639000000005'), ['CREDIT_CARD:639000000005']);
  assert.deepEqual(found('order 639000000005'), []); // wide Maestro range needs a card word
  assert.deepEqual(found('order 123400000006'), []);
  assert.deepEqual(found('card 180001234567894'), []); // Luhn
});

test('a literal backslash escape before a value does not glue to it', () => {
  assert.deepEqual(found('Name: Ada\\nPhone: 439 4166'), ['PHONE:439 4166']);
  assert.deepEqual(found('card\\n4111 1111 1111 1111'), ['CREDIT_CARD:4111 1111 1111 1111']);
  assert.deepEqual(found('ssn\\t123-45-6789'), ['US_SSN:123-45-6789']);
  assert.deepEqual(found('to\\nmaria@example.com'), ['EMAIL:maria@example.com']);
  assert.deepEqual(found('host\\r\\n10.1.2.3'), ['IP_ADDRESS:10.1.2.3']);
  // An escaped backslash followed by a letter is a letter: `\\n` + digits stays glued.
  assert.deepEqual(found('id\\\\n4111111111111111'), []);
});

test('IPv6 followed by a port without brackets masks the address', () => {
  assert.deepEqual(found('at 2001:db8:85a3:0:0:8a2e:370:7334:8080 now'), [
    'IP_ADDRESS:2001:db8:85a3:0:0:8a2e:370:7334',
  ]);
  assert.deepEqual(found('map aa:bb:12'), []);
});
