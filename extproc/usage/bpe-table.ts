/**
 * A byte-pair encoding's vocabulary (token bytes → rank) in a few flat typed arrays, read from
 * the encoding's `.tiktoken` file (one `base64(bytes) rank` line per token, the format OpenAI
 * publishes and gpt-tokenizer ships under `data/`).
 *
 * Why not a Map of strings: o200k has 200k tokens; as JavaScript strings in a Map they cost
 * ~20 MiB of V8 heap that every full collection marks, and loading them from the package's
 * JavaScript module (a 2.4 MB array literal) cost ~70 MiB of RSS that the process never gave
 * back. Here every token's bytes sit end to end in one byte array, found through an
 * open-addressing hash table of entry numbers: ~4.5 MiB outside the V8 heap, nothing for the
 * collector to trace, and lookups by a range of a string without slicing it.
 */

export interface BpeTable {
  /** How many tokens. */
  readonly size: number;
  /** Every token's bytes, end to end, in file order. */
  readonly bytes: Uint8Array;
  /** Entry i's bytes are bytes[offsets[i], offsets[i + 1]). */
  readonly offsets: Uint32Array;
  /** Entry i's rank. */
  readonly ranks: Int32Array;
  /** Open addressing, linear probing: entry number + 1, 0 for an empty slot. */
  readonly slots: Int32Array;
  readonly mask: number;
  /** Two-byte tokens by (first << 8 | second), -1 for none: the first lookups of every merge. */
  readonly pairs: Int32Array;
}

/** base64 digit values; -1 for a byte that is none (padding is handled apart). */
const B64 = new Int8Array(256).fill(-1);
for (let i = 0; i < 64; i++) {
  B64['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i;
}

// FNV-1a over the bytes, then a finalizer so the low bits (the slot) depend on every byte.
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h;
}

function hashBytes(b: Uint8Array, a: number, end: number): number {
  let h = FNV_OFFSET;
  for (let i = a; i < end; i++) h = Math.imul(h ^ b[i]!, FNV_PRIME);
  return finish(h);
}

/** The same hash over a string whose chars are bytes (Latin-1: every char < 256). */
function hashChars(s: string, a: number, end: number): number {
  let h = FNV_OFFSET;
  for (let i = a; i < end; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  return finish(h);
}

export class BpeFileError extends Error {}

/** Parses a `.tiktoken` file. Throws BpeFileError on a malformed line or a repeated token. */
export function parseTiktoken(file: Uint8Array): BpeTable {
  let lines = 0;
  for (let i = 0; i < file.length; i++) if (file[i] === 0x0a) lines++;
  if (file.length > 0 && file[file.length - 1] !== 0x0a) lines++;
  // base64 decodes to at most 3/4 of its length: a bound for all the bytes together.
  const all = new Uint8Array(Math.ceil((file.length * 3) / 4));
  const offsets = new Uint32Array(lines + 1);
  const ranks = new Int32Array(lines);
  let n = 0;
  let out = 0;
  let line = 0;
  for (let i = 0; i < file.length;) {
    line++;
    let eol = file.indexOf(0x0a, i);
    if (eol < 0) eol = file.length;
    if (eol === i) {
      i = eol + 1;
      continue;
    }
    const sp = file.indexOf(0x20, i);
    if (sp < 0 || sp >= eol || sp === i) throw new BpeFileError(`line ${line}: no "bytes rank"`);
    offsets[n] = out;
    let acc = 0;
    let bits = 0;
    for (let j = i; j < sp; j++) {
      const c = file[j]!;
      if (c === 0x3d) break; // '=' padding: the bits left over are padding too
      const v = B64[c]!;
      if (v < 0) throw new BpeFileError(`line ${line}: not base64`);
      acc = ((acc << 6) | v) & 0xffffff;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        all[out++] = (acc >> bits) & 0xff;
      }
    }
    let rank = 0;
    let end = eol;
    if (end > sp + 1 && file[end - 1] === 0x0d) end--;
    if (end === sp + 1) throw new BpeFileError(`line ${line}: no rank`);
    for (let j = sp + 1; j < end; j++) {
      const d = file[j]! - 0x30;
      if (d < 0 || d > 9) throw new BpeFileError(`line ${line}: rank is not a number`);
      rank = rank * 10 + d;
      if (rank > 0x7fffffff) throw new BpeFileError(`line ${line}: rank out of range`);
    }
    if (out === offsets[n]) throw new BpeFileError(`line ${line}: empty token`);
    ranks[n++] = rank;
    i = eol + 1;
  }
  offsets[n] = out;
  let cap = 1024;
  while (cap < n * 2) cap *= 2;
  const slots = new Int32Array(cap);
  const mask = cap - 1;
  const pairs = new Int32Array(65536).fill(-1);
  const table: BpeTable = {
    size: n,
    // A copy of exactly the bytes used, so the bound's slack is not kept.
    bytes: all.slice(0, out),
    offsets: n === lines ? offsets : offsets.slice(0, n + 1),
    ranks: n === lines ? ranks : ranks.slice(0, n),
    slots,
    mask,
    pairs,
  };
  const b = table.bytes;
  for (let e = 0; e < n; e++) {
    const a = offsets[e]!;
    const z = offsets[e + 1]!;
    if (z - a === 2) pairs[(b[a]! << 8) | b[a + 1]!] = ranks[e]!;
    for (let s = hashBytes(b, a, z) & mask; ; s = (s + 1) & mask) {
      const k = slots[s]!;
      if (k === 0) {
        slots[s] = e + 1;
        break;
      }
      if (sameBytes(b, offsets[k - 1]!, offsets[k]!, a, z)) {
        throw new BpeFileError(`token of rank ${ranks[e]} repeats rank ${ranks[k - 1]}`);
      }
    }
  }
  return table;
}

