import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Budget } from '../governance/budget.js';
import { MemoryCacheStore } from '../cache/store.js';
import { Sessions } from '../sessions/sessions.js';
import { MemorySessionStore } from '../sessions/store.js';
import { MemoryVault } from '../masking/vault.js';
import { IdIssuer } from '../state/issued-ids.js';
import { MemoryStore } from '../state/memory.js';
import { storeSuite, clock, policy, KEYS } from '../state/testing/store-suite.js';
import { StoreUnavailable } from '../state/store.js';
import { channelPair, IpcPeer } from './ipc.js';
import {
  IpcCacheStore,
  IpcSessionStore,
  IpcStateStore,
  IpcVault,
  serveCacheStore,
  serveSessionStore,
  serveStateStore,
  serveVault,
} from './shared-state.js';

/** A primary holding `store`, and `n` workers' peers reaching it. */
function primaryWith(n: number) {
  const store = new MemoryStore();
  const workers: IpcPeer[] = [];
  const primaries: IpcPeer[] = [];
  const channels: ReturnType<typeof channelPair>[] = [];
  for (let i = 0; i < n; i++) {
    const pair = channelPair();
    channels.push(pair);
    const p = new IpcPeer(pair[0]);
    serveStateStore(p, store);
    primaries.push(p);
    workers.push(new IpcPeer(pair[1]));
  }
  return { store, workers, primaries, channels };
}

// The whole behavioural suite every StateStore passes, through the IPC store.
storeSuite('IPC (workers → primary memory)', {
  store: () => new IpcStateStore(primaryWith(1).workers[0]!),
});

