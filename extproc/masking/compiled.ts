/**
 * A policy's masking section, compiled once per config version: detectors built, actions
 * resolved, keys decoded. Requests only read it. The policy around it is policy/policy.ts.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { MaskAction, MaskingPolicy } from '../config/contract.js';
import { createDetectors, DEFAULT_TYPES, type DetectorSet } from './detect/index.js';
import { MAX_PLACEHOLDER_NUMBER } from './vault.js';

export interface CompiledMasking {
  readonly detectors: DetectorSet;
  /**
   * Set when `detectors` cost more than a digest of the text: the recent findings' scope of this
   * policy (engine.ts detectAll, RECENT_FINDINGS), unique per compiled policy, so a new config
   * never reads an old one's.
   */
  readonly findingsScope: string | undefined;
  readonly types: readonly string[];
  action(type: string): MaskAction;
  readonly reversible: boolean;
  readonly sessionHeader: string;
  readonly systemNote: boolean;
  readonly scanResponses: boolean;
  readonly redaction: 'typed' | 'generic';
  readonly partialKeep: number;
  readonly hashKey: Buffer;
  readonly timeoutMs: number;
  /** The longest placeholder this policy can produce: the streaming hold-back bound. */
  readonly maxPlaceholderLength: number;
  /** Prompt and completion text go into traces, masked (telemetry/content.ts). */
  readonly traceContent: boolean;
}

// One per process: hashes without a configured key are stable for the life of the process only.
const PROCESS_HASH_KEY = randomBytes(32);

/** Policies compiled so far in this process: each one's findingsScope. */
let compiled = 0;

/**
 * The rule-based detectors, for which keeping a long text's findings pays: a 16 KiB conversation
 * with a new last turn cost 172 µs per request detected whole and 56 µs with its earlier texts'
 * findings kept (64 KiB: 611 against 169). The pattern types alone read faster than the digests
 * (16 KiB 32 µs either way, 64 KiB 96 against 188), so a policy of only those reads every text.
 */
const RULE_TYPES: ReadonlySet<string> = new Set(['PERSON', 'STREET_ADDRESS', 'DATE_OF_BIRTH']);

export function compileMasking(m: MaskingPolicy): CompiledMasking {
  const detectors = createDetectors({
    types: m.detectors ?? DEFAULT_TYPES,
    custom: m.customPatterns,
    words: m.wordLists,
  });
  const actions = new Map(Object.entries(m.actions));
  const longestType = Math.max(...detectors.types.map((t) => t.length), 1);
  return {
    detectors,
    findingsScope: detectors.types.some((t) => RULE_TYPES.has(t))
      ? `${++compiled}\u0000`
      : undefined,
    types: detectors.types,
    action: (type) => actions.get(type) ?? m.defaultAction,
    reversible: m.reversible,
    sessionHeader: m.sessionHeader,
    systemNote: m.systemNote,
    scanResponses: m.scanResponses,
    redaction: m.redaction,
    partialKeep: m.partialKeep,
    hashKey: m.hashKey ? Buffer.from(m.hashKey.value, 'utf8') : PROCESS_HASH_KEY,
    timeoutMs: m.timeoutMs,
    maxPlaceholderLength: longestType + String(MAX_PLACEHOLDER_NUMBER).length + 3,
    traceContent: m.traceContent,
  };
}

/** The default of `sluice mask` and of tests: the default (pattern) types, action mask. */
export function defaultMasking(): CompiledMasking {
  return compileMasking({
    customPatterns: [],
    wordLists: [],
    actions: {},
    defaultAction: 'mask',
    reversible: true,
    sessionHeader: 'x-sluice-session',
    systemNote: false,
    scanResponses: true,
    redaction: 'typed',
    partialKeep: 4,
    timeoutMs: 250,
    traceContent: false,
  });
}

/** What replaces a value for the irreversible actions; `undefined` leaves it (alert, block). */
export function irreversible(
  m: CompiledMasking,
  action: MaskAction,
  type: string,
  value: string,
): string | undefined {
  switch (action) {
    case 'redact':
    case 'mask':
      return m.redaction === 'generic' ? '[REDACTED]' : `[${type}]`;
    case 'hash':
      return `[${type}:${keyedHash(m.hashKey, type, value)}]`;
    case 'partial':
      return partial(value, m.partialKeep);
    case 'block':
    case 'alert':
      return undefined;
  }
}

export function keyedHash(key: Buffer, type: string, value: string): string {
  // The type is part of the input so equal strings of different types do not correlate.
  return createHmac('sha256', key)
    .update(type)
    .update('\0')
    .update(value)
    .digest('hex')
    .slice(0, 10);
}

/** Once, not a new RegExp per character (a regex literal in a function is made per run). */
const LETTER_OR_DIGIT = /[\p{L}\p{N}]/u;

/** Keeps the last `keep` letters/digits and the separators, so `4111 1111 1111 1111` → `**** **** **** 1111`. */
export function partial(value: string, keep: number): string {
  let kept = 0;
  const out: string[] = [];
  for (let i = value.length - 1; i >= 0; i--) {
    const ch = value[i]!;
    if (LETTER_OR_DIGIT.test(ch)) {
      out.push(kept < keep ? ch : '*');
      kept++;
    } else {
      out.push(ch);
    }
  }
  // Short values would be almost entirely kept; mask them whole instead.
  if (kept <= keep * 2) return '*'.repeat(value.length);
  return out.reverse().join('');
}
