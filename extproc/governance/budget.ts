/**
 * Limits and budgets: reserve before forwarding, reconcile with actual usage afterwards.
 *
 * Every limit of a policy becomes one bucket per metric it sets, split by its `per` dimensions:
 *   requests / tokens per minute  fixed UTC-minute windows
 *   spend per day / per month     UTC calendar day / month
 *   concurrent                    no window: held from reserve to reconcile/release
 * Fixed windows, not sliding ones, because a reservation must be settled against exactly the
 * bucket it was charged to, and because the reset time we announce is then exact. The price is
 * the known edge effect: up to twice a per-minute limit can pass in 60 s straddling a boundary.
 *
 * A reservation is admitted only if it fits every bucket (all or nothing, one store call), so
 * concurrent requests can never be admitted past a limit; reconciling replaces each reserved
 * amount with the actual one, so a budget is exceeded only by what requests used beyond their
 * estimate.
 */
import {
  emptyUsage,
  rejected,
  StoreUnavailable,
  valueNow,
  type BucketCharge,
  type RefusalMetric,
  type ReserveReply,
  type ReserveRequest,
  type SettleReply,
  type SettleRequest,
  type StateStore,
  type UsageDims,
  type UsageIncrement,
  type UsageValues,
} from '../state/store.js';
import type { TokenUsage } from '../usage/extract.js';
import { refusal, type Refusal } from './refusal.js';
import { microsToUsd, usdToMicros } from './pricing.js';
import { SettlementJournal, type LossReason } from './settlement-journal.js';
import type { GovernancePolicy, Limit, LimitDimension, LimitsPolicy } from './schema.js';

import { reservationId } from './reservation.js';
import type { Actual, Amount, Charge, Metric, RequestKeys, Reservation } from './reservation.js';

// The shared shapes live in reservation.ts (the journal needs them too); named here as well, so
// callers keep importing them with the Budget that uses them.
export type { Actual, Amount, Charge, Metric, RequestKeys, Reservation } from './reservation.js';
export { reservationId } from './reservation.js';

export interface LimitHit {
  limit: string;
  metric: Metric;
  retryAfterSeconds: number;
  /** What is left in the caller's own bucket, in the metric's unit (USD for spend). */
  remaining: number;
  /** The request alone is larger than the limit: waiting will not help. */
  neverFits: boolean;
}

export type ReserveResult =
  | {
      ok: true;
      failOpen: false;
      reservation: Reservation;
      headers: Record<string, string>;
      /** Shadow mode: the limit that would have refused this request. */
      wouldRefuse?: LimitHit;
    }
  /**
   * Admitted while the store is away: the reservation was not (knowingly) made, but it is settled
   * like one, by id, when the store is back (see settlement-journal.ts).
   */
  | { ok: true; failOpen: true; reservation: Reservation; headers: Record<string, string> }
  | ({ ok: false; refusal: Refusal } & Partial<LimitHit>);

export type SettleResult =
  | { status: 'settled'; expired: boolean }
  | { status: 'duplicate' }
  /** The store is away: journalled and retried until it answers (see settlement-journal.ts). */
  | { status: 'queued' };

export interface BudgetPolicy {
  /** Buckets are scoped by policy name: routes sharing a policy share its budgets. */
  name: string;
  mode: GovernancePolicy['mode'];
  failureMode: GovernancePolicy['failureMode'];
  limits: LimitsPolicy;
}

export interface BudgetOptions {
  store: StateStore;
  clock?: () => number;
  newId?: () => string;
  /** Called for every request admitted because the store was away and the policy fails open. */
  onFailOpen?: (policy: string) => void;
  /** Called when a journalled settlement is given up (see LossReason). */
  onSettlementLost?: (count: number, reason: LossReason) => void;
  /** Called with each bucket's level (used + reserved) the store or journal reports for a reserve. */
  onLevels?: (policy: string, charges: readonly Charge[], levels: readonly number[]) => void;
  /** Most settlements and fail-open requests held while the store is away (default 10,000). */
  journalCapacity?: number;
  /** How often a non-empty journal is retried (default 1000 ms); 0: only on flush(). */
  retryIntervalMs?: number;
}

/** One reserve in progress (Budget.reserveNow), what its steps share. */
interface Reserving {
  policy: BudgetPolicy;
  keys: RequestKeys;
  estimate: Amount;
  now: number;
  ttlMs: number;
  charges: Charge[];
  bucketKeys: string[];
  id: string;
  /** What this replica owed each bucket when the call was made; undefined: nothing. */
  owed: number[] | undefined;
  /** The number of the store call whose answer is used (SettlementJournal.stamp). */
  at: number;
}

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
const DAY_USAGE_RETENTION_MS = 62 * DAY_MS;
const MONTH_USAGE_RETENTION_MS = 400 * DAY_MS;

