/**
 * Replaces string values inside a JSON text without re-serializing it, so every other byte of a
 * provider's event (spacing, key order, escapes, numbers) reaches the client unchanged.
 */

export interface StringEdit {
  /** The key the value sits under; undefined for array elements. */
  key: string | undefined;
  from: string;
  to: string;
}

function skipString(s: string, i: number): number {
  // i is at the opening quote; returns the index of the closing one (or -1).
  for (let k = i + 1; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c === 92 /* \ */) k++;
    else if (c === 34 /* " */) return k;
  }
  return -1;
}

/** The edited text, or undefined when some edit found no matching value (callers re-serialize). */
export function spliceJsonStrings(json: string, edits: readonly StringEdit[]): string | undefined {
  if (edits.length === 0) return json;
  const pending = [...edits];
  const out: string[] = [];
  let copied = 0;
  let lastKey: string | undefined;
  let i = 0;
  while (i < json.length && pending.length > 0) {
    if (json.charCodeAt(i) !== 34) {
      i++;
      continue;
    }
    const end = skipString(json, i);
    if (end < 0) return undefined;
    let j = end + 1;
    while (
      j < json.length &&
      (json[j] === ' ' || json[j] === '\n' || json[j] === '\r' || json[j] === '\t')
    )
      j++;
    const literal = json.slice(i, end + 1);
    if (json[j] === ':') {
      lastKey = JSON.parse(literal) as string;
    } else {
      const candidates = pending.filter((e) => e.key === undefined || e.key === lastKey);
      if (candidates.length > 0) {
        const value = JSON.parse(literal) as string;
        const k = pending.findIndex(
          (e) => (e.key === undefined || e.key === lastKey) && e.from === value,
        );
        if (k >= 0) {
          out.push(json.slice(copied, i), JSON.stringify(pending[k]!.to));
          copied = end + 1;
          pending.splice(k, 1);
        }
      }
    }
    i = end + 1;
  }
  if (pending.length > 0) return undefined;
  out.push(json.slice(copied));
  return out.join('');
}

// ---------------------------------------------------------------------------------------------
// A masked request body written back by splicing, not re-serialized (issue 16: JSON.stringify of
// a 2 KB body and its UTF-8 copy were ~6 KiB and ~2% of the CPU of every masked request).

import { valueTarget, type TextSlot } from './fields.js';

/** The new value of `holder[at]` and the one the bytes still hold. */
export interface ValueEdit {
  from: string;
  to: string;
}

/** Edits by the object (or array) holding each value, then by its key (or index). */
export type ValueEdits = ReadonlyMap<object, ReadonlyMap<string | number, ValueEdit>>;

/** ValueEdits as they are gathered. */
export type ValueEditMap = Map<object, Map<string | number, ValueEdit>>;

/**
 * `edits` with the change of `slot` from `from` to `to` added (the maps made at the first edit:
 * most bodies change nothing), or undefined when the slot is not a plain value of the parsed body
 * (a key, or JSON carried in a string): the body is then serialized whole, not spliced.
 */
export function withValueEdit(
  edits: ValueEditMap | undefined,
  slot: TextSlot,
  from: string,
  to: string,
): ValueEditMap | undefined {
  const t = valueTarget(slot);
  if (t === undefined) return undefined;
  edits ??= new Map();
  let byKey = edits.get(t.holder);
  if (!byKey) edits.set(t.holder, (byKey = new Map<string | number, ValueEdit>()));
  byKey.set(t.at, { from, to });
  return edits;
}

/** A JSON number, whole (one RegExp, not one per number read). */
const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

// eslint-disable-next-line @typescript-eslint/unbound-method -- always called with .call
const hasOwn = Object.prototype.hasOwnProperty;

/** Deeper than the request walk allows (fields.ts MAX_REQUEST_DEPTH) is never spliced. */
const MAX_SPLICE_DEPTH = 66;

/**
 * `bytes` (the JSON text `root` was parsed from) with the edited string values replaced, or
 * undefined when the bytes do not hold exactly `root` as it was before the edits. The bytes are
 * walked alongside the parsed value, and every key (in Object.keys order), string, number,
 * literal and length is compared with it, so what is returned parses to `root` as it is now:
 * JSON whose keys V8 orders otherwise (integer-like keys), a value changed since the bytes were
 * parsed, or anything unexpected gives undefined, and the caller re-serializes.
 */
