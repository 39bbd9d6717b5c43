import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LoadBalancer } from './lb.js';
import type { HostModel, LocalityModel, OutlierModel } from './model.js';
import {
  buildRing,
  chooseOnRing,
  DEFAULT_RING,
  priorityByHash,
  requestHash,
  xxHash64,
} from './ring-hash.js';

describe('xxHash64', () => {
  // Reference values from the xxHash library itself (libxxhash 0.8, XXH64 with seed 0 unless named).
  const vectors: [string, bigint][] = [
    ['', 0xef46db3751d8e999n],
    ['a', 0xd24ec4f1a98c6e5bn],
    ['abc', 0x44bc2cf5ad770999n],
    ['10.0.0.1:8000_0', 0xdce54358f96a19fcn],
    ['x'.repeat(31), 0x60dd0d01083b99f0n],
    ['x'.repeat(32), 0xe2df261fc2ec30ebn],
    ['y'.repeat(100), 0xcd300b25f4b8a0bfn],
    ['hello world, this is a longer string!', 0xbd5aea4e1ffefdddn],
  ];
  for (const [input, want] of vectors) {
    it(`hashes ${JSON.stringify(input.length > 12 ? `${input.slice(0, 12)}…` : input)}`, () => {
      assert.equal(xxHash64(input), want);
    });
  }
  it('takes a seed', () => {
    assert.equal(xxHash64('abc', 123456789n), 0x332a6c0b942e40fan);
  });
});

describe('requestHash (route hash_policy header)', () => {
  it('is xxHash64 of the value; absent header: no hash', () => {
    assert.equal(requestHash([{ header: 'x-k' }], [['x-k', 'abc']]), xxHash64('abc'));
    assert.equal(requestHash([{ header: 'x-k' }], [['other', 'abc']]), undefined);
  });
  it('repeated values are sorted and chained through the seed', () => {
    const want = xxHash64('b', xxHash64('a'));
    assert.equal(
      requestHash(
        [{ header: 'x-k' }],
        [
          ['x-k', 'b'],
          ['x-k', 'a'],
        ],
      ),
      want,
    );
  });
  it('several policies combine as rotl(previous, 1) ^ next', () => {
    const a = xxHash64('1');
    const b = xxHash64('2');
    const rot = ((a << 1n) | (a >> 63n)) & ((1n << 64n) - 1n);
    assert.equal(
      requestHash(
        [{ header: 'x-a' }, { header: 'x-b' }],
        [
          ['x-a', '1'],
          ['x-b', '2'],
        ],
      ),
      rot ^ b,
    );
  });
});

describe('buildRing / chooseOnRing', () => {
  it('gives equal hosts equal entries, ceil(scale) in all, sorted', () => {
    const hosts = ['a', 'b', 'c'].map((k) => ({ host: k, key: k, weight: 1 / 3 }));
    const ring = buildRing(hosts, DEFAULT_RING);
    // scale = ceil(1024 / 3) × 3 = 1026
    assert.equal(ring.length, 1026);
    for (const k of ['a', 'b', 'c']) assert.equal(ring.filter((e) => e.host === k).length, 342);
    for (let i = 1; i < ring.length; i++) assert.ok(ring[i - 1]!.hash <= ring[i]!.hash);
    assert.equal(ring[0]!.hash, [...ring].sort((x, y) => (x.hash < y.hash ? -1 : 1))[0]!.hash);
  });

  it('weights hosts by their normalized weight', () => {
    const ring = buildRing(
      [
        { host: 'big', key: 'big', weight: 0.75 },
        { host: 'small', key: 'small', weight: 0.25 },
      ],
      DEFAULT_RING,
    );
    // scale = ceil(0.25 × 1024) / 0.25 = 1024 entries, shared 1:3.
    assert.equal(ring.length, 1024);
    assert.equal(ring.filter((e) => e.host === 'small').length, 256);
    assert.equal(ring.filter((e) => e.host === 'big').length, 768);
  });

  it('picks the first entry at or after the hash, wrapping; a retry takes the next entries', () => {
    const ring = [
      { hash: 10n, host: 'a' },
      { hash: 20n, host: 'b' },
      { hash: 30n, host: 'c' },
    ];
    assert.equal(chooseOnRing(ring, 5n, 0), 'a');
    assert.equal(chooseOnRing(ring, 10n, 0), 'a');
    assert.equal(chooseOnRing(ring, 11n, 0), 'b');
    assert.equal(chooseOnRing(ring, 31n, 0), 'a');
    assert.equal(chooseOnRing(ring, 11n, 1), 'c');
    assert.equal(chooseOnRing(ring, 11n, 2), 'a');
    assert.equal(chooseOnRing([], 1n, 0), undefined);
  });

  it('chooses a priority by hash % 100 + 1 against the cumulative loads', () => {
    const loads = [
      { priority: 0, load: 70 },
      { priority: 1, load: 30 },
    ];
    assert.equal(priorityByHash(69n, loads), 0); // 70
    assert.equal(priorityByHash(70n, loads), 1); // 71
    assert.equal(priorityByHash(199n, loads), 1); // 100
  });
});

const pod = (n: number): HostModel => ({
  address: `10.1.0.${n}`,
  port: 8000,
  pipe: false,
  hostname: 'vllm.models.svc:8000',
  metadata: {},
});
const locality = (hosts: HostModel[], priority = 0, weight = 1): LocalityModel => ({
  name: `backend-${priority}`,
  priority,
  weight,
  hosts,
});
const sessionHash = (s: number) => xxHash64(`session-${s}`);