export class Budget {
  private readonly store: StateStore;
  private readonly clock: () => number;
  private readonly newId: () => string;
  private readonly onFailOpen: ((policy: string) => void) | undefined;
  private readonly onLevels: BudgetOptions['onLevels'];
  readonly journal: SettlementJournal;
  private readonly retryIntervalMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<number> | undefined;

  constructor(opts: BudgetOptions) {
    this.store = opts.store;
    this.clock = opts.clock ?? Date.now;
    this.newId = opts.newId ?? reservationId;
    this.onFailOpen = opts.onFailOpen;
    this.onLevels = opts.onLevels;
    this.journal = new SettlementJournal(opts.journalCapacity ?? 10_000, opts.onSettlementLost);
    this.retryIntervalMs = opts.retryIntervalMs ?? 1000;
  }

  /** Settlements waiting for the store. */
  get pendingSettlements(): number {
    return this.journal.queued;
  }

  reserve(policy: BudgetPolicy, keys: RequestKeys, estimate: Amount): Promise<ReserveResult> {
    try {
      const r = this.reserveNow(policy, keys, estimate);
      return r instanceof Promise ? r : Promise.resolve(r);
    } catch (err) {
      return rejected(err);
    }
  }

  /**
   * reserve, answered in this turn when the store answered in it (a memory store: valueNow in
   * state/store.ts) and nothing waits to be flushed first; a promise otherwise. Throws what
   * reserve rejects with. The store call is made, and numbered, in the caller's turn either way.
   */
  reserveNow(
    policy: BudgetPolicy,
    keys: RequestKeys,
    estimate: Amount,
  ): ReserveResult | Promise<ReserveResult> {
    const now = this.clock();
    const ttlMs = policy.limits.reservationTtlSeconds * 1000;
    const charges = chargesFor(policy.limits.rules, keys, estimate, now, ttlMs);
    const bucketKeys: string[] = new Array<string>(charges.length);
    for (let i = 0; i < charges.length; i++) bucketKeys[i] = charges[i]!.key;
    const r: Reserving = {
      policy,
      keys,
      estimate,
      now,
      ttlMs,
      charges,
      bucketKeys,
      id: this.newId(),
      owed: undefined,
      at: 0,
    };
    const asked = this.store.reserve(this.reserveRequest(r));
    const reply = valueNow(asked);
    // Right after an outage the journal may still hold what fills the bucket (reserveAsync).
    if (reply !== undefined && (reply.admitted || this.journal.queued === 0)) {
      return this.reserved(r, reply);
    }
    return this.reserveAsync(r, asked);
  }

  /**
   * The store call of a reserve: what this replica served while the store was away and has not
   * delivered yet counts in the check, so a store that is back does not admit past a limit before
   * the journal drains. Nothing is owed unless the store was away (no arrays per request then).
   */
  private reserveRequest(r: Reserving): ReserveRequest {
    const owed = this.journal.owes ? this.journal.owed(r.policy.name, r.bucketKeys) : undefined;
    r.owed = owed;
    let buckets: BucketCharge[] = r.charges;
    if (owed) {
      buckets = [];
      for (let i = 0; i < r.charges.length; i++) {
        const c = r.charges[i]!;
        buckets.push(owed[i]! > 0 ? { ...c, unsettled: owed[i] } : c);
      }
    }
    r.at = this.journal.stamp();
    return {
      scope: r.policy.name,
      id: r.id,
      nowMs: r.now,
      ttlMs: r.ttlMs,
      buckets,
      force: r.policy.mode === 'shadow',
    };
  }

