/**
 * What a budget reservation is, shared by the budget (budget.ts), which makes and settles it, and
 * the settlement journal (settlement-journal.ts), which keeps reservations whose settlement is
 * still owed: below both, so neither imports the other for its types.
 */
import { PROCESS_IDS } from '../state/issued-ids.js';
import type { RefusalMetric } from '../state/store.js';
import type { TokenUsage } from '../usage/extract.js';

/**
 * A reservation id: 22 base64url characters, this process's random prefix and a sequence number
 * (state/issued-ids.ts), unique across replicas as 128 random bits are. The store keeps it as the
 * settlement's "settled" marker for 2 × the reservation TTL (~900,000 at 500 requests a second
 * with the default TTL); the memory store knows its own ids by number, ~6 bytes a marker
 * (state/seq-markers.ts), where any other id costs 40–50 (state/packed-ids.ts). One flat string:
 * randomUUID builds its 36 characters by concatenation, a tree of ~14 strings (~540 bytes).
 */
export function reservationId(): string {
  return PROCESS_IDS.issue();
}

export type Metric = 'requests' | 'tokens' | 'concurrent' | 'spendDay' | 'spendMonth';

export interface RequestKeys {
  /** Absent for anonymous callers (identity not required). */
  consumer?: string | undefined;
  team?: string | undefined;
  model: string;
  route: string;
  /** The request's session id (context/session.ts): usage reports can sum per session. */
  session?: string | undefined;
}

export interface Amount {
  tokens: number;
  costUsd: number;
}

export interface Actual extends Amount {
  /** The usage split, for usage reports; absent: tokens are reported as a total only. */
  usage?: TokenUsage | undefined;
  /**
   * Upstream attempts made (Envoy retries and fallbacks included): what requests-per-minute
   * buckets count, since each attempt is a request the provider received. Absent: one.
   */
  attempts?: number | undefined;
  /**
   * The request was answered from the response cache: the usage report counts it as a cached
   * request with what it saved, not as a request a provider answered; `tokens`, `costUsd` and
   * `usage` are what the hit was charged (0 when free).
   */
  cached?: { savedTokens: number; savedMicros: number } | undefined;
  /** A refused request: counted under this metric only (recordRefusal). */
  refused?: RefusalMetric | undefined;
}

export interface Charge {
  key: string;
  limitName: string;
  metric: Metric;
  /** Integer units: requests, tokens, micro-dollars. */
  limit: number;
  amount: number;
  /** When the window ends (epoch ms); concurrency: 0. */
  resetAtMs: number;
  expireAtMs: number;
}

export interface Reservation {
  readonly id: string;
  readonly scope: string;
  readonly createdAtMs: number;
  readonly ttlMs: number;
  readonly keys: RequestKeys;
  readonly estimate: Amount;
  readonly charges: readonly Charge[];
  /** used + reserved per charge right after admission; for response headers. */
  readonly levels: readonly number[];
}
