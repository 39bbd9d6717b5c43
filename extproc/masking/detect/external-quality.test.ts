import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { evaluate, evaluateTokens, MIN_PRECISION } from './evaluate.js';
import type { LabelledLine } from './evaluate.js';
import { BUILTIN_TYPES, createDetectors, DEFAULT_TYPES } from './index.js';

// Sentences from presidio-evaluator's generator (test/fixtures/pii/external/build.py): a labelled
// set nobody on this project wrote. The floors hold what is reached today so it cannot slip
// unnoticed; the targets (PERSON recall 0.90, STREET_ADDRESS 0.85) are in the bench.
// Rules were tuned on the templates build.py does not hold out (the "dev" part of this file).
const url = new URL(
  '../../../test/fixtures/pii/external/presidio-evaluator.jsonl',
  import.meta.url,
);
const lines = readFileSync(url, 'utf8')
  .split('\n')
  .filter((l) => l.length > 0)
  .map((l) => JSON.parse(l) as LabelledLine);

const FLOORS: Record<string, { precision: number; recall: number }> = {
  PERSON: { precision: 0.935, recall: 0.93 },
  // 0.954 / 0.951 today. The scorer's `n` of a written-out `\n` between an address's lines is no
  // word (evaluate.ts); it cost about 0.05 of precision before.
  STREET_ADDRESS: { precision: 0.95, recall: 0.95 },
  DATE_OF_BIRTH: { precision: 0.99, recall: 0.74 },
};

// The templates held out of tuning, drawn with another seed (build.py): what the rules reach on
// sentences they were not written against. No birth dates among those templates.
const holdout = readFileSync(new URL('presidio-evaluator-holdout.jsonl', url), 'utf8')
  .split('\n')
  .filter((l) => l.length > 0)
  .map((l) => JSON.parse(l) as LabelledLine);
const HOLDOUT_FLOORS: Record<string, { precision: number; recall: number }> = {
  PERSON: { precision: 0.93, recall: 0.9 },
  // 0.960 / 0.885 today. The false positives left are city and country lines these templates
  // label as places, not as part of the address, where the detector masks the whole envelope.
  STREET_ADDRESS: { precision: 0.955, recall: 0.88 },
};

test('names and addresses hold their precision and recall on the held-out templates', () => {
  assert.ok(holdout.length >= 3000);
  const scores = evaluateTokens(createDetectors({ types: BUILTIN_TYPES }), holdout);
  for (const [type, floor] of Object.entries(HOLDOUT_FLOORS)) {
    const s = scores[type]!;
    assert.ok(s.precision >= floor.precision, `${type} precision ${s.precision}`);
    assert.ok(s.recall >= floor.recall, `${type} recall ${s.recall}`);
  }
});

test('names, addresses and birth dates hold their precision and recall on the external set', () => {
  assert.ok(lines.length >= 3000);
  const scores = evaluateTokens(createDetectors({ types: BUILTIN_TYPES }), lines);
  for (const [type, floor] of Object.entries(FLOORS)) {
    const s = scores[type]!;
    assert.ok(s.tp + s.fn >= 100, `${type}: only ${s.tp + s.fn} labelled tokens`);
    assert.ok(s.precision >= floor.precision, `${type} precision ${s.precision}`);
    assert.ok(s.recall >= floor.recall, `${type} recall ${s.recall}`);
  }
});

test('the pattern types keep their precision on the external set', () => {
  const scores = evaluate(createDetectors(), lines);
  for (const type of DEFAULT_TYPES) {
    const s = scores[type];
    if (s === undefined) continue;
    assert.ok(s.precision >= MIN_PRECISION, `${type} precision ${s.precision}`);
  }
  assert.ok(scores.PHONE!.recall >= 0.95, `PHONE recall ${scores.PHONE!.recall}`);
  assert.ok(scores.CREDIT_CARD!.recall >= 0.99, `CREDIT_CARD recall ${scores.CREDIT_CARD!.recall}`);
});
