import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  BUILTIN_TYPES,
  createDetectors,
  DEFAULT_TYPES,
  measureThroughput,
  resolveOverlaps,
  type Finding,
} from './index.js';

test('the pattern types run by default and findings come sorted', () => {
  const set = createDetectors();
  assert.deepEqual([...set.types].sort(), [...DEFAULT_TYPES].sort());
  assert.deepEqual(
    BUILTIN_TYPES.filter((t) => !(DEFAULT_TYPES as readonly string[]).includes(t)),
    ['PERSON', 'STREET_ADDRESS', 'DATE_OF_BIRTH'],
  );
  const text =
    'ip 10.0.0.8, mail a.b@example.com, card 4111 1111 1111 1111, ' +
    'phone +44 20 7946 0958, key AKIAIOSFODNN7EXAMPLE';
  const found = set.detect(text);
  assert.deepEqual(
    found.map((f) => f.type),
    ['IP_ADDRESS', 'EMAIL', 'CREDIT_CARD', 'PHONE', 'SECRET'],
  );
  for (let i = 1; i < found.length; i++) assert.ok(found[i - 1]!.end <= found[i]!.start);
});

test('types selects the built-ins that run', () => {
  const set = createDetectors({ types: ['EMAIL'] });
  assert.deepEqual(set.detect('a@example.com 10.0.0.1'), [{ type: 'EMAIL', start: 0, end: 13 }]);
});

test('overlaps: longest wins, then type priority, then earliest', () => {
  const rank = (t: string): number => ['A', 'B'].indexOf(t);
  assert.deepEqual(
    resolveOverlaps(
      [
        { type: 'B', start: 0, end: 10 },
        { type: 'A', start: 2, end: 5 },
        { type: 'A', start: 12, end: 15 },
        { type: 'B', start: 12, end: 15 },
        { type: 'B', start: 20, end: 24 },
        { type: 'B', start: 22, end: 26 },
      ],
      rank,
    ),
    [
      { type: 'B', start: 0, end: 10 },
      { type: 'A', start: 12, end: 15 },
      { type: 'B', start: 20, end: 24 },
    ],
  );
});

test('a secret that contains an email-like part is kept whole', () => {
  const set = createDetectors();
  const text = 'db: mysql://app:Pa55*word@db.example.com:3306/x';
  const found = set.detect(text).map((f) => `${f.type}:${text.slice(f.start, f.end)}`);
  assert.deepEqual(found, ['SECRET:Pa55*word']);
});

test('offsets point into the original text when invisible characters were removed', () => {
  const set = createDetectors();
  const text = '📧 jo\u200Bhn@exam\u2060ple.com and ４１１１ １１１１ １１１１ １１１１!';
  const found = set.detect(text).map((f) => `${f.type}:${text.slice(f.start, f.end)}`);
  assert.deepEqual(found, [
    'EMAIL:jo\u200Bhn@exam\u2060ple.com',
    'CREDIT_CARD:４１１１ １１１１ １１１１ １１１１',
  ]);
});

test('empty text and text without PII give no findings', () => {
  const set = createDetectors();
  assert.deepEqual(set.detect(''), []);
  assert.deepEqual(set.detect('Thanks, see you at 10:30 on 2024-03-15 (v2.1.0).'), []);
});

test('measureThroughput reports a rate (timing is not asserted)', () => {
  const r = measureThroughput('Hello there, mail me at a@example.com please. '.repeat(50), 2);
  assert.ok(Number.isFinite(r.mbPerSecond) && r.mbPerSecond > 0);
});

test('overlaps: in place or copied, few or many findings, the same choice as a reference', () => {
  // The choice as it was written before the in-place insertion sort (issue 16).
  const reference = (findings: Finding[], rank: (t: string) => number): Finding[] => {
    const sorted = [...findings].sort((a, b) => a.start - b.start || b.end - a.end);
    const out: Finding[] = [];
    const resolve = (cluster: Finding[]): void => {
      cluster.sort(
        (a, b) =>
          b.end - b.start - (a.end - a.start) || rank(a.type) - rank(b.type) || a.start - b.start,
      );
      const kept: Finding[] = [];
      for (const f of cluster)
        if (!kept.some((k) => f.start < k.end && k.start < f.end)) kept.push(f);
      kept.sort((a, b) => a.start - b.start);
      out.push(...kept);
    };
    let cluster: Finding[] = [];
    let reach = -1;
    for (const f of sorted) {
      if (cluster.length > 0 && f.start >= reach) {
        resolve(cluster);
        cluster = [];
      }
      cluster.push(f);
      reach = Math.max(reach, f.end);
    }
    if (cluster.length > 0) resolve(cluster);
    return out;
  };
  const rank = (t: string): number => ['A', 'B', 'C'].indexOf(t);
  let seed = 7;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let round = 0; round < 500; round++) {
    const n = rand(40);
    const findings: Finding[] = [];
    for (let i = 0; i < n; i++) {
      const start = rand(round % 2 ? 400 : 60);
      findings.push({ type: ['A', 'B', 'C'][rand(3)]!, start, end: start + 1 + rand(12) });
    }
    const want = reference(findings, rank);
    const copy = findings.map((f) => ({ ...f }));
    assert.deepEqual(resolveOverlaps(findings, rank), want);
    assert.deepEqual(resolveOverlaps(copy, rank, true), want);
  }
});