  /** The rest of a reserve whose store call `first` was not answered in the caller's turn. */
  private async reserveAsync(r: Reserving, first: Promise<ReserveReply>): Promise<ReserveResult> {
    const { policy, charges, bucketKeys, id, now, ttlMs } = r;
    const shadow = policy.mode === 'shadow';
    let reply: ReserveReply;
    const ask = (): Promise<ReserveReply> => this.store.reserve(this.reserveRequest(r));
    try {
      reply = await first;
      if (!reply.admitted && this.journal.queued > 0) {
        // Right after an outage, releases and settlements still in the journal may be what
        // fills the bucket: deliver them, then ask once more (a refused reserve took nothing).
        await this.flush().catch(() => 0);
        const refused = { reply, owed: r.owed, at: r.at };
        reply = await ask().catch((err: unknown) => {
          if (!(err instanceof StoreUnavailable) || err.maybeApplied) throw err;
          r.owed = refused.owed;
          r.at = refused.at;
          return refused.reply;
        });
      }
    } catch (err) {
      if (!(err instanceof StoreUnavailable)) throw err;
      // A policy that fails open still holds each limit, against the level the store last
      // reported plus what this replica admitted since (see settlement-journal.ts).
      const reservation: Reservation = {
        id,
        scope: policy.name,
        createdAtMs: now,
        ttlMs,
        keys: { ...r.keys },
        estimate: { ...r.estimate },
        charges,
        levels: [],
      };
      const levels = this.journal.levels(policy.name, bucketKeys);
      const over = charges.findIndex((c, i) => levels[i]! + c.amount > c.limit);
      if (
        policy.failureMode === 'open' &&
        (over < 0 || shadow) &&
        this.journal.admit(reservation)
      ) {
        // Settled by id like any reservation, so a reserve that did reach the store is replaced.
        this.onFailOpen?.(policy.name);
        this.schedule();
        return { ok: true, failOpen: true, reservation, headers: {} };
      }
      // Refused: if the reserve may still run (a stalled store runs it when it resumes), release
      // it. The release queues behind it on the same connection; if the store runs it first (a
      // reconnect, a Cluster failover), its "settled" marker makes the late reserve a no-op.
      if (err.maybeApplied) this.settle(reservation, undefined).catch(() => undefined);
      if (policy.failureMode === 'open' && over >= 0 && !this.journal.full) {
        // The store was away and the policy's limits were held against the journal's levels.
        return this.answered(r, { admitted: false, over, levels });
      }
      return {
        ok: false,
        refusal: refusal('state_unavailable', 'Usage limits cannot be checked right now.', {
          headers: { 'retry-after': '1' },
        }),
      };
    }
    return this.reserved(r, reply);
  }

  /** The store's answer to the reserve call numbered r.at: what it tells this replica, then the result. */
  private reserved(r: Reserving, reply: ReserveReply): ReserveResult {
    this.journal.saw(r.policy.name, r.bucketKeys, reply.levels, r.at);
    this.kick();
    const o = r.owed;
    if (o !== undefined && o.some((x) => x > 0)) {
      reply = { ...reply, levels: reply.levels.map((l, i) => l + o[i]!) };
    }
    return this.answered(r, reply);
  }

  /** The result of a reserve from the levels it was judged by (the store's or the journal's). */
  private answered(r: Reserving, reply: ReserveReply): ReserveResult {
    const { policy, charges, now } = r;
    this.onLevels?.(policy.name, charges, reply.levels);
    const hit = reply.over >= 0 ? limitHit(charges, reply.levels, reply.over, now) : undefined;
    if (!reply.admitted) {
      const h = hit!;
      const c = charges[reply.over]!;
      const headers = rateLimitHeaders(charges, reply.levels, now);
      headers['retry-after'] = String(h.retryAfterSeconds);
      const spend = c.metric === 'spendDay' || c.metric === 'spendMonth';
      return {
        ok: false,
        ...h,
        refusal: refusal(
          spend ? 'budget_exceeded' : 'rate_limit_exceeded',
          `${METRIC_TEXT[c.metric]} limit "${c.limitName}" reached; retry after ${h.retryAfterSeconds}s.`,
          { rule: c.limitName, headers },
        ),
      };
    }
    const reservation: Reservation = {
      id: r.id,
      scope: policy.name,
      createdAtMs: now,
      ttlMs: r.ttlMs,
      keys: { ...r.keys },
      estimate: { ...r.estimate },
      charges,
      levels: reply.levels,
    };
    const result: ReserveResult = {
      ok: true,
      failOpen: false,
      reservation,
      headers: rateLimitHeaders(charges, reply.levels, now),
    };
    if (hit) result.wouldRefuse = hit;
    return result;
  }

  /**
   * Replaces the reservation with what the request actually used: at the end of a response,
   * a client abort (partial usage) or an upstream error (often 0). Settles once per reservation.
   */
  reconcile(reservation: Reservation, actual: Actual): Promise<SettleResult> {
    return this.settle(reservation, actual);
  }

  /**
   * A cache hit that reserved nothing (a free hit): its usage is written as a settlement with no
   * buckets under a fresh id, after the answer, and journalled like any other while the store is
   * away. A charged hit has a reservation and is reconciled with `actual.cached` instead.
   */
  recordCached(policy: BudgetPolicy, keys: RequestKeys, actual: Actual): Promise<SettleResult> {
    const reservation: Reservation = {
      id: this.newId(),
      scope: policy.name,
      createdAtMs: this.clock(),
      ttlMs: policy.limits.reservationTtlSeconds * 1000,
      keys: { ...keys },
      estimate: { tokens: 0, costUsd: 0 },
      charges: [],
      levels: [],
    };
    return this.settle(reservation, actual);
  }

