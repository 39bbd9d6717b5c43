/**
 * The shared store: Redis (standalone or Cluster) through ioredis, every update one Lua script so
 * several extproc replicas see one budget. "now" is an argument of every script, never Redis's
 * own clock, so tests drive windows and expiry and replicas agree with their callers' clock.
 *
 * Key layout (P = prefix, default "sluice"; S = scope, a policy name; {S} is the Cluster hash
 * tag, so every key one script touches lives in one slot):
 *
 *   P:{S}:b:<bucket>           hash  u = settled amount, r = sum of pending reservations,
 *                                     x = the latest expiry a reserve gave it (caller's clock)
 *                                     expires at its window's end + grace (set by budget.ts)
 *   P:{S}:p                    zset  pending reservation ids, score = expiry (epoch ms)
 *   P:{S}:r:<id>               hash  bucket key → amount reserved by reservation <id>
 *   P:{S}:d:<id>               string "settled" marker: makes settling idempotent
 *   P:{S}:u:<day|month>:<key>  hash  usage counters, field = consumer␟team␟model␟route␟metric
 *   P:scopes                   set   scopes that have usage (its own slot; read by reports)
 *
 * Scripts reach bucket keys of expired reservations by name from P:{S}:r:<id>; those keys are
 * undeclared but share the {S} tag, hence the slot, which Redis Cluster accepts.
 */
import { Redis, type Cluster, type RedisOptions } from 'ioredis';
import {
  StoreUnavailable,
  usageField,
  usageRows,
  USAGE_METRICS,
  type ReserveReply,
  type ReserveRequest,
  type SettleReply,
  type SettleRequest,
  type StateStore,
  type UsagePeriod,
  type UsageRow,
} from './store.js';

// Shared prelude. Expiry instants come from the caller's clock, so they are turned into
// durations from the caller's "now": Redis's own clock then only measures elapsed time, and
// callers (and tests) with another notion of now still get the intended lifetimes. keep() never
// shortens a lifetime; a duration ≤ 0 deletes the key, as a window long over should be.
//
// lengthen() is keep() for a bucket a reserve just read: its field x is the latest expiry a
// reserve gave it, so the PTTL/PEXPIRE pair runs only when this one asks for more. Every
// reservation of a window asks for the same expiry (its end + the TTL), so that is once per
// window; a concurrency bucket's (now + 2 TTL) moves with every reserve. x is a lower bound of
// the key's lifetime: only reserves write it, after keep(), which never shortens; a key that
// settle recreated has none, so the next reserve sets both.
//
// purge() drops up to 64 expired reservations of the scope per call, so expiry costs
// O(expired) and never a scan. Bucket keys that already expired are not resurrected.
const PURGE = `
local function keep(key, ms)
  local left = redis.call('PTTL', key)
  if left < 0 or left < ms then
    if ms <= 0 then redis.call('DEL', key) else redis.call('PEXPIRE', key, math.floor(ms)) end
  end
end
local function lengthen(key, known, expireAt, now)
  if known ~= nil and known >= expireAt then return end
  keep(key, expireAt - now)
  if expireAt > now then redis.call('HSET', key, 'x', expireAt) end
end
local function purge(pendingKey, prefix, now)
  local expired = redis.call('ZRANGE', pendingKey, '-inf', now, 'BYSCORE', 'LIMIT', 0, 64)
  for _, rid in ipairs(expired) do
    local rkey = prefix .. 'r:' .. rid
    local rec = redis.call('HGETALL', rkey)
    for i = 1, #rec, 2 do
      if redis.call('EXISTS', rec[i]) == 1 then
        redis.call('HINCRBY', rec[i], 'r', -tonumber(rec[i + 1]))
      end
    end
    redis.call('DEL', rkey)
    redis.call('ZREM', pendingKey, rid)
  end
end
`;

// KEYS: pending zset, reservation record, settled marker, buckets...
// ARGV: now, ttl, force, id, prefix, then per bucket: limit, amount, expireAt, unsettled
// Returns {admitted (0|1|-1 reused id), over (0-based, -1 none), levels...}
//
// It is on every governed request's path, so it makes as few calls as it can (each costs
// Redis CPU inside the one script): one EXISTS for both ids, one HMGET per bucket (levels and
// x), one HINCRBY per bucket, the record in one HSET, bucket lifetimes only when they grow
// (lengthen), and the pending set's lifetime only when under 1.5 TTL: every member scores at
// most now + TTL, so the set still outlives each one by half a TTL, for purge() to find it.
const RESERVE = `${PURGE}
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local force = ARGV[3] == '1'
local id = ARGV[4]
purge(KEYS[1], ARGV[5], now)
if redis.call('EXISTS', KEYS[2], KEYS[3]) > 0 then
  return {-1, -1}
end
local n = #KEYS - 3
local levels = {}
local known = {}
local over = -1
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i + 3], 'u', 'r', 'x')
  local level = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
  levels[i] = level
  known[i] = tonumber(v[3])
  local a = 5 + 4 * (i - 1)
  if over < 0 and level + tonumber(ARGV[a + 4]) + tonumber(ARGV[a + 2]) > tonumber(ARGV[a + 1]) then
    over = i - 1
  end
end
if over >= 0 and not force then
  return {0, over, unpack(levels)}
end
local rec = {}
for i = 1, n do
  local b = KEYS[i + 3]
  local a = 5 + 4 * (i - 1)
  local amount = tonumber(ARGV[a + 2])
  redis.call('HINCRBY', b, 'r', amount)
  lengthen(b, known[i], tonumber(ARGV[a + 3]), now)
  rec[2 * i - 1] = b
  rec[2 * i] = amount
  levels[i] = levels[i] + amount
end
if n > 0 then
  redis.call('HSET', KEYS[2], unpack(rec))
  redis.call('PEXPIRE', KEYS[2], 2 * ttl)
end
redis.call('ZADD', KEYS[1], now + ttl, id)
local left = redis.call('PTTL', KEYS[1])
if left < 0 or left < 1.5 * ttl then redis.call('PEXPIRE', KEYS[1], 2 * ttl) end
return {1, over, unpack(levels)}
`;

