/**
 * A request body checked without building it: whether its bytes are one JSON object that
 * JSON.parse would accept, with no key twice in any object, and where its top-level members'
 * values lie, so routing reads `model` and `stream` without the whole tree (router.ts).
 *
 * Why: a plain route (no policy) needs three fields of the body, but JSON.parse made the whole
 * tree (the prompt's strings included) and its text: ~4.5 KiB of the ~17 KiB Sluice allocated
 * per 2 KB chat request (bench section lean, BENCH_ALLOC_PROFILE). The tree is parsed later only
 * if something reads it.
 *
 * It only vouches, never refuses: undefined sends the body to JSON.parse and the duplicate-key
 * check (router.ts parseBody), which give the caller the same errors as before. So it gives up on
 * anything unusual instead of handling it: a key with an escape (`"mod\u0065l"` is `model`),
 * more than MAX_KEYS keys in an object (the duplicate check here compares each key with the
 * object's earlier ones), nesting deeper than MAX_DEPTH, and every syntax error. The bytes must
 * be valid UTF-8 (checked before), so any byte from 0x80 up is part of a character.
 */

/** Where a top-level member's value lies in the body: [start, end). */
export interface Span {
  start: number;
  end: number;
}

export interface BodyScan {
  /** The values of the top-level members, by key (only keys without escapes get here). */
  member(key: string): Span | undefined;
}

const MAX_DEPTH = 64;
const MAX_KEYS = 32;

// Scratch of one scan (scans never nest): every open object's keys as [start, end) of their
// bytes between the quotes, and the top-level members' key and value spans.
const KEY_START = new Int32Array(MAX_DEPTH * MAX_KEYS);
const KEY_END = new Int32Array(MAX_DEPTH * MAX_KEYS);
/** The top-level members: key start, key end, value start, value end each (MAX_KEYS at most). */
const TOP = new Int32Array(4 * MAX_KEYS);
let topCount = 0;

let buf: Buffer = Buffer.alloc(0);
let pos = 0;
let keyTop = 0;
/** The last string read had an escape. */
let escaped = false;

class Scan implements BodyScan {
  constructor(
    private readonly body: Buffer,
    /** key start, key end, value start, value end per top-level member. */
    private readonly spans: Int32Array,
    private readonly count: number,
  ) {}

  /** `key` must be ASCII (the router's field names): its characters are then its bytes. */
  member(key: string): Span | undefined {
    const n = key.length;
    const b = this.body;
    for (let i = 0; i < this.count; i++) {
      const ks = this.spans[4 * i]!;
      if (this.spans[4 * i + 1]! - ks !== n) continue;
      let j = 0;
      while (j < n && b[ks + j] === key.charCodeAt(j)) j++;
      if (j === n) return { start: this.spans[4 * i + 2]!, end: this.spans[4 * i + 3]! };
    }
    return undefined;
  }
}

const isWs = (c: number | undefined): boolean => c === 32 || c === 10 || c === 13 || c === 9;

function ws(): void {
  while (isWs(buf[pos])) pos++;
}

const isDigit = (c: number | undefined): boolean => c !== undefined && c >= 48 && c <= 57;

function isHex(c: number | undefined): boolean {
  return c !== undefined && ((c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102));
}

/** A string at `pos` (its opening quote); after it on success. */
function string(): boolean {
  // Locals in the loop, not the module's buf and pos: most of a body's bytes are in strings.
  const b = buf;
  const n = b.length;
  let p = pos + 1;
  escaped = false;
  while (p < n) {
    const c = b[p]!;
    if (c === 34) {
      pos = p + 1;
      return true;
    }
    if (c >= 0x20 && c !== 92) {
      p++;
      continue;
    }
    // JSON forbids the control characters U+0000..U+001F unescaped in a string.
    if (c < 0x20) return false;
    escaped = true;
    const e = b[p + 1];
    // \" \\ \/ \b \f \n \r \t
    if (
      e === 34 ||
      e === 92 ||
      e === 47 ||
      e === 98 ||
      e === 102 ||
      e === 110 ||
      e === 114 ||
      e === 116
    ) {
      p += 2;
    } else if (e === 117) {
      if (!isHex(b[p + 2]) || !isHex(b[p + 3]) || !isHex(b[p + 4]) || !isHex(b[p + 5]))
        return false;
      p += 6;
    } else return false;
  }
  return false;
}