  /**
   * A refused request, counted in usage by reason (a settlement with no buckets under a fresh
   * id). Best effort: never journalled, since a store that is away must not fill the journal
   * that holds real spend; a refusal during an outage is then only in the metrics.
   */
  async recordRefusal(
    policy: BudgetPolicy,
    keys: RequestKeys,
    metric: RefusalMetric,
  ): Promise<void> {
    const reservation: Reservation = {
      id: this.newId(),
      scope: policy.name,
      createdAtMs: this.clock(),
      ttlMs: policy.limits.reservationTtlSeconds * 1000,
      keys: { ...keys },
      estimate: { tokens: 0, costUsd: 0 },
      charges: [],
      levels: [],
    };
    await this.apply(reservation, { tokens: 0, costUsd: 0, refused: metric }).catch(
      () => undefined,
    );
  }

  /** The request never reached upstream: gives everything back, counts nothing. */
  release(reservation: Reservation): Promise<SettleResult> {
    return this.settle(reservation, undefined);
  }

  private settle(reservation: Reservation, actual: Actual | undefined): Promise<SettleResult> {
    // The same steps as settleAsync, without a promise per step when the store answers in this
    // turn (valueNow).
    const failOpen = this.journal.isFailOpen(reservation.id);
    let result: SettleResult;
    try {
      const at = this.journal.stamp();
      const req = settleRequest(reservation, actual, this.clock());
      const asked = this.store.settle(req);
      const reply = valueNow(asked);
      if (reply === undefined)
        return this.settleAsync(reservation, actual, failOpen, at, req, asked);
      result = this.afterSettle(reservation, req, at, reply);
    } catch (err) {
      return this.notSettledAsync(reservation, actual, failOpen, err);
    }
    return Promise.resolve(result);
  }

  /** The rest of a settle whose store call was not answered in the caller's turn. */
  private async settleAsync(
    reservation: Reservation,
    actual: Actual | undefined,
    failOpen: boolean,
    at: number,
    req: SettleRequest,
    asked: Promise<SettleReply>,
  ): Promise<SettleResult> {
    try {
      return this.afterSettle(reservation, req, at, await asked);
    } catch (err) {
      return this.notSettled(reservation, actual, failOpen, err);
    }
  }

  /** A settle's answer, either way it came: the journal hears it (call `at`), the drain is kicked. */
  private afterSettle(
    reservation: Reservation,
    req: SettleRequest,
    at: number,
    reply: SettleReply,
  ): SettleResult {
    const result = settleResult(reply);
    this.journal.delivered(
      reservation,
      amountsOf(req),
      at,
      result.status === 'settled' && !result.expired,
    );
    this.kick();
    return result;
  }

  /** notSettled's result or error as a promise. */
  private notSettledAsync(
    reservation: Reservation,
    actual: Actual | undefined,
    failOpen: boolean,
    err: unknown,
  ): Promise<SettleResult> {
    try {
      return Promise.resolve(this.notSettled(reservation, actual, failOpen, err));
    } catch (e) {
      return rejected(e);
    }
  }

  /**
   * A settlement the store did not take: journalled when the store is away (and retried), else
   * given up and `err` thrown.
   */
  private notSettled(
    reservation: Reservation,
    actual: Actual | undefined,
    failOpen: boolean,
    err: unknown,
  ): SettleResult {
    if (!(err instanceof StoreUnavailable)) {
      this.journal.drop(reservation.id, 'refused');
      throw err;
    }
    const now = this.clock();
    this.journal.add(
      {
        reservation,
        actual,
        failOpen,
        queuedAtMs: now,
        ambiguousSinceMs: err.maybeApplied ? now : undefined,
      },
      reservation.charges.map((c) => actualFor(c, actual)),
    );
    this.schedule();
    return { status: 'queued' };
  }

  private async apply(reservation: Reservation, actual: Actual | undefined): Promise<SettleResult> {
    return settleResult(await this.store.settle(settleRequest(reservation, actual, this.clock())));
  }

  /** Delivers the journal in the background once the store has answered again. */
  private kick(): void {
    if (this.journal.queued === 0 || this.flushing) return;
    this.flush().catch(() => undefined);
  }

