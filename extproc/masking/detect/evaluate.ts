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

const TOKEN = /[\p{L}\p{N}]+/gu;
/** A written-out escape (`\n`, `\t`, `\r`, as JSON- or shell-escaped text carries line breaks). */
const ESCAPE = /\\[nrt]/g;

/**
 * Scores per token rather than per span, as presidio-evaluator does: every run of letters and
 * digits is labelled with the type of the labelled span around it (if any) and predicted with
 * the type of the finding around it. For names and addresses, whose boundaries labelled sets
 * draw differently (`Suite 938` part of the street or not), this measures how much of the value
 * is masked and how much else is, where exact spans would count one missed word as a miss.
 * A written-out escape is a separator, not a word: the `n` of `\n` between an address's lines
 * (the external set writes its line breaks so) is no token, as the line break it stands for is
 * none — otherwise it is scored as masked text the labels leave out, or joined to the next word
 * (`\nLondon` as `nLondon`). Labels and findings are tokenized alike, so this favours no type.
 */
export function evaluateTokens(
  set: DetectorSet,
  lines: readonly LabelledLine[],
  misses?: Miss[],
): Record<string, TypeScore> {
  const scores: Record<string, TypeScore> = {};
  const score = (type: string): TypeScore =>
    (scores[type] ??= { tp: 0, fp: 0, fn: 0, precision: 1, recall: 1 });
  const typeAt = (spans: readonly Finding[], s: number, e: number): string | undefined =>
    spans.find((f) => f.start <= s && e <= f.end)?.type;
  lines.forEach((line, n) => {
    const predicted = set.detect(line.text);
    // Blanked in place, so offsets stay those of the text, the labels and the findings.
    const words = line.text.replace(ESCAPE, '  ');
    for (const m of words.matchAll(TOKEN)) {
      const s = m.index;
      const e = s + m[0].length;
      const want = typeAt(line.spans, s, e);
      const got = typeAt(predicted, s, e);
      if (want === got) {
        if (want !== undefined) score(want).tp++;
        continue;
      }
      if (got !== undefined) {
        score(got).fp++;
        misses?.push({ kind: 'fp', type: got, line: n, value: m[0] });
      }
      if (want !== undefined) {
        score(want).fn++;
        misses?.push({ kind: 'fn', type: want, line: n, value: m[0] });
      }
    }
  });
  for (const s of Object.values(scores)) {
    s.precision = s.tp + s.fp === 0 ? 1 : s.tp / (s.tp + s.fp);
    s.recall = s.tp + s.fn === 0 ? 1 : s.tp / (s.tp + s.fn);
  }
  return scores;
}
