import { RE2JS, RE2JSException } from 're2js';
import type { Detector, Finding, TextView } from './types.js';

export interface CustomPattern {
  type: string;
  pattern: string;
}

export interface WordList {
  type: string;
  words: string[];
  caseInsensitive?: boolean;
}

/** Thrown when a custom pattern or word list cannot be used; the message is meant for operators. */
export class PatternError extends Error {
  override readonly name = 'PatternError';
}

const MAX_PATTERN_LENGTH = 4096;

// Constructs that only a backtracking engine can run, with the reason shown to the operator.
// RE2 rejects them too, but with a terse parser message ("invalid escape sequence: `\1`").
const BACKTRACKING: readonly [RegExp, string][] = [
  [/(?:^|[^\\])(?:\\\\)*\\[1-9]/, 'a backreference (\\1-\\9)'],
  [/\\k</, 'a named backreference (\\k<name>)'],
  [/\(\?<?[=!]/, 'a lookaround ((?=, (?!, (?<=, (?<!)'],
  [/\(\?>/, 'an atomic group ((?>…))'],
  [/[*+?}]\+/, 'a possessive quantifier (*+, ++, ?+)'],
];

function refuse(type: string, why: string): never {
  throw new PatternError(`custom pattern for ${type} refused: ${why}`);
}

/**
 * Compiles an operator-supplied pattern with RE2 semantics. Matching time is linear in the input
 * whatever the pattern, so nested quantifiers such as `(a+)+` are harmless and accepted; what is
 * refused is syntax that cannot run in linear time at all.
 */
export function compileCustomPattern(type: string, pattern: string): RE2JS {
  if (pattern.length === 0) refuse(type, 'the pattern is empty');
  if (pattern.length > MAX_PATTERN_LENGTH) {
    refuse(type, `the pattern is longer than ${MAX_PATTERN_LENGTH} characters`);
  }
  for (const [probe, what] of BACKTRACKING) {
    if (probe.test(pattern)) {
      refuse(
        type,
        `it uses ${what}, which needs a backtracking regex engine whose running time can grow ` +
          'exponentially with the input; only linear-time RE2 syntax is accepted',
      );
    }
  }
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (err) {
    if (err instanceof RE2JSException) refuse(type, `not valid RE2 syntax (${err.message})`);
    throw err;
  }
  // A pattern that matches nothing would produce zero-length findings at every position.
  if (re.matches('')) refuse(type, 'it matches the empty string');
  return re;
}

function scanRe2(
  re: RE2JS,
  type: string,
  text: string,
  accept?: (s: number, e: number) => boolean,
): Finding[] {
  const out: Finding[] = [];
  const m = re.matcher(text);
  let from = 0;
  while (from <= text.length && m.find(from)) {
    const s = m.start();
    const e = m.end();
    if (e > s && (accept === undefined || accept(s, e))) {
      out.push({ type, start: s, end: e });
      from = e;
    } else {
      from = s + 1;
    }
  }
  return out;
}

export function customPatternDetector(spec: CustomPattern): Detector {
  const re = compileCustomPattern(spec.type, spec.pattern);
  return { type: spec.type, scan: (view: TextView) => scanRe2(re, spec.type, view.text) };
}

const WORD_CHAR = /[\p{L}\p{N}\p{M}_]/u;

function isWordAt(text: string, i: number): boolean {
  if (i < 0 || i >= text.length) return false;
  const c = text.charCodeAt(i);
  if (c < 128) {
    return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
  }
  return WORD_CHAR.test(text[i]!);
}

/**
 * Whole-word matching of a list with RE2: the alternation compiles to an automaton, so the scan
 * is one linear pass however long the list. Longer words come first so that at a given start
 * the longest entry wins.
 */
export function wordListDetector(spec: WordList): Detector {
  const words = [...new Set(spec.words.map((w) => w.trim()).filter((w) => w.length > 0))];
  if (words.length === 0) throw new PatternError(`word list for ${spec.type} is empty`);
  words.sort((a, b) => b.length - a.length || (a < b ? -1 : a > b ? 1 : 0));
  const source = words.map((w) => RE2JS.quote(w)).join('|');
  const re = RE2JS.compile(source, spec.caseInsensitive === true ? RE2JS.CASE_INSENSITIVE : 0);
  return {
    type: spec.type,
    scan: (view: TextView) =>
      scanRe2(
        re,
        spec.type,
        view.text,
        (s, e) => !isWordAt(view.text, s - 1) && !isWordAt(view.text, e),
      ),
  };
}
