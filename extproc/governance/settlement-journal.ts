/**
 * What this replica owes the state store while the store is away: settlements it could not
 * deliver (a reconcile, a release, or the compensating release of a reservation whose answer
 * was lost) and the requests it admitted by failing open, which were never reserved. Everything
 * in it is delivered by reservation id, and the store settles an id once, so delivering an entry
 * twice (a retry after an answer was lost) counts it once.
 *
 * Bounded: at most `capacity` entries, fail-open requests in flight included. When it is full, a
 * pending release makes room first (harmless: it was sent once already, and the reservation it
 * frees expires on its own after reservationTtlSeconds). Failing that, policies that fail open
 * refuse (503 state_unavailable) instead of admitting what could not be charged, and a settlement
 * that must still be kept evicts the oldest settlement of a reserved request (its spend is then
 * lost; counted and logged). Fail-open entries are never evicted.
 *
 * It also keeps what a policy that fails open checks its limits against while the store is away:
 * per bucket, the level the store last reported to this replica plus what this replica admitted
 * since by failing open. So one replica does not overshoot a limit it has seen (beyond the usual
 * estimate error), and each replica admits at most one limit's worth into a bucket it has not.
 *
 * That known level is the one reported by the last reserve made (not the last answered), plus
 * what settlements made after that reserve changed. Answers of pipelined calls do not reach the
 * Budget in the order the store applied the calls (through ioredis a reserve's answer takes fewer
 * await hops than a settle's, so the answer of a reserve written right behind a settle is usually
 * seen first, its level already holding the settlement): each store call is numbered as it is
 * made (stamp()), a store applies one replica's calls in that order (one Redis connection, the
 * memory store, the primary's over one IPC channel), and a settlement made before the reserve
 * whose level is known is not applied to it a second time. Where the store can tell less (a
 * settlement whose reservation had expired, a retry the store had already applied, a reservation
 * whose reserve's answer was never seen here), a settlement only ever raises the level it knows.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Actual, Reservation } from './reservation.js';
import { usdToMicros } from './pricing.js';

/**
 * Why a settlement was given up: `full` (the journal was at capacity), `ambiguous` (an attempt
 * may have reached the store and the store's "settled" marker may be gone by now, so retrying
 * could count it twice), `refused` (the store answered with an error other than being away).
 */
export type LossReason = 'full' | 'ambiguous' | 'refused';

export interface JournalEntry {
  readonly reservation: Reservation;
  /** undefined: a release (nothing used). */
  readonly actual: Actual | undefined;
  /** Admitted by failing open: never reserved, its charges count in the local levels. */
  readonly failOpen: boolean;
  readonly queuedAtMs: number;
  /**
   * When an attempt to deliver it was first cut off after it may have reached the store. The
   * store remembers a settled id for 2 × the reservation TTL from when it applies it, so a retry
   * is safe only within that time of the earliest attempt that may have been applied.
   */
  ambiguousSinceMs: number | undefined;
}

/**
 * Store calls are numbered modulo 2^30, so the numbers stay small integers (numbering a call
 * allocates nothing) and are compared within half of that range. Every 2^26 calls, a level known
 * from more than AGE_LIMIT (2^27) calls ago is given that age: any call is answered (or given up)
 * long before, so it still compares as made after such a level, and no comparison ever spans half
 * the range.
 */
const SEQ_MASK = 2 ** 30 - 1;
const SEQ_HALF = 2 ** 29;
const AGE_EVERY_MASK = 2 ** 26 - 1;
const AGE_LIMIT = 2 ** 27;

/** Whether call `a` was made after call `b`. */
function after(a: number, b: number): boolean {
  const d = (a - b) & SEQ_MASK;
  return d !== 0 && d < SEQ_HALF;
}

/** A level the store reported for a bucket, and the call (its number) that reported it. */
interface Seen {
  level: number;
  at: number;
}

