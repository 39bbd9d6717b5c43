/**
 * Injection scores of recent texts, for the prompt guard: each earlier user turn of a
 * conversation was scored for the request before, and scoring it again costs ~25 regex scans and
 * a tokenization (~10-30 µs for a few hundred characters) where a lookup costs a SHA-256 of the
 * text (~1 µs). Kept as shared/recent-texts.ts keeps results (salted digests, never the text;
 * bounded). Each caller gets its own copy of a score.
 */
import { RecentTexts } from '../shared/recent-texts.js';
import type { InjectionScore } from './injection.js';
import type { InvisibleScan } from './invisible.js';

export class RecentScores {
  private readonly recent: RecentTexts<InjectionScore>;

  constructor(
    private readonly score: (text: string, scan: InvisibleScan) => InjectionScore,
    /** Shorter texts are scored every time: that costs about what the digest does. */
    minChars = 64,
    capacity = 4096,
  ) {
    this.recent = new RecentTexts(minChars, capacity);
  }

  /** The score of `text`; `scan` must be its scanInvisible result (the score depends on it). */
  get(text: string, scan: InvisibleScan): InjectionScore {
    if (!this.recent.holds(text)) return this.score(text, scan);
    const s = this.recent.get(text, this.score, scan);
    return { score: s.score, rules: [...s.rules] };
  }

  /** Entries held (tests). */
  get size(): number {
    return this.recent.size;
  }
}
