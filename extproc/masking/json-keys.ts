/**
 * Duplicate keys in a JSON text. JSON.parse keeps the last of two equal keys, while a provider's
 * parser may keep the first: a body whose first `messages` (or `model`) differs from its last
 * would then be checked on one value and acted on with the other. The gateway refuses such bodies
 * (and re-serializes JSON embedded in strings that has them), so what leaves is what was checked.
 *
 * The common case costs one linear pass without allocation: the keys written in the text are
 * counted and compared with the keys the parsed value holds; only when they differ (a duplicate
 * exists) does a second pass find which key it is.
 */
import { SluiceError } from '../errors.js';

function isWs(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

/** Index of the quote closing the string opened at `i`, or -1. */
function stringEnd(text: string, i: number): number {
  let k = i;
  for (;;) {
    k = text.indexOf('"', k + 1);
    if (k < 0) return -1;
    // The quote is escaped when an odd number of backslashes precede it.
    let b = k - 1;
    while (text.charCodeAt(b) === 92) b--;
    if ((k - 1 - b) % 2 === 0) return k;
  }
}

/** Index of the first non-whitespace character at or after `i`. */
function skipWs(text: string, i: number): number {
  while (i < text.length && isWs(text.charCodeAt(i))) i++;
  return i;
}

/** Keys (object member names) written in a valid JSON text. */
function countWrittenKeys(text: string): number {
  let n = 0;
  let i = text.indexOf('"');
  while (i >= 0) {
    const end = stringEnd(text, i);
    if (end < 0) return n;
    const next = skipWs(text, end + 1);
    // In valid JSON a string followed by ':' is always a member name.
    if (text.charCodeAt(next) === 58) n++;
    i = text.indexOf('"', next);
  }
  return n;
}

/** Keys held by a parsed JSON value, walked without recursion (nesting depth is the caller's). */
function countParsedKeys(value: unknown): number {
  let n = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null) continue;
    if (Array.isArray(v)) {
      for (const x of v) if (typeof x === 'object' && x !== null) stack.push(x);
      continue;
    }
    for (const k in v) {
      n++;
      const x = (v as Record<string, unknown>)[k];
      if (typeof x === 'object' && x !== null) stack.push(x);
    }
  }
  return n;
}

/** The first key written twice in one object, found by a scan that remembers each object's keys. */
function locateDuplicate(text: string): string | undefined {
  const stack: (Set<string> | null)[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 123 /* { */) stack.push(new Set());
    else if (c === 91 /* [ */) stack.push(null);
    else if (c === 125 /* } */ || c === 93 /* ] */) stack.pop();
    else if (c === 34 /* " */) {
      const end = stringEnd(text, i);
      if (end < 0) return undefined;
      const next = skipWs(text, end + 1);
      if (text.charCodeAt(next) === 58) {
        const literal = text.slice(i, end + 1);
        const key = literal.includes('\\') ? (JSON.parse(literal) as string) : literal.slice(1, -1);
        const keys = stack[stack.length - 1];
        if (keys) {
          if (keys.has(key)) return key;
          keys.add(key);
        }
      }
      i = end;
    }
  }
  return undefined;
}

/**
 * The first key that appears twice in one object of `text`, which must be valid JSON that parsed
 * to `parsed`; undefined when every object's keys are distinct.
 */
export function duplicateKey(text: string, parsed: unknown): string | undefined {
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  if (countWrittenKeys(text) === countParsedKeys(parsed)) return undefined;
  // Counts differ only through a duplicate; locate it to name it.
  return locateDuplicate(text) ?? '';
}

/** The 400 for a body with a duplicate key: names the key (shortened), never a value. */
export function duplicateKeyError(key: string): SluiceError {
  const shown = key.length > 64 ? `${key.slice(0, 64)}…` : key;
  return new SluiceError(
    'duplicate_key',
    `The request body has the key "${shown}" more than once in one object; send each key once.`,
    { param: shown },
  );
}