export class SettlementJournal {
  /** Settlements to deliver, oldest first (a Map keeps insertion order). */
  private readonly entries = new Map<string, JournalEntry>();
  /** Fail-open requests still in flight: their settlement will come. */
  private readonly admitted = new Map<string, Reservation>();
  /** Per id, the local-level amounts it holds: [scope␟bucket, amount]. */
  private readonly counted = new Map<string, [string, number][]>();
  private readonly local = new Map<string, number>();
  /**
   * Per scope␟bucket, the level reported by the latest reserve made that was answered, plus what
   * settlements made after it changed. Updated in place; bounded, the levels reported longest
   * ago forgotten first (forgetOldestSeen).
   */
  private readonly seen = new Map<string, Seen>();
  /** The number of the last store call made (see stamp()). */
  private calls: number;

  constructor(
    readonly capacity: number,
    private readonly onLost?: (count: number, reason: LossReason) => void,
    private readonly seenCapacity = 10_000,
    /** Where call numbers start (tests start them near where they wrap). */
    firstCall = 0,
  ) {
    this.calls = firstCall & SEQ_MASK;
  }

  /**
   * Numbers a store call that reserves or settles: called right before the call is made, and
   * its number given to saw() or delivered() with its answer.
   */
  stamp(): number {
    const n = (this.calls = (this.calls + 1) & SEQ_MASK);
    if ((n & AGE_EVERY_MASK) === 0) {
      const oldest = (n - AGE_LIMIT) & SEQ_MASK;
      for (const s of this.seen.values()) if (after(oldest, s.at)) s.at = oldest;
    }
    return n;
  }

  /**
   * Levels the store reported for a reservation's buckets (admitted or not), answering call
   * number `at`. A bucket whose known level came from a reserve made after this one keeps it:
   * that level has everything this one has.
   */
  saw(scope: string, keys: readonly string[], levels: readonly number[], at: number): void {
    for (let i = 0; i < keys.length; i++) {
      const k = this.seenKey(scope, keys[i]!);
      const known = this.seen.get(k);
      if (known === undefined) {
        this.seen.set(k, { level: levels[i] ?? 0, at });
        continue;
      }
      if (after(known.at, at)) continue;
      // Updated in place, not moved to the Map's end: deleting and re-adding an entry of this
      // long-lived Map re-allocates its table in the old generation (shared/transient-map.ts),
      // on every reserve. Its `at` says how recent it is instead.
      known.level = levels[i] ?? 0;
      known.at = at;
    }
    if (this.seen.size > this.seenCapacity) this.forgetOldestSeen();
  }

  /**
   * Down to 7/8 of the capacity, the levels reported longest ago first (by their call's number,
   * counted back from the last call made): a sort of the Map's entries once per capacity/8 new
   * buckets, so O(log n) a new bucket.
   */
  private forgetOldestSeen(): void {
    const now = this.calls;
    const byAge = [...this.seen].sort(
      ([, a], [, b]) => ((now - b.at) & SEQ_MASK) - ((now - a.at) & SEQ_MASK),
    );
    const keep = this.seenCapacity - (this.seenCapacity >> 3);
    for (let i = 0; i < byAge.length - keep; i++) this.seen.delete(byAge[i]![0]);
  }

  /**
   * `scope␟key`, the key of `seen`, as made before: every reserve and settle names its buckets,
   * and the same ones again and again (budget.ts keeps their key strings), so each name was
   * built twice per request. Bounded like `seen`: emptied when it holds more names than that.
   */
  private seenKey(scope: string, key: string): string {
    let byKey = this.names.get(scope);
    if (byKey === undefined) this.names.set(scope, (byKey = new Map<string, string>()));
    let k = byKey.get(key);
    if (k === undefined) {
      if (++this.namesHeld > this.seenCapacity) {
        this.names.clear();
        this.names.set(scope, byKey);
        byKey.clear();
        this.namesHeld = 1;
      }
      k = `${scope}\x1f${key}`;
      byKey.set(key, k);
    }
    return k;
  }

  private readonly names = new Map<string, Map<string, string>>();
  private namesHeld = 0;

