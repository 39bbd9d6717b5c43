import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { isDigit } from './chars.js';
import { evaluate, MIN_PRECISION, MIN_RECALL } from './evaluate.js';
import type { LabelledLine, Miss } from './evaluate.js';
import { createDetectors, DEFAULT_TYPES } from './index.js';

const corpusUrl = new URL('../../../test/fixtures/pii/corpus.jsonl', import.meta.url);

function corpus(): LabelledLine[] {
  return readFileSync(corpusUrl, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as LabelledLine);
}

function report(misses: Miss[]): string {
  return misses
    .slice(0, 20)
    .map((m) => `${m.kind} ${m.type} line ${m.line}: ${JSON.stringify(m.value)}`)
    .join('\n');
}

test('built-in detectors meet precision and recall targets on the labelled corpus', () => {
  const lines = corpus();
  assert.ok(lines.length >= 1100);
  const misses: Miss[] = [];
  const scores = evaluate(createDetectors(), lines, misses);
  for (const type of DEFAULT_TYPES) {
    const s = scores[type];
    assert.ok(s !== undefined, `no ${type} in corpus`);
    assert.ok(s.tp + s.fn >= 100, `${type}: only ${s.tp + s.fn} labelled`);
    assert.ok(s.recall >= MIN_RECALL[type]!, `${type} recall ${s.recall}\n${report(misses)}`);
    assert.ok(s.precision >= MIN_PRECISION, `${type} precision ${s.precision}\n${report(misses)}`);
  }
});

test('the corpus has at least 400 look-alike lines with no PII', () => {
  const negatives = corpus().filter((l) => l.spans.length === 0);
  assert.ok(negatives.length >= 400, `${negatives.length}`);
});

test('values written right after another number are all found', () => {
  // "ORD-123456 4111-1111-1111-1111": a value whose label follows "digit space".
  const adjacent = corpus()
    .map((l) => ({
      text: l.text,
      spans: l.spans.filter(
        (s) => l.text.charCodeAt(s.start - 1) === 32 && isDigit(l.text.charCodeAt(s.start - 2)),
      ),
    }))
    .filter((l) => l.spans.length > 0);
  assert.ok(adjacent.length >= 80, `only ${adjacent.length} adjacency lines`);
  const misses: Miss[] = [];
  const scores = evaluate(createDetectors(), adjacent, misses);
  for (const [type, s] of Object.entries(scores)) {
    assert.equal(
      s.fn,
      0,
      `${type}: ${s.fn} missed\n${report(misses.filter((m) => m.kind === 'fn'))}`,
    );
  }
});
