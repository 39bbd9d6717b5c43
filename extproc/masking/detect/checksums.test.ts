import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ibanMod97, luhnValid } from './checksums.js';

test('luhn accepts published test numbers and skips separators', () => {
  assert.equal(luhnValid('79927398713'), true);
  assert.equal(luhnValid('4111111111111111'), true);
  assert.equal(luhnValid('4111 1111-1111 1111'), true);
  assert.equal(luhnValid('378282246310005'), true);
  assert.equal(luhnValid('xx4111111111111111yy', 2, 18), true);
});

test('luhn rejects a changed digit, a transposition and empty input', () => {
  assert.equal(luhnValid('79927398710'), false);
  assert.equal(luhnValid('4111111111111112'), false);
  assert.equal(luhnValid('4111111111111141'), false);
  assert.equal(luhnValid(''), false);
});

test('mod-97 accepts registry examples in print and electronic form', () => {
  assert.equal(ibanMod97('GB82WEST12345698765432'), true);
  assert.equal(ibanMod97('GB82 WEST 1234 5698 7654 32'), true);
  assert.equal(ibanMod97('DE89370400440532013000'), true);
  assert.equal(ibanMod97('NO9386011117947'), true);
  assert.equal(ibanMod97('gb82west12345698765432'), true);
});

test('mod-97 rejects wrong check digits and swapped characters', () => {
  assert.equal(ibanMod97('GB83WEST12345698765432'), false);
  assert.equal(ibanMod97('DE89370400440532013001'), false);
  assert.equal(ibanMod97('DE89370400440532010300'), false);
  assert.equal(ibanMod97('DE8'), false);
});