  /** What counts against the capacity: queued settlements and fail-open requests in flight. */
  get size(): number {
    return this.entries.size + this.admitted.size;
  }

  get queued(): number {
    return this.entries.size;
  }

  get full(): boolean {
    return this.size >= this.capacity;
  }

  /** A fail-open admission whose settlement has not reached the store yet. */
  isFailOpen(id: string): boolean {
    return this.admitted.has(id) || this.entries.get(id)?.failOpen === true;
  }

  /**
   * The levels a fail-open admission is checked against: what the store last reported plus
   * what this replica admitted by failing open and has not delivered yet.
   */
  levels(scope: string, keys: readonly string[]): number[] {
    return keys.map((key) => {
      const k = `${scope}\x1f${key}`;
      return (this.seen.get(k)?.level ?? 0) + (this.local.get(k) ?? 0);
    });
  }

  /** Whether this replica owes any bucket anything (owed() is all zeros otherwise). */
  get owes(): boolean {
    return this.local.size > 0;
  }

  /** What this replica admitted by failing open into each bucket and has not delivered yet. */
  owed(scope: string, keys: readonly string[]): number[] {
    // Nothing is owed unless the store was away: no key strings built on every reserve then.
    if (this.local.size === 0) return new Array<number>(keys.length).fill(0);
    return keys.map((key) => this.local.get(`${scope}\x1f${key}`) ?? 0);
  }

  /** Takes a fail-open request; false (nothing recorded) when the journal is full. */
  admit(r: Reservation): boolean {
    // A pending release is worth less than a request served: it goes first.
    if (this.full && !this.evict(false)) return false;
    this.admitted.set(r.id, r);
    this.count(
      r.id,
      r.scope,
      r.charges.map((c) => [c.key, c.amount]),
    );
    return true;
  }

  /**
   * Keeps a settlement the store did not take. `amounts` is what each charge actually used, which
   * replaces a fail-open request's estimate in the local levels. An id already queued keeps its
   * first settlement, as the store would.
   */
  add(entry: JournalEntry, amounts: readonly number[]): void {
    const id = entry.reservation.id;
    if (this.entries.has(id)) return;
    if (entry.failOpen) {
      // Its slot was taken at admission, so it always fits.
      this.admitted.delete(id);
      this.count(
        id,
        entry.reservation.scope,
        entry.reservation.charges.map((c, i) => [c.key, amounts[i] ?? 0]),
      );
    } else if (this.full && !(entry.actual !== undefined && this.evict(true))) {
      this.onLost?.(1, 'full');
      return;
    }
    this.entries.set(id, entry);
  }