function sameBytes(b: Uint8Array, a1: number, z1: number, a2: number, z2: number): boolean {
  if (z1 - a1 !== z2 - a2) return false;
  for (let i = 0; i < z1 - a1; i++) if (b[a1 + i] !== b[a2 + i]) return false;
  return true;
}

/**
 * The rank of the token whose bytes are the chars s[a, end) (each < 256: a Latin-1 view of
 * UTF-8 bytes, or ASCII text itself); -1 when those bytes are no token.
 */
export function rankOfChars(t: BpeTable, s: string, a: number, end: number): number {
  const len = end - a;
  if (len === 2) return t.pairs[(s.charCodeAt(a) << 8) | s.charCodeAt(a + 1)]!;
  const { slots, offsets, bytes, mask } = t;
  for (let slot = hashChars(s, a, end) & mask; ; slot = (slot + 1) & mask) {
    const k = slots[slot]!;
    if (k === 0) return -1;
    const o = offsets[k - 1]!;
    if (offsets[k]! - o === len) {
      let i = 0;
      while (i < len && bytes[o + i] === s.charCodeAt(a + i)) i++;
      if (i === len) return t.ranks[k - 1]!;
    }
  }
}

/**
 * rankOfChars for s[a, end) when every char is ASCII (then its chars are its UTF-8 bytes); -2
 * when one is not. One pass over the chars: the ASCII check rides along the hash, where checking
 * first and then hashing read every char of the text twice.
 */
export function rankOfAscii(t: BpeTable, s: string, a: number, end: number): number {
  const len = end - a;
  let h = FNV_OFFSET;
  for (let i = a; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return -2;
    h = Math.imul(h ^ c, FNV_PRIME);
  }
  if (len === 2) return t.pairs[(s.charCodeAt(a) << 8) | s.charCodeAt(a + 1)]!;
  const { slots, offsets, bytes, mask } = t;
  for (let slot = finish(h) & mask; ; slot = (slot + 1) & mask) {
    const k = slots[slot]!;
    if (k === 0) return -1;
    const o = offsets[k - 1]!;
    if (offsets[k]! - o === len) {
      let i = 0;
      while (i < len && bytes[o + i] === s.charCodeAt(a + i)) i++;
      if (i === len) return t.ranks[k - 1]!;
    }
  }
}

/** The rank of a token given by its bytes; -1 when they are no token. */
export function rankOfBytes(t: BpeTable, b: Uint8Array): number {
  const { slots, offsets, bytes, mask } = t;
  for (let slot = hashBytes(b, 0, b.length) & mask; ; slot = (slot + 1) & mask) {
    const k = slots[slot]!;
    if (k === 0) return -1;
    const o = offsets[k - 1]!;
    if (offsets[k]! - o === b.length) {
      let i = 0;
      while (i < b.length && bytes[o + i] === b[i]) i++;
      if (i === b.length) return t.ranks[k - 1]!;
    }
  }
}

/** Bytes held by the table's arrays (what the tokenizer keeps for the life of the process). */
export function tableBytes(t: BpeTable): number {
  return (
    t.bytes.byteLength +
    t.offsets.byteLength +
    t.ranks.byteLength +
    t.slots.byteLength +
    t.pairs.byteLength
  );
}
