/** Built-in detector types; policy, findings and metrics all use these exact names. */
export const BUILTIN_TYPES = [
  'EMAIL',
  'PHONE',
  'CREDIT_CARD',
  'IBAN',
  'US_SSN',
  'IP_ADDRESS',
  'SECRET',
  'PERSON',
  'STREET_ADDRESS',
  'DATE_OF_BIRTH',
] as const;

export type BuiltinType = (typeof BUILTIN_TYPES)[number];

/**
 * The built-ins a policy runs when it names none: the pattern types. PERSON, STREET_ADDRESS and
 * DATE_OF_BIRTH are rule- and dictionary-based, with lower precision than a checksum or a fixed
 * format, so a policy turns them on by listing them in `detectors`.
 */
export const DEFAULT_TYPES = [
  'EMAIL',
  'PHONE',
  'CREDIT_CARD',
  'IBAN',
  'US_SSN',
  'IP_ADDRESS',
  'SECRET',
] as const satisfies readonly BuiltinType[];

/**
 * A detected span. `start`/`end` are JavaScript string indices (UTF-16 code units, end exclusive).
 * From `DetectorSet.detect` they index the original text; from `Detector.scan` they index
 * `view.text`, which the set maps back.
 */
export interface Finding {
  type: string;
  start: number;
  end: number;
}

/**
 * The text a detector scans. `text` is the original when it is pure ASCII (or normalization
 * changes nothing); otherwise it is NFKC-normalized with invisible characters removed.
 */
export interface TextView {
  readonly original: string;
  readonly text: string;
  /** True when `text` differs from `original` and offsets need mapping. */
  readonly mapped: boolean;
  /** Maps a `[start, end)` span of `text` to the original text. */
  toOriginal(start: number, end: number): { start: number; end: number };
  /**
   * Digit runs of `text` as flat `[start0, end0, start1, end1, ...]`, computed once per view so
   * the numeric detectors share a single pass.
   */
  digitRuns(): readonly number[];
}

export interface Detector {
  readonly type: string;
  scan(view: TextView): Finding[];
}
