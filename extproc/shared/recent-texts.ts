/**
 * What was computed for recent texts (an injection score, a text's findings), for work that a
 * conversation would otherwise repeat: it resends its whole history with every turn, so most of a
 * prompt's texts were seen by the request before, and the work per request would grow with the
 * conversation instead of with its new turn.
 *
 * Keyed by a SHA-256 of a per-process random salt and the text's own SHA-256, never by the text:
 * no prompt content is kept once a request is over (prompts carry personal data), and what is
 * kept must not hold any either. A key is a cryptographic digest, not a fast hash, because a
 * shared key would hand one text another's result: with a secret salt and 256 bits, no one can
 * make two texts share one, by chance or by design.
 *
 * Bounded: two generations of at most `capacity` entries each; when the current one is full, it
 * becomes the previous one and the one before is dropped. A hit in the previous generation is
 * carried into the current one, so texts in use stay.
 */
import { hash, randomBytes } from 'node:crypto';

/** 32 random bytes as 44 base64 characters: a fixed-length prefix of every digest it salts. */
const SALT = randomBytes(32).toString('base64');

/** String.prototype.isWellFormed (Node 20; ES2024, past the project's lib). */
type WellFormed = string & { isWellFormed(): boolean };

export class RecentTexts<V> {
  private current = new Map<string, V>();
  private previous = new Map<string, V>();

  constructor(
    /** Shorter texts are not kept: the work costs about what the digest does. */
    private readonly minChars = 64,
    private readonly capacity = 4096,
  ) {}

  /**
   * Whether `text` is kept. A lone surrogate has no UTF-8 of its own (the digest would see
   * U+FFFD, as for any other lone surrogate), so such a text is never given another's result.
   */
  holds(text: string): boolean {
    return text.length >= this.minChars && (text as WellFormed).isWellFormed();
  }

  /**
   * The value of `text` (which `holds`), made by `make(text, arg)` when no recent text had it
   * (an argument rather than a closure: no function made per call). `scope` names what `make`
   * depends on besides the text (e.g. a policy's detectors): texts of different scopes never
   * share an entry (the scope is put before the text's key, whose length is fixed), and all of
   * them share the bound.
   */
  get<A>(text: string, make: (text: string, arg: A) => V, arg: A, scope = ''): V {
    const key = scope === '' ? textKey(text) : scope + textKey(text);
    let v = this.current.get(key);
    if (v === undefined) {
      v = this.previous.get(key) ?? make(text, arg);
      if (this.current.size >= this.capacity) {
        this.previous = this.current;
        this.current = new Map();
      }
      this.current.set(key, v);
    }
    return v;
  }

  /** Entries held (tests). */
  get size(): number {
    return this.current.size + this.previous.size;
  }
}

/**
 * The keys of the texts this turn of the event loop has looked up (up to TURN_KEYS of them), and
 * the texts, dropped when the turn's callbacks are done (setImmediate). Why: a request's texts
 * are looked up by several caches in turn (masking's findings, the guard's scores, the token
 * counts), each of which digested the same text again. For the 5 texts of the bench's 2 KB chat
 * request, one request per turn, the 15 lookups took 20-23 µs of CPU, 9-10 with one digest per
 * text; with one cache, 9-12 against 8-10 (issue 16). A text stays here no longer than the turn
 * that read it (its request holds it meanwhile anyway). Two arrays made once: a Map per turn
 * added ~0.6 KiB to each request of a route with one cache, which gains nothing from this.
 */
const TURN_KEYS = 32;
const turnTexts = new Array<string | undefined>(TURN_KEYS).fill(undefined);
const turnKeys = new Array<string>(TURN_KEYS).fill('');
let turnHeld = 0;
const dropTurnKeys = (): void => {
  for (let i = 0; i < turnHeld; i++) turnTexts[i] = undefined;
  turnHeld = 0;
};

/**
 * A text's key: the salted digest of its digest, both one-shot (a Hash object fed the salt and
 * the text cost 1.3 µs and 266 bytes a text; the salt prepended to the text 0.65 µs but 600
 * bytes, as the joined string is flattened, a copy of the text; this ~0.95 µs and ~310 bytes).
 * The key kept is salted; the inner digest is never stored.
 */
export function textKey(text: string): string {
  const n = text.length;
  let sameLength = false;
  for (let i = 0; i < turnHeld; i++) {
    const t = turnTexts[i]!;
    if (t.length !== n) continue;
    if (t === text) return turnKeys[i]!;
    sameLength = true;
  }
  const key = hash('sha256', SALT + hash('sha256', text, 'base64'), 'base64');
  // At most one held text per length: a lookup then compares characters with one text at most,
  // so texts of one length made to differ only at their ends cost no more than their digests.
  if (turnHeld < TURN_KEYS && !sameLength) {
    if (turnHeld === 0) setImmediate(dropTurnKeys);
    turnTexts[turnHeld] = text;
    turnKeys[turnHeld++] = key;
  }
  return key;
}

/** Texts whose keys this turn holds (tests: none once the turn is over). */
export function turnTextsHeld(): number {
  let n = 0;
  for (const t of turnTexts) if (t !== undefined) n++;
  return n;
}