/** -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
function number(): boolean {
  if (buf[pos] === 45) pos++;
  if (buf[pos] === 48) pos++;
  else if (isDigit(buf[pos])) while (isDigit(buf[pos])) pos++;
  else return false;
  if (buf[pos] === 46) {
    pos++;
    if (!isDigit(buf[pos])) return false;
    while (isDigit(buf[pos])) pos++;
  }
  if (buf[pos] === 101 || buf[pos] === 69) {
    pos++;
    if (buf[pos] === 43 || buf[pos] === 45) pos++;
    if (!isDigit(buf[pos])) return false;
    while (isDigit(buf[pos])) pos++;
  }
  return true;
}

function literal(word: string): boolean {
  for (let i = 0; i < word.length; i++) if (buf[pos + i] !== word.charCodeAt(i)) return false;
  pos += word.length;
  return true;
}

function value(depth: number): boolean {
  switch (buf[pos]) {
    case 123:
      return object(depth + 1, false);
    case 91:
      return array(depth + 1);
    case 34:
      return string();
    case 116:
      return literal('true');
    case 102:
      return literal('false');
    case 110:
      return literal('null');
    default:
      return number();
  }
}

function array(depth: number): boolean {
  if (depth > MAX_DEPTH) return false;
  pos++;
  ws();
  if (buf[pos] === 93) {
    pos++;
    return true;
  }
  for (;;) {
    if (!value(depth)) return false;
    ws();
    const c = buf[pos];
    if (c === 93) {
      pos++;
      return true;
    }
    if (c !== 44) return false;
    pos++;
    ws();
  }
}

/** An object at `pos`; `top`: the body's own, whose members' spans go to TOP. */
function object(depth: number, top: boolean): boolean {
  if (depth > MAX_DEPTH) return false;
  pos++;
  ws();
  if (buf[pos] === 125) {
    pos++;
    return true;
  }
  const base = keyTop;
  for (;;) {
    if (buf[pos] !== 34) return false;
    const ks = pos + 1;
    if (!string() || escaped) return false;
    const ke = pos - 1;
    if (keyTop - base === MAX_KEYS) return false;
    // A key equal to an earlier one of this object: JSON.parse would keep the last, and the
    // caller's error names it (router.ts parseBody).
    const n = ke - ks;
    for (let k = base; k < keyTop; k++) {
      if (
        KEY_END[k]! - KEY_START[k]! === n &&
        buf.compare(buf, KEY_START[k], KEY_END[k], ks, ke) === 0
      )
        return false;
    }
    KEY_START[keyTop] = ks;
    KEY_END[keyTop] = ke;
    keyTop++;
    ws();
    if (buf[pos] !== 58) return false;
    pos++;
    ws();
    const vs = pos;
    if (!value(depth)) return false;
    if (top) {
      const at = 4 * topCount++;
      TOP[at] = ks;
      TOP[at + 1] = ke;
      TOP[at + 2] = vs;
      TOP[at + 3] = pos;
    }
    ws();
    const c = buf[pos];
    if (c === 125) {
      pos++;
      keyTop = base;
      return true;
    }
    if (c !== 44) return false;
    pos++;
    ws();
  }
}

/**
 * The scan of `body` (valid UTF-8), or undefined when it cannot vouch for it (see above): then
 * JSON.parse and the duplicate-key check decide, as they always did.
 */
export function scanBody(body: Buffer): BodyScan | undefined {
  buf = body;
  pos = 0;
  keyTop = 0;
  topCount = 0;
  try {
    ws();
    if (buf[pos] !== 123) return undefined;
    if (!object(1, true)) return undefined;
    ws();
    if (pos !== buf.length) return undefined;
    return new Scan(body, TOP.slice(0, 4 * topCount), topCount);
  } finally {
    buf = EMPTY;
  }
}

const EMPTY = Buffer.alloc(0);
