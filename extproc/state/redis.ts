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
 *   P:{S}:p                    zset  pending reservation ids, score = expiry (epoch ms), and ''
 *                                     at +inf, which keeps it from being emptied
 *   P:{S}:r:<id>               hash  bucket key → amount reserved by reservation <id>
 *   P:{S}:d:<id>               string "settled" marker: makes settling idempotent
 *   P:{S}:u:<day|month>:<key>  hash  usage counters, field = consumer␟team␟model␟route␟metric
 *   P:scopes                   set   scopes that have usage (its own slot; read by reports)
 *
 * Scripts reach bucket keys of expired reservations by name from P:{S}:r:<id>; those keys are
 * undeclared but share the {S} tag, hence the slot, which Redis Cluster accepts.
 */
import { createHash } from 'node:crypto';
import { Command, Redis, type Cluster, type RedisOptions } from 'ioredis';
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
// durations from the caller's "now" (in the caller: see `life`): Redis's own clock then only
// measures elapsed time, and callers (and tests) with another notion of now still get the
// intended lifetimes. keep() never shortens a lifetime; a duration ≤ 0 deletes the key, as a
// window long over should be. Settling lets a lifetime fall short of the one asked by up to a
// second (`slack`): its reserve set the bucket's from the same expiry, and the caller's clock
// and Redis's, read apart, would otherwise cost a PEXPIRE on about every other bucket and usage
// hash of every settle for a millisecond's difference. A key settle creates has no lifetime and
// always gets one.
//
// Every number the scripts hand to redis.call arrives as a decimal string from the caller and is
// passed on as it came: Redis 7.0 formats a Lua number argument with snprintf("%.17g"), and
// tonumber() parses with strtod, which for 13-digit epoch milliseconds run through glibc's
// multi-precision paths; with five buckets that was a sizeable share of a reserve's time in
// Redis. Amounts are integers (store.ts), so their decimal strings are what HINCRBY takes.
//
// lengthen() is keep() for a bucket a reserve just read: its field x is the latest expiry a
// reserve gave it, so the PTTL/PEXPIRE/HSET calls run only when this one asks for more. Every
// reservation of a window asks for the same expiry (its end + the TTL), so that is once per
// window and otherwise a string comparison. A concurrency bucket's (now + 2 TTL) moves with
// every reserve: when an existing bucket asks for more, it gets half as long again as asked
// (3 TTL), so it is lengthened once per TTL rather than on every reserve; an expiry is the
// earliest a bucket may be forgotten (store.ts), and a longer one changes no count. x is a lower
// bound of the key's lifetime: only reserves write it, after keep(), which never shortens; a key
// that settle recreated has none, so the next reserve sets both.
//
// purge() drops up to 64 expired reservations of the scope per call, so expiry costs
// O(expired) and never a scan. Bucket keys that already expired are not resurrected.
const PURGE = `
local function keep(key, ms, slack)
  local left = redis.call('PTTL', key)
  local want = tonumber(ms)
  if left < 0 or left < want - slack then
    if want <= 0 then redis.call('DEL', key) else redis.call('PEXPIRE', key, ms) end
  end
end
local function lengthen(key, known, expireAt, ms)
  if known == expireAt then return end
  if known then
    local want = tonumber(expireAt)
    if tonumber(known) >= want then return end
    -- Asked for more than a reserve gave it before: an expiry that moves with time. It gets
    -- half as long again, so the reserves that follow within that half find it long enough.
    local more = math.floor(tonumber(ms) / 2)
    if more > 0 then
      expireAt = want + more
      ms = tonumber(ms) + more
    end
  end
  keep(key, ms, 0)
  if tonumber(ms) > 0 then redis.call('HSET', key, 'x', expireAt) end
end
local function unreserve(key, amount)
  if amount ~= '0' and redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBY', key, 'r', '-' .. amount)
    return true
  end
  return false
end
local function purge(pendingKey, prefix, now)
  local expired = redis.call('ZRANGE', pendingKey, '-inf', now, 'BYSCORE', 'LIMIT', '0', '64')
  for _, rid in ipairs(expired) do
    local rkey = prefix .. 'r:' .. rid
    local rec = redis.call('HGETALL', rkey)
    for i = 1, #rec, 2 do unreserve(rec[i], rec[i + 1]) end
    redis.call('DEL', rkey)
    redis.call('ZREM', pendingKey, rid)
  end
end
`;

