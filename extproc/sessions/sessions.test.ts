import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Sessions, SessionsUnavailable, vaultSession } from './sessions.js';
import { MemorySessionStore, type SessionStore } from './store.js';

const alice = { method: 'key', consumer: 'alice' };
const bob = { method: 'key', consumer: 'bob' };
const aliceJwt = { method: 'jwt', consumer: 'alice' };
const W = { ttlMs: 60_000, maxBytes: 4096 };

function setup(maxBytes = 1 << 20) {
  let now = 1_000_000;
  const store = new MemorySessionStore({ maxBytes, now: () => now });
  const sessions = new Sessions({ store, key: randomBytes(32), wallNow: () => now });
  return { store, sessions, advance: (ms: number) => (now += ms) };
}

describe('Sessions', () => {
  it('gives a record back to its owner only', async () => {
    const { sessions } = setup();
    await sessions.write(alice, 'response', 'resp_1', { text: 'hello' }, W);
    assert.deepEqual(await sessions.read(alice, 'response', 'resp_1'), { text: 'hello' });
    assert.equal(await sessions.read(bob, 'response', 'resp_1'), undefined);
    // Same consumer name by another method is another identity.
    assert.equal(await sessions.read(aliceJwt, 'response', 'resp_1'), undefined);
    assert.equal(await sessions.read(alice, 'conversation', 'resp_1'), undefined);
    assert.equal(await sessions.remove(bob, 'response', 'resp_1'), false);
    assert.deepEqual(await sessions.read(alice, 'response', 'resp_1'), { text: 'hello' });
  });

  it('keeps values sealed and names keyed in the store', async () => {
    const { store, sessions } = setup();
    await sessions.write(alice, 'response', 'resp_secret', { text: 'jane@example.com' }, W);
    const seen: string[] = [];
    const names = (store as unknown as { entries: Map<string, { value: Buffer }> }).entries;
    for (const [name, e] of names) seen.push(name, e.value.toString('latin1'));
    const all = seen.join('\n');
    for (const s of ['jane@example.com', 'resp_secret', 'alice']) assert.ok(!all.includes(s), s);
  });

  it('expires records by the injected wall clock', async () => {
    const { sessions, advance } = setup();
    await sessions.write(alice, 'response', 'r', { a: 1 }, { ttlMs: 1000, maxBytes: 100 });
    advance(999);
    assert.deepEqual(await sessions.read(alice, 'response', 'r'), { a: 1 });
    advance(1);
    assert.equal(await sessions.read(alice, 'response', 'r'), undefined);
    assert.equal(await sessions.remove(alice, 'response', 'r'), false);
  });

  it('refuses values larger than the bound', async () => {
    const { sessions } = setup();
    const r = await sessions.write(
      alice,
      'response',
      'big',
      { t: 'x'.repeat(200) },
      {
        ttlMs: 1000,
        maxBytes: 100,
      },
    );
    assert.equal(r.stored, false);
    assert.ok(r.bytes > 100);
    assert.equal(await sessions.read(alice, 'response', 'big'), undefined);
  });

  it('deletes', async () => {
    const { sessions } = setup();
    await sessions.write(alice, 'response', 'r', { a: 1 }, W);
    assert.equal(await sessions.remove(alice, 'response', 'r'), true);
    assert.equal(await sessions.read(alice, 'response', 'r'), undefined);
    assert.equal(await sessions.remove(alice, 'response', 'r'), false);
  });

  it('does not open a record moved to another name, or sealed under another key', async () => {
    const { store, sessions } = setup();
    await sessions.write(alice, 'response', 'a', { v: 'a' }, W);
    await sessions.write(alice, 'response', 'b', { v: 'b' }, W);
    const entries = (store as unknown as { entries: Map<string, { value: Buffer }> }).entries;
    const [na, nb] = [...entries.keys()];
    const va = entries.get(na!)!.value;
    await store.set(nb!, va, 60_000);
    await assert.rejects(sessions.read(alice, 'response', 'b'), SessionsUnavailable);
    const other = new Sessions({ store, key: randomBytes(32), wallNow: () => 1_000_000 });
    assert.equal(await other.read(alice, 'response', 'a'), undefined);
  });

  it('turns a store failure or a stall into SessionsUnavailable', async () => {
    const failing: SessionStore = {
      kind: 'redis',
      get: () => Promise.reject(new Error('ECONNREFUSED')),
      set: () => new Promise(() => {}),
      delete: () => Promise.reject(new Error('x')),
      compareAndSet: () => Promise.reject(new Error('x')),
      close: () => {},
    };
    const s = new Sessions({ store: failing, wallNow: () => 0, timeoutMs: 20 });
    await assert.rejects(s.read(alice, 'response', 'r'), SessionsUnavailable);
    await assert.rejects(s.write(alice, 'response', 'r', {}, W), SessionsUnavailable);
  });

  it('keeps both of two concurrent updates (compare-and-set, read again on a conflict)', async () => {
    const store = new MemorySessionStore({ maxBytes: 1 << 20, now: () => 0 });
    const s = new Sessions({ store, wallNow: () => 0 });
    await s.write(alice, 'conversation', 'c', { items: [] as string[] }, W);
    const append = (x: string) =>
      s.update<{ items: string[] }>(
        alice,
        'conversation',
        'c',
        (c) => (c ? { items: [...c.items, x] } : undefined),
        W,
      );
    const results = await Promise.all(['a', 'b', 'c', 'd'].map(append));
    assert.deepEqual(
      results.map((r) => r.kind),
      ['stored', 'stored', 'stored', 'stored'],
    );
    const got = await s.read<{ items: string[] }>(alice, 'conversation', 'c');
    assert.deepEqual([...got!.items].sort(), ['a', 'b', 'c', 'd']);
    // Nothing to change: nothing written; gone: the change says so.
    assert.equal((await append('e')).kind, 'stored');
    const none = await s.update(bob, 'conversation', 'c', (c) => c, W);
    assert.deepEqual(none, { kind: 'unchanged', value: undefined });
  });

  it('gives up with conflict when another writer gets in first every time', async () => {
    const store = new MemorySessionStore({ maxBytes: 1 << 20, now: () => 0 });
    const s = new Sessions({ store, wallNow: () => 0 });
    await s.write(alice, 'conversation', 'c', { n: 0 }, W);
    let calls = 0;
    const r = await s.update<{ n: number }>(
      alice,
      'conversation',
      'c',
      (c) => {
        calls++;
        // Another writer, between this read and the write.
        void s.write(alice, 'conversation', 'c', { n: -calls }, W);
        return { n: (c?.n ?? 0) + 1 };
      },
      W,
      3,
    );
    assert.deepEqual(r, { kind: 'conflict' });
    assert.equal(calls, 3);
  });

  it('names one vault session per owner and conversation', () => {
    assert.equal(vaultSession(alice, 'resp_1'), vaultSession(alice, 'resp_1'));
    assert.notEqual(vaultSession(alice, 'resp_1'), vaultSession(bob, 'resp_1'));
    assert.notEqual(vaultSession(alice, 'resp_1'), vaultSession(alice, 'resp_2'));
  });
});

describe('MemorySessionStore', () => {
  it('sets only over exactly the expected bytes, or over nothing', async () => {
    const store = new MemorySessionStore({ maxBytes: 1000, now: () => 0 });
    const [a, b] = [Buffer.from('a'), Buffer.from('b')];
    assert.equal(await store.compareAndSet('n', a, b, 1000), false);
    assert.equal(await store.compareAndSet('n', undefined, a, 1000), true);
    assert.equal(await store.compareAndSet('n', undefined, b, 1000), false);
    assert.equal(await store.compareAndSet('n', Buffer.from('a'), b, 1000), true);
    assert.deepEqual(await store.get('n'), b);
  });

  it('stays within its byte bound, dropping the least recently used', async () => {
    const store = new MemorySessionStore({ maxBytes: 1000, now: () => 0 });
    for (let i = 0; i < 10; i++) await store.set(`n${i}`, Buffer.alloc(200), 1000);
    assert.ok(store.bytes <= 1000);
    assert.equal(await store.get('n0'), undefined);
    assert.ok(await store.get('n9'));
  });
});
