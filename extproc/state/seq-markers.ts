/**
 * The memory store's "settled" markers of the ids one issuer issued (issued-ids.ts: this
 * process's, or in the primary of `--workers N` a worker's; memory.ts has one per issuer), kept by
 * sequence number instead of by id: a marker is the slot of its number in a block of BLOCK
 * consecutive numbers, holding its time (ms, as an offset from the block's base) and the number
 * of its scope (one per block while all its markers are of one scope, else 2 bytes a slot). 4
 * bytes a slot, 6 with several scopes: that per id issued while markers live (2 × the
 * reservation TTL, 30 min by default), where a hash table of the ids costs 40–50 bytes a marker.
 * No hashing, no rehash: a block is allocated once, when the first of its numbers is settled.
 *
 * The answers are exact, as a map from (scope, id) to time would give them: a time that does
 * not fit a block (not an integer, or over 24 days from the block's first), a number whose slot
 * another scope holds, and a number whose block is gone are refused by `set`, and the caller
 * keeps that marker by its id instead (memory.ts), and looks here first, then there. That is
 * exact because a marker is only set again once it has expired: whatever is kept by id for a
 * number this holds for the same scope is an expired one. A dropped block is never made again.
 *
 * Memory comes back a block at a time. `sweep` visits the blocks round robin, bounded per call
 * (SWEEP_VISITS, SWEEP_SCANS, SWEEP_EVICTIONS):
 * a block all of whose numbers have been issued is dropped once every marker in it has expired;
 * one that still holds markers is scanned (at most every RESCAN_MS, and only once one of them
 * has expired) and, if SPARSE or fewer are left, hands them to `evict` (the caller keeps them by
 * id, as above) and is dropped: a few long-lived markers (a policy with a long TTL among short
 * ones, a long request among short ones) do not keep a block of short-lived ones.
 */

/** Numbers per block (a block: 4 KiB of times, and 2 KiB of scopes once it has two). */
export const BLOCK = 1024;
/**
 * A block that has expired some markers and holds this few gives them to `evict`: kept by id
 * they cost ~45 bytes each, 128 of them about what a block costs (4–6 KiB).
 */
export const SPARSE = 128;
/** A block holding markers is scanned at most this often. */
const RESCAN_MS = 16_000;
/**
 * Work per sweep: blocks visited (each a cache miss in a large heap, ~0.2 µs: at 2,000 requests a
 * second the 3,500 blocks of 30 minutes took 0.4 ms to visit every second), blocks scanned
 * (1,024 slots each), markers handed back. Each block is visited every blocks / 512 seconds (7 s
 * at 2,000 req/s, 30 min); a block due waits that long at most to be freed.
 */
const SWEEP_VISITS = 512;
const SWEEP_SCANS = 64;
const SWEEP_EVICTIONS = 8 * SPARSE;
/** A block's times are base + offset, offset in [1, 2^32): base is its first time − 2^31. */
const HALF_SPAN = 2 ** 31;
const MAX_OFFSET = 2 ** 32 - 1;
/** Times beyond this (|ms|) are kept by id: base + offset stays exact in a double. */
const MAX_TIME = 2 ** 52;
/** A number this many blocks past the last block is kept by id (a store that saw no ids for long). */
const MAX_GAP_BLOCKS = 65_536;
/** Scope numbers are 1..MAX_SCOPES; 0 marks a free slot. */
export const MAX_SCOPES = 65_535;

class Block {
  /** A marker's time − base, in [1, 2^32); 0: a free slot. */
  readonly offsets = new Uint32Array(BLOCK);
  /** The scope of every marker while all are of one scope (most blocks: one policy). */
  sole = 0;
  /** Per slot, its marker's scope: made when a second scope comes. */
  scopes: Uint16Array | undefined;
  /** Slots holding a marker (expired ones too, until a scan clears them). */
  live = 0;
  minUntil = Infinity;
  maxUntil = -Infinity;
  nextScanMs = -Infinity;

  constructor(readonly base: number) {}

  /** The scope of slot i's marker, 0 for a free slot. */
  scopeAt(i: number): number {
    if (this.offsets[i] === 0) return 0;
    return this.scopes ? this.scopes[i]! : this.sole;
  }

  /** Slot i (free) takes a marker of scopeNo. */
  take(i: number, scopeNo: number): void {
    if (!this.scopes) {
      if (this.live === 0) this.sole = scopeNo;
      else if (this.sole !== scopeNo) {
        const scopes = new Uint16Array(BLOCK);
        for (let j = 0; j < BLOCK; j++) if (this.offsets[j] !== 0) scopes[j] = this.sole;
        this.scopes = scopes;
      }
    }
    if (this.scopes) this.scopes[i] = scopeNo;
    this.live++;
  }

  /** Frees slot i. */
  free(i: number): void {
    this.offsets[i] = 0;
    if (this.scopes) this.scopes[i] = 0;
    this.live--;
  }
}

/** Hands over a marker of a block being dropped: scope number, sequence number, time (ms). */
export type Evict = (scopeNo: number, seq: number, untilMs: number) => void;

export class SeqMarkers {
  /**
   * From `head` on, block number lo, lo + 1, ...: a Block; null once dropped (its numbers are
   * kept by id from then on); undefined while none of its numbers was set.
   */
  private blocks: (Block | null | undefined)[] = [];
  private head = 0;
  private lo = 0;
  /** The next block the sweep visits (an index in `blocks`). */
  private cursor = 0;
  private held = 0;

  constructor(private readonly evict: Evict) {}