describe('shared state over IPC', () => {
  it('two workers spending one budget concurrently never overspend it', async () => {
    const { workers } = primaryWith(2);
    const c = clock();
    const budgets = workers.map((w) => new Budget({ store: new IpcStateStore(w), clock: c.fn }));
    const p = policy([{ name: 'rpm', per: ['consumer'], requestsPerMinute: 25 }]);
    // 40 requests from each worker at once: exactly 25 in all may pass.
    const results = await Promise.all(
      budgets.flatMap((b) =>
        Array.from({ length: 40 }, () => b.reserve(p, KEYS, { tokens: 1, costUsd: 0 })),
      ),
    );
    assert.equal(results.filter((r) => r.ok).length, 25);
  });

  it("the primary's store keeps each worker's settled markers by number", async () => {
    const { store, workers } = primaryWith(2);
    // Each worker process issues under its own prefix (state/issued-ids.ts).
    const issuers = [new IdIssuer(), new IdIssuer()];
    const stores = workers.map((w) => new IpcStateStore(w));
    const T0 = 1_800_000_000_000;
    await Promise.all(
      stores.map(async (s, w) => {
        for (let i = 0; i < 1500; i++) {
          const id = issuers[w]!.issue();
          const r = { scope: 'p', id, nowMs: T0, ttlMs: 60_000, buckets: [] };
          assert.equal((await s.reserve(r)).admitted, true);
          const q = { scope: 'p', id, nowMs: T0, markerTtlMs: 120_000, buckets: [], usage: [] };
          assert.equal((await s.settle(q)).applied, true);
          assert.equal((await s.settle(q)).applied, false, 'settled once');
        }
      }),
    );
    assert.equal(store.settledMarkers, 3000);
    assert.equal(store.markersByNumber, 3000);
    assert.equal(store.markerBlocks, 4, '1,500 numbers of each worker: 2 blocks each');
  });

  it('a primary that is gone is StoreUnavailable, not applied', async () => {
    const { workers, channels } = primaryWith(1);
    (channels[0]![0] as unknown as { close(): void }).close();
    const s = new IpcStateStore(workers[0]!);
    await assert.rejects(
      s.levels('x', ['k'], Date.now()),
      (e: unknown) => e instanceof StoreUnavailable && e.maybeApplied === false,
    );
  });

  it('a call not answered in time may have been applied', async () => {
    const [a, b] = channelPair();
    const slow = new IpcPeer(b);
    slow.handle('store.levels', () => new Promise(() => undefined));
    const s = new IpcStateStore(new IpcPeer(a), 30);
    await assert.rejects(
      s.levels('x', ['k'], Date.now()),
      (e: unknown) => e instanceof StoreUnavailable && e.maybeApplied === true,
    );
  });

  it('the vault numbers placeholders once for every worker and sends values sealed', async () => {
    const key = randomBytes(32);
    const vault = new MemoryVault({ key });
    const peers = [channelPair(), channelPair()].map(([p, w]) => {
      serveVault(new IpcPeer(p), vault);
      return new IpcPeer(w);
    });
    const sent: string[] = [];
    const [spy, other] = channelPair();
    const spyPeer = new IpcPeer({
      ...spy,
      send: (m) => {
        sent.push(JSON.stringify(m));
        return spy.send(m);
      },
      onMessage: (fn) =>
        spy.onMessage((m) => {
          sent.push(JSON.stringify(m));
          fn(m);
        }),
    });
    serveVault(new IpcPeer(other), vault);
    const [v1, v2] = peers.map((p) => new IpcVault(p, key));
    const v3 = new IpcVault(spyPeer, key);
    const email = { type: 'EMAIL_ADDRESS', value: 'ada@example.com' };
    const phone = { type: 'PHONE_NUMBER', value: '+1 415 555 0100' };
    // Both workers at once, same conversation: one numbering.
    const [s1, s2] = await Promise.all([
      v1!.open('conv', [email], 1000),
      v2!.open('conv', [phone, email], 1000),
    ]);
    assert.deepEqual(s1.placeholders, ['[EMAIL_ADDRESS_1]']);
    assert.deepEqual(s2.placeholders, ['[PHONE_NUMBER_1]', '[EMAIL_ADDRESS_1]']);
    const s3 = await v3.open('conv', [], 1000);
    assert.equal(s3.lookup.get('[EMAIL_ADDRESS_1]'), 'ada@example.com');
    assert.equal(s3.lookup.get('[PHONE_NUMBER_1]'), '+1 415 555 0100');
    assert.equal(s3.lookup.size, 2);
    assert.ok(sent.length > 0);
    for (const m of sent) {
      assert.ok(!m.includes('ada@example.com') && !m.includes('555 0100'), 'no value in clear');
    }
    // Another worker's key cannot read what the vault sealed.
    const wrong = new IpcVault(peers[0]!, randomBytes(32));
    const s4 = await wrong.open('conv', [], 1000);
    assert.throws(() => s4.lookup.get('[EMAIL_ADDRESS_1]'));
  });

  it('the response cache is one for every worker', async () => {
    const mem = new MemoryCacheStore({ maxBytes: 1 << 20, now: () => 0 });
    const [c1, c2] = [channelPair(), channelPair()].map(([p, w]) => {
      serveCacheStore(new IpcPeer(p), mem);
      return new IpcCacheStore(new IpcPeer(w));
    });
    assert.equal(await c1!.get('d'), undefined);
    await c1!.set('d', '{"a":1}', 60_000);
    assert.equal(await c2!.get('d'), '{"a":1}');
  });

  it('stored responses are one for every worker, sealed with the shared key', async () => {
    const mem = new MemorySessionStore({ maxBytes: 1 << 20, now: () => 0 });
    const key = randomBytes(32);
    const [s1, s2] = [channelPair(), channelPair()].map(([p, w]) => {
      serveSessionStore(new IpcPeer(p), mem);
      return new Sessions({ store: new IpcSessionStore(new IpcPeer(w)), key, wallNow: () => 0 });
    });
    const alice = { method: 'key', consumer: 'alice' };
    await s1!.write(alice, 'response', 'resp_1', { t: 'hi' }, { ttlMs: 60_000, maxBytes: 1024 });
    assert.deepEqual(await s2!.read(alice, 'response', 'resp_1'), { t: 'hi' });
    assert.equal(
      await s2!.read({ method: 'key', consumer: 'bob' }, 'response', 'resp_1'),
      undefined,
    );
    assert.equal(await s2!.remove(alice, 'response', 'resp_1'), true);
    assert.equal(await s1!.read(alice, 'response', 'resp_1'), undefined);
  });

  it('updates of one conversation from two workers all land (compare-and-set in the primary)', async () => {
    const mem = new MemorySessionStore({ maxBytes: 1 << 20, now: () => 0 });
    const key = randomBytes(32);
    const [s1, s2] = [channelPair(), channelPair()].map(([p, w]) => {
      serveSessionStore(new IpcPeer(p), mem);
      return new Sessions({ store: new IpcSessionStore(new IpcPeer(w)), key, wallNow: () => 0 });
    });
    const alice = { method: 'key', consumer: 'alice' };
    const W = { ttlMs: 60_000, maxBytes: 1 << 16 };
    await s1!.write(alice, 'conversation', 'c', { items: [] as number[] }, W);
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, n) =>
        (n % 2 ? s1! : s2!).update<{ items: number[] }>(
          alice,
          'conversation',
          'c',
          (c) => (c ? { items: [...c.items, n] } : undefined),
          W,
          20,
        ),
      ),
    );
    assert.ok(results.every((r) => r.kind === 'stored'));
    const got = await s1!.read<{ items: number[] }>(alice, 'conversation', 'c');
    assert.deepEqual(
      [...got!.items].sort((a, b) => a - b),
      Array.from({ length: 10 }, (_, n) => n),
    );
  });
});
