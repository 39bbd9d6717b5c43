import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { readConsumerSecret } from '../api/consumer-secret.js';
import {
  describeKey,
  expiresValue,
  expiryMs,
  keySecret,
  labelValue,
  newKey,
  newKeyId,
  secretName,
} from './format.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const T = Date.parse('2026-03-31T12:00:00Z');

describe('keys and ids', () => {
  it('makes sk-sluice- keys of 43 base62 characters from 32 random bytes', () => {
    assert.equal(
      newKey(() => Buffer.alloc(32, 0)),
      `sk-sluice-${'0'.repeat(43)}`,
    );
    assert.equal(newKey(() => Buffer.alloc(32, 0xff)).length, 'sk-sluice-'.length + 43);
    const k = newKey();
    assert.match(k, /^sk-sluice-[0-9A-Za-z]{43}$/);
    assert.notEqual(newKey(), k);
  });

  it('makes 8-character ids valid in a label and a DNS name', () => {
    assert.equal(
      newKeyId(() => Buffer.alloc(5, 0)),
      'aaaaaaaa',
    );
    assert.equal(
      newKeyId(() => Buffer.alloc(5, 0xff)),
      '77777777',
    );
    assert.match(newKeyId(), /^[a-z2-7]{8}$/);
  });

  it('names Secrets as DNS labels, shortening long or odd consumer names', () => {
    assert.equal(secretName('alice', 'abcdefgh'), 'sluice-key-alice-abcdefgh');
    assert.equal(secretName('Team_A.bot', 'abcdefgh'), 'sluice-key-team-a-bot-abcdefgh');
    const long = secretName('x'.repeat(63), 'abcdefgh');
    assert.equal(long.length, 63);
    assert.match(long, DNS_LABEL);
    // Cut where a '-' would end the shortened part: the name still ends in the id.
    const dashed = secretName(`${'a'.repeat(42)}-b`, 'abcdefgh');
    assert.match(dashed, DNS_LABEL);
    assert.equal(dashed, `sluice-key-${'a'.repeat(42)}-abcdefgh`);
  });
});

describe('flag values', () => {
  it('accepts label-valid consumer names only', () => {
    const v = labelValue('--consumer');
    for (const ok of ['alice', 'A1', 'svc_batch.v2', 'x'.repeat(63)])
      assert.ok(v.safeParse(ok).success, ok);
    for (const bad of ['', '-a', 'a-', 'a b', 'ä', 'x'.repeat(64), 'a/b']) {
      assert.ok(!v.safeParse(bad).success, bad);
    }
  });

  it('reads durations and RFC 3339 times for --expires', () => {
    assert.equal(expiryMs('30d', T), T + 30 * 86_400_000);
    assert.equal(expiryMs('12h', T), T + 12 * 3_600_000);
    assert.equal(expiryMs('90m', T), T + 90 * 60_000);
    assert.equal(expiryMs('2w', T), T + 14 * 86_400_000);
    assert.equal(expiryMs('2027-01-01T00:00:00+01:00', T), Date.parse('2026-12-31T23:00:00Z'));
    assert.equal(expiryMs('2027-01-01 00:00:00z', T), Date.parse('2027-01-01T00:00:00Z'));
    for (const bad of ['30', '0d', '1y', 'tomorrow', '2027-02-30T00:00:00Z', '2027-01-01']) {
      assert.ok(!expiresValue.safeParse(bad).success, bad);
    }
  });
});

describe('the consumer Secret', () => {
  it('holds only the digest, in the format the operator reads', () => {
    const key = newKey();
    const s = keySecret(
      {
        consumer: 'alice',
        team: 'red',
        id: 'abcdefgh',
        namespace: 'sluice-system',
        createdAtMs: T,
        expiresAtMs: T + 86_400_000,
      },
      key,
    );
    assert.deepEqual(s.data, { keyHash: createHash('sha256').update(key).digest('hex') });
    assert.ok(!JSON.stringify(s).includes(key));
    const read = readConsumerSecret(s, s.data);
    assert.ok(read.ok);
    assert.deepEqual(read.key, {
      namespace: 'sluice-system',
      secret: 'sluice-key-alice-abcdefgh',
      consumer: 'alice',
      team: 'red',
      keyId: 'abcdefgh',
      keyHash: s.data.keyHash,
      expiresAt: '2026-04-01T12:00:00.000Z',
    });
    const row = describeKey(s, T + 86_400_000);
    assert.equal(row.expired, true);
    assert.equal(row.createdAt, '2026-03-31T12:00:00Z');
    assert.equal(row.source, 'hash');
  });
});