  /** Retries the journal every retryIntervalMs while it holds settlements (or fail-open requests). */
  private schedule(): void {
    if (this.retryTimer || this.retryIntervalMs <= 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.flush()
        .catch(() => 0)
        .then(() => {
          if (this.journal.size > 0) this.schedule();
        });
    }, this.retryIntervalMs);
    this.retryTimer.unref();
  }

  /** Stops the retry timer (the journal keeps its entries; flush() still delivers them). */
  close(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  /**
   * Delivers journalled settlements, oldest first, until the store is away again; returns how
   * many went through. Settling is idempotent by reservation id, so one whose earlier attempt
   * did reach the store (its answer lost) is not counted twice, as long as the store still
   * remembers that id (2 × the reservation TTL from when it applied it): an entry whose first
   * possibly-applied attempt is older than that is given up rather than risk counting twice.
   */
  flush(): Promise<number> {
    this.flushing ??= this.drain().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async drain(): Promise<number> {
    let done = 0;
    this.journal.expire(this.clock());
    for (const e of this.journal.pending()) {
      const id = e.reservation.id;
      // Dropped meanwhile (evicted to make room): not to be delivered.
      if (!this.journal.has(id)) continue;
      const now = this.clock();
      if (
        e.ambiguousSinceMs !== undefined &&
        now - e.ambiguousSinceMs >= markerTtlMs(e.reservation)
      ) {
        this.journal.drop(id, 'ambiguous');
        continue;
      }
      const at = this.journal.stamp();
      let result: SettleResult;
      try {
        result = await this.apply(e.reservation, e.actual);
      } catch (err) {
        if (err instanceof StoreUnavailable) {
          if (err.maybeApplied) e.ambiguousSinceMs ??= now;
          break;
        }
        this.journal.drop(id, 'refused');
        throw err;
      }
      this.journal.delivered(
        e.reservation,
        e.reservation.charges.map((c) => actualFor(c, e.actual)),
        at,
        result.status === 'settled' && !result.expired,
      );
      done++;
    }
    return done;
  }

  /** Headers for a response when no reservation was made for it (e.g. /v1/models). */
  async currentHeaders(policy: BudgetPolicy, keys: RequestKeys): Promise<Record<string, string>> {
    const now = this.clock();
    const ttlMs = policy.limits.reservationTtlSeconds * 1000;
    const charges = chargesFor(policy.limits.rules, keys, { tokens: 0, costUsd: 0 }, now, ttlMs);
    const levels = await this.store.levels(
      policy.name,
      charges.map((c) => c.key),
      now,
    );
    return rateLimitHeaders(charges, levels, now);
  }
}

const METRIC_TEXT: Record<Metric, string> = {
  requests: 'Requests-per-minute',
  tokens: 'Tokens-per-minute',
  concurrent: 'Concurrent-request',
  spendDay: 'Daily spend',
  spendMonth: 'Monthly spend',
};

function limitHit(charges: Charge[], levels: readonly number[], i: number, now: number): LimitHit {
  const c = charges[i]!;
  const level = levels[i] ?? 0;
  const left = Math.max(0, c.limit - level);
  const spend = c.metric === 'spendDay' || c.metric === 'spendMonth';
  return {
    limit: c.limitName,
    metric: c.metric,
    // Concurrency frees up when any request ends; there is no window to wait for.
    retryAfterSeconds:
      c.metric === 'concurrent' ? 1 : Math.max(1, Math.ceil((c.resetAtMs - now) / 1000)),
    remaining: spend ? microsToUsd(left) : left,
    neverFits: c.amount > c.limit,
  };
}

// Dimension values come from request bodies and JWT claims: encoded so that no value can
// forge a separator or a Redis hash tag, and long ones shortened to bound key size.
function dimValue(v: string | undefined): string {
  if (v === undefined || v === '') return '-';
  const e = encodeURIComponent(v).replaceAll('*', '%2A');
  return e.length <= 200 ? e : `${e.slice(0, 160)}~${fnv1a(v)}`;
}

function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

function dimsOf(per: readonly LimitDimension[], keys: RequestKeys): string {
  return per.map((d) => `${d}=${dimValue(keys[d])}`).join(',');
}

// Every reserve and settle names its day and month, and a monthly limit needs the month's end:
// the last day's are kept, so a request does not format two dates or build a Date (the month's
// name is the day's first seven characters; its end depends on the day alone).
let namedDay = { start: Number.NaN, day: '', month: '', monthEnd: 0 };
function dayNames(ms: number): { day: string; month: string; monthEnd: number } {
  const start = Math.floor(ms / DAY_MS) * DAY_MS;
  if (start !== namedDay.start) {
    const d = new Date(start);
    const iso = d.toISOString();
    namedDay = {
      start,
      day: iso.slice(0, 10),
      month: iso.slice(0, 7),
      monthEnd: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1),
    };
  }
  return namedDay;
}

export function utcDay(ms: number): string {
  return dayNames(ms).day;
}

export function utcMonth(ms: number): string {
  return dayNames(ms).month;
}

function nextUtcDay(ms: number): number {
  return Math.floor(ms / DAY_MS) * DAY_MS + DAY_MS;
}

/** The first millisecond of the UTC month after the one `ms` is in. */
export function nextUtcMonth(ms: number): number {
  return dayNames(ms).monthEnd;
}

