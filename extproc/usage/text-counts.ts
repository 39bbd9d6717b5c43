/**
 * Token counts of recent texts, for the estimate every governed request makes before its budget
 * check (estimate.ts): a conversation resends its whole history with every turn, so most of a
 * prompt's text (the system prompt, the earlier turns) was counted for the request before, and
 * counting it again costs a byte-pair merge over every piece (~40 µs for a 2 KB prompt) where a
 * lookup costs a hash of it (~5 µs).
 *
 * Keyed by the text's SHA-256, never by the text: the cache keeps no prompt content (prompts
 * carry personal data) once a request is over, and two texts never share an entry (a collision
 * could only have misstated a reservation's estimate, which reported usage replaces anyway).
 *
 * Bounded: two generations of at most `capacity` entries each; when the current one is full, it
 * becomes the previous one and the one before is dropped. A hit in the previous generation is
 * carried into the current one, so texts in use stay.
 */
import { hash } from 'node:crypto';

/** String.prototype.isWellFormed (Node 20; ES2024, past the project's lib). */
type WellFormed = string & { isWellFormed(): boolean };

export class TextCounts {
  private current = new Map<string, number>();
  private previous = new Map<string, number>();

  constructor(
    private readonly count: (text: string) => number,
    /** Texts shorter than this are counted every time: their count costs about a lookup. */
    private readonly minChars = 64,
    private readonly capacity = 4096,
  ) {}

  get(text: string): number {
    // A lone surrogate has no UTF-8 of its own (the hash would see U+FFFD): counted every time.
    if (text.length < this.minChars || !(text as WellFormed).isWellFormed())
      return this.count(text);
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

/**
 * The SHA-256 of a well-formed text's UTF-8, base64: hashed natively (~1 ns a character, the same
 * in every process state, where a hash written in JavaScript varied fivefold with the JIT's
 * view of the strings it was given), and no one can make two texts share a key.
 */
export function textKey(text: string): string {
  return hash('sha256', text, 'base64');
}
