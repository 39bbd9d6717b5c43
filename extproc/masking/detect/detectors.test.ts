import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDetectors } from './index.js';

function values(type: string, text: string): string[] {
  return createDetectors({ types: [type] })
    .detect(text)
    .map((f) => text.slice(f.start, f.end));
}

test('EMAIL: common shapes, trailing punctuation trimmed', () => {
  assert.deepEqual(values('EMAIL', 'mail john.doe+tag@mail.example.co.uk.'), [
    'john.doe+tag@mail.example.co.uk',
  ]);
  assert.deepEqual(values('EMAIL', '<A.B@Corp-1.io>, x_y@startup.dev'), [
    'A.B@Corp-1.io',
    'x_y@startup.dev',
  ]);
  assert.deepEqual(values('EMAIL', 'mailto:ops@xn--bcher-kva.de'), ['ops@xn--bcher-kva.de']);
});

test('EMAIL: not mentions, hosts without TLD, or URL credentials', () => {
  assert.deepEqual(values('EMAIL', '@maria ping me, user@localhost, a@b.c, x@1.2.3.4'), []);
  assert.deepEqual(values('EMAIL', 'redis://app:pa*ss@cache.example.com:6379'), []);
  assert.deepEqual(values('EMAIL', 'npm i @types/node@20.1.0'), []);
});

test('PHONE: international, North American and national formats', () => {
  const ok = [
    '+1 (415) 555-2671',
    '+14155552671',
    '(415) 555-2671',
    '415.555.2671',
    '1-800-555-0199',
    '+44 20 7946 0958',
    '+44 (0)20 7946 0958',
    '0044 20 7946 0958',
    '020 7946 0958',
    '07700 900123',
    '+49 30 12345678',
    '0151 23456789',
    '089/1234567',
    '01 23 45 67 89',
    '01.23.45.67.89',
    '+33 6 12 34 56 78',
    '03-1234-5678',
    '+81 90-1234-5678',
    '+91 98765 43210',
    '(02) 9876 5432',
    '(11) 91234-5678',
  ];
  for (const p of ok) assert.deepEqual(values('PHONE', `call ${p} today`), [p], p);
  assert.deepEqual(values('PHONE', 'call me at 9876543210'), ['9876543210']);
});

test('PHONE: dates, times, ids, versions, SSN shapes and prices are not phones', () => {
  const no = [
    '2024-03-15',
    '14:22:01',
    '2024-03-15T14:22:01Z',
    'order 4155552671',
    'ORD-2024-000123',
    '10.0.3.17',
    '1710512521',
    '078-05-1120',
    'ISBN 0-306-40615-2',
    '978-3-16-148410-0',
    '$1,299.99',
    '94103-1234',
    '40.7128, -74.0060',
    'tracking 9400 1000 0000 0000 0000 00',
    'v1.2.3',
  ];
  for (const n of no) assert.deepEqual(values('PHONE', `see ${n} now`), [], n);
});

test('CREDIT_CARD: brands, spaces and dashes, Luhn and issuer checked', () => {
  const ok = [
    '4111 1111 1111 1111',
    '4111-1111-1111-1111',
    '4111111111111111',
    '5555 5555 5555 4444',
    '2223 0031 2200 3222',
    '3782 822463 10005',
    '6011 1111 1111 1117',
    '3530 1113 3330 0000',
    '3056 930902 5904',
    '4222222222222',
  ];
  for (const c of ok) assert.deepEqual(values('CREDIT_CARD', `card ${c}, thanks`), [c], c);
  assert.deepEqual(values('CREDIT_CARD', 'card 4111 1111 1111 1111 123'), ['4111 1111 1111 1111']);
});

test('CREDIT_CARD: invalid Luhn, unknown issuer, longer numbers, tails of other numbers', () => {
  const no = [
    '4111 1111 1111 1112',
    '1234 5678 9012 3452',
    '9400 1000 0000 0000 0000 00',
    '41111111111111111111111',
    '4111 1111-1111 1111',
    'v4111111111111111',
    'PL08 0784 4514 6238 9635 3846 1724',
  ];
  for (const n of no) assert.deepEqual(values('CREDIT_CARD', `x ${n} y`), [], n);
});

