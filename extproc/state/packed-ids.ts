/**
 * A map from 22-character base64url ids to a time in ms, held in typed arrays: each id packed
 * into five 32-bit words, open addressing, no object per entry. The memory store keeps a
 * "settled" marker per settlement for 2 × the reservation TTL (30 min by default): ~900,000 at
 * 500 requests a second. This process's own reservation ids are kept by number (seq-markers.ts,
 * ~6 bytes each); these tables hold the rest of that shape: another process's ids, and the few
 * of ours SeqMarkers hands back. As strings in a Map they cost ~85 bytes each and, worse, a
 * million objects for every full garbage collection to trace; here they cost ~40 bytes (28 per
 * slot, at most 3/4 of the slots used) that the collector never looks into.
 *
 * Packing is exact (5 characters of 6 bits per word, the last word the last 2 characters): two
 * ids share a slot only if they are the same string. Spread over SHARDS tables by a hash of the id,
 * so growing one (a rehash) touches 1/SHARDS of the entries; an expired entry is left as a
 * tombstone by `sweep`, which visits a few tables per call, round robin.
 */

const SHARDS = 64;
/** The table of an id: the top 6 bits of its hash. */
const SHARD_SHIFT = 26;
const WORDS = 5;
const INITIAL_SLOTS = 64;
/** Deadline slots: 0 is a free slot, -1 a deleted one (tombstone); a time is > 0. */
const FREE = 0;
const DELETED = -1;

/** The 6-bit value of each base64url character, -1 for any other code unit. */
const SIXTETS = new Int8Array(128).fill(-1);
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
for (let i = 0; i < ALPHABET.length; i++) SIXTETS[ALPHABET.charCodeAt(i)] = i;

/** The packed words of the id last given to `pack`. */
const KEY = new Int32Array(WORDS);

/** Packs `id` into KEY; false when it is not 22 base64url characters. */
function pack(id: string): boolean {
  if (id.length !== 22) return false;
  let w = 0;
  for (let i = 0; i < 22; i++) {
    const c = id.charCodeAt(i);
    const v = c < 128 ? SIXTETS[c]! : -1;
    if (v < 0) return false;
    w = (w << 6) | v;
    if (i % 5 === 4) {
      KEY[(i - 4) / 5] = w;
      w = 0;
    }
  }
  KEY[4] = w;
  return true;
}

/**
 * A hash of the id whose words start at w[o], from all five words: ids that share a long prefix
 * (issued-ids.ts: 14 characters of one process) spread as well as random ones. Its top bits pick
 * the table, its low bits the first slot.
 */
function hash(w: Int32Array, o: number): number {
  let h = Math.imul(w[o]!, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 15) ^ w[o + 1]!, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ w[o + 2]!, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ w[o + 3]!, 0x27d4eb2f);
  h = Math.imul(h ^ (h >>> 15) ^ w[o + 4]!, 0x165667b1);
  return h ^ (h >>> 16);
}

class Table {
  words = new Int32Array(INITIAL_SLOTS * WORDS);
  until = new Float64Array(INITIAL_SLOTS);
  /** Entries with a time. */
  live = 0;
  /** Slots not free: entries and tombstones. */
  used = 0;

  /** The first slot to probe for the id whose words start at w[o]. */
  private home(w: Int32Array, o: number): number {
    return hash(w, o) & (this.until.length - 1);
  }

  /** The slot holding KEY, or -1. */
  find(): number {
    const mask = this.until.length - 1;
    for (let s = this.home(KEY, 0); ; s = (s + 1) & mask) {
      const t = this.until[s]!;
      if (t === FREE) return -1;
      if (t !== DELETED && this.matches(s)) return s;
    }
  }

  private matches(s: number): boolean {
    const w = this.words;
    const o = s * WORDS;
    return (
      w[o] === KEY[0] &&
      w[o + 1] === KEY[1] &&
      w[o + 2] === KEY[2] &&
      w[o + 3] === KEY[3] &&
      w[o + 4] === KEY[4]
    );
  }

  /** Sets KEY's time (ms > 0), adding it if needed. */
  set(untilMs: number): void {
    const found = this.find();
    if (found >= 0) {
      this.until[found] = untilMs;
      return;
    }
    if ((this.used + 1) * 4 > this.until.length * 3) this.resize();
    const mask = this.until.length - 1;
    let s = this.home(KEY, 0);
    while (this.until[s]! > 0) s = (s + 1) & mask;
    if (this.until[s] === FREE) this.used++;
    this.until[s] = untilMs;
    this.words.set(KEY, s * WORDS);
    this.live++;
  }

  /** Deletes every entry whose time is ≤ nowMs. */
  sweep(nowMs: number): void {
    const until = this.until;
    for (let s = 0; s < until.length; s++) {
      const t = until[s]!;
      if (t > 0 && t <= nowMs) {
        until[s] = DELETED;
        this.live--;
      }
    }
  }

  /** Twice as many slots when the entries fill half; as many, without tombstones, otherwise. */
  private resize(): void {
    const oldWords = this.words;
    const oldUntil = this.until;
    const slots = this.live * 2 >= oldUntil.length ? oldUntil.length * 2 : oldUntil.length;
    this.words = new Int32Array(slots * WORDS);
    this.until = new Float64Array(slots);
    this.used = this.live;
    const mask = slots - 1;
    for (let s = 0; s < oldUntil.length; s++) {
      const t = oldUntil[s]!;
      if (t <= 0) continue;
      let d = this.home(oldWords, s * WORDS);
      while (this.until[d] !== FREE) d = (d + 1) & mask;
      this.until[d] = t;
      this.words.set(oldWords.subarray(s * WORDS, s * WORDS + WORDS), d * WORDS);
    }
  }
}

export class PackedIdTimes {
  private readonly tables: Table[] = [];
  private nextSweep = 0;

  constructor() {
    for (let i = 0; i < SHARDS; i++) this.tables.push(new Table());
  }

  /** Whether `id` can be held here (22 base64url characters). */
  static fits(id: string): boolean {
    return pack(id);
  }

  private table(): Table {
    return this.tables[hash(KEY, 0) >>> SHARD_SHIFT]!;
  }

  /** The time of `id`, or undefined; `id` must fit. */
  get(id: string): number | undefined {
    if (!pack(id)) return undefined;
    const t = this.table();
    const s = t.find();
    return s < 0 ? undefined : t.until[s];
  }

  /**
   * Sets the time (ms) of `id`, which must fit. A time ≤ 0 is kept as the smallest positive
   * number, which compares with any time ≥ 0 as 0 does.
   */
  set(id: string, untilMs: number): void {
    if (!pack(id)) throw new RangeError('not a 22-character base64url id');
    this.table().set(Math.max(untilMs, Number.MIN_VALUE));
  }

  /** Deletes the entries due by nowMs in `tables` of the tables, round robin. */
  sweep(nowMs: number, tables = SHARDS): void {
    for (let i = 0; i < tables; i++) {
      this.tables[this.nextSweep]!.sweep(nowMs);
      this.nextSweep = (this.nextSweep + 1) % SHARDS;
    }
  }

  get size(): number {
    let n = 0;
    for (const t of this.tables) n += t.live;
    return n;
  }
}
