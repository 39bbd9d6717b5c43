/**
 * Token counts of recent texts, for the estimate every governed request makes before its budget
 * check (estimate.ts): a conversation resends its whole history with every turn, so most of a
 * prompt's text (the system prompt, the earlier turns) was counted for the request before, and
 * counting it again costs a byte-pair merge over every piece (~100 µs for a 2 KB prompt) where a
 * lookup costs one pass of a hash over the characters.
 *
 * Keyed by two 32-bit hashes of the text and its length (randomly seeded per process), never by
 * the text: the cache keeps no prompt content (prompts carry personal data) once a request is
 * over. Two different texts collide with a chance of about one in 2^53 per lookup; a collision
 * could only misstate a reservation's estimate, which the provider's reported usage replaces
 * when the request settles (as it does any estimate's error).
 *
 * Bounded: two generations of at most `capacity` entries each; when the current one is full, it
 * becomes the previous one and the one before is dropped. A hit in the previous generation is
 * carried into the current one, so texts in use stay.
 */
import { randomBytes } from 'node:crypto';

export class TextCounts {
  private current = new Map<number, number>();
  private previous = new Map<number, number>();

  constructor(
    private readonly count: (text: string) => number,
    /** Texts shorter than this are counted every time: their count costs about a lookup. */
    private readonly minChars = 64,
    private readonly capacity = 4096,
  ) {}

  get(text: string): number {
    if (text.length < this.minChars) return this.count(text);
    const key = textKey(text);
    let n = this.current.get(key);
    if (n !== undefined) return n;
    n = this.previous.get(key) ?? this.count(text);
    if (this.current.size >= this.capacity) {
      this.previous = this.current;
      this.current = new Map();
    }
    this.current.set(key, n);
    return n;
  }

  /** Entries held (tests). */
  get size(): number {
    return this.current.size + this.previous.size;
  }
}

/** Per process: which texts share a key cannot be worked out from outside. */
const SEED = randomBytes(8);
const SEED_A = SEED.readInt32LE(0);
const SEED_B = SEED.readInt32LE(4);

/**
 * 53 bits of two 32-bit hashes of the text (FNV-1a-style, with different primes and random
 * seeds, the second mixed with the length), over two UTF-16 units per step: ~2 ns a character.
 */
export function textKey(text: string): number {
  let a = SEED_A;
  let b = SEED_B ^ text.length;
  const n = text.length;
  const even = n & ~1;
  for (let i = 0; i < even; i += 2) {
    const c = text.charCodeAt(i) | (text.charCodeAt(i + 1) << 16);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  if (even < n) {
    const c = text.charCodeAt(even);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  b ^= b >>> 15;
  a ^= a >>> 13;
  return (a >>> 0) * 0x200000 + ((b >>> 0) & 0x1fffff);
}
