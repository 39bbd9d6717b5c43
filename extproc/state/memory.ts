/**
 * The single-process store. Every method runs to completion without awaiting, so on one event
 * loop each call is atomic by construction; expiry is lazy (checked against the caller's clock)
 * plus a sweep at most once a second so memory stays bounded by live windows.
 */
import {
  usageField,
  usageRows,
  type ReserveReply,
  type ReserveRequest,
  type SettleReply,
  type SettleRequest,
  type StateStore,
  type UsagePeriod,
  type UsageRow,
  USAGE_METRICS,
} from './store.js';

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
  buckets: Map<string, Bucket>;
  /** Insertion order is expiry order while a scope's TTL is constant; the sweep covers the rest. */
  pending: Map<string, Pending>;
  settled: Map<string, number>;
  usage: Map<string, { counters: Map<string, number>; expireAtMs: number }>;
}

export class MemoryStore implements StateStore {
  readonly kind = 'memory' as const;
  private readonly scopes = new Map<string, Scope>();
  private nextSweepMs = 0;

  private scope(name: string): Scope {
    let s = this.scopes.get(name);
    if (!s) {
      s = { buckets: new Map(), pending: new Map(), settled: new Map(), usage: new Map() };
      this.scopes.set(name, s);
    }
    return s;
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
      for (const [id, p] of s.pending)
        if (p.expiresAtMs <= nowMs) this.dropPending(s, id, p, nowMs);
      for (const [k, b] of s.buckets) if (b.expireAtMs <= nowMs) s.buckets.delete(k);
      for (const [id, until] of s.settled) if (until <= nowMs) s.settled.delete(id);
      for (const [k, u] of s.usage) if (u.expireAtMs <= nowMs) s.usage.delete(k);
    }
  }

  reserve(req: ReserveRequest): Promise<ReserveReply> {
    const { nowMs } = req;
    this.sweep(nowMs);
    const s = this.scope(req.scope);
    this.expire(s, nowMs);
    if (s.pending.has(req.id) || s.settled.has(req.id)) {
      return Promise.reject(new Error(`reservation id reused: ${req.id}`));
    }
    const levels: number[] = [];
    let over = -1;
    req.buckets.forEach((c, i) => {
      const b = this.bucket(s, c.key, nowMs);
      const level = b ? b.used + b.reserved : 0;
      levels.push(level);
      if (over < 0 && level + (c.unsettled ?? 0) + c.amount > c.limit) over = i;
    });
    if (over >= 0 && !req.force) return Promise.resolve({ admitted: false, over, levels });
    const charges: Pending['charges'] = [];
    req.buckets.forEach((c, i) => {
      let b = this.bucket(s, c.key, nowMs);
      if (!b) {
        b = { used: 0, reserved: 0, expireAtMs: c.expireAtMs };
        s.buckets.set(c.key, b);
      }
      b.reserved += c.amount;
      b.expireAtMs = Math.max(b.expireAtMs, c.expireAtMs);
      levels[i] = b.used + b.reserved;
      charges.push([c.key, c.amount]);
    });
    s.pending.set(req.id, { expiresAtMs: nowMs + req.ttlMs, charges });
    return Promise.resolve({ admitted: true, over, levels });
  }

  settle(req: SettleRequest): Promise<SettleReply> {
    const { nowMs } = req;
    const s = this.scope(req.scope);
    this.expire(s, nowMs);
    const marker = s.settled.get(req.id);
    if (marker !== undefined && marker > nowMs) {
      return Promise.resolve({ applied: false, pendingFound: false });
    }
    s.settled.set(req.id, nowMs + req.markerTtlMs);
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
      const k = `${u.period}:${u.periodKey}`;
      let h = s.usage.get(k);
      if (!h) {
        h = { counters: new Map(), expireAtMs: u.expireAtMs };
        s.usage.set(k, h);
      }
      h.expireAtMs = Math.max(h.expireAtMs, u.expireAtMs);
      for (const m of USAGE_METRICS) {
        const v = u.values[m];
        if (v === 0) continue;
        const f = usageField(u.dims, m);
        h.counters.set(f, (h.counters.get(f) ?? 0) + v);
      }
    }
    return Promise.resolve({ applied: true, pendingFound: p !== undefined });
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
      if (h) rows.push(...usageRows(name, h.counters));
    }
    return Promise.resolve(rows);
  }

  close(): Promise<void> {
    this.scopes.clear();
    return Promise.resolve();
  }
}
