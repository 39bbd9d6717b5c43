/**
 * The state store behind budgets and usage reports. It knows buckets, reservations and counters,
 * not limits or prices: budget.ts turns a policy into bucket charges, a store applies them
 * atomically. Two implementations share these semantics exactly: memory.ts and redis.ts.
 *
 * A bucket holds `used` (settled, actual amounts) and `reserved` (pending reservations). A
 * reservation fits when used + reserved + unsettled + amount ≤ limit in every bucket it names
 * (unsettled: what the caller still owes the bucket); it is then added to all of them or to none. Settling (reconcile or release) removes the reserved amounts
 * and adds the actual ones, once per reservation id however often it is retried. A reservation
 * not settled by its deadline stops counting, so crashed requests give their share back.
 *
 * Settling an id that was never reserved is allowed and leaves the same "settled" marker: a
 * reservation with that id arriving later (a call that timed out on our side and ran when a
 * stalled store resumed) is then refused as a reused id and changes nothing. So a release sent
 * after a reserve whose answer was lost frees it whichever of the two the store runs first.
 */

/** The store cannot be reached or did not answer in time; the policy's failure mode decides. */
export class StoreUnavailable extends Error {
  /**
   * Whether the call may still take effect: true for a call that was sent and then timed out or
   * lost its connection (a stalled Redis runs it when it resumes), false only when it certainly
   * never left this process. A reservation that may still be applied must be released.
   */
  readonly maybeApplied: boolean;

  constructor(
    message = 'The state store is unavailable.',
    options?: { cause?: unknown; maybeApplied?: boolean },
  ) {
    super(message, options);
    this.name = 'StoreUnavailable';
    this.maybeApplied = options?.maybeApplied ?? true;
  }
}

export interface BucketCharge {
  /** Unique within the scope; budget.ts encodes limit, dimensions, metric and window in it. */
  key: string;
  /** Integer capacity. */
  limit: number;
  /** Integer amount to reserve. */
  amount: number;
  /** Epoch ms after which the bucket may be forgotten (its window's end plus a grace). */
  expireAtMs: number;
  /**
   * What the caller owes this bucket and has not delivered yet (served while the store was
   * away): counted when checking the limit, never added. Default 0.
   */
  unsettled?: number;
}

export interface ReserveRequest {
  /** Buckets and reservations of one scope (a policy) share a Redis Cluster hash slot. */
  scope: string;
  id: string;
  nowMs: number;
  /** The reservation stops counting at nowMs + ttlMs unless settled before. */
  ttlMs: number;
  buckets: BucketCharge[];
  /** Admit and count even when a bucket would overflow (shadow mode); `over` still reports it. */
  force?: boolean;
}

export interface ReserveReply {
  admitted: boolean;
  /** Index of the first bucket the reservation did not fit, or -1. */
  over: number;
  /** Per bucket, used + reserved: after this reservation if admitted, before it if not. */
  levels: number[];
}

export interface SettleBucket {
  key: string;
  /** Integer amount actually consumed; 0 gives everything back. */
  actual: number;
  /**
   * The reservation's own (BucketCharge.expireAtMs): a bucket the reservation still holds keeps
   * the lifetime its reserve gave it; one that is gone is recreated with this one.
   */
  expireAtMs: number;
}

export type UsagePeriod = 'day' | 'month';

export interface UsageDims {
  consumer: string;
  team: string;
  model: string;
  route: string;
  /**
   * The session id (context/session.ts) of a request in a session; absent for the others. Kept
   * on day rows only, so a month's rows do not grow with every conversation.
   */
  session?: string;
}

/**
 * `requests` and the tokens and cost beside it are what providers answered (and what a charged
 * cache hit is charged); `cachedRequests` counts answers served from the response cache, with the
 * tokens and cost they did not buy (`savedTokens`, `savedMicros`). `cachedInputTokens` is the
 * provider's own prompt caching, not ours. Metrics at 0 are not written, so rows stay small.
 */
export const USAGE_METRICS = [
  'requests',
  'inputTokens',
  'outputTokens',
  'cachedInputTokens',
  'totalTokens',
  'costMicros',
  'cachedRequests',
  'savedTokens',
  'savedMicros',
  'refusedUnauthenticated',
  'refusedAccessDenied',
  'refusedRateLimit',
  'refusedBudget',
  'refusedPolicy',
  'refusedPrompt',
] as const;
export type UsageMetric = (typeof USAGE_METRICS)[number];
export type UsageValues = Record<UsageMetric, number>;

/**
 * Refused requests, by the code the caller got: what the usage report's "top refusals" reads.
 * Counted per consumer/team/model/route like the rest (a reader that predates a metric skips
 * it: parseUsageField knows only USAGE_METRICS).
 */
export const REFUSAL_METRICS = [
  ['unauthenticated', 'refusedUnauthenticated'],
  ['access_denied', 'refusedAccessDenied'],
  ['rate_limit_exceeded', 'refusedRateLimit'],
  ['budget_exceeded', 'refusedBudget'],
  ['policy_blocked', 'refusedPolicy'],
  ['prompt_blocked', 'refusedPrompt'],
] as const satisfies readonly (readonly [string, UsageMetric])[];
export type RefusalMetric = (typeof REFUSAL_METRICS)[number][1];

