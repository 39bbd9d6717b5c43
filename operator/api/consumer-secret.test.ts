import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import type { ConsumerKey } from './types.js';
import {
  groupConsumerKeys,
  keyDigest,
  MAX_KEYS_PER_CONSUMER,
  readConsumerSecret,
} from './consumer-secret.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

function meta(labels: Record<string, string>, annotations?: Record<string, string>) {
  return {
    namespace: 'sluice-system',
    name: 'alice-1',
    labels,
    ...(annotations ? { annotations } : {}),
  };
}

void describe('readConsumerSecret', () => {
  void it('reads a digest as sluice keys create writes it, with labels and expiry', () => {
    const digest = sha('sk-sluice-alice');
    const r = readConsumerSecret(
      meta(
        { 'sluice.dev/consumer': 'alice', 'sluice.dev/team': 'search', 'sluice.dev/key-id': 'k1' },
        { 'sluice.dev/expires-at': '2030-01-02T03:04:05+02:00' },
      ),
      { keyHash: `${digest.toUpperCase()}\n` },
    );
    assert.deepEqual(r, {
      ok: true,
      key: {
        namespace: 'sluice-system',
        secret: 'alice-1',
        consumer: 'alice',
        team: 'search',
        keyId: 'k1',
        expiresAt: '2030-01-02T01:04:05.000Z',
        keyHash: digest,
      },
    });
  });

  void it('hashes a raw key after trimming, as the extproc hashes what a client sends', () => {
    const r = readConsumerSecret(meta({ 'sluice.dev/consumer': 'bob' }), { key: ' sk-raw\n' });
    assert.ok(r.ok);
    assert.equal(r.key.keyHash, sha('sk-raw'));
    assert.equal(keyDigest('sk-raw'), sha('sk-raw'));
    assert.equal(r.key.team, undefined);
    assert.equal(r.key.expiresAt, undefined);
  });

  void it('refuses ambiguous or malformed Secrets without echoing a value', () => {
    const cases: [
      Record<string, string>,
      Record<string, string>,
      Record<string, string>,
      RegExp,
    ][] = [
      [{ 'sluice.dev/consumer': 'a' }, {}, { key: 'sk-1', keyHash: sha('sk-1') }, /both/],
      [{ 'sluice.dev/consumer': 'a' }, {}, {}, /keyHash .* or key/],
      [{ 'sluice.dev/consumer': 'a' }, {}, { keyHash: 'sk-not-a-digest' }, /64 hex/],
      [{ 'sluice.dev/consumer': 'a' }, {}, { key: '  \n' }, /empty/],
      [{ 'sluice.dev/consumer': '' }, {}, { key: 'sk-1' }, /consumer/],
      [{ 'sluice.dev/consumer': 'a', 'sluice.dev/team': '-x' }, {}, { key: 'sk-1' }, /team/],
      [
        { 'sluice.dev/consumer': 'a' },
        { 'sluice.dev/expires-at': '2030-02-30T00:00:00Z' },
        { key: 'sk-1' },
        /RFC 3339/,
      ],
      [
        { 'sluice.dev/consumer': 'a' },
        { 'sluice.dev/expires-at': 'tomorrow' },
        { key: 'sk-1' },
        /RFC 3339/,
      ],
    ];
    for (const [labels, annotations, data, why] of cases) {
      const r = readConsumerSecret(meta(labels, annotations), data);
      assert.ok(!r.ok, JSON.stringify([labels, annotations]));
      assert.match(r.message, why);
      for (const v of Object.values(data)) {
        if (v.trim() !== '') assert.ok(!r.message.includes(v.trim()), 'a value leaked');
      }
    }
  });

  void it('accepts the RFC 3339 spellings the apiserver accepts', () => {
    for (const t of ['2030-01-01t00:00:00z', '2030-01-01 00:00:00Z', '2030-01-01T00:00:00.5Z']) {
      const r = readConsumerSecret(
        meta({ 'sluice.dev/consumer': 'a' }, { 'sluice.dev/expires-at': t }),
        { key: 'sk-1' },
      );
      assert.ok(r.ok, t);
      assert.match(r.key.expiresAt!, /^2030-01-01T00:00:00\.(000|500)Z$/);
    }
  });
});

void describe('groupConsumerKeys', () => {
  const key = (secret: string, consumer: string, keyHash: string, team?: string): ConsumerKey => ({
    namespace: 'keys',
    secret,
    consumer,
    keyHash,
    ...(team !== undefined ? { team } : {}),
  });

  void it('groups keys by consumer and leaves out, with a problem each, what would be a guess', () => {
    const many = Array.from({ length: MAX_KEYS_PER_CONSUMER + 1 }, (_, i) =>
      key(`m${String(i).padStart(3, '0')}`, 'many', keyDigest(`m${i}`)),
    );
    const { consumers, problems } = groupConsumerKeys([
      key('b2', 'bob', keyDigest('b2')),
      key('b1', 'bob', keyDigest('shared')),
      key('a1', 'alice', keyDigest('shared')),
      key('t1', 'teams', keyDigest('t1'), 'red'),
      key('t2', 'teams', keyDigest('t2'), 'blue'),
      key('c1', 'carol', keyDigest('c1'), 'red'),
      ...many,
    ]);
    assert.deepEqual(
      consumers.map((c) => [
        c.name,
        c.team,
        c.keys.map((k) => k.secret),
        c.own.map((k) => k.secret),
      ]),
      [
        ['alice', '', ['a1'], []],
        ['bob', '', ['b1', 'b2'], ['b2']],
        ['carol', 'red', ['c1'], ['c1']],
      ],
    );
    assert.deepEqual(
      problems.map((p) => [p.consumer, p.secrets.length]),
      [
        ['alice', 1],
        ['bob', 1],
        ['many', MAX_KEYS_PER_CONSUMER + 1],
        ['teams', 2],
      ],
    );
    assert.match(problems[3]!.message, /disagree on the team \("red", "blue"\)/);
  });
});