// KEYS: pending zset, reservation record, settled marker, buckets...
// ARGV: now, prefix, id, force, the pending score (now + TTL), the record's lifetime (2 TTL),
//       the pending set's least lifetime (1.5 TTL), then per bucket: room (limit − amount −
//       unsettled: the most it may hold before this reservation), amount, expireAt, and its
//       lifetime (expireAt − now)
// Returns {admitted (0|1|-1 reused id), over (0-based, -1 none), levels before this reservation}
//
// It is on every governed request's path, so it makes as few calls as it can (each costs
// Redis CPU inside the one script): one EXISTS for both ids, one HMGET per bucket (levels and
// x), one HINCRBY per bucket with something to reserve, the record in one HSET, bucket
// lifetimes only when they grow (lengthen), and the pending set's lifetime only when under
// 1.5 TTL: every member scores at most now + TTL, so the set still outlives each one by half a
// TTL, for purge() to find it. The set also holds '' at +inf, never a reservation id and never
// purged: a scope serving one request at a time would otherwise empty it with every settle,
// Redis would delete it, and every reserve would give the new one its lifetime again. A bucket that does not exist and gets 0 is not created (its level
// is 0 either way).
const RESERVE = `${PURGE}
purge(KEYS[1], ARGV[2], ARGV[1])
if redis.call('EXISTS', KEYS[2], KEYS[3]) > 0 then
  return {-1, -1}
end
local n = #KEYS - 3
local reply = {1, -1}
local known = {}
local over = -1
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i + 3], 'u', 'r', 'x')
  local level = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
  reply[i + 2] = level
  known[i] = v[3]
  if not (v[1] or v[2] or v[3]) then known[i] = nil end
  if over < 0 and level > tonumber(ARGV[4 * i + 4]) then over = i - 1 end
end
reply[2] = over
if over >= 0 and ARGV[4] ~= '1' then
  reply[1] = 0
  return reply
end
local rec = {}
for i = 1, n do
  local b = KEYS[i + 3]
  local amount = ARGV[4 * i + 5]
  if amount ~= '0' then redis.call('HINCRBY', b, 'r', amount) end
  if amount ~= '0' or known[i] ~= nil then
    lengthen(b, known[i] or false, ARGV[4 * i + 6], ARGV[4 * i + 7])
  end
  rec[2 * i - 1] = b
  rec[2 * i] = amount
end
if n > 0 then
  redis.call('HSET', KEYS[2], unpack(rec))
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[3], '+inf', '')
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[7]) then redis.call('PEXPIRE', KEYS[1], ARGV[6]) end
return reply
`;

