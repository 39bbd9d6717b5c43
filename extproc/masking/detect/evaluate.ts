import type { DetectorSet } from './index.js';
import type { Finding } from './types.js';

export interface LabelledLine {
  text: string;
  spans: Finding[];
}

/**
 * The quality bar of the built-in detectors on the labelled corpus (test/fixtures/pii): the unit
 * test fails below it and the benchmark prints against it.
 */
export const MIN_RECALL: Readonly<Record<string, number>> = {
  CREDIT_CARD: 0.99,
  IBAN: 0.99,
  EMAIL: 0.97,
  US_SSN: 0.97,
  IP_ADDRESS: 0.97,
  SECRET: 0.97,
  PHONE: 0.9,
};
/** Per type, over every line including the look-alikes that carry no PII. */
export const MIN_PRECISION = 0.99;

export interface TypeScore {
  tp: number;
  fp: number;
  fn: number;
  /** tp / (tp + fp); 1 when nothing of this type was predicted. */
  precision: number;
  /** tp / (tp + fn); 1 when nothing of this type was labelled. */
  recall: number;
}

export interface Miss {
  kind: 'fp' | 'fn';
  type: string;
  line: number;
  value: string;
}

/**
 * Scores a detector set against labelled lines. A prediction counts only if type, start and end
 * all equal a label: boundary errors matter for masking (a partly masked card number still
 * leaks), so there is no partial credit. A wrong-boundary prediction is both an fp and an fn.
 */
export function evaluate(
  set: DetectorSet,
  lines: readonly LabelledLine[],
  misses?: Miss[],
): Record<string, TypeScore> {
  const scores: Record<string, TypeScore> = {};
  const score = (type: string): TypeScore =>
    (scores[type] ??= { tp: 0, fp: 0, fn: 0, precision: 1, recall: 1 });
  lines.forEach((line, n) => {
    const key = (f: Finding): string => `${f.type}:${f.start}:${f.end}`;
    const labels = new Set(line.spans.map(key));
    const predicted = set.detect(line.text);
    const hits = new Set<string>();
    for (const p of predicted) {
      const k = key(p);
      if (labels.has(k)) {
        score(p.type).tp++;
        hits.add(k);
      } else {
        score(p.type).fp++;
        misses?.push({ kind: 'fp', type: p.type, line: n, value: line.text.slice(p.start, p.end) });
      }
    }
    for (const l of line.spans) {
      if (hits.has(key(l))) continue;
      score(l.type).fn++;
      misses?.push({ kind: 'fn', type: l.type, line: n, value: line.text.slice(l.start, l.end) });
    }
  });
  for (const s of Object.values(scores)) {
    s.precision = s.tp + s.fp === 0 ? 1 : s.tp / (s.tp + s.fp);
    s.recall = s.tp + s.fn === 0 ? 1 : s.tp / (s.tp + s.fn);
  }
  return scores;
}
