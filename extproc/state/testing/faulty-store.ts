/**
 * A StateStore with the faults of a remote one, for unit tests of what sits on top of it:
 *   down     every call is refused before it is sent (StoreUnavailable, maybeApplied: false)
 *   stalled  every call fails for its caller (a client-side timeout, maybeApplied: true) but is
 *            held, and runs when the store resumes, as a stalled Redis runs what it already read
 * resume() can run the held calls in arrival order (one connection) or reversed (what a reconnect
 * or a Cluster failover may do), so tests can show a result does not depend on the order.
 */
import {
  StoreUnavailable,
  type ReserveReply,
  type ReserveRequest,
  type SettleReply,
  type SettleRequest,
  type StateStore,
  type UsagePeriod,
  type UsageRow,
} from '../store.js';

export type Fault = 'up' | 'down' | 'stalled';

export class FaultyStore implements StateStore {
  readonly kind: StateStore['kind'];
  fault: Fault = 'up';
  /** Calls that reached the inner store, by method. */
  readonly calls = { reserve: 0, settle: 0 };
  private held: (() => Promise<unknown>)[] = [];

  constructor(readonly inner: StateStore) {
    this.kind = inner.kind;
  }

  /** Calls held by a stall, waiting for resume(). */
  get heldCalls(): number {
    return this.held.length;
  }

  private call<T>(method: 'reserve' | 'settle', run: () => Promise<T>): Promise<T> {
    const counted = () => {
      this.calls[method]++;
      return run();
    };
    if (this.fault === 'down') {
      return Promise.reject(new StoreUnavailable('down', { maybeApplied: false }));
    }
    if (this.fault === 'stalled') {
      this.held.push(counted);
      return Promise.reject(new StoreUnavailable('timed out', { maybeApplied: true }));
    }
    return counted();
  }

  /** Runs the held calls (their answers go nowhere, as their callers gave up) and answers again. */
  async resume(order: 'arrival' | 'reversed' = 'arrival'): Promise<void> {
    const held = order === 'arrival' ? this.held : [...this.held].reverse();
    this.held = [];
    this.fault = 'up';
    for (const run of held) await run().catch(() => undefined);
  }

  reserve(req: ReserveRequest): Promise<ReserveReply> {
    return this.call('reserve', () => this.inner.reserve(req));
  }

  settle(req: SettleRequest): Promise<SettleReply> {
    return this.call('settle', () => this.inner.settle(req));
  }

  levels(scope: string, keys: readonly string[], nowMs: number): Promise<number[]> {
    if (this.fault !== 'up') return Promise.reject(new StoreUnavailable('away'));
    return this.inner.levels(scope, keys, nowMs);
  }

  usage(period: UsagePeriod, periodKey: string): Promise<UsageRow[]> {
    if (this.fault !== 'up') return Promise.reject(new StoreUnavailable('away'));
    return this.inner.usage(period, periodKey);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