// KEYS: pending zset, reservation record, settled marker, buckets (nb of them), usage hashes...
// ARGV: now, markerTtl, id, prefix, nb, per bucket: actual, lifetime (expireAt − now);
//       then per usage hash: lifetime, nfields, field, incr, field, incr...
// Returns {applied (0|1), pendingFound (0|1)}
//
// A bucket this reservation still held (in its record, and there) has the lifetime its reserve
// gave it from the same expiry (store.ts), never shortened since: it is charged without asking
// for its lifetime again. Any other bucket it charges (expired meanwhile, or reserved 0) gets
// one by keep().
const SETTLE = `${PURGE}
purge(KEYS[1], ARGV[4], ARGV[1])
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then
  return {0, 0}
end
local found = 0
local held = {}
if redis.call('ZREM', KEYS[1], ARGV[3]) == 1 then
  found = 1
  local rec = redis.call('HGETALL', KEYS[2])
  for i = 1, #rec, 2 do
    if unreserve(rec[i], rec[i + 1]) then held[rec[i]] = true end
  end
end
redis.call('DEL', KEYS[2])
local nb = tonumber(ARGV[5])
for i = 1, nb do
  local actual = ARGV[4 + 2 * i]
  if actual ~= '0' then
    local b = KEYS[i + 3]
    redis.call('HINCRBY', b, 'u', actual)
    if not held[b] then keep(b, ARGV[5 + 2 * i], 1000) end
  end
end
local a = 6 + 2 * nb
for k = 4 + nb, #KEYS do
  local life = ARGV[a]
  local nf = tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, nf do
    redis.call('HINCRBY', KEYS[k], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  keep(KEYS[k], life, 1000)
end
return {1, found}
`;

// KEYS: pending zset, buckets...  ARGV: now, prefix. Purges, then reads.
const LEVELS = `${PURGE}
purge(KEYS[1], ARGV[2], ARGV[1])
local out = {}
for i = 2, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'u', 'r')
  out[i - 1] = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
end
return out
`;

type Client = Redis | Cluster;

/**
 * A Lua script, called by EVALSHA; a Redis that answers NOSCRIPT (restarted, flushed, another
 * Cluster node) is sent the body once by EVAL, which loads it.
 */
class LuaScript {
  readonly sha: string;
  private readonly evalshaHead: string;
  private readonly evalHead: string;

  constructor(readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
    this.evalshaHead = `$7\r\nevalsha\r\n$40\r\n${this.sha}\r\n`;
    this.evalHead = `$4\r\neval\r\n$${Buffer.byteLength(lua)}\r\n${lua}\r\n`;
  }

  /** The command in RESP: `body` is numkeys, keys and arguments as `encode` wrote them. */
  wire(load: boolean, count: number, body: string): string {
    return `*${count + 2}\r\n${load ? this.evalHead : this.evalshaHead}${body}`;
  }
}