test('values right after another number: a token of its own does not hide them', () => {
  const ok: [string, string, string][] = [
    ['CREDIT_CARD', 'ORD-123456 4111-1111-1111-1111', '4111-1111-1111-1111'],
    ['CREDIT_CARD', 'ORD-123456 4111 1111 1111 1111', '4111 1111 1111 1111'],
    ['CREDIT_CARD', 'ref 998877 5555-5555-5555-4444.', '5555-5555-5555-4444'],
    ['CREDIT_CARD', 'qty 3 4111 1111 1111 1111 exp', '4111 1111 1111 1111'],
    ['CREDIT_CARD', 'order 12 4111111111111111', '4111111111111111'],
    ['CREDIT_CARD', 'paid 2024-05-01 4111 1111 1111 1111', '4111 1111 1111 1111'],
    ['CREDIT_CARD', 'at 12:30 4111111111111111', '4111111111111111'],
    ['CREDIT_CARD', 'total $12.50 5555 5555 5555 4444', '5555 5555 5555 4444'],
    ['CREDIT_CARD', 'case 12345678 4111 1111 1111 1111', '4111 1111 1111 1111'],
    ['CREDIT_CARD', 'PIN 1234 4111-1111-1111-1111', '4111-1111-1111-1111'],
    ['US_SSN', 'ORD-123456 123-45-6789', '123-45-6789'],
    ['US_SSN', 'ref 1234 123-45-6789', '123-45-6789'],
    ['PHONE', 'ORD-123456 415-555-0132', '415-555-0132'],
    ['PHONE', 'ticket 42 (415) 555-0132', '(415) 555-0132'],
  ];
  for (const [type, text, value] of ok) assert.deepEqual(values(type, text), [value], text);
  assert.deepEqual(values('CREDIT_CARD', 'cards 4111 1111 1111 1111, 5555 5555 5555 4444'), [
    '4111 1111 1111 1111',
    '5555 5555 5555 4444',
  ]);
});

test('values right after another number: tails of grouped numbers and invalid values are not', () => {
  const no: [string, string][] = [
    // A card-valid tail inside grouped tracking numbers and IBANs.
    ['CREDIT_CARD', 'tracking 9400 1234 5678 4111 1111 1111 1111'],
    ['CREDIT_CARD', 'package 9400 4111 1111 1111 1111 00'],
    ['CREDIT_CARD', 'IBAN FR76 4111 1111 1111 1111 189'],
    ['CREDIT_CARD', 'ORD-123456 4111-1111-1111-1112'],
    ['CREDIT_CARD', 'ORD-123456 1234 5678 9012 3452'],
    ['US_SSN', 'ORD-123456 666-12-3456'],
    ['US_SSN', 'tracking 9400 1234 123 45 6789'],
    ['PHONE', 'tracking 9400 1234 5678 9012'],
    ['PHONE', 'ORD-123456 5678 9012'],
  ];
  for (const [type, text] of no) assert.deepEqual(values(type, text), [], text);
});

test('IBAN: print and electronic form, per-country length and mod-97', () => {
  const ok = [
    'DE89 3704 0044 0532 0130 00',
    'DE89370400440532013000',
    'GB82 WEST 1234 5698 7654 32',
    'NO93 8601 1117 947',
    'FR14 2004 1010 0505 0001 3M02 606',
  ];
  for (const i of ok) assert.deepEqual(values('IBAN', `pay to ${i}.`), [i], i);
  const no = [
    'DE88 3704 0044 0532 0130 00',
    'DE89 3704 0044 0532 0130 0',
    'XX89 3704 0044 0532 0130 00',
    'GB82WEST123456987654321',
  ];
  for (const n of no) assert.deepEqual(values('IBAN', `pay to ${n}.`), [], n);
});

test('US_SSN: valid ranges in dashed and spaced form; bare digits need context', () => {
  assert.deepEqual(values('US_SSN', 'SSN 123-45-6789.'), ['123-45-6789']);
  assert.deepEqual(values('US_SSN', 'it is 123 45 6789'), ['123 45 6789']);
  assert.deepEqual(values('US_SSN', 'social security number: 123456789'), ['123456789']);
  assert.deepEqual(values('US_SSN', 'order 123456789'), []);
  assert.deepEqual(values('US_SSN', 'ssn=123456780 employee 123456789'), ['123456780']);
});

test('US_SSN: areas 000, 666 and 900-999, group 00 and serial 0000 are invalid', () => {
  for (const n of ['000-12-3456', '666-12-3456', '900-12-3456', '999-12-3456', '123-00-4567']) {
    assert.deepEqual(values('US_SSN', `SSN ${n}`), [], n);
  }
  assert.deepEqual(values('US_SSN', 'SSN 123-45-0000'), []);
  assert.deepEqual(values('US_SSN', 'SSN 078-05-1120'), []);
  assert.deepEqual(values('US_SSN', 'id 123-45-6789-01'), []);
});

