// The shared masking vault over a real Redis (test/redis/server.ts): two replicas agreeing on
// placeholders, what Redis holds (ciphertext and keyed digests only), expiry, size bounds, a
// session created again, tampering, and Redis going away.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { PolicyUnavailableError, type VaultItem } from '../../extproc/masking/vault.js';
import { RedisVault, type VaultFailure } from '../../extproc/masking/vault-redis.js';
import { RedisVaultStore } from '../../extproc/state/redis-vault.js';
import { RedisStore } from '../../extproc/state/redis.js';
import { startRedis, type RedisHandle } from './server.js';

const KEY = Buffer.alloc(32, 9);
const EMAIL = 'jane.doe@example.com';
const CARD = '4111 1111 1111 1111';
const TIMEOUT_MS = 2000;

let redis: RedisHandle;
let admin: Redis;
const stores: RedisStore[] = [];

before(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
});

after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  admin.disconnect();
  await redis.stop();
});

interface Replica {
  vault: RedisVault;
  store: RedisVaultStore;
  failures: VaultFailure[];
}

/** One extproc's view: its own connection, the shared key. */
async function replica(
  opts: { key?: Buffer; maxEntriesPerSession?: number } = {},
): Promise<Replica> {
  const s = new RedisStore({ url: redis.url, commandTimeoutMs: 2000 });
  stores.push(s);
  await s.ready();
  const store = new RedisVaultStore({ client: s.client });
  const failures: VaultFailure[] = [];
  const vault = new RedisVault({
    store,
    key: opts.key ?? KEY,
    ttlMs: 60_000,
    ...(opts.maxEntriesPerSession !== undefined && {
      maxEntriesPerSession: opts.maxEntriesPerSession,
    }),
    onFailure: (r) => failures.push(r),
  });
  return { vault, store, failures };
}

const email = (value: string): VaultItem => ({ type: 'EMAIL', value });
let sessions = 0;
const newSession = () => `conversation-${++sessions}`;

async function dump(): Promise<string> {
  const out: string[] = [];
  for (const k of await admin.keys('*')) {
    out.push(k);
    const type = await admin.type(k);
    if (type === 'hash') out.push(...Object.entries(await admin.hgetall(k)).flat());
    else if (type === 'list') out.push(...(await admin.lrange(k, 0, -1)));
    else if (type === 'string') out.push(String(await admin.get(k)));
    else throw new Error(`unexpected ${type} key ${k}`);
  }
  return out.join('\n');
}

