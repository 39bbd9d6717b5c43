/**
 * Token counts of recent texts, for the estimate every governed request makes before its budget
 * check (estimate.ts): a conversation resends its whole history with every turn, so most of a
 * prompt's text (the system prompt, the earlier turns) was counted for the request before, and
 * counting it again costs a byte-pair merge over every piece (~40 µs for a 2 KB prompt) where a
 * lookup costs a hash of it (~5 µs).
 *
 * Kept as shared/recent-texts.ts keeps results: under salted digests, never the text (the cache
 * keeps no prompt content, and prompts carry personal data), two texts never share an entry, and
 * two generations of at most `capacity` entries each, texts in use staying.
 */
import { RecentTexts } from '../shared/recent-texts.js';

export class TextCounts {
  private readonly recent: RecentTexts<number>;

  constructor(
    private readonly count: (text: string) => number,
    /** Texts shorter than this are counted every time: their count costs about a lookup. */
    minChars = 64,
    capacity = 4096,
  ) {
    this.recent = new RecentTexts(minChars, capacity);
  }

  get(text: string): number {
    // A lone surrogate has no UTF-8 of its own (the digest would see U+FFFD): counted every time.
    if (!this.recent.holds(text)) return this.count(text);
    return this.recent.get(text, this.count, undefined);
  }

  /** Entries held (tests). */
  get size(): number {
    return this.recent.size;
  }
}
