/**
 * The single-process store. Every method runs to completion without awaiting, so on one event
 * loop each call is atomic by construction; expiry is lazy (checked against the caller's clock)
 * plus a sweep at most once a second so memory stays bounded by live windows.
 */
import {
  answered,
  rejected,
  usageDimsKey,
  usageRows,
  type ReserveReply,
  type ReserveRequest,
  type SettleReply,
  type SettleRequest,
  type StateStore,
  type UsageDims,
  type UsagePeriod,
  type UsageRow,
  USAGE_METRICS,
} from './store.js';
import { TransientMap } from '../shared/transient-map.js';
import { PackedIdTimes } from './packed-ids.js';
import { ID_CHARS, IdIssuer, PROCESS_IDS, prefixOf } from './issued-ids.js';
import { MAX_SCOPES, SeqMarkers } from './seq-markers.js';

interface Bucket {
  used: number;
  reserved: number;
  expireAtMs: number;
}

interface Pending {
  expiresAtMs: number;
  charges: [key: string, amount: number][];
}

interface Scope {
  /** 1..MAX_SCOPES: its markers of issued ids are kept by number (seq-markers.ts); 0: by id. */
  no: number;
  /**
   * `settled` may hold markers of ids of an issuer's shape (ID_CHARS long): ones SeqMarkers did
   * not keep, handed back, or set before their issuer was known here.
   */
  issuedInSettled: boolean;
  buckets: Map<string, Bucket>;
  /**
   * Reservations until they settle or expire: a TransientMap (shared/transient-map.ts).
   * Insertion order is expiry order while a scope's TTL is constant; the sweep covers the rest.
   */
  pending: TransientMap<string, Pending>;
  /** The latest expiry in `pending`, and whether one was added behind it (the TTL changed). */
  pendingLatestMs: number;
  pendingUnordered: boolean;
  settled: SettledMarkers;
  /** Per usage row (usageDimsKey), its counters in USAGE_METRICS order. */
  usage: Map<string, { counters: Map<string, number[]>; expireAtMs: number }>;
}

/**
 * Issuers whose ids a store keeps by number: this process's, and at most MAX_ISSUERS - 1 learned
 * from the ids reserved here (the workers of `--workers N`, whose store is the primary's: each
 * worker issues under its own prefix, a restarted one under a new one). Ids of any other issuer
 * are kept by id. An issuer learned here with no marker left makes room for a new one.
 */
export const MAX_ISSUERS = 32;

interface Issuer {
  ids: IdIssuer;
  /** PROCESS_IDS: numbers count as issued as it issues them. */
  own: boolean;
  /** Learned: numbers below this count as issued (1 + the highest reserved here). */
  seen: number;
  markers: SeqMarkers;
}

/** Maps a "settled" marker is spread over (a power of two). */
const MARKER_SHARDS = 64;

/** Packed tables swept per sweep (once a second at most): each is visited every 32 s. */
const PACKED_TABLES_PER_SWEEP = 2;

/**
 * The "settled" markers of a scope that are kept by id: id → when it is forgotten. There is one
 * per settlement, kept for 2 × the reservation TTL (30 min by default): ~900,000 at 500 requests
 * a second. The ids of the issuers the store knows (this process's reservationId, and its
 * workers' in the primary of `--workers N`: MAX_ISSUERS) are kept by number in SeqMarkers, for
 * every scope at once; what comes here are the others and the few SeqMarkers hands back. Ids of
 * 22 base64url characters are packed into typed arrays (packed-ids.ts): no object per marker for
 * the garbage collector to trace. Any other id goes to maps: in one Map that many would stall the event loop each time the Map grows (its rehash:
 * ~175 ms at 1M entries) and each time a sweep walks them all (~40 ms), so they are spread over
 * MARKER_SHARDS maps by a hash of the id, and a sweep stops at the first live marker of each: a
 * map keeps insertion order, which is expiry order while the scope's marker TTL is constant
 * (re-settling an id moves it to the end). A marker behind a longer-lived one (the TTL changed)
 * is dropped when that one is, and is checked against its own time on every lookup meanwhile.
 * Times in the maps are kept relative to the first one seen, as small integers that need no heap
 * number per marker.
 */