/**
 * The last bucket keys made for a limit: nearly every request of a consumer (or team) charges the
 * same buckets as the one before, so their keys are reused rather than built again (per request
 * they cost an encodeURIComponent per dimension and a string per bucket). Last value only: a
 * different caller builds its keys as before and becomes the one kept.
 */
interface LimitKeys {
  per: readonly LimitDimension[];
  /** The dimension values (RequestKeys, in `per` order) `base` was made from. */
  values: (string | undefined)[];
  base: string;
  /** Per metric: the window and key last made under `base`. */
  windows: Partial<Record<Metric, { window: string; key: string }>>;
}

const limitKeys = new WeakMap<Limit, LimitKeys>();

function keysOf(l: Limit, keys: RequestKeys): LimitKeys {
  let k = limitKeys.get(l);
  if (k !== undefined && k.per === l.per) {
    let same = true;
    for (let i = 0; i < l.per.length; i++) {
      if (k.values[i] !== keys[l.per[i]!]) {
        same = false;
        break;
      }
    }
    if (same) return k;
  }
  k = {
    per: l.per,
    values: l.per.map((d) => keys[d]),
    base: `${l.name}|${dimsOf(l.per, keys)}`,
    windows: {},
  };
  limitKeys.set(l, k);
  return k;
}

function bucketKey(k: LimitKeys, metric: Metric, window: string): string {
  const last = k.windows[metric];
  if (last !== undefined && last.window === window) return last.key;
  const key = `${k.base}|${metric}|${window}`;
  k.windows[metric] = { window, key };
  return key;
}

function charge(
  k: LimitKeys,
  l: Limit,
  metric: Metric,
  window: string,
  limit: number,
  amount: number,
  reset: number,
  now: number,
  ttlMs: number,
): Charge {
  return {
    key: bucketKey(k, metric, window),
    limitName: l.name,
    metric,
    limit,
    amount,
    resetAtMs: reset,
    // Late reconciles of this window's reservations still land before it is forgotten.
    expireAtMs: reset === 0 ? now + 2 * ttlMs : reset + ttlMs,
  };
}

/** The last minute named (a string per request otherwise). */
let namedMinute = { start: Number.NaN, name: '' };

/** The buckets a request charges, in a stable order (limit order, then metric order). */
export function chargesFor(
  limits: readonly Limit[],
  keys: RequestKeys,
  estimate: Amount,
  now: number,
  ttlMs: number,
): Charge[] {
  const minute = Math.floor(now / MINUTE_MS) * MINUTE_MS;
  if (namedMinute.start !== minute) namedMinute = { start: minute, name: String(minute) };
  const minuteName = namedMinute.name;
  const minuteEnd = minute + MINUTE_MS;
  const dayEnd = nextUtcDay(now);
  const monthEnd = nextUtcMonth(now);
  const tokens = Math.max(0, Math.ceil(estimate.tokens));
  const cost = Math.max(0, usdToMicros(estimate.costUsd));
  // Made to size: a list grown by push holds room for 16 or more.
  let n = 0;
  for (const l of limits) {
    if (l.requestsPerMinute !== undefined) n++;
    if (l.tokensPerMinute !== undefined) n++;
    if (l.concurrent !== undefined) n++;
    if (l.spendPerDayUsd !== undefined) n++;
    if (l.spendPerMonthUsd !== undefined) n++;
  }
  const out: Charge[] = new Array<Charge>(n);
  let i = 0;
  for (const l of limits) {
    const k = keysOf(l, keys);
    if (l.requestsPerMinute !== undefined) {
      out[i++] = charge(
        k,
        l,
        'requests',
        minuteName,
        l.requestsPerMinute,
        1,
        minuteEnd,
        now,
        ttlMs,
      );
    }
    if (l.tokensPerMinute !== undefined) {
      out[i++] = charge(
        k,
        l,
        'tokens',
        minuteName,
        l.tokensPerMinute,
        tokens,
        minuteEnd,
        now,
        ttlMs,
      );
    }
    if (l.concurrent !== undefined)
      out[i++] = charge(k, l, 'concurrent', '', l.concurrent, 1, 0, now, ttlMs);
    if (l.spendPerDayUsd !== undefined) {
      const limit = usdToMicros(l.spendPerDayUsd);
      out[i++] = charge(k, l, 'spendDay', utcDay(now), limit, cost, dayEnd, now, ttlMs);
    }
    if (l.spendPerMonthUsd !== undefined) {
      const limit = usdToMicros(l.spendPerMonthUsd);
      out[i++] = charge(k, l, 'spendMonth', utcMonth(now), limit, cost, monthEnd, now, ttlMs);
    }
  }
  return out;
}

