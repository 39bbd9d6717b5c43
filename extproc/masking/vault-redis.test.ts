// The Redis vault's behaviour around its store: deadlines, failures and what it sends. The
// store's own semantics (the Lua script) are tested against a real Redis in test/redis.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { VaultExchange, VaultExchangeReply, VaultStore } from '../state/redis-vault.js';
import { PlaceholdersExhausted } from '../state/redis-vault.js';
import { StoreUnavailable } from '../state/store.js';
import { PolicyUnavailableError } from './vault.js';
import { RedisVault, type VaultFailure } from './vault-redis.js';

const KEY = Buffer.alloc(32, 3);

function vaultWith(exchange: (req: VaultExchange) => Promise<VaultExchangeReply>): {
  vault: RedisVault;
  failures: VaultFailure[];
} {
  const failures: VaultFailure[] = [];
  const store: VaultStore = { exchange };
  return {
    vault: new RedisVault({ store, key: KEY, onFailure: (r) => failures.push(r) }),
    failures,
  };
}

function reply(req: VaultExchange, entries: [string, string][]): VaultExchangeReply {
  return {
    generation: 'g',
    seq: req.knownSeq + entries.length,
    first: 0,
    from: req.knownSeq,
    placeholders: req.items.map((_, i) => `[EMAIL_${i + 1}]`),
    entries,
    missing: [],
  };
}

describe('RedisVault', () => {
  it('refuses a key that is not 32 bytes, and a session bound the script cannot serve', () => {
    const store: VaultStore = { exchange: () => Promise.reject(new Error('unused')) };
    assert.throws(() => new RedisVault({ store, key: Buffer.alloc(16) }), /32 bytes/);
    assert.throws(
      () => new RedisVault({ store, key: KEY, maxEntriesPerSession: 10_000 }),
      /from 1 to 5000/,
    );
  });

  it('sends each distinct value once, sealed, under keyed ids, and maps replies back in order', async () => {
    let seen: VaultExchange | undefined;
    const { vault } = vaultWith((req) => {
      seen = req;
      return Promise.resolve({
        generation: 'g1',
        seq: 2,
        first: 0,
        from: 0,
        placeholders: ['[EMAIL_1]', '[PHONE_1]'],
        entries: [],
        missing: [],
      });
    });
    const r = await vault.open(
      'conversation-id',
      [
        { type: 'EMAIL', value: 'a@x.example' },
        { type: 'PHONE', value: '+1 415 555 0132' },
        { type: 'EMAIL', value: 'a@x.example' },
      ],
      100,
    );
    assert.deepEqual(r.placeholders, ['[EMAIL_1]', '[PHONE_1]', '[EMAIL_1]']);
    assert.equal(seen!.items.length, 2);
    const wire = JSON.stringify(seen);
    for (const clear of ['a@x.example', '415 555', 'conversation-id']) {
      assert.ok(!wire.includes(clear), `${clear} sent in clear`);
    }
    assert.equal(seen!.session, vault.sessionId('conversation-id'));
    assert.notEqual(seen!.items[0]!.record, seen!.items[1]!.record);
  });

  it('sends a value it has seen in the session without its record, and the record when asked', async () => {
    const calls: VaultExchange[] = [];
    let lose = false;
    const store: VaultStore = {
      exchange: (req) => {
        calls.push(structuredClone(req));
        const blank = req.items.flatMap((it, i) => (it.record === '' ? [i] : []));
        // Redis lost the entry: the values sent without a record are asked for.
        if (lose && blank.length > 0) {
          return Promise.resolve({ ...reply(req, []), missing: blank });
        }
        return Promise.resolve(
          reply(
            req,
            req.knownSeq === 0
              ? req.items.map((it, i) => [`[EMAIL_${i + 1}]`, `${it.digest} ${it.record}`])
              : [],
          ),
        );
      },
    };
    const vault = new RedisVault({ store, key: KEY });
    const a = { type: 'EMAIL', value: 'a@x.example' };
    const b = { type: 'EMAIL', value: 'b@x.example' };
    await vault.open('s', [a], 100);
    await vault.open('s', [a, b], 100);
    assert.equal(calls[1]!.items[0]!.record, '', 'a is known: not sealed again');
    assert.notEqual(calls[1]!.items[1]!.record, '', 'b is new: sealed');
    lose = true;
    await vault.open('s', [a], 100);
    assert.equal(calls.length, 4, 'one more call with the record');
    assert.equal(calls[2]!.items[0]!.record, '');
    assert.notEqual(calls[3]!.items[0]!.record, '');
  });

  it('a store slower than the deadline is a timeout, counted once', async () => {
    let release!: () => void;
    const { vault, failures } = vaultWith(
      () =>
        new Promise((_, reject) => {
          release = () => reject(new StoreUnavailable());
        }),
    );
    await assert.rejects(vault.open('s', [{ type: 'EMAIL', value: 'a@x.example' }], 5), (err) => {
      assert.ok(err instanceof PolicyUnavailableError);
      assert.match(err.message, /timed out/);
      return true;
    });
    // Its late failure is neither unhandled nor counted again.
    release();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(failures, ['timeout']);
  });

  it('an unreachable store and exhausted numbers are policy failures with their reason', async () => {
    const down = vaultWith(() => Promise.reject(new StoreUnavailable()));
    await assert.rejects(down.vault.open('s', [], 100), PolicyUnavailableError);
    assert.deepEqual(down.failures, ['unavailable']);
    const full = vaultWith(() => Promise.reject(new PlaceholdersExhausted()));
    await assert.rejects(
      full.vault.open('s', [{ type: 'EMAIL', value: 'a@x.example' }], 100),
      /exhausted/,
    );
    assert.deepEqual(full.failures, ['exhausted']);
  });

  it('keeps its copy of sealed entries within the bound, least recently used out first', async () => {
    const store: VaultStore = {
      exchange: (req) =>
        Promise.resolve({
          generation: 'g',
          seq: 3,
          first: 0,
          from: req.knownSeq,
          placeholders: [],
          entries:
            req.knownSeq === 0
              ? [
                  ['[EMAIL_1]', 'x y'],
                  ['[EMAIL_2]', 'x y'],
                  ['[EMAIL_3]', 'x y'],
                ]
              : [],
          missing: [],
        }),
    };
    const vault = new RedisVault({ store, key: KEY, maxCachedEntries: 5 });
    await vault.open('one', [], 100);
    assert.equal(vault.cachedSize, 3);
    await vault.open('two', [], 100);
    assert.equal(vault.cachedSize, 3, 'the older conversation made room');
    const again = await vault.open('two', [], 100);
    assert.equal(again.lookup.size, 3, 'a known conversation reads only what is new');
  });
});