describe('LoadBalancer.pickByHash: sessions over the pods of an in-cluster backend', () => {
  const pods = [1, 2, 3, 4].map(pod);
  const M = 200;
  const N = 5;

  it('N turns of M sessions land on stable pods, spread across all of them', () => {
    const lb = new LoadBalancer(() => 0.5);
    const where = new Map<number, string>();
    for (let turn = 0; turn < N; turn++) {
      for (let s = 0; s < M; s++) {
        // A new endpoint list each turn, as every EDS push builds new host objects.
        const ls = [locality(pods.map((p) => ({ ...p })))];
        const h = lb.pickByHash('c', ls, true, sessionHash(s), DEFAULT_RING)!.host.address;
        if (turn === 0) where.set(s, h);
        else assert.equal(h, where.get(s), `session ${s} turn ${turn}`);
      }
    }
    const counts = new Map<string, number>();
    for (const h of where.values()) counts.set(h, (counts.get(h) ?? 0) + 1);
    assert.equal(counts.size, 4);
    for (const [h, n] of counts) assert.ok(n >= M / 8, `${h} has ${n} of ${M} sessions`);
  });

  // Envoy normalizes host weights, so with one pod fewer each remaining pod gets more ring entries
  // (4 pods: 256 each; 3 pods: 342 each): the gone pod's sessions all move, and a few others
  // land on the new entries of another pod (13-14% with these addresses; Ring, ring_hash_lb.cc).
  it('a pod that leaves moves its own sessions and few others; back, everything is back', () => {
    const lb = new LoadBalancer(() => 0.5);
    const before = new Map<number, string>();
    const at = (ls: LocalityModel[], s: number) =>
      lb.pickByHash('c', ls, true, sessionHash(s), DEFAULT_RING)!.host.address;
    for (let s = 0; s < M; s++) before.set(s, at([locality(pods)], s));
    const gone = pods[1]!.address;
    const rest = pods.filter((p) => p.address !== gone);
    let own = 0;
    let others = 0;
    let othersMoved = 0;
    for (let s = 0; s < M; s++) {
      const now = at([locality(rest)], s);
      if (before.get(s) === gone) {
        assert.notEqual(now, gone);
        own++;
      } else {
        others++;
        if (now !== before.get(s)) othersMoved++;
      }
    }
    assert.ok(own > 0);
    assert.ok(othersMoved <= others * 0.2, `${othersMoved} of ${others} other sessions moved`);
    // The same pods again: the same ring, every session where it was.
    for (let s = 0; s < M; s++) assert.equal(at([locality(pods)], s), before.get(s));
  });

  const OUTLIER: OutlierModel = {
    consecutive5xx: 5,
    consecutiveGatewayFailure: 3,
    enforcingGatewayFailure: 100,
    intervalMs: 10_000,
    baseEjectionMs: 30_000,
    maxEjectionMs: 300_000,
    maxEjectionPercent: 100,
  };

  it('an ejected pod leaves the ring until it is back; below half healthy, all pods are in it', () => {
    const lb = new LoadBalancer(() => 0.5);
    const ls = [locality(pods)];
    const at = (s: number, nowMs: number) =>
      lb.pickByHash('c', ls, true, sessionHash(s), DEFAULT_RING, undefined, { nowMs })!.host;
    const victim = at(0, 0);
    for (let i = 0; i < 3; i++) lb.report('c', OUTLIER, victim, ls, { status: 503 }, 0);
    assert.notEqual(at(0, 1), victim);
    assert.equal(at(0, 30_000), victim, 'back after base_ejection_time');
    // Eject three of four: the priority is in panic and hashes over every pod again.
    for (const p of pods.filter((p) => p !== victim).slice(0, 2))
      for (let i = 0; i < 3; i++) lb.report('c', OUTLIER, p, ls, { status: 503 }, 40_000);
    for (let i = 0; i < 3; i++) lb.report('c', OUTLIER, victim, ls, { status: 503 }, 40_000);
    assert.equal(at(0, 40_001), victim);
  });

  it('a retry that must avoid the host it tried takes the next pod on the ring', () => {
    const lb = new LoadBalancer(() => 0.5);
    const ls = [locality(pods)];
    const first = lb.pickByHash('c', ls, true, sessionHash(7), DEFAULT_RING)!.host;
    const again = lb.pickByHash('c', ls, true, sessionHash(7), DEFAULT_RING, {
      hosts: new Set([first]),
      tries: 3,
    })!.host;
    assert.notEqual(again, first);
  });

  it('no hash: a random point on the ring', () => {
    let r = 0;
    const seq = [0.1, 0.9, 0.6, 0.3, 0.8, 0.2, 0.7, 0.4];
    const lb = new LoadBalancer(() => seq[r++ % seq.length]!);
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++)
      seen.add(lb.pickByHash('c', [locality(pods)], true, undefined, DEFAULT_RING)!.host.address);
    assert.ok(seen.size > 1);
  });

  it('with priorities the hash picks by the priority loads; a healthy primary takes all', () => {
    const lb = new LoadBalancer(() => 0.5);
    const backup = [pod(9)];
    const ls = [locality(pods, 0), locality(backup, 1)];
    for (let s = 0; s < 50; s++)
      assert.notEqual(
        lb.pickByHash('c', ls, true, sessionHash(s), DEFAULT_RING)!.host.address,
        backup[0]!.address,
      );
  });
});
