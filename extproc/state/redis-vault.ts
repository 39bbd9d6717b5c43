/**
 * The Redis half of the shared masking vault: atomic placeholder assignment per conversation.
 * It stores only what the caller gives it — keyed digests and sealed records — and never sees a
 * value or a session id in clear (masking/vault-redis.ts derives and seals them).
 *
 * Key layout (P = prefix, default "sluice"; V = the session's keyed id; {V} is the Redis Cluster
 * hash tag, so both keys of a session live in one slot):
 *
 *   P:v:{V}     hash  g         generation: random, set when the session is created
 *                     n         entries ever added (each new entry's sequence number)
 *                     c:<TYPE>  last placeholder number of the type
 *                     d:<dig>   placeholder of the value with that digest
 *                     p:<ph>    "<dig> <sealed record>" of the placeholder
 *   P:v:{V}:o   list  placeholders in the order they were added (entries n-LLEN+1 … n)
 *
 * Both keys expire together, `ttlMs` after the session's last use. One script call assigns a
 * request's new values and returns the entries the caller has not seen yet, so a request costs
 * one round trip however many values it carries, and two replicas masking the same new value of
 * one conversation at once get one placeholder: the script runs alone on the session's slot.
 */
import type { Cluster, Redis } from 'ioredis';
import { StoreUnavailable } from './store.js';

// KEYS: hash, order list
// ARGV: ttlMs, maxEntries, maxNumber, newGeneration, knownGeneration, knownSeq, count,
//       then per item: type, digest, record ("" when the caller believes the value is known)
// Returns {generation, n, first, from, count, placeholders..., (placeholder, "dig record")...}
// where `first` is the sequence number before the oldest entry kept and the pairs are the
// entries after `from`, oldest first. generation "" means no session (a read of nothing).
// count -1: a type ran out of placeholder numbers; count -2: the items listed after it (0-based)
// are new but came without their record. Either way nothing was written.
const VAULT = `
local h, o = KEYS[1], KEYS[2]
local maxEntries = tonumber(ARGV[2])
local maxNumber = tonumber(ARGV[3])
local count = tonumber(ARGV[7])
local gen = redis.call('HGET', h, 'g')
if not gen and count == 0 then return {'', 0, 0, 0, 0} end
-- Reads first, writes after: a request that cannot be served as sent changes nothing. A value
-- sent without its record must not need one: if its entry is gone, or is among the oldest that
-- this request's new values may push out before its turn, the record is asked for.
local atRisk = {}
if gen then
  local evictable = redis.call('LLEN', o) + count - maxEntries
  if evictable > 0 then
    for _, p in ipairs(redis.call('LRANGE', o, 0, evictable - 1)) do atRisk[p] = true end
  end
end
local need, missing = {}, {}
for i = 1, count do
  local a = 7 + 3 * (i - 1)
  local p = gen and redis.call('HGET', h, 'd:' .. ARGV[a + 2])
  if not p or atRisk[p] then
    if ARGV[a + 3] == '' then
      missing[#missing + 1] = i - 1
    else
      need[ARGV[a + 1]] = (need[ARGV[a + 1]] or 0) + 1
    end
  end
end
if #missing > 0 then return {gen or '', 0, 0, 0, -2, unpack(missing)} end
for t, k in pairs(need) do
  if (tonumber(redis.call('HGET', h, 'c:' .. t)) or 0) + k > maxNumber then
    return {gen or '', 0, 0, 0, -1}
  end
end
if not gen then
  gen = ARGV[4]
  redis.call('DEL', o)
  redis.call('HSET', h, 'g', gen, 'n', 0)
end
local n = tonumber(redis.call('HGET', h, 'n')) or 0
local out = {}
for i = 1, count do
  local a = 7 + 3 * (i - 1)
  local t, d = ARGV[a + 1], ARGV[a + 2]
  local p = redis.call('HGET', h, 'd:' .. d)
  if not p then
    p = '[' .. t .. '_' .. redis.call('HINCRBY', h, 'c:' .. t, 1) .. ']'
    redis.call('HSET', h, 'd:' .. d, p, 'p:' .. p, d .. ' ' .. ARGV[a + 3])
    redis.call('RPUSH', o, p)
    n = n + 1
    if redis.call('LLEN', o) > maxEntries then
      local old = redis.call('LPOP', o)
      local rec = redis.call('HGET', h, 'p:' .. old)
      redis.call('HDEL', h, 'p:' .. old)
      if rec then redis.call('HDEL', h, 'd:' .. string.sub(rec, 1, string.find(rec, ' ', 1, true) - 1)) end
    end
  end
  out[i] = p
end
redis.call('HSET', h, 'n', n)
-- ARGV[1] as sent (an integer string): a Lua number argument is formatted with %.17g per call.
redis.call('PEXPIRE', h, ARGV[1])
redis.call('PEXPIRE', o, ARGV[1])
local len = redis.call('LLEN', o)
local first = n - len
local since = tonumber(ARGV[6])
if ARGV[5] ~= gen or since > n then since = 0 end
local from = math.max(since, first)
local reply = {gen, n, first, from, count}
for i = 1, count do reply[#reply + 1] = out[i] end
if from < n then
  local names = redis.call('LRANGE', o, from - first, -1)
  local fields = {}
  for i = 1, #names do fields[i] = 'p:' .. names[i] end
  local recs = redis.call('HMGET', h, unpack(fields))
  for i = 1, #names do
    reply[#reply + 1] = names[i]
    reply[#reply + 1] = recs[i] or ''
  end
end
return reply
`;

