/**
 * Injection scores of recent texts, for the prompt guard: a conversation resends its whole
 * history with every turn, so each earlier user turn was scored for the request before, and
 * scoring it again costs ~25 regex scans and a tokenization (~10-30 µs for a few hundred
 * characters) where a lookup costs a SHA-256 of the text (~1 µs).
 *
 * Keyed by a SHA-256 of a per-process random salt and the text's own SHA-256, never by the
 * text: no prompt content is kept once a request is over (prompts carry personal data). A key is
 * a cryptographic digest, not a fast hash, because a shared key would hand one text another's
 * verdict: with a secret salt and 256 bits, no one can make two texts share one, by chance or
 * by design.
 *
 * Bounded: two generations of at most `capacity` entries each; when the current one is full,
 * it becomes the previous one and the one before is dropped. A hit in the previous generation is
 * carried into the current one, so texts in use stay. Each caller gets its own copy of a score.
 */
import { hash, randomBytes } from 'node:crypto';
import type { InjectionScore } from './injection.js';
import type { InvisibleScan } from './invisible.js';

/** 32 random bytes as 44 base64 characters: a fixed-length prefix of every digest it salts. */
const SALT = randomBytes(32).toString('base64');

/** String.prototype.isWellFormed (Node 20; ES2024, past the project's lib). */
type WellFormed = string & { isWellFormed(): boolean };

export class RecentScores {
  private current = new Map<string, InjectionScore>();
  private previous = new Map<string, InjectionScore>();

  constructor(
    private readonly score: (text: string, scan: InvisibleScan) => InjectionScore,
    /** Shorter texts are scored every time: that costs about what the digest does. */
    private readonly minChars = 64,
    private readonly capacity = 4096,
  ) {}

  /** The score of `text`; `scan` must be its scanInvisible result (the score depends on it). */
  get(text: string, scan: InvisibleScan): InjectionScore {
    // A lone surrogate has no UTF-8 of its own (the digest would see U+FFFD, as for any other
    // lone surrogate): such a text is scored every time, never given another text's score.
    if (text.length < this.minChars || !(text as WellFormed).isWellFormed())
      return this.score(text, scan);
    // The salted digest of the text's digest, both one-shot: a Hash object fed the salt and the
    // text cost 1.3 us and 266 bytes a text; the salt prepended to the text 0.65 us but 600 bytes
    // (the joined string is flattened, a copy of the text); this ~0.95 us and ~310 bytes. The key
    // kept is still salted (the inner digest is never stored).
    const key = hash('sha256', SALT + hash('sha256', text, 'base64'), 'base64');
    let s = this.current.get(key);
    if (s === undefined) {
      s = this.previous.get(key) ?? this.score(text, scan);
      if (this.current.size >= this.capacity) {
        this.previous = this.current;
        this.current = new Map();
      }
      this.current.set(key, s);
    }
    return { score: s.score, rules: [...s.rules] };
  }

  /** Entries held (tests). */
  get size(): number {
    return this.current.size + this.previous.size;
  }
}
