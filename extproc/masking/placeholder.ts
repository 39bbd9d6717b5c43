/**
 * Restoring placeholders (`[EMAIL_1]`) in model output, whole or streamed. A streamed text holds
 * back only a suffix that could still become a placeholder (a `[` followed by what a placeholder
 * may start with), so time to first token stays and the hold-back never exceeds the longest
 * placeholder.
 */
import type { PlaceholderLookup } from './vault.js';

// Models sometimes change a placeholder's case when they reuse it (`[Person_1]`, `[person_1]`),
// most often for names; any case restores the value (placeholders are upper case in the vault).
const PLACEHOLDER = /\[[A-Za-z][A-Za-z0-9_]{0,31}_[1-9][0-9]{0,5}\]/g;

/** A value restored inside a JSON string (tool-call arguments) must be escaped as JSON. */
function encode(value: string, json: boolean): string {
  return json ? JSON.stringify(value).slice(1, -1) : value;
}

export function restore(text: string, lookup: PlaceholderLookup, json = false): string {
  if (lookup.size === 0 || !text.includes('[')) return text;
  return text.replace(PLACEHOLDER, (p) => {
    const v = lookup.get(p) ?? lookup.get(p.toUpperCase());
    return v === undefined ? p : encode(v, json);
  });
}

function isLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}
function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/**
 * True when `s` (starting with `[`) is a proper prefix of some placeholder: `[`, `[EM`,
 * `[EMAIL_`, `[EMAIL_12`. Only the grammar is checked; whether it resolves is decided once whole.
 */
export function couldBePlaceholderPrefix(s: string, maxLength: number): boolean {
  if (s.length >= maxLength) return false;
  for (let i = 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (i === 1 ? !isLetter(c) : !(isLetter(c) || isDigit(c) || c === 95)) return false;
  }
  return true;
}

export class StreamRestorer {
  private pending = '';
  /** Most characters ever held back at once; tests use it to prove the bound. */
  maxHeld = 0;

  constructor(
    private readonly lookup: PlaceholderLookup,
    private readonly maxLength: number,
    private readonly json = false,
  ) {}

  push(text: string): string {
    const s = this.pending.length === 0 ? text : this.pending + text;
    // Only the last `[` can open an unfinished placeholder: a placeholder contains no `[`.
    const from = s.length - this.maxLength;
    const open = s.lastIndexOf('[');
    let cut = s.length;
    if (open >= 0 && open > from && couldBePlaceholderPrefix(s.slice(open), this.maxLength)) {
      cut = open;
    }
    this.pending = cut === s.length ? '' : s.slice(cut);
    if (this.pending.length > this.maxHeld) this.maxHeld = this.pending.length;
    return restore(cut === s.length ? s : s.slice(0, cut), this.lookup, this.json);
  }

  /** The held suffix, as is: the stream ended, so it can no longer complete. */
  flush(): string {
    const s = this.pending;
    this.pending = '';
    return s;
  }

  get held(): number {
    return this.pending.length;
  }
}