export interface VaultExchangeItem {
  type: string;
  /** Keyed digest of the value (and session), the value's identity in the session. */
  digest: string;
  /**
   * The sealed value, kept only when the value is new to the session; "" when the caller holds
   * the value's entry already (the reply then lists it in `missing` if Redis no longer does).
   */
  record: string;
}

export interface VaultExchange {
  /** The session's keyed id; never the caller's own id. */
  session: string;
  ttlMs: number;
  maxEntries: number;
  maxNumber: number;
  /** Generation to give the session if this call creates it. */
  newGeneration: string;
  /** What the caller already holds of the session: entries up to `knownSeq` of that generation. */
  knownGeneration: string;
  knownSeq: number;
  items: readonly VaultExchangeItem[];
}

export interface VaultExchangeReply {
  /** "" when the session does not exist (and nothing was asked to be added). */
  generation: string;
  seq: number;
  /** Entries with sequence numbers up to this were dropped (the session's size bound). */
  first: number;
  /** `entries` are those after this sequence number, oldest first. */
  from: number;
  /** Per item, in order. */
  placeholders: string[];
  entries: [placeholder: string, digestAndRecord: string][];
  /** Indexes of items sent without a record that the session does not hold: nothing was done. */
  missing: number[];
}

/** A type of the session has no placeholder number left; the request must not be masked. */
export class PlaceholdersExhausted extends Error {
  constructor() {
    super('placeholder numbers exhausted for this session');
    this.name = 'PlaceholdersExhausted';
  }
}

export interface VaultStore {
  exchange(req: VaultExchange): Promise<VaultExchangeReply>;
}

interface VaultCommand {
  sluiceVault(numKeys: number, ...args: (string | number)[]): Promise<(string | number)[]>;
}

export interface RedisVaultStoreOptions {
  /** The client the state store uses (RedisStore.client); its lifetime stays the caller's. */
  client: Redis | Cluster;
  prefix?: string;
}

export class RedisVaultStore implements VaultStore {
  private readonly command: VaultCommand;
  private readonly prefix: string;

  constructor(opts: RedisVaultStoreOptions) {
    // EVALSHA with a fallback to EVAL on NOSCRIPT: a restarted Redis is transparent.
    opts.client.defineCommand('sluiceVault', { lua: VAULT });
    this.command = opts.client as unknown as VaultCommand;
    this.prefix = opts.prefix ?? 'sluice';
  }

  /** The session's two keys, for tests that inspect what Redis holds. */
  keys(session: string): [hash: string, order: string] {
    const base = `${this.prefix}:v:{${session}}`;
    return [base, `${base}:o`];
  }

  async exchange(req: VaultExchange): Promise<VaultExchangeReply> {
    const args: (string | number)[] = [
      Math.max(1, Math.ceil(req.ttlMs)),
      req.maxEntries,
      req.maxNumber,
      req.newGeneration,
      req.knownGeneration,
      req.knownSeq,
      req.items.length,
    ];
    for (const it of req.items) args.push(it.type, it.digest, it.record);
    let r: (string | number)[];
    try {
      r = await this.command.sluiceVault(2, ...this.keys(req.session), ...args);
    } catch (err) {
      throw new StoreUnavailable('The state store is unavailable.', { cause: err });
    }
    const count = Number(r[4]);
    if (count === -1) throw new PlaceholdersExhausted();
    if (count === -2) {
      const missing = r.slice(5).map(Number);
      return {
        generation: String(r[0]),
        seq: 0,
        first: 0,
        from: 0,
        placeholders: [],
        entries: [],
        missing,
      };
    }
    const placeholders = r.slice(5, 5 + count).map(String);
    const entries: [string, string][] = [];
    for (let i = 5 + count; i + 1 < r.length; i += 2)
      entries.push([String(r[i]), String(r[i + 1])]);
    return {
      generation: String(r[0]),
      seq: Number(r[1]),
      first: Number(r[2]),
      from: Number(r[3]),
      placeholders,
      entries,
      missing: [],
    };
  }
}
