import { creditCardDetector } from './credit-card.js';
import { dateOfBirthDetector } from './date-of-birth.js';
import { customPatternDetector, PatternError, wordListDetector } from './custom.js';
import type { CustomPattern, WordList } from './custom.js';
import { emailDetector } from './email.js';
import { ibanDetector } from './iban.js';
import { ipAddressDetector } from './ip-address.js';
import { personDetector } from './person.js';
import { phoneDetector } from './phone.js';
import { secretDetector } from './secret.js';
import { streetAddressDetector } from './street-address.js';
import { createTextView } from './text-view.js';
import { BUILTIN_TYPES, DEFAULT_TYPES } from './types.js';
import type { BuiltinType, Detector, Finding } from './types.js';
import { usSsnDetector } from './us-ssn.js';

export { BUILTIN_TYPES, createTextView, DEFAULT_TYPES, PatternError };
export type { BuiltinType, CustomPattern, Detector, Finding, WordList };
export type { TextView } from './types.js';

export interface DetectorOptions {
  /** Built-in types to run; the pattern types (DEFAULT_TYPES) when omitted. */
  types?: readonly string[];
  /** Operator patterns (RE2 syntax, linear time). */
  custom?: readonly CustomPattern[];
  /** Operator word lists, matched as whole words. */
  words?: readonly WordList[];
}

export interface DetectorSet {
  readonly types: readonly string[];
  /** Sorted, non-overlapping findings with offsets into `text`. */
  detect(text: string): Finding[];
}

const FACTORIES: Record<BuiltinType, () => Detector> = {
  SECRET: secretDetector,
  CREDIT_CARD: creditCardDetector,
  IBAN: ibanDetector,
  US_SSN: usSsnDetector,
  EMAIL: emailDetector,
  IP_ADDRESS: ipAddressDetector,
  PHONE: phoneDetector,
  DATE_OF_BIRTH: dateOfBirthDetector,
  STREET_ADDRESS: streetAddressDetector,
  PERSON: personDetector,
};

// Tie-break between overlapping findings of equal length: the type whose false positive costs
// least to keep wins (a secret must never be downgraded to a phone number). Custom types come
// after the built-ins, in declaration order.
const PRIORITY: readonly string[] = [
  'SECRET',
  'CREDIT_CARD',
  'IBAN',
  'US_SSN',
  'EMAIL',
  'IP_ADDRESS',
  'PHONE',
  'DATE_OF_BIRTH',
  'STREET_ADDRESS',
  'PERSON',
];

function isBuiltin(type: string): type is BuiltinType {
  return (BUILTIN_TYPES as readonly string[]).includes(type);
}

function resolveCluster(cluster: Finding[], rank: (type: string) => number, out: Finding[]): void {
  if (cluster.length === 1) {
    out.push(cluster[0]!);
    return;
  }
  cluster.sort(
    (a, b) =>
      b.end - b.start - (a.end - a.start) || rank(a.type) - rank(b.type) || a.start - b.start,
  );
  const kept: Finding[] = [];
  for (const f of cluster) {
    if (!kept.some((k) => f.start < k.end && k.start < f.end)) kept.push(f);
  }
  kept.sort((a, b) => a.start - b.start);
  for (const k of kept) out.push(k);
}

/** By start, the longer first among equal starts; stable. */
function byStart(a: Finding, b: Finding): number {
  return a.start - b.start || b.end - a.end;
}

/**
 * Below this many findings they are sorted by insertion, in place: Array.prototype.sort
 * allocates its own state and a copy per call (~0.9 KiB per masked 2 KB request, issue 16), and
 * a text has a handful of findings. Above it, the native sort, so a text crafted to hold many
 * findings never costs quadratic time.
 */
const INSERTION_SORT_MAX = 16;

function sortByStart(a: Finding[]): void {
  if (a.length > INSERTION_SORT_MAX) {
    a.sort(byStart);
    return;
  }
  for (let i = 1; i < a.length; i++) {
    const f = a[i]!;
    let j = i - 1;
    // Strictly after only: equal findings keep their order, as the stable native sort does.
    while (j >= 0 && byStart(a[j]!, f) > 0) {
      a[j + 1] = a[j]!;
      j--;
    }
    a[j + 1] = f;
  }
}

/**
 * Keeps a deterministic non-overlapping subset: longest first, then type priority, then
 * earliest start; the result is sorted by start. Findings are first split into clusters of
 * transitively overlapping spans so the quadratic choice only ever runs on a handful.
 * `owned`: the list is the caller's to reorder (sorted in place, and returned when no two
 * findings overlap, the common case: no copy and no cluster lists).
 */
export function resolveOverlaps(
  findings: Finding[],
  rank: (type: string) => number,
  owned = false,
): Finding[] {
  if (findings.length < 2) return findings;
  const sorted = owned ? findings : [...findings];
  sortByStart(sorted);
  let overlap = false;
  for (let i = 1; i < sorted.length && !overlap; i++)
    overlap = sorted[i]!.start < sorted[i - 1]!.end;
  if (!overlap) return sorted;
  const out: Finding[] = [];
  let cluster: Finding[] = [sorted[0]!];
  let reach = sorted[0]!.end;
  for (let i = 1; i < sorted.length; i++) {
    const f = sorted[i]!;
    if (f.start < reach) {
      cluster.push(f);
      if (f.end > reach) reach = f.end;
    } else {
      resolveCluster(cluster, rank, out);
      cluster = [f];
      reach = f.end;
    }
  }
  resolveCluster(cluster, rank, out);
  return out;
}

export function createDetectors(opts: DetectorOptions = {}): DetectorSet {
  const types = opts.types ?? DEFAULT_TYPES;
  const detectors: Detector[] = [];
  for (const t of PRIORITY) {
    if (!types.includes(t)) continue;
    if (isBuiltin(t)) detectors.push(FACTORIES[t]());
  }
  for (const t of types) {
    if (!isBuiltin(t)) {
      throw new PatternError(
        `unknown detector type ${t}; built-in types are ${BUILTIN_TYPES.join(', ')}`,
      );
    }
  }
  for (const c of opts.custom ?? []) detectors.push(customPatternDetector(c));
  for (const w of opts.words ?? []) detectors.push(wordListDetector(w));

  const order = new Map<string, number>();
  for (const d of detectors) if (!order.has(d.type)) order.set(d.type, order.size);
  const rank = (type: string): number => order.get(type) ?? order.size;

  return {
    types: [...order.keys()],
    detect(text: string): Finding[] {
      if (text.length === 0) return [];
      const view = createTextView(text);
      // The first detector's own list gathers the others' (no concatenated copy per detector).
      let all: Finding[] | undefined;
      for (const d of detectors) {
        const found = d.scan(view);
        if (found.length === 0) continue;
        if (all === undefined) all = found;
        else for (const f of found) all.push(f);
      }
      if (all === undefined) return [];
      const kept = resolveOverlaps(all, rank, true);
      if (!view.mapped) return kept;
      return kept.map((f) => ({ type: f.type, ...view.toOriginal(f.start, f.end) }));
    },
  };
}

/** Throughput of the default set on `text`, for the benchmark; not used in tests. */
export function measureThroughput(text: string, rounds: number): { mbPerSecond: number } {
  const set = createDetectors();
  set.detect(text);
  const bytes = Buffer.byteLength(text, 'utf8');
  const started = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) set.detect(text);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { mbPerSecond: (bytes * rounds) / 1e6 / seconds };
}