test('IP_ADDRESS: IPv4 and IPv6 including compressed and mapped forms', () => {
  const ok = [
    '10.0.3.17',
    '192.168.1.254',
    '2001:0db8:85a3:0000:0000:8a2e:0370:7334',
    '2001:db8::1',
    'fe80::1ff:fe23:4567:890a',
    '::1',
    '::ffff:192.0.2.128',
    'FE80::ABCD',
  ];
  for (const ip of ok) assert.deepEqual(values('IP_ADDRESS', `from ${ip}.`), [ip], ip);
  assert.deepEqual(values('IP_ADDRESS', 'listen [2001:db8::1]:443'), ['2001:db8::1']);
  assert.deepEqual(values('IP_ADDRESS', 'curl http://10.1.2.3:8080/x'), ['10.1.2.3']);
});

test('IP_ADDRESS: versions, times, MACs and slices are not addresses', () => {
  const no = [
    '1.2.3.4.5',
    '10.0.0',
    'v1.2.3.4',
    'version 1.0.0.1',
    '256.1.1.1',
    '01.02.03.04',
    '14:22:01',
    '00:1a:2b:3c:4d:5e',
    'x[1::2]',
    'std::vector',
    '1.2.3.4-rc1',
  ];
  for (const n of no) assert.deepEqual(values('IP_ADDRESS', `see ${n} now`), [], n);
});

test('SECRET: provider tokens', () => {
  const ok = [
    'AKIAIOSFODNN7EXAMPLE',
    'sk-' + 'a1B2'.repeat(12),
    'sk-proj-' + 'Ab3_-x'.repeat(15),
    'sk-ant-api03-' + 'Zy9-'.repeat(20) + 'AA',
    'AIza' + 'SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q',
    'sk_live_' + '4eC39HqLyjWDarjtT1zdp7dc',
    'rk_test_' + '4eC39HqLyjWDarjtT1zdp7dc',
    'ghp_' + 'A1b2C3d4E5'.repeat(3) + 'f6G7h8',
    'gho_' + 'x'.repeat(30) + '123456',
    'github_pat_' + '11ABCDEFG0123456789abc_' + 'Z'.repeat(59),
    'xoxb-123456789012-1234567890123-' + 'AbCdEfGhIjKlMnOpQrStUvWx',
  ];
  for (const s of ok) assert.deepEqual(values('SECRET', `use ${s} now`), [s], s);
});

test('SECRET: JWT only when the header decodes to JSON with alg', () => {
  const header = Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url');
  const payload = Buffer.from('{"sub":"42"}').toString('base64url');
  const token = `${header}.${payload}.c2lnbmF0dXJlLXNpZ25hdHVyZQ`;
  assert.deepEqual(values('SECRET', `token ${token} ok`), [token]);
  const notJwt = `${Buffer.from('{"typ":"JWT"}').toString('base64url')}.${payload}.sig`;
  assert.deepEqual(values('SECRET', `token ${notJwt} ok`), []);
});

test('SECRET: bearer tokens, PEM blocks, URL passwords and key-value secrets', () => {
  assert.deepEqual(values('SECRET', 'Authorization: Bearer abc123DEF456ghi789.'), [
    'abc123DEF456ghi789',
  ]);
  const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAbC=\n-----END RSA PRIVATE KEY-----';
  assert.deepEqual(values('SECRET', `key:\n${pem}\nbye`), [pem]);
  assert.deepEqual(values('SECRET', 'postgres://admin:S3cr3t!@db.internal:5432/app'), ['S3cr3t!']);
  assert.deepEqual(values('SECRET', 'password: hunter2'), ['hunter2']);
  assert.deepEqual(values('SECRET', '{"password": "correct horse"}'), ['correct horse']);
  assert.deepEqual(
    values('SECRET', 'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'),
    ['wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'],
  );
  assert.deepEqual(values('SECRET', 'https://x.io/cb?api_key=9f8e7d6c5b4a3210&x=1'), [
    '9f8e7d6c5b4a3210',
  ]);
});

test('SECRET: prose, placeholders and libraries are not secrets', () => {
  const no = [
    'I use sk-learn and scikit-learn daily',
    'the Bearer token scheme is described in RFC 6750',
    'password: ********',
    'password: ${DB_PASSWORD}',
    'Forgot your password: click the link',
    'api_key: <your key here>',
    'token: abc',
    'AKIA is the prefix of AWS access key ids',
    'https://example.com/path',
    'the eyJ prefix marks a JWT',
  ];
  for (const n of no) assert.deepEqual(values('SECRET', n), [], n);
});