/** The usage metric of a refusal code, or undefined for a code that is no refusal. */
export function refusalMetric(code: string | undefined): RefusalMetric | undefined {
  return REFUSAL_METRICS.find(([c]) => c === code)?.[1];
}

export interface UsageIncrement {
  period: UsagePeriod;
  /** `YYYY-MM-DD` for a day, `YYYY-MM` for a month (UTC). */
  periodKey: string;
  dims: UsageDims;
  values: UsageValues;
  expireAtMs: number;
}

export interface SettleRequest {
  scope: string;
  id: string;
  nowMs: number;
  /** How long the "already settled" marker is kept; retries after that are not recognised. */
  markerTtlMs: number;
  buckets: SettleBucket[];
  usage: UsageIncrement[];
}

export interface SettleReply {
  /** false: this id was settled before; nothing changed. */
  applied: boolean;
  /** false: the reservation had already expired (its reserved amounts were dropped then). */
  pendingFound: boolean;
}

export interface UsageRow {
  scope: string;
  dims: UsageDims;
  values: UsageValues;
}

export interface StateStore {
  readonly kind: 'memory' | 'redis';
  reserve(req: ReserveRequest): Promise<ReserveReply>;
  settle(req: SettleRequest): Promise<SettleReply>;
  /** Current used + reserved of buckets, without changing anything (missing bucket: 0). */
  levels(scope: string, keys: readonly string[], nowMs: number): Promise<number[]>;
  usage(period: UsagePeriod, periodKey: string): Promise<UsageRow[]>;
  close(): Promise<void>;
}

/**
 * A store that never waits (memory.ts) answers with answered(value): a resolved promise whose
 * value the caller takes in the same turn with valueNow, instead of awaiting it. The Budget's
 * reserve and settle then make no promise and suspend no frame per step (issue 16: every async
 * step of a request's reserve and settle allocated a promise and its frame). Only the promise
 * made last is known, and only that very promise: a store that wraps another (tests count its
 * calls) and hands its promise on is still read at once; one that makes a promise of its own is
 * awaited as before.
 */
let answeredPromise: Promise<unknown> | undefined;
let answeredValue: unknown;

export function answered<T>(value: T): Promise<T> {
  const p = Promise.resolve(value);
  answeredPromise = p;
  answeredValue = value;
  return p;
}

/** The value of `p` if it is the promise answered() made last; undefined otherwise. */
export function valueNow<T>(p: Promise<T>): T | undefined {
  if (p !== answeredPromise) return undefined;
  const v = answeredValue as T;
  answeredPromise = undefined;
  answeredValue = undefined;
  return v;
}

/** A promise rejected with `err`, whatever was thrown (as an async function's would be). */
export function rejected(err: unknown): Promise<never> {
  return new Promise(() => {
    throw err;
  });
}

export function emptyUsage(): UsageValues {
  return {
    requests: 0,
    inputTokens: 0,
    outputTokens: 0,
    cachedInputTokens: 0,
    totalTokens: 0,
    costMicros: 0,
    cachedRequests: 0,
    savedTokens: 0,
    savedMicros: 0,
    refusedUnauthenticated: 0,
    refusedAccessDenied: 0,
    refusedRateLimit: 0,
    refusedBudget: 0,
    refusedPolicy: 0,
    refusedPrompt: 0,
  };
}

/** One usage field name per (dims, metric); the unit separator cannot occur in names. */
export function usageField(d: UsageDims, metric: UsageMetric): string {
  return `${usageDimsKey(d)}\x1f${metric}`;
}

/** A usage field name without its metric: what the fields of one row share. */
export function usageDimsKey(d: UsageDims): string {
  const parts = [d.consumer, d.team, d.model, d.route];
  // Rows without a session keep the five-part form they had before sessions existed.
  if (d.session) parts.push(d.session);
  return parts.join('\x1f');
}

export function parseUsageField(
  field: string,
): { dims: UsageDims; metric: UsageMetric } | undefined {
  const p = field.split('\x1f');
  if (p.length !== 5 && p.length !== 6) return undefined;
  const metric = p[p.length - 1] as UsageMetric;
  if (!USAGE_METRICS.includes(metric)) return undefined;
  const dims: UsageDims = { consumer: p[0]!, team: p[1]!, model: p[2]!, route: p[3]! };
  if (p.length === 6) dims.session = p[4]!;
  return { dims, metric };
}

/** Folds field/value pairs of one scope's usage hash into rows. */
export function usageRows(scope: string, pairs: Iterable<[string, number]>): UsageRow[] {
  const rows = new Map<string, UsageRow>();
  for (const [field, value] of pairs) {
    const parsed = parseUsageField(field);
    if (!parsed) continue;
    const id = field.slice(0, field.lastIndexOf('\x1f'));
    let row = rows.get(id);
    if (!row) {
      row = { scope, dims: parsed.dims, values: emptyUsage() };
      rows.set(id, row);
    }
    row.values[parsed.metric] += value;
  }
  return [...rows.values()];
}