// KEYS: pending zset, reservation record, settled marker, buckets (nb of them), usage hashes...
// ARGV: now, markerTtl, id, prefix, nb, per bucket: actual, expireAt;
//       then per usage hash: expireAt, nfields, field, incr, field, incr...
// Returns {applied (0|1), pendingFound (0|1)}
const SETTLE = `${PURGE}
local now = tonumber(ARGV[1])
local id = ARGV[3]
purge(KEYS[1], ARGV[4], now)
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then
  return {0, 0}
end
local found = 0
if redis.call('ZREM', KEYS[1], id) == 1 then
  found = 1
  local rec = redis.call('HGETALL', KEYS[2])
  for i = 1, #rec, 2 do
    if redis.call('EXISTS', rec[i]) == 1 then
      redis.call('HINCRBY', rec[i], 'r', -tonumber(rec[i + 1]))
    end
  end
end
redis.call('DEL', KEYS[2])
local nb = tonumber(ARGV[5])
for i = 1, nb do
  local actual = tonumber(ARGV[5 + 2 * i - 1])
  if actual ~= 0 then
    local b = KEYS[i + 3]
    redis.call('HINCRBY', b, 'u', actual)
    keep(b, tonumber(ARGV[5 + 2 * i]) - now)
  end
end
local a = 5 + 2 * nb + 1
for k = 3 + nb + 1, #KEYS do
  local exp = tonumber(ARGV[a])
  local nf = tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, nf do
    redis.call('HINCRBY', KEYS[k], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  keep(KEYS[k], exp - now)
end
return {1, found}
`;

// KEYS: pending zset, buckets...  ARGV: now, prefix. Purges, then reads.
const LEVELS = `${PURGE}
purge(KEYS[1], ARGV[2], tonumber(ARGV[1]))
local out = {}
for i = 2, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'u', 'r')
  out[i - 1] = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
end
return out
`;

type Client = Redis | Cluster;

interface ScriptCommands {
  sluiceReserve(numKeys: number, ...args: (string | number)[]): Promise<number[]>;
  sluiceSettle(numKeys: number, ...args: (string | number)[]): Promise<number[]>;
  sluiceLevels(numKeys: number, ...args: (string | number)[]): Promise<number[]>;
}

export interface RedisStoreOptions {
  /** An existing client (standalone or Cluster); its lifetime stays the caller's. */
  client?: Client;
  /** Or a redis:// URL; the store then owns the connection. */
  url?: string;
  prefix?: string;
  /** Per-command deadline; a slower answer is a StoreUnavailable, not a hung request. */
  commandTimeoutMs?: number;
  /** Connection errors, for a log line or metric; never thrown from here. */
  onError?: (err: Error) => void;
}

/** Options that make a client fail fast instead of queueing commands while Redis is away. */
export function failFastOptions(commandTimeoutMs = 500): RedisOptions {
  return {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: commandTimeoutMs,
    connectTimeout: 2000,
    // Reconnect forever with a capped backoff: the store must come back on its own.
    retryStrategy: (times: number) => Math.min(50 * times, 1000),
    lazyConnect: false,
  };
}

const REUSED = 'reservation id reused';

// ioredis's refusals of a command it never wrote to a socket (no offline queue, so a command is
// either written at once or refused). Anything else may still run on the server: a timeout or
// a lost connection ("Connection is closed." is also what in-flight commands get) leaves a
// command that a stalled Redis runs when it resumes.
const NOT_SENT = [
  "Stream isn't writeable and enableOfflineQueue options is false",
  "Cluster isn't ready and enableOfflineQueue options is false",
];

export class RedisStore implements StateStore {
  readonly kind = 'redis' as const;
  /** Shared with the masking vault (RedisVaultStore), so both use one connection. */
  readonly client: Client;
  private readonly owned: boolean;
  private readonly prefix: string;
  private readonly scripts: ScriptCommands;
  private readonly registered = new Map<string, number>();

