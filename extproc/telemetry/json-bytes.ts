/**
 * JSON written straight into bytes: the access line (access-line.ts) without a JSON string.
 *
 * Why: JSON.stringify returns its text as a tree of parts, which is flattened into one more copy
 * as soon as its UTF-8 length is measured or it is encoded into the line's Buffer: for the access
 * record of bench chat-2k-policy (~870 characters) ~2.1 KiB allocated per request, ~1.1 KiB for
 * the plain route's (sampled allocation profiles, issue 16). Written here into one reused
 * scratch buffer, the line costs one Buffer of its own length.
 *
 * The bytes are JSON.stringify's, for what it is given: plain objects and arrays, strings,
 * numbers, booleans, null and undefined (json-bytes.test.ts compares them). Anything else (a
 * class instance, a toJSON, a bigint, a function, nesting deeper than MAX_DEPTH: a cycle) makes
 * `value` answer false, and the caller writes the line as before.
 */

/** Deeper than this is taken for a cycle (the access record nests three levels). */
const MAX_DEPTH = 16;

const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;

export class JsonBytes {
  private buf = Buffer.allocUnsafe(8 * 1024);
  private n = 0;

  /** Starts a new text. */
  reset(): void {
    this.n = 0;
  }

  get length(): number {
    return this.n;
  }

  /** Drops what was written after the first `n` bytes. */
  truncate(n: number): void {
    if (n < this.n) this.n = n;
  }

  /** A copy of the text written since reset(), in a Buffer of its own. */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.n);
    this.buf.copy(out, 0, 0, this.n);
    return out;
  }

  /** Text already in JSON form (pino's prefix of a line, its bindings, its end), as UTF-8. */
  raw(s: string): void {
    if (isPlain(s)) {
      this.room(s.length);
      this.n += this.buf.write(s, this.n, 'latin1');
    } else {
      const len = Buffer.byteLength(s);
      this.room(len);
      this.n += this.buf.write(s, this.n, len, 'utf8');
    }
  }

  byte(b: number): void {
    this.room(1);
    this.buf[this.n++] = b;
  }

  /** Whether the next member() is the first of its object (no comma before it). */
  private first = true;

  /** Starts writing members one by one (member, open, close), as of an object's first. */
  startMembers(): void {
    this.first = true;
  }

  /** `"name":value`, after a comma unless first; nothing for undefined (as JSON.stringify). */
  member(name: string, v: unknown): boolean {
    if (v === undefined) return true;
    this.name(name);
    this.first = false;
    return this.value(v, 1);
  }

  /** `"name":{`: the members that follow are the nested object's, until close(). */
  open(name: string): void {
    this.name(name);
    this.byte(0x7b);
    this.first = true;
  }

  close(): void {
    this.byte(0x7d);
    this.first = false;
  }

  /** `"name":[` for items written with item(). */
  openList(name: string): void {
    this.name(name);
    this.byte(0x5b);
    this.first = true;
  }

  item(v: unknown): boolean {
    if (!this.first) this.byte(COMMA);
    this.first = false;
    if (v === undefined) {
      this.raw('null');
      return true;
    }
    return this.value(v, 2);
  }

  closeList(): void {
    this.byte(0x5d);
    this.first = false;
  }

  private name(name: string): void {
    if (!this.first) this.byte(COMMA);
    this.string(name);
    this.byte(COLON);
  }

  /**
   * The members of a plain object, without its braces (what follows a line's prefix), as
   * JSON.stringify writes them; false (the text then unusable) for what it would not write so.
   */
  members(o: object): boolean {
    if (!isPlainObject(o)) return false;
    return this.object(o as Record<string, unknown>, 0);
  }

  /** `v` as JSON.stringify writes it, or false (see members). */
  value(v: unknown, depth = 0): boolean {
    switch (typeof v) {
      case 'string':
        this.string(v);
        return true;
      case 'number':
        this.raw(Number.isFinite(v) ? String(v) : 'null');
        return true;
      case 'boolean':
        this.raw(v ? 'true' : 'false');
        return true;
      case 'object':
        if (v === null) {
          this.raw('null');
          return true;
        }
        if (depth >= MAX_DEPTH) return false;
        if (Array.isArray(v)) {
          if ((v as { toJSON?: unknown }).toJSON !== undefined) return false;
          return this.array(v, depth + 1);
        }
        if (!isPlainObject(v)) return false;
        this.byte(0x7b);
        if (!this.object(v as Record<string, unknown>, depth + 1)) return false;
        this.byte(0x7d);
        return true;
      default:
        return false;
    }
  }

  private object(o: Record<string, unknown>, depth: number): boolean {
    let first = true;
    for (const k in o) {
      const x = o[k];
      // JSON.stringify leaves out undefined members (functions and symbols too: refused here).
      if (x === undefined) continue;
      if (!first) this.byte(COMMA);
      first = false;
      this.string(k);
      this.byte(COLON);
      if (!this.value(x, depth)) return false;
    }
    return true;
  }

  private array(a: unknown[], depth: number): boolean {
    this.byte(0x5b);
    for (let i = 0; i < a.length; i++) {
      if (i > 0) this.byte(COMMA);
      const x = a[i];
      // An undefined element is null.
      if (x === undefined) this.raw('null');
      else if (!this.value(x, depth)) return false;
    }
    this.byte(0x5d);
    return true;
  }

  private string(s: string): void {
    if (!isPlain(s)) {
      // Escapes and non-ASCII characters: JSON.stringify's own text of the string.
      this.raw(JSON.stringify(s));
      return;
    }
    this.room(s.length + 2);
    const b = this.buf;
    b[this.n++] = QUOTE;
    this.n += b.write(s, this.n, 'latin1');
    b[this.n++] = QUOTE;
  }

  private room(more: number): void {
    if (this.n + more <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.n + more) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buf.copy(grown, 0, 0, this.n);
    this.buf = grown;
  }
}

/** Printable ASCII without `"` and `\`: written as it is, in JSON and in UTF-8. */
function isPlain(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === QUOTE || c === 0x5c) return false;
  }
  return true;
}

/**
 * An object JSON.stringify writes member by member, as `for…in` lists them: an Object (or
 * null-prototype) one without a toJSON. (An Object's inherited members are Object.prototype's,
 * none of them enumerable.)
 */
function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  return (v as { toJSON?: unknown }).toJSON === undefined;
}