/** Appends `arg` as a RESP bulk string. */
function encode(out: string, arg: string): string {
  return `${out}$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
}

/**
 * A script call written as encoded above. ioredis's own script commands (defineCommand) copy,
 * flatten, stringify and frame the arguments on every call and wrap the promise twice; on the
 * path of every governed request that was a good part of this process's CPU per reserve.
 * ioredis still queues it, matches its reply, applies the command timeout and, in a Cluster,
 * routes it by the slot of `slotKey` (every key of a call shares its scope's hash tag).
 */
class ScriptCall extends Command {
  private readonly wire: string;

  constructor(load: boolean, sha: string, slotKey: string, wire: string) {
    super(load ? 'eval' : 'evalsha', [sha, '1', slotKey], { replyEncoding: 'utf8' });
    this.wire = wire;
  }

  override toWritable(): string {
    return this.wire;
  }
}

const RESERVE_SCRIPT = new LuaScript(RESERVE);
const SETTLE_SCRIPT = new LuaScript(SETTLE);
const LEVELS_SCRIPT = new LuaScript(LEVELS);

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
    // Script calls are encoded here (ScriptCall), past ioredis's key prefixing: the store's own
    // `prefix` names every key instead, and a client that would prefix them is refused.
    const o = this.client.options as { keyPrefix?: string; redisOptions?: { keyPrefix?: string } };
    if (o.keyPrefix || o.redisOptions?.keyPrefix) {
      throw new Error(
        'RedisStore names its keys with its prefix option; the client has a keyPrefix',
      );
    }
    this.client.on('error', (err: Error) => opts.onError?.(err));
    this.prefix = opts.prefix ?? 'sluice';
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

  /**
   * Runs a script: `body` holds `count` arguments (numkeys, keys, then ARGV) encoded, the first
   * key `slotKey`. NOSCRIPT means it did not run, so sending it again with its body is safe.
   */
  private async run(script: LuaScript, slotKey: string, count: number, body: string) {
    const send = (load: boolean) => {
      const cmd = new ScriptCall(load, script.sha, slotKey, script.wire(load, count, body));
      return this.client.sendCommand(cmd) as Promise<number[]>;
    };
    try {
      return await send(false);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return send(true);
    }
  }

  async reserve(req: ReserveRequest): Promise<ReserveReply> {
    const base = this.base(req.scope);
    const n = req.buckets.length;
    const now = req.nowMs;
    const recordTtl = String(Math.max(1, Math.ceil(2 * req.ttlMs)));
    // numkeys, keys, then ARGV; every argument a string (see the scripts' prelude).
    const args = new Array<string>(11 + 5 * n);
    args[0] = String(3 + n);
    args[1] = `${base}p`;
    args[2] = `${base}r:${req.id}`;
    args[3] = `${base}d:${req.id}`;
    let a = 4 + n;
    args[a++] = String(now);
    args[a++] = base;
    args[a++] = req.id;
    args[a++] = req.force ? '1' : '0';
    args[a++] = String(now + req.ttlMs);
    args[a++] = recordTtl;
    args[a++] = String(1.5 * req.ttlMs);
    for (let i = 0; i < n; i++) {
      const b = req.buckets[i]!;
      args[4 + i] = `${base}b:${b.key}`;
      args[a++] = String(b.limit - b.amount - (b.unsettled ?? 0));
      args[a++] = String(b.amount);
      args[a++] = String(b.expireAtMs);
      args[a++] = String(Math.floor(b.expireAtMs - now));
    }
    let body = '';
    for (const x of args) body = encode(body, x);
    const r = await this.call(() => this.run(RESERVE_SCRIPT, args[1]!, args.length, body));
    const admitted = r[0];
    if (admitted === -1) throw new Error(`${REUSED}: ${req.id}`);
    // The script answers the levels it read; an admitted reservation is in them now.
    const levels = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      levels[i] = (r[i + 2] ?? 0) + (admitted === 1 ? req.buckets[i]!.amount : 0);
    }
    return { admitted: admitted === 1, over: r[1] ?? -1, levels };
  }

  async settle(req: SettleRequest): Promise<SettleReply> {
    const base = this.base(req.scope);
    const now = req.nowMs;
    const keys = [`${base}p`, `${base}r:${req.id}`, `${base}d:${req.id}`];
    const args: string[] = [
      String(now),
      String(Math.max(1, Math.ceil(req.markerTtlMs))),
      req.id,
      base,
      String(req.buckets.length),
    ];
    for (const b of req.buckets) {
      keys.push(`${base}b:${b.key}`);
      args.push(String(b.actual), String(Math.floor(b.expireAtMs - now)));
    }
    for (const u of req.usage) {
      keys.push(`${base}u:${u.period}:${u.periodKey}`);
      const at = args.length + 1;
      args.push(String(Math.floor(u.expireAtMs - now)), '');
      let nf = 0;
      for (const m of USAGE_METRICS) {
        const v = u.values[m];
        if (v !== 0) {
          args.push(usageField(u.dims, m), String(v));
          nf++;
        }
      }
      args[at] = String(nf);
    }
    let body = encode('', String(keys.length));
    for (const k of keys) body = encode(body, k);
    for (const x of args) body = encode(body, x);
    const count = 1 + keys.length + args.length;
    const [applied, found] = await this.call(() => this.run(SETTLE_SCRIPT, keys[0]!, count, body));
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
    let body = encode('', String(all.length));
    for (const k of all) body = encode(body, k);
    body = encode(encode(body, String(nowMs)), base);
    return this.call(() => this.run(LEVELS_SCRIPT, all[0]!, all.length + 3, body));
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