  constructor(opts: RedisStoreOptions) {
    if (opts.client) {
      this.client = opts.client;
      this.owned = false;
    } else if (opts.url) {
      this.client = new Redis(opts.url, failFastOptions(opts.commandTimeoutMs));
      this.owned = true;
    } else {
      throw new Error('RedisStore needs a client or a url');
    }
    this.client.on('error', (err: Error) => opts.onError?.(err));
    this.prefix = opts.prefix ?? 'sluice';
    // defineCommand sends EVALSHA and falls back to EVAL on NOSCRIPT, so a restarted Redis with
    // an empty script cache is transparent.
    this.client.defineCommand('sluiceReserve', { lua: RESERVE });
    this.client.defineCommand('sluiceSettle', { lua: SETTLE });
    this.client.defineCommand('sluiceLevels', { lua: LEVELS, readOnly: false });
    this.scripts = this.client as unknown as ScriptCommands;
  }

  /** Resolves once connected (or rejects with StoreUnavailable after `timeoutMs`). */
  async ready(timeoutMs = 5000): Promise<void> {
    if (this.client.status === 'ready') return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        this.client.off('ready', ok);
        reject(new StoreUnavailable('Redis did not become ready in time.'));
      }, timeoutMs);
      const ok = () => {
        clearTimeout(t);
        resolve();
      };
      this.client.once('ready', ok);
    });
  }

  private base(scope: string): string {
    return `${this.prefix}:{${scope}}:`;
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof Error && err.message.includes(REUSED)) throw err;
      throw new StoreUnavailable('The state store is unavailable.', {
        cause: err,
        maybeApplied: !(err instanceof Error && NOT_SENT.some((m) => err.message.includes(m))),
      });
    }
  }

  async reserve(req: ReserveRequest): Promise<ReserveReply> {
    const base = this.base(req.scope);
    const keys = [`${base}p`, `${base}r:${req.id}`, `${base}d:${req.id}`];
    const args: (string | number)[] = [req.nowMs, req.ttlMs, req.force ? '1' : '0', req.id, base];
    for (const b of req.buckets) {
      keys.push(`${base}b:${b.key}`);
      args.push(b.limit, b.amount, b.expireAtMs, b.unsettled ?? 0);
    }
    const r = await this.call(() => this.scripts.sluiceReserve(keys.length, ...keys, ...args));
    const [admitted, over, ...levels] = r;
    if (admitted === -1) throw new Error(`${REUSED}: ${req.id}`);
    return { admitted: admitted === 1, over: over ?? -1, levels };
  }

  async settle(req: SettleRequest): Promise<SettleReply> {
    const base = this.base(req.scope);
    const keys = [`${base}p`, `${base}r:${req.id}`, `${base}d:${req.id}`];
    const args: (string | number)[] = [
      req.nowMs,
      Math.max(1, Math.ceil(req.markerTtlMs)),
      req.id,
      base,
      req.buckets.length,
    ];
    for (const b of req.buckets) {
      keys.push(`${base}b:${b.key}`);
      args.push(b.actual, b.expireAtMs);
    }
    for (const u of req.usage) {
      keys.push(`${base}u:${u.period}:${u.periodKey}`);
      const fields: (string | number)[] = [];
      for (const m of USAGE_METRICS) {
        if (u.values[m] !== 0) fields.push(usageField(u.dims, m), u.values[m]);
      }
      args.push(u.expireAtMs, fields.length / 2, ...fields);
    }
    const [applied, found] = await this.call(() =>
      this.scripts.sluiceSettle(keys.length, ...keys, ...args),
    );
    if (applied === 1 && req.usage.length > 0) await this.register(req.scope, req.nowMs);
    return { applied: applied === 1, pendingFound: found === 1 };
  }

  // The scope registry lives outside the scope's slot, so it cannot join the script; it is only
  // an index for reports, re-asserted every minute so a restarted Redis relearns it.
  private async register(scope: string, nowMs: number): Promise<void> {
    const last = this.registered.get(scope);
    if (last !== undefined && nowMs - last < 60_000 && nowMs >= last) return;
    await this.call(() => this.client.sadd(`${this.prefix}:scopes`, scope));
    this.registered.set(scope, nowMs);
  }

  async levels(scope: string, keys: readonly string[], nowMs: number): Promise<number[]> {
    const base = this.base(scope);
    const all = [`${base}p`, ...keys.map((k) => `${base}b:${k}`)];
    return this.call(() => this.scripts.sluiceLevels(all.length, ...all, nowMs, base));
  }

  async usage(period: UsagePeriod, periodKey: string): Promise<UsageRow[]> {
    const scopes = await this.call(() => this.client.smembers(`${this.prefix}:scopes`));
    const rows: UsageRow[] = [];
    for (const scope of scopes.sort()) {
      const h = await this.call(() =>
        this.client.hgetall(`${this.base(scope)}u:${period}:${periodKey}`),
      );
      rows.push(
        ...usageRows(
          scope,
          Object.entries(h).map(([f, v]) => [f, Number(v)]),
        ),
      );
    }
    return rows;
  }

  async close(): Promise<void> {
    if (!this.owned) return;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