export function spliceValues(bytes: Buffer, root: object, edits: ValueEdits): Buffer | undefined {
  const w = new SpliceWalk(bytes, edits);
  if (!w.value(root, undefined, 0)) return undefined;
  w.skipWs();
  if (w.i !== bytes.length || w.done !== w.wanted) return undefined;
  // Written once into a buffer of the final size: no Buffer per edit nor per copied range.
  const out = Buffer.allocUnsafe(w.length + bytes.length - w.copied);
  let at = 0;
  for (let k = 0; k < w.parts.length; k += 3) {
    at += bytes.copy(out, at, w.parts[k] as number, w.parts[k + 1] as number);
    at += out.write(w.parts[k + 2] as string, at, 'utf8');
  }
  bytes.copy(out, at, w.copied);
  return out;
}

/** Strings up to this long are compared byte by byte, longer ones natively (decodedIs). */
const LOOP_MAX = 24;

/** Where decodedIs writes the string it compares (longer ones are decoded instead). */
const SCRATCH = Buffer.allocUnsafeSlow(64 * 1024);

class SpliceWalk {
  i = 0;
  copied = 0;
  /** Bytes of `parts`. */
  length = 0;
  done = 0;
  readonly wanted: number;
  /** Per edit: the range of `b` copied before it (start, end) and the JSON of its new value. */
  readonly parts: (number | string)[] = [];

  constructor(
    private readonly b: Buffer,
    private readonly edits: ValueEdits,
  ) {
    let n = 0;
    for (const m of edits.values()) n += m.size;
    this.wanted = n;
  }

  skipWs(): void {
    const b = this.b;
    let i = this.i;
    while (i < b.length) {
      const c = b[i]!;
      if (c !== 32 && c !== 10 && c !== 13 && c !== 9) break;
      i++;
    }
    this.i = i;
  }

  /** The value at `i` is `v` (or, edited, the edit's `from`); `i` moves past it. */
  value(v: unknown, edit: ValueEdit | undefined, depth: number): boolean {
    if (depth > MAX_SPLICE_DEPTH) return false;
    this.skipWs();
    const b = this.b;
    const c = b[this.i];
    if (c === 34 /* " */) {
      const start = this.i;
      const expected = edit ? edit.from : v;
      if (typeof expected !== 'string' || !this.string(expected)) return false;
      if (edit) {
        const to = JSON.stringify(edit.to);
        this.parts.push(this.copied, start, to);
        this.length += start - this.copied + Buffer.byteLength(to, 'utf8');
        this.copied = this.i;
        this.done++;
      }
      return true;
    }
    if (edit) return false;
    if (c === 123 /* { */) {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
      return this.object(v as Record<string, unknown>, depth);
    }
    if (c === 91 /* [ */) return Array.isArray(v) && this.array(v, depth);
    return this.scalar(v);
  }

  private object(o: Record<string, unknown>, depth: number): boolean {
    const b = this.b;
    const edits = this.edits.get(o);
    this.i++;
    this.skipWs();
    // Own keys by for-in, in Object.keys order: V8 walks the map's enum cache, where Object.keys
    // copied it into a new array per object (issue 16).
    if (b[this.i] === 125 /* } */) {
      this.i++;
      for (const key in o) if (hasOwn.call(o, key)) return false;
      return true;
    }
    // The bytes' members, one per own key in order: the object closed exactly at the last key.
    let closed = false;
    for (const key in o) {
      if (!hasOwn.call(o, key)) continue;
      if (closed || b[this.i] !== 34 || !this.string(key)) return false;
      this.skipWs();
      if (b[this.i] !== 58 /* : */) return false;
      this.i++;
      if (!this.value(o[key], edits?.get(key), depth + 1)) return false;
      this.skipWs();
      const c = b[this.i++];
      if (c === 125) closed = true;
      else if (c !== 44 /* , */) return false;
      else this.skipWs();
    }
    return closed;
  }

  private array(a: unknown[], depth: number): boolean {
    const b = this.b;
    const edits = this.edits.get(a);
    this.i++;
    this.skipWs();
    if (b[this.i] === 93 /* ] */) {
      this.i++;
      return a.length === 0;
    }
    for (let k = 0; k < a.length; k++) {
      if (!this.value(a[k], edits?.get(k), depth + 1)) return false;
      this.skipWs();
      const c = b[this.i++];
      if (c === 93) return k + 1 === a.length;
      if (c !== 44) return false;
    }
    return false;
  }