  /** The block of `seq`, or null/undefined; `seq` ≥ 0. */
  private blockOf(seq: number): Block | null | undefined {
    const n = Math.floor(seq / BLOCK);
    if (n < this.lo) return null;
    const at = this.head + (n - this.lo);
    return at < this.blocks.length ? this.blocks[at] : undefined;
  }

  /** The time of the marker of (seq, scopeNo) held here, or undefined. */
  get(seq: number, scopeNo: number): number | undefined {
    const b = this.blockOf(seq);
    if (!b) return undefined;
    const i = seq % BLOCK;
    return b.scopeAt(i) === scopeNo ? b.base + b.offsets[i]! : undefined;
  }

  /**
   * Sets the time of (seq, scopeNo), 1 ≤ scopeNo ≤ MAX_SCOPES; false when it is not kept here
   * (and then no marker of it is: one this call could not update is cleared).
   */
  set(seq: number, scopeNo: number, untilMs: number): boolean {
    const n = Math.floor(seq / BLOCK);
    if (n < this.lo) return false;
    if (this.head === this.blocks.length) {
      // None left: start at this block (those between were never used, and are dropped).
      this.blocks = [];
      this.head = 0;
      this.cursor = 0;
      this.lo = n;
    }
    const at = this.head + (n - this.lo);
    if (at >= this.blocks.length + MAX_GAP_BLOCKS) return false;
    while (this.blocks.length <= at) this.blocks.push(undefined);
    let b = this.blocks[at];
    if (b === null) return false;
    if (b === undefined) {
      if (!Number.isInteger(untilMs) || Math.abs(untilMs) > MAX_TIME) return false;
      b = new Block(untilMs - HALF_SPAN);
      this.blocks[at] = b;
    }
    const i = seq % BLOCK;
    const owner = b.scopeAt(i);
    if (owner !== 0 && owner !== scopeNo) return false;
    const offset = untilMs - b.base;
    if (!(offset >= 1 && offset <= MAX_OFFSET && Number.isInteger(offset))) {
      if (owner !== 0) {
        b.free(i);
        this.held--;
      }
      return false;
    }
    if (owner === 0) {
      b.take(i, scopeNo);
      this.held++;
    }
    b.offsets[i] = offset;
    if (untilMs < b.minUntil) b.minUntil = untilMs;
    if (untilMs > b.maxUntil) b.maxUntil = untilMs;
    return true;
  }

  /**
   * Frees what expired by nowMs, within a bounded amount of work per call (see the top).
   * `issued`: how many numbers have been issued (a block below it can take no new number).
   */
  sweep(nowMs: number, issued: number): void {
    let scans = 0;
    let evictions = 0;
    const visits = Math.min(this.blocks.length - this.head, SWEEP_VISITS);
    for (let v = 0; v < visits && scans < SWEEP_SCANS; v++) {
      if (this.cursor < this.head || this.cursor >= this.blocks.length) this.cursor = this.head;
      const at = this.cursor++;
      const b = this.blocks[at];
      if (!b) continue;
      const first = (this.lo + (at - this.head)) * BLOCK;
      const complete = first + BLOCK <= issued;
      if (complete && b.maxUntil <= nowMs) {
        this.held -= b.live;
        this.blocks[at] = null;
        continue;
      }
      if (nowMs < b.minUntil || nowMs < b.nextScanMs) continue;
      scans++;
      this.scan(b, nowMs);
      if (complete && b.live <= SPARSE && evictions + b.live <= SWEEP_EVICTIONS) {
        evictions += b.live;
        this.drop(b, first);
        this.blocks[at] = null;
      }
    }
    // Dropped blocks at the front, and ones never used whose numbers are all issued, go for good.
    while (this.head < this.blocks.length) {
      const b = this.blocks[this.head];
      if (b === null || (b === undefined && (this.lo + 1) * BLOCK <= issued)) {
        this.head++;
        this.lo++;
      } else break;
    }
    if (this.head >= 1024 && this.head * 2 >= this.blocks.length) {
      this.blocks = this.blocks.slice(this.head);
      this.cursor = Math.max(0, this.cursor - this.head);
      this.head = 0;
    }
  }

  /** Clears the expired markers of `b`, recounting what is left. */
  private scan(b: Block, nowMs: number): void {
    const due = nowMs - b.base;
    const { scopes, offsets } = b;
    let live = 0;
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < BLOCK; i++) {
      const o = offsets[i]!;
      if (o === 0) continue;
      if (o <= due) {
        offsets[i] = 0;
        if (scopes) scopes[i] = 0;
        continue;
      }
      live++;
      if (o < min) min = o;
      if (o > max) max = o;
    }
    this.held -= b.live - live;
    b.live = live;
    b.minUntil = b.base + min;
    b.maxUntil = b.base + max;
    b.nextScanMs = nowMs + RESCAN_MS;
  }

  /** Hands every marker of `b` (numbers from `first`) to `evict`. */
  private drop(b: Block, first: number): void {
    const { offsets } = b;
    for (let i = 0; i < BLOCK; i++) {
      if (offsets[i] !== 0) this.evict(b.scopeAt(i), first + i, b.base + offsets[i]!);
    }
    this.held -= b.live;
    b.live = 0;
  }

  /** Markers held (expired ones too, until a sweep clears them). */
  get size(): number {
    return this.held;
  }

  /** Blocks allocated (tests and the markers bench). */
  get blockCount(): number {
    let n = 0;
    for (let i = this.head; i < this.blocks.length; i++) if (this.blocks[i]) n++;
    return n;
  }
}