class SettledMarkers {
  private readonly packed = new PackedIdTimes();
  private readonly shards: Map<string, number>[] = [];
  private base: number | undefined;

  constructor() {
    for (let i = 0; i < MARKER_SHARDS; i++) this.shards.push(new Map());
  }

  private shard(id: string): Map<string, number> {
    const n = id.length;
    let h = n;
    // A few characters from both ends: enough to spread random ids (UUIDs, base64url).
    for (let i = 0; i < n && i < 4; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
    for (let i = Math.max(4, n - 4); i < n; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
    return this.shards[(h ^ (h >>> 15)) & (MARKER_SHARDS - 1)]!;
  }

  /** When the marker of `id` is forgotten (ms), or undefined without one. */
  get(id: string): number | undefined {
    if (PackedIdTimes.fits(id)) return this.packed.get(id);
    const at = this.shard(id).get(id);
    return at === undefined ? undefined : at + this.base!;
  }

  set(id: string, untilMs: number): void {
    if (PackedIdTimes.fits(id)) {
      this.packed.set(id, untilMs);
      return;
    }
    this.base ??= untilMs;
    const m = this.shard(id);
    m.delete(id);
    m.set(id, untilMs - this.base);
  }

  /** Forgets the markers due by nowMs, oldest first, up to the first live one of each map. */
  sweep(nowMs: number): void {
    this.packed.sweep(nowMs, PACKED_TABLES_PER_SWEEP);
    if (this.base === undefined) return;
    const due = nowMs - this.base;
    for (const m of this.shards) {
      for (const [id, at] of m) {
        if (at > due) break;
        m.delete(id);
      }
    }
  }

  get size(): number {
    let n = this.packed.size;
    for (const m of this.shards) n += m.size;
    return n;
  }
}

export class MemoryStore implements StateStore {
  readonly kind = 'memory' as const;
  private readonly scopes = new Map<string, Scope>();
  /** Scopes by number (index 0 unused). */
  private byNo: Scope[] = [];
  /** This process's issuer first, then the ones learned (see MAX_ISSUERS). */
  private issuers: Issuer[] = [this.issuer(PROCESS_IDS, true)];
  private nextSweepMs = 0;

  private issuer(ids: IdIssuer, own: boolean): Issuer {
    return {
      ids,
      own,
      seen: 0,
      markers: new SeqMarkers((no, seq, untilMs) => {
        const s = this.byNo[no]!;
        s.issuedInSettled = true;
        s.settled.set(ids.idOf(seq), untilMs);
      }),
    };
  }

  /** The issuer known here whose prefix `id` has, if any. */
  private issuerOf(id: string): Issuer | undefined {
    if (id.length !== ID_CHARS) return undefined;
    const list = this.issuers;
    for (let i = 0; i < list.length; i++) if (id.startsWith(list[i]!.ids.prefix)) return list[i];
    return undefined;
  }

  /** The number of `id` if its issuer is known here and has issued it, else -1. */
  private static seqOf(e: Issuer, id: string): number {
    if (e.own) return e.ids.seqOf(id);
    const n = e.ids.numberOf(id);
    return n < e.seen ? n : -1;
  }

  /** A reserve under `id`: its issuer, learned if new and there is room, has issued its number. */
  private learn(id: string): void {
    let e = this.issuerOf(id);
    if (!e) {
      if (id.length !== ID_CHARS) return;
      const prefix = prefixOf(id);
      if (prefix === undefined) return;
      e = this.issuer(new IdIssuer(prefix), false);
      if (this.issuers.length < MAX_ISSUERS) this.issuers.push(e);
      else {
        // Forgetting an issuer with no marker loses nothing (its ids kept by id stay there).
        const i = this.issuers.findIndex((x) => !x.own && x.markers.size === 0);
        if (i < 0) return;
        this.issuers[i] = e;
      }
    }
    if (e.own) return;
    const n = e.ids.numberOf(id);
    if (n >= e.seen) e.seen = n + 1;
  }

  private scope(name: string): Scope {
    let s = this.scopes.get(name);
    if (!s) {
      const no = this.scopes.size + 1;
      s = {
        no: no <= MAX_SCOPES ? no : 0,
        issuedInSettled: false,
        buckets: new Map(),
        pending: new TransientMap(),
        pendingLatestMs: -Infinity,
        pendingUnordered: false,
        settled: new SettledMarkers(),
        usage: new Map(),
      };
      this.scopes.set(name, s);
      if (s.no > 0) this.byNo[s.no] = s;
    }
    return s;
  }

  /**
   * When the "settled" marker of `id` is forgotten (ms), or undefined without one. A marker
   * counts while that time is after the caller's now; an expired one not swept yet is ignored.
   */
  private marker(s: Scope, id: string): number | undefined {
    if (s.no > 0) {
      const e = this.issuerOf(id);
      const seq = e ? MemoryStore.seqOf(e, id) : -1;
      if (seq >= 0) {
        // Kept by number, or (SeqMarkers refused or handed it back, or its issuer was not known
        // here yet when it was set) by id.
        const at = e!.markers.get(seq, s.no);
        if (at !== undefined || !s.issuedInSettled) return at;
      }
    }
    return s.settled.get(id);
  }

  /**
   * Sets the marker of `id`. Only for one that is absent or expired (settle): a marker of ours
   * kept by id and one in SeqMarkers are then never both live, so `marker` may look in
   * SeqMarkers first.
   */
  private mark(s: Scope, id: string, untilMs: number): void {
    if (s.no > 0) {
      const e = this.issuerOf(id);
      const seq = e ? MemoryStore.seqOf(e, id) : -1;
      if (seq >= 0 && e!.markers.set(seq, s.no, untilMs)) return;
    }
    // An issued id kept by id, or one of an issuer not known here or a number not issued yet
    // (either may be by the time it is looked up: `marker` looks here too).
    if (id.length === ID_CHARS) s.issuedInSettled = true;
    s.settled.set(id, untilMs);
  }

  private bucket(s: Scope, key: string, nowMs: number): Bucket | undefined {
    const b = s.buckets.get(key);
    if (b && b.expireAtMs <= nowMs) {
      s.buckets.delete(key);
      return undefined;
    }
    return b;
  }

  private dropPending(s: Scope, id: string, p: Pending, nowMs: number): void {
    s.pending.delete(id);
    for (const [key, amount] of p.charges) {
      const b = this.bucket(s, key, nowMs);
      if (b) b.reserved -= amount;
    }
  }

  private expire(s: Scope, nowMs: number): void {
    for (const [id, p] of s.pending) {
      if (p.expiresAtMs > nowMs) break;
      this.dropPending(s, id, p, nowMs);
    }
  }

  private sweep(nowMs: number): void {
    if (nowMs < this.nextSweepMs) return;
    this.nextSweepMs = nowMs + 1000;
    for (const s of this.scopes.values()) {
      // In expiry order the due reservations are the first ones: no walk over the ~20,000 still
      // running at 2,000 requests a second, every second.
      if (!s.pendingUnordered) this.expire(s, nowMs);
      else {
        // Walks them all, and finds whether those left are in order again.
        let latest = -Infinity;
        let ordered = true;
        for (const [id, p] of s.pending) {
          if (p.expiresAtMs <= nowMs) this.dropPending(s, id, p, nowMs);
          else if (p.expiresAtMs < latest) ordered = false;
          else latest = p.expiresAtMs;
        }
        s.pendingUnordered = !ordered;
        s.pendingLatestMs = latest;
      }
      for (const [k, b] of s.buckets) if (b.expireAtMs <= nowMs) s.buckets.delete(k);
      s.settled.sweep(nowMs);
      if (s.issuedInSettled && s.settled.size === 0) s.issuedInSettled = false;
      for (const [k, u] of s.usage) if (u.expireAtMs <= nowMs) s.usage.delete(k);
    }
    for (const e of this.issuers) e.markers.sweep(nowMs, e.own ? e.ids.issued : e.seen);
  }

  // answered(): the Budget reads these answers in the same turn (store.ts, valueNow).
  reserve(req: ReserveRequest): Promise<ReserveReply> {
    try {
      return answered(this.reserveNow(req));
    } catch (err) {
      return rejected(err);
    }
  }

  settle(req: SettleRequest): Promise<SettleReply> {
    return answered(this.settleNow(req));
  }

  private reserveNow(req: ReserveRequest): ReserveReply {
    const { nowMs } = req;
    this.sweep(nowMs);
    const s = this.scope(req.scope);
    this.expire(s, nowMs);
    this.learn(req.id);
    const marker = this.marker(s, req.id);
    if (s.pending.has(req.id) || (marker !== undefined && marker > nowMs)) {
      throw new Error(`reservation id reused: ${req.id}`);
    }
    // Lists made to size, here and below: one grown by push holds room for 16 or more.
    const levels = new Array<number>(req.buckets.length);
    let over = -1;
    for (let i = 0; i < req.buckets.length; i++) {
      const c = req.buckets[i]!;
      const b = this.bucket(s, c.key, nowMs);
      const level = b ? b.used + b.reserved : 0;
      levels[i] = level;
      if (over < 0 && level + (c.unsettled ?? 0) + c.amount > c.limit) over = i;
    }
    if (over >= 0 && !req.force) return { admitted: false, over, levels };
    const charges: Pending['charges'] = new Array<[string, number]>(req.buckets.length);
    for (let i = 0; i < req.buckets.length; i++) {
      const c = req.buckets[i]!;
      let b = this.bucket(s, c.key, nowMs);
      if (!b) {
        b = { used: 0, reserved: 0, expireAtMs: c.expireAtMs };
        s.buckets.set(c.key, b);
      }
      b.reserved += c.amount;
      b.expireAtMs = Math.max(b.expireAtMs, c.expireAtMs);
      levels[i] = b.used + b.reserved;
      charges[i] = [c.key, c.amount];
    }
    const expiresAtMs = nowMs + req.ttlMs;
    if (s.pending.size === 0) {
      s.pendingLatestMs = -Infinity;
      s.pendingUnordered = false;
    }
    if (expiresAtMs < s.pendingLatestMs) s.pendingUnordered = true;
    else s.pendingLatestMs = expiresAtMs;
    s.pending.set(req.id, { expiresAtMs, charges });
    return { admitted: true, over, levels };
  }

  private settleNow(req: SettleRequest): SettleReply {
    const { nowMs } = req;
    const s = this.scope(req.scope);
    this.expire(s, nowMs);
    const marker = this.marker(s, req.id);
    if (marker !== undefined && marker > nowMs) {
      return { applied: false, pendingFound: false };
    }
    this.mark(s, req.id, nowMs + req.markerTtlMs);
    const p = s.pending.get(req.id);
    if (p) this.dropPending(s, req.id, p, nowMs);
    for (const c of req.buckets) {
      if (c.actual === 0) continue;
      let b = this.bucket(s, c.key, nowMs);
      if (!b) {
        b = { used: 0, reserved: 0, expireAtMs: c.expireAtMs };
        s.buckets.set(c.key, b);
      }
      b.used += c.actual;
      b.expireAtMs = Math.max(b.expireAtMs, c.expireAtMs);
    }
    for (const u of req.usage) {
      const k = this.periodName(u.period, u.periodKey);
      let h = s.usage.get(k);
      if (!h) {
        h = { counters: new Map(), expireAtMs: u.expireAtMs };
        s.usage.set(k, h);
      }
      h.expireAtMs = Math.max(h.expireAtMs, u.expireAtMs);
      const row = this.rowName(u.dims);
      let counters = h.counters.get(row);
      for (let i = 0; i < USAGE_METRICS.length; i++) {
        const v = u.values[USAGE_METRICS[i]!];
        if (v === 0) continue;
        if (!counters)
          h.counters.set(row, (counters = new Array<number>(USAGE_METRICS.length).fill(0)));
        counters[i]! += v;
      }
    }
    return { applied: true, pendingFound: p !== undefined };
  }

  /**
   * The usage map's key of a period, and a row's (usageDimsKey): the last ones named are kept, as
   * nearly every settlement names the same day, month and caller as the one before, and each
   * name cost a string (the row's an array and a join) twice per request (issue 16).
   */
  private periods: Partial<Record<UsagePeriod, { periodKey: string; name: string }>> = {};
  private rows: { dims: UsageDims; name: string }[] = [];

  private periodName(period: UsagePeriod, periodKey: string): string {
    const last = this.periods[period];
    if (last !== undefined && last.periodKey === periodKey) return last.name;
    const name = `${period}:${periodKey}`;
    this.periods[period] = { periodKey, name };
    return name;
  }

  private rowName(d: UsageDims): string {
    // Two kept: a settlement's day row carries its session, its month row does not.
    const rows = this.rows;
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!.dims;
      if (
        r.consumer === d.consumer &&
        r.team === d.team &&
        r.model === d.model &&
        r.route === d.route &&
        r.session === d.session
      )
        return rows[i]!.name;
    }
    const name = usageDimsKey(d);
    const kept = {
      dims: {
        consumer: d.consumer,
        team: d.team,
        model: d.model,
        route: d.route,
        session: d.session,
      },
      name,
    };
    if (rows.length < 2) rows.push(kept);
    else {
      rows[0] = rows[1]!;
      rows[1] = kept;
    }
    return name;
  }

  levels(scope: string, keys: readonly string[], nowMs: number): Promise<number[]> {
    const s = this.scope(scope);
    this.expire(s, nowMs);
    return Promise.resolve(
      keys.map((k) => {
        const b = this.bucket(s, k, nowMs);
        return b ? b.used + b.reserved : 0;
      }),
    );
  }

  usage(period: UsagePeriod, periodKey: string): Promise<UsageRow[]> {
    const rows: UsageRow[] = [];
    for (const [name, s] of this.scopes) {
      const h = s.usage.get(`${period}:${periodKey}`);
      if (h) rows.push(...usageRows(name, usageFields(h.counters)));
    }
    return Promise.resolve(rows);
  }

  close(): Promise<void> {
    this.scopes.clear();
    this.byNo = [];
    this.issuers = [this.issuer(PROCESS_IDS, true)];
    return Promise.resolve();
  }

  /** "Settled" markers held, over every scope (tests: the sweep forgets them). */
  get settledMarkers(): number {
    let n = this.markersByNumber;
    for (const s of this.scopes.values()) n += s.settled.size;
    return n;
  }

  /** Of those, the ones kept by number (SeqMarkers), and the blocks they take (tests, bench). */
  get markersByNumber(): number {
    let n = 0;
    for (const e of this.issuers) n += e.markers.size;
    return n;
  }

  get markerBlocks(): number {
    let n = 0;
    for (const e of this.issuers) n += e.markers.blockCount;
    return n;
  }

  /** Issuers whose ids are kept by number: this process's and the ones learned (MAX_ISSUERS). */
  get issuersKnown(): number {
    return this.issuers.length;
  }
}

/** A row's counters as the field/value pairs usageRows reads (as Redis keeps them). */
function* usageFields(counters: Map<string, number[]>): Iterable<[string, number]> {
  for (const [row, values] of counters) {
    for (let i = 0; i < USAGE_METRICS.length; i++) {
      if (values[i] !== 0) yield [`${row}\x1f${USAGE_METRICS[i]}`, values[i]!];
    }
  }
}