  /** The string literal at `i` (its opening quote) decodes to `s`; `i` moves past it. */
  private string(s: string): boolean {
    const b = this.b;
    const start = this.i;
    // The next quote and backslash are found natively; the backslash's is kept, as most
    // strings have none.
    const end = b.indexOf(34, start + 1);
    if (end < 0) return false;
    if (this.backslash <= start) {
      const k = b.indexOf(92, start + 1);
      this.backslash = k < 0 ? b.length : k;
    }
    if (this.backslash < end) return this.escapedString(s);
    this.i = end + 1;
    const n = end - start - 1;
    if (n !== s.length) return n >= s.length && this.decodedIs(start, end, s);
    // A long one is compared decoded (natively: a copy, but a JavaScript loop over its bytes
    // cost more than the whole re-serialization it replaces); a short one byte by byte.
    if (n > LOOP_MAX) return this.decodedIs(start, end, s);
    for (let j = 0, k = start + 1; j < n; j++, k++) {
      const c = b[k]!;
      // A byte past ASCII starts a multi-byte character: compared decoded.
      if (c !== s.charCodeAt(j) || c >= 0x80) return this.decodedIs(start, end, s);
    }
    return true;
  }

  /** Where the next backslash is, at or after the last string read (b.length: none). */
  private backslash = -1;

  private decodedIs(start: number, end: number, s: string): boolean {
    const n = end - start - 1;
    // As many bytes as characters: equal only when `s` is ASCII and is those bytes. `s` is
    // written into the scratch buffer and compared there, natively: no string decoded per value
    // (they were most of what splicing a request allocated). The buffer holds 4 bytes more than
    // `s` has characters, so a non-ASCII `s` always writes more than `n` bytes (a character is
    // written whole or not at all) and is never taken for an ASCII one.
    if (n === s.length && n + 4 <= SCRATCH.length) {
      return (
        SCRATCH.write(s, 0, 'utf8') === n && this.b.compare(SCRATCH, 0, n, start + 1, end) === 0
      );
    }
    return this.b.toString('utf8', start + 1, end) === s;
  }

  /** A string literal with escapes, read to its end and decoded as JSON. */
  private escapedString(s: string): boolean {
    const b = this.b;
    const start = this.i;
    let k = start + 1;
    for (; k < b.length; k++) {
      const c = b[k]!;
      if (c === 34) break;
      if (c === 92) k++;
    }
    if (k >= b.length) return false;
    this.i = k + 1;
    this.backslash = -1;
    try {
      return JSON.parse(b.toString('utf8', start, k + 1)) === s;
    } catch {
      return false;
    }
  }

  /** b[start, end) is `s`, an ASCII string. */
  private bytesAre(start: number, end: number, s: string): boolean {
    if (end - start !== s.length) return false;
    const b = this.b;
    for (let j = 0; j < s.length; j++) if (b[start + j] !== s.charCodeAt(j)) return false;
    return true;
  }

  /** A number, true, false or null at `i` that is `v`. */
  private scalar(v: unknown): boolean {
    const b = this.b;
    const start = this.i;
    let k = start;
    while (k < b.length) {
      const c = b[k]!;
      if (c === 44 || c === 93 || c === 125 || c === 32 || c === 10 || c === 13 || c === 9) break;
      k++;
    }
    if (k === start) return false;
    this.i = k;
    // The bytes written as JavaScript writes `v` (a number other than -0, or a literal): true,
    // read without a string or a number made from them (String(v) is valid JSON for every
    // finite number, and Number(String(v)) is v). Anything else is read as before.
    if (
      typeof v === 'number'
        ? Number.isFinite(v) && !Object.is(v, -0)
        : v === true || v === false || v === null
    ) {
      if (this.bytesAre(start, k, String(v))) return true;
      if (typeof v !== 'number') return false;
    }
    const text = b.toString('latin1', start, k);
    if (text === 'true') return v === true;
    if (text === 'false') return v === false;
    if (text === 'null') return v === null;
    if (typeof v !== 'number') return false;
    // JSON numbers only (Number() would also take hex, Infinity, blanks).
    return JSON_NUMBER.test(text) && Object.is(Number(text), v);
  }
}