  /**
   * Forgets fail-open requests still in flight past their reservation's TTL, as the store
   * forgets an unsettled reservation: a request whose end never came gives its share back. One
   * that does end later is still settled (as a plain settlement, by id).
   */
  expire(nowMs: number): void {
    for (const [id, r] of this.admitted) {
      if (r.createdAtMs + r.ttlMs <= nowMs) this.forget(id);
    }
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  /** Oldest first. */
  pending(): JournalEntry[] {
    return [...this.entries.values()];
  }

  /**
   * The settlement (or the fail-open request, settled before it was queued) reached the store, in
   * call number `at`; `pendingFound`: the store applied it and still held the reservation (so gave
   * its reserved amounts back). `amounts` is what it used per charge. What this replica knows of
   * the store's levels follows, until the store reports them again: a reservation's amount
   * becomes what it used, and what a fail-open request used is added. A level reported by a
   * reserve made after this call already has it, and is left as it is.
   */
  delivered(r: Reservation, amounts: readonly number[], at: number, pendingFound: boolean): void {
    // The reserved amounts are in a level seen here only if the reserve's own answer was seen
    // (a reservation carries the levels its answer reported; one admitted by failing open, or
    // refused while the store was away and released in case its reserve ran late, has none), and
    // they left the store only if it still held the reservation. Otherwise (expired, a retry the
    // store had applied before, a reserve that may never have run) only what was used is added:
    // the known level may then be above the store's, never below.
    const freed = pendingFound && r.levels.length > 0 && !this.isFailOpen(r.id);
    for (let i = 0; i < r.charges.length; i++) {
      const c = r.charges[i]!;
      const known = this.seen.get(this.seenKey(r.scope, c.key));
      if (known === undefined || after(known.at, at)) continue;
      known.level = Math.max(0, known.level + (amounts[i] ?? 0) - (freed ? c.amount : 0));
    }
    this.forget(r.id);
  }

  drop(id: string, reason: LossReason): void {
    this.forget(id);
    this.onLost?.(1, reason);
  }

  private forget(id: string): void {
    this.entries.delete(id);
    this.admitted.delete(id);
    this.uncount(id);
  }

  private uncount(id: string): void {
    for (const [k, amount] of this.counted.get(id) ?? []) {
      const left = (this.local.get(k) ?? 0) - amount;
      if (left > 0) this.local.set(k, left);
      else this.local.delete(k);
    }
    this.counted.delete(id);
  }

  /** Spend of finished requests not in the store yet, in micro-dollars, per scope (policy). */
  unsettledMicros(): Map<string, number> {
    const out = new Map<string, number>();
    for (const e of this.entries.values()) {
      if (!e.actual) continue;
      const s = e.reservation.scope;
      out.set(s, (out.get(s) ?? 0) + Math.max(0, usdToMicros(e.actual.costUsd)));
    }
    return out;
  }

  private count(id: string, scope: string, amounts: [string, number][]): void {
    this.uncount(id);
    const held: [string, number][] = [];
    for (const [key, amount] of amounts) {
      if (amount <= 0) continue;
      const k = `${scope}\x1f${key}`;
      this.local.set(k, (this.local.get(k) ?? 0) + amount);
      held.push([k, amount]);
    }
    this.counted.set(id, held);
  }

  /**
   * Makes room by dropping the oldest release or, with `settlements`, else the oldest settlement
   * of a reserved request. Fail-open entries are never dropped: their slot was promised.
   */
  private evict(settlements: boolean): boolean {
    let victim: JournalEntry | undefined;
    for (const e of this.entries.values()) {
      if (e.failOpen) continue;
      if (!e.actual) {
        victim = e;
        break;
      }
      if (settlements) victim ??= e;
    }
    if (!victim) return false;
    this.drop(victim.reservation.id, 'full');
    return true;
  }
}

/**
 * The journal's metrics: entries and unsettled spend read at scrape time, losses as a counter.
 * Returns the loss callback for the Budget's `onSettlementLost`.
 */
export function journalMetrics(
  registry: Registry,
  journal: () => SettlementJournal,
): (count: number, reason: LossReason) => void {
  const registers = [registry];
  new Gauge({
    name: 'sluice_usage_journal_entries',
    help:
      'Settlements waiting for the state store plus requests admitted by failing open that are ' +
      'still in flight, held in memory until the store answers again.',
    registers,
    collect() {
      this.set(journal().size);
    },
  });
  new Gauge({
    name: 'sluice_unsettled_spend_usd',
    help:
      'Spend of finished requests (served while the state store was away) that has not reached ' +
      'the store yet, by governance policy: budgets and sluice usage lag by this much.',
    labelNames: ['sluice_policy'],
    registers,
    collect() {
      this.reset();
      for (const [policy, micros] of journal().unsettledMicros()) {
        this.set({ sluice_policy: policy }, micros / 1e6);
      }
    },
  });
  const lost = new Counter({
    name: 'sluice_usage_journal_dropped_total',
    help:
      'Settlements given up, by reason (full: the journal was at capacity; ambiguous: it may ' +
      'already be counted and could no longer be retried safely; refused: the store refused it).',
    labelNames: ['reason'],
    registers,
  });
  for (const reason of ['full', 'ambiguous', 'refused'] as const) lost.inc({ reason }, 0);
  return (count, reason) => lost.inc({ reason }, count);
}