function actualFor(c: Charge, actual: Actual | undefined): number {
  if (!actual) return 0;
  switch (c.metric) {
    case 'requests':
      return Math.max(0, Math.floor(actual.attempts ?? 1));
    case 'tokens':
      return Math.max(0, Math.ceil(actual.tokens));
    case 'concurrent':
      return 0;
    case 'spendDay':
    case 'spendMonth':
      return Math.max(0, usdToMicros(actual.costUsd));
  }
}

function settleResult(reply: SettleReply): SettleResult {
  return reply.applied
    ? { status: 'settled', expired: !reply.pendingFound }
    : { status: 'duplicate' };
}

/** What a settle request charges each bucket (actualFor of each charge, in order). */
function amountsOf(req: SettleRequest): number[] {
  const out = new Array<number>(req.buckets.length);
  for (let i = 0; i < out.length; i++) out[i] = req.buckets[i]!.actual;
  return out;
}

/** How long the store remembers a settled id: retries within it are recognised. */
function markerTtlMs(r: Reservation): number {
  return 2 * r.ttlMs;
}

function settleRequest(r: Reservation, actual: Actual | undefined, now: number): SettleRequest {
  let usage: UsageIncrement[] = [];
  if (actual) {
    const u = actual.usage;
    const values: UsageValues = actual.refused
      ? { ...emptyUsage(), [actual.refused]: 1 }
      : {
          // One per client request, as in the access log (which has the attempts); requests per
          // minute count attempts instead. A cache hit is a cached request, not a provider's.
          requests: actual.cached ? 0 : 1,
          inputTokens: u?.inputTokens ?? 0,
          outputTokens: u?.outputTokens ?? 0,
          cachedInputTokens: u?.cachedInputTokens ?? 0,
          totalTokens: Math.max(0, Math.ceil(actual.tokens)),
          costMicros: Math.max(0, usdToMicros(actual.costUsd)),
          cachedRequests: actual.cached ? 1 : 0,
          savedTokens: Math.max(0, Math.round(actual.cached?.savedTokens ?? 0)),
          savedMicros: Math.max(0, Math.round(actual.cached?.savedMicros ?? 0)),
          refusedUnauthenticated: 0,
          refusedAccessDenied: 0,
          refusedRateLimit: 0,
          refusedBudget: 0,
          refusedPolicy: 0,
          refusedPrompt: 0,
        };
    const dims = usageDims(r.keys);
    const at = r.createdAtMs;
    // A literal: an array grown by push holds room for 16 or more.
    usage = [
      {
        period: 'day',
        periodKey: utcDay(at),
        dims: r.keys.session ? { ...dims, session: r.keys.session } : dims,
        values,
        expireAtMs: nextUtcDay(at) + DAY_USAGE_RETENTION_MS,
      },
      {
        period: 'month',
        periodKey: utcMonth(at),
        dims,
        values,
        expireAtMs: nextUtcMonth(at) + MONTH_USAGE_RETENTION_MS,
      },
    ];
  }
  const buckets = new Array<SettleRequest['buckets'][number]>(r.charges.length);
  for (let i = 0; i < buckets.length; i++) {
    const c = r.charges[i]!;
    buckets[i] = { key: c.key, actual: actualFor(c, actual), expireAtMs: c.expireAtMs };
  }
  return {
    scope: r.scope,
    id: r.id,
    nowMs: now,
    markerTtlMs: markerTtlMs(r),
    buckets,
    usage,
  };
}

/**
 * A settlement's usage row (without its session), the last one made kept: nearly every
 * settlement names the same caller, model and route as the one before. Stores only read it.
 */
let lastDims: UsageDims = { consumer: '', team: '', model: '', route: '' };
function usageDims(k: RequestKeys): UsageDims {
  const d = lastDims;
  const consumer = k.consumer ?? '';
  const team = k.team ?? '';
  if (d.consumer === consumer && d.team === team && d.model === k.model && d.route === k.route)
    return d;
  return (lastDims = { consumer, team, model: k.model, route: k.route });
}

