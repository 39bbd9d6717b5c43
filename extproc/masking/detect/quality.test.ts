import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { evaluate } from './evaluate.js';
import type { LabelledLine, Miss } from './evaluate.js';
import { BUILTIN_TYPES, createDetectors } from './index.js';

const corpusUrl = new URL('../../../test/fixtures/pii/corpus.jsonl', import.meta.url);

const MIN_RECALL: Record<string, number> = {
  CREDIT_CARD: 0.99,
  IBAN: 0.99,
  EMAIL: 0.97,
  US_SSN: 0.97,
  IP_ADDRESS: 0.97,
  SECRET: 0.97,
  PHONE: 0.9,
};
const MIN_PRECISION = 0.97;

test('built-in detectors meet precision and recall targets on the labelled corpus', () => {
  const lines = readFileSync(corpusUrl, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as LabelledLine);
  assert.ok(lines.length >= 1100);
  const misses: Miss[] = [];
  const scores = evaluate(createDetectors(), lines, misses);
  const report = misses
    .slice(0, 20)
    .map((m) => `${m.kind} ${m.type} line ${m.line}: ${JSON.stringify(m.value)}`)
    .join('\n');
  for (const type of BUILTIN_TYPES) {
    const s = scores[type];
    assert.ok(s !== undefined, `no ${type} in corpus`);
    assert.ok(s.tp + s.fn >= 100, `${type}: only ${s.tp + s.fn} labelled`);
    assert.ok(s.recall >= MIN_RECALL[type]!, `${type} recall ${s.recall}\n${report}`);
    assert.ok(s.precision >= MIN_PRECISION, `${type} precision ${s.precision}\n${report}`);
  }
});

test('the corpus has at least 400 look-alike lines with no PII', () => {
  const negatives = readFileSync(corpusUrl, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as LabelledLine)
    .filter((l) => l.spans.length === 0);
  assert.ok(negatives.length >= 400, `${negatives.length}`);
});