describe('shared vault over Redis', () => {
  it('keeps placeholders stable across replicas and turns, and restores either replica’s', async () => {
    const [a, b] = [await replica(), await replica()];
    const s = newSession();
    const t1 = await a.vault.open(
      s,
      [email(EMAIL), { type: 'CREDIT_CARD', value: CARD }, email(EMAIL)],
      TIMEOUT_MS,
    );
    assert.deepEqual(t1.placeholders, ['[EMAIL_1]', '[CREDIT_CARD_1]', '[EMAIL_1]']);
    const t2 = await b.vault.open(s, [email('b@example.org'), email(EMAIL)], TIMEOUT_MS);
    assert.deepEqual(t2.placeholders, ['[EMAIL_2]', '[EMAIL_1]']);
    assert.equal(t2.lookup.get('[CREDIT_CARD_1]'), CARD, "B restores A's placeholder");
    assert.equal(t2.lookup.size, 3);
    // A turn with no values still brings the conversation's placeholders, B's included.
    const t3 = await a.vault.open(s, [], TIMEOUT_MS);
    assert.deepEqual(t3.placeholders, []);
    assert.equal(t3.lookup.get('[EMAIL_2]'), 'b@example.org');
    assert.equal(t3.lookup.get('[EMAIL_1]'), EMAIL);
    assert.equal(t3.lookup.get('[EMAIL_3]'), undefined);
    // Another conversation numbers from 1 again.
    const other = await b.vault.open(newSession(), [email('b@example.org')], TIMEOUT_MS);
    assert.deepEqual(other.placeholders, ['[EMAIL_1]']);
    assert.deepEqual([...a.failures, ...b.failures], []);
  });

  it('agrees on one placeholder per value when replicas mask at the same time', async () => {
    const [a, b] = [await replica(), await replica()];
    const s = newSession();
    const values = Array.from({ length: 12 }, (_, i) => `user${i}@example.com`);
    // Each call carries every value, in a different order, so all race for the same numbers.
    const calls = Array.from({ length: 16 }, (_, i) => {
      const order = values.map((_, j) => values[(i * 5 + j) % values.length]!);
      const v = i % 2 === 0 ? a.vault : b.vault;
      return v.open(s, order.map(email), TIMEOUT_MS).then((r) => ({ order, r }));
    });
    const byValue = new Map<string, string>();
    for (const { order, r } of await Promise.all(calls)) {
      order.forEach((value, j) => {
        const p = r.placeholders[j]!;
        const seen = byValue.get(value);
        if (seen !== undefined) assert.equal(p, seen, `one placeholder for ${value}`);
        byValue.set(value, p);
      });
    }
    assert.deepEqual(
      [...byValue.values()].sort(),
      values.map((_, i) => `[EMAIL_${i + 1}]`).sort(),
      'numbers 1..12, none twice',
    );
    const look = (await b.vault.open(s, [], TIMEOUT_MS)).lookup;
    for (const [value, p] of byValue) assert.equal(look.get(p), value);
  });

  it('stores ciphertext and keyed digests only, with a TTL refreshed on use', async () => {
    const { vault, store } = await replica();
    const s = 'session-visible-id-7';
    await vault.open(s, [email(EMAIL), { type: 'CREDIT_CARD', value: CARD }], TIMEOUT_MS);
    const all = await dump();
    const secrets = [EMAIL, CARD, 'jane.doe', s, CARD.replace(/ /g, '')];
    for (const x of secrets) {
      assert.ok(!all.includes(x), `"${x}" in Redis`);
      for (const enc of ['hex', 'base64', 'base64url'] as const) {
        assert.ok(!all.includes(Buffer.from(x).toString(enc)), `"${x}" as ${enc} in Redis`);
        // An unkeyed hash of a value would let anyone confirm a guess.
        for (const alg of ['sha256', 'sha1', 'md5']) {
          const h = createHash(alg).update(x).digest(enc);
          assert.ok(!all.includes(h), `unkeyed ${alg} of "${x}" in Redis`);
        }
      }
    }
    const [hash, order] = store.keys(vault.sessionId(s));
    for (const k of [hash, order]) {
      const ttl = await admin.pttl(k);
      assert.ok(ttl > 0 && ttl <= 60_000, `${k} TTL ${ttl}`);
      await admin.pexpire(k, 5000);
    }
    await vault.open(s, [], TIMEOUT_MS);
    for (const k of [hash, order]) assert.ok((await admin.pttl(k)) > 5000, `${k} refreshed`);
  });

  it('keys live in one Cluster slot per session', async () => {
    const { vault, store } = await replica();
    const id = vault.sessionId('slot-check');
    // Redis Cluster hashes only the text between the first "{" and the next "}" (when not empty).
    const tag = (k: string): string => {
      const open = k.indexOf('{');
      const close = k.indexOf('}', open + 1);
      return open >= 0 && close > open + 1 ? k.slice(open + 1, close) : k;
    };
    for (const k of store.keys(id)) assert.equal(tag(k), id, k);
  });

  it('drops the oldest entries beyond the bound, on every replica, and never reuses numbers', async () => {
    const [a, b] = [
      await replica({ maxEntriesPerSession: 3 }),
      await replica({ maxEntriesPerSession: 3 }),
    ];
    const s = newSession();
    await b.vault.open(s, [email('1@x.example')], TIMEOUT_MS);
    await a.vault.open(s, [email('2@x.example'), email('3@x.example')], TIMEOUT_MS);
    const r = await a.vault.open(s, [email('4@x.example'), email('1@x.example')], TIMEOUT_MS);
    // 4 pushed 1 out, then 1 came back as a new value with the next number.
    assert.deepEqual(r.placeholders, ['[EMAIL_4]', '[EMAIL_5]']);
    const seen = await b.vault.open(s, [], TIMEOUT_MS);
    assert.equal(seen.lookup.size, 3);
    assert.equal(seen.lookup.get('[EMAIL_1]'), undefined);
    assert.equal(seen.lookup.get('[EMAIL_2]'), undefined);
    assert.equal(seen.lookup.get('[EMAIL_5]'), '1@x.example');
  });

  it('never answers from a copy of a session that Redis has since lost', async () => {
    const [a, b] = [await replica(), await replica()];
    const s = newSession();
    await a.vault.open(s, [email('old@example.com')], TIMEOUT_MS);
    await admin.del(...b.store.keys(b.vault.sessionId(s)));
    assert.deepEqual((await b.vault.open(s, [email('new@example.com')], TIMEOUT_MS)).placeholders, [
      '[EMAIL_1]',
    ]);
    const r = await a.vault.open(s, [], TIMEOUT_MS);
    assert.equal(r.lookup.get('[EMAIL_1]'), 'new@example.com');
    assert.equal(r.lookup.size, 1);
  });

  it('sends known values without their record, and their record when Redis lost them', async () => {
    const { vault, store } = await replica();
    const s = newSession();
    const sent: number[] = [];
    const exchange = store.exchange.bind(store);
    store.exchange = (req) => {
      sent.push(req.items.filter((it) => it.record !== '').length);
      return exchange(req);
    };
    await vault.open(s, [email('a@example.com'), email('b@example.com')], TIMEOUT_MS);
    const again = await vault.open(s, [email('b@example.com'), email('a@example.com')], TIMEOUT_MS);
    assert.deepEqual(again.placeholders, ['[EMAIL_2]', '[EMAIL_1]']);
    assert.deepEqual(sent, [2, 0], 'nothing sealed for values the session holds');
    await admin.del(...store.keys(vault.sessionId(s)));
    const lost = await vault.open(s, [email('b@example.com')], TIMEOUT_MS);
    assert.deepEqual(sent, [2, 0, 0, 1], 'asked for, then sent');
    assert.deepEqual(lost.placeholders, ['[EMAIL_1]']);
    assert.equal(lost.lookup.get('[EMAIL_1]'), 'b@example.com');
    assert.equal(lost.lookup.size, 1, 'the lost session is not mixed in');
  });

  it('does not restore records moved between types or sessions, or read with another key', async () => {
    const { vault, store, failures } = await replica();
    const [s1, s2] = [newSession(), newSession()];
    await vault.open(s1, [email(EMAIL), { type: 'PHONE', value: '+1 415 555 0132' }], TIMEOUT_MS);
    await vault.open(s2, [email('other@example.com')], TIMEOUT_MS);
    const [h1] = store.keys(vault.sessionId(s1));
    const [h2] = store.keys(vault.sessionId(s2));
    // The email record under the phone placeholder; another session's record under [EMAIL_1].
    await admin.hset(h1, 'p:[PHONE_1]', String(await admin.hget(h1, 'p:[EMAIL_1]')));
    await admin.hset(h1, 'p:[EMAIL_1]', String(await admin.hget(h2, 'p:[EMAIL_1]')));
    const fresh = await replica();
    const l = (await fresh.vault.open(s1, [], TIMEOUT_MS)).lookup;
    assert.equal(l.get('[PHONE_1]'), undefined);
    assert.equal(l.get('[EMAIL_1]'), undefined);
    assert.deepEqual(fresh.failures, ['unreadable', 'unreadable']);
    // A replica with another key does not even find the conversation: its ids are keyed too.
    const wrongKey = await replica({ key: Buffer.alloc(32, 1) });
    assert.equal((await wrongKey.vault.open(s2, [], TIMEOUT_MS)).lookup.size, 0);
    assert.deepEqual(failures, []);
  });

  it('fails with PolicyUnavailableError when Redis is slow or gone, and recovers', async () => {
    const { vault, failures } = await replica();
    const s = newSession();
    await vault.open(s, [email(EMAIL)], TIMEOUT_MS);
    // Every client but this one is paused: the vault's call waits past its deadline.
    await admin.call('CLIENT', 'PAUSE', '300', 'ALL');
    await assert.rejects(vault.open(s, [email(EMAIL)], 20), PolicyUnavailableError);
    assert.deepEqual(failures, ['timeout']);
    await redis.kill();
    try {
      // A deadline longer than the client's command timeout: the failure is Redis's, not ours.
      await assert.rejects(vault.open(s, [email(EMAIL)], 10_000), PolicyUnavailableError);
      assert.deepEqual(failures, ['timeout', 'unavailable']);
    } finally {
      await redis.restart();
    }
    await stores.at(-1)!.ready(10_000);
    // Redis restarted empty: the conversation starts over under a new generation.
    const r = await vault.open(s, [email('b@example.org')], TIMEOUT_MS);
    assert.deepEqual(r.placeholders, ['[EMAIL_1]']);
    assert.equal(r.lookup.get('[EMAIL_1]'), 'b@example.org');
    assert.equal(r.lookup.size, 1);
  });
});