/** Go-style durations as OpenAI sends them in x-ratelimit-reset-*: "20ms", "1.5s", "6m0s". */
export function formatReset(ms: number): string {
  const t = Math.max(0, Math.round(ms));
  if (t < 1000) return `${t}ms`;
  const h = Math.floor(t / 3_600_000);
  const m = Math.floor((t % 3_600_000) / 60_000);
  const sMs = t % 60_000;
  const s =
    sMs % 1000 === 0 ? String(sMs / 1000) : `${Math.floor(sMs / 1000)}.${millis(sMs % 1000)}`;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/**
 * 1..999 ms as the digits after a decimal point, without trailing zeros (5 -> "005", 50 -> "05",
 * 500 -> "5"): what toFixed(3) and a regex made, on every admitted request, from integers.
 */
function millis(ms: number): string {
  if (ms % 100 === 0) return String(ms / 100);
  if (ms % 10 === 0) return (ms < 100 ? '0' : '') + String(ms / 10);
  return (ms < 10 ? '00' : ms < 100 ? '0' : '') + String(ms);
}

/**
 * x-ratelimit-{limit,remaining,reset}-{requests,tokens} from the tightest per-minute bucket of
 * each kind. Only the caller's own buckets are ever read, so nothing about others leaks.
 */
export function rateLimitHeaders(
  charges: readonly Charge[],
  levels: readonly number[],
  now: number,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const metric of RATE_LIMIT_METRICS) {
    let best = -1;
    let bestRemaining = 0;
    for (let i = 0; i < charges.length; i++) {
      const c = charges[i]!;
      if (c.metric !== metric) continue;
      const remaining = Math.max(0, c.limit - (levels[i] ?? 0));
      if (best < 0 || remaining < bestRemaining) {
        best = i;
        bestRemaining = remaining;
      }
    }
    if (best < 0) continue;
    const c = charges[best]!;
    const names = RATE_LIMIT_HEADERS[metric];
    out[names[0]] = String(c.limit);
    out[names[1]] = String(bestRemaining);
    out[names[2]] = formatReset(c.resetAtMs - now);
  }
  return out;
}

/** The per-minute metrics x-ratelimit-* reports; each names its headers' suffix. */
const RATE_LIMIT_METRICS = ['requests', 'tokens'] as const;

/** Each metric's limit, remaining and reset header names, built once. */
const RATE_LIMIT_HEADERS = Object.fromEntries(
  RATE_LIMIT_METRICS.map((m) => [
    m,
    [`x-ratelimit-limit-${m}`, `x-ratelimit-remaining-${m}`, `x-ratelimit-reset-${m}`] as const,
  ]),
) as Record<(typeof RATE_LIMIT_METRICS)[number], readonly [string, string, string]>;

/**
 * Per-attempt accounting for retries. The upstream phase calls `begin()` for every attempt it
 * sees (Envoy runs the upstream filter once per attempt) and the end of the request `record()`s
 * what an attempt cost. `total()` is what reconcile receives: every attempt made counts once
 * towards requests per minute, attempts never made not at all, and tokens and spend are the sum
 * of what each attempt was charged.
 *
 * Envoy retries only while no response has started towards the client (a 5xx or 429 it was told
 * to retry, a reset, a per-try timeout), so only the last attempt ever has a response the router
 * phase reads; an earlier one stays at 0 tokens unless something records a figure for it.
 */
export class AttemptLedger {
  private costs: (Actual | undefined)[] = [];

  begin(): number {
    // Nearly always one attempt: a literal of one, where push would make room for 16 or more.
    if (this.costs.length === 0) this.costs = [undefined];
    else this.costs.push(undefined);
    return this.costs.length;
  }

  /** `attempt` is begin()'s number; recording twice for one attempt keeps the last figure. */
  record(attempt: number, cost: Actual): void {
    if (attempt < 1 || attempt > this.costs.length) throw new RangeError('unknown attempt');
    this.costs[attempt - 1] = cost;
  }

  get attempts(): number {
    return this.costs.length;
  }

  total(): Actual {
    let tokens = 0;
    let costMicros = 0;
    let usage: TokenUsage | undefined;
    for (const c of this.costs) {
      if (!c) continue;
      tokens += c.tokens;
      costMicros += usdToMicros(c.costUsd);
      if (c.usage) usage = usage ? addUsage(usage, c.usage) : { ...c.usage };
    }
    return { tokens, costUsd: microsToUsd(costMicros), usage, attempts: this.costs.length };
  }
}

function addUsage(a: TokenUsage, b: TokenUsage): TokenUsage {
  return {
    inputTokens: a.inputTokens + b.inputTokens,
    outputTokens: a.outputTokens + b.outputTokens,
    totalTokens: a.totalTokens + b.totalTokens,
    cachedInputTokens: a.cachedInputTokens + b.cachedInputTokens,
    cacheCreationInputTokens: a.cacheCreationInputTokens + b.cacheCreationInputTokens,
    reasoningTokens: a.reasoningTokens + b.reasoningTokens,
    estimated: a.estimated || b.estimated,
  };
}

export function budgetPolicyOf(p: GovernancePolicy): BudgetPolicy | undefined {
  if (!p.limits || p.limits.rules.length === 0) return undefined;
  return { name: p.name, mode: p.mode, failureMode: p.failureMode, limits: p.limits };
}
