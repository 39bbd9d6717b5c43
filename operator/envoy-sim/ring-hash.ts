// Envoy's ring hash load balancer (lb_policy RING_HASH), as the emulator runs it.
//
// What is modelled, from Envoy's source:
// - The request hash (route hash_policy `header`): xxHash64 of the header's values, sorted, each
//   hashed with the previous one's hash as seed, starting at 0 (HeaderHashMethod and
//   HashUtil::xxHash64 over a span, source/common/http/hash_policy.cc, source/common/common/hash.cc);
//   several hash policies combine as rotl(previous, 1) ^ next (HashPolicyImpl::generateHash). No
//   header: no hash, and Envoy draws a random one (ThreadAwareLoadBalancerBase::LoadBalancerImpl::
//   chooseHost, source/extensions/load_balancing_policies/common/thread_aware_lb_impl.cc).
// - The priority: LoadBalancerBase::choosePriority(hash): `hash % 100 + 1` against the cumulative
//   healthy priority loads. The retry priority plugin (previous_priorities) is NOT consulted by the
//   thread-aware balancers: that function reads the cluster's own loads, not the request's.
// - The ring of one priority (RingHashLoadBalancer::Ring, ring_hash/ring_hash_lb.cc): each host's
//   normalized weight (host weight × locality weight / sums, with locality weighting on;
//   normalizeWeights in thread_aware_lb_impl.cc) times `scale` entries, where scale =
//   min(ceil(minWeight × minimum_ring_size) / minWeight, maximum_ring_size), with running sums so
//   the total is ceil(scale); entry i of a host hashes `<address>:<port>_<i>` with xxHash64 (the
//   endpoint's `envoy.lb` `hash_key` metadata replaces the address when set); entries sorted by
//   hash. Built from the healthy hosts, or from all of them when the priority is in panic.
// - The pick (Ring::chooseHost, a port of ketama): the first entry whose hash is ≥ the request's
//   (wrapping to the first); on the n-th host-selection retry of one attempt (a retry host
//   predicate such as previous_hosts refused the host) the entry n places further on.
// So a conversation keeps its host while the host set does not change, and when a host goes (its
// pod leaves the EndpointSlice, or outlier detection ejects it) only the conversations whose
// entries fell on that host move: the others' entries are where they were.

const MASK = (1n << 64n) - 1n;
const P1 = 0x9e3779b185ebca87n;
const P2 = 0xc2b2ae3d27d4eb4fn;
const P3 = 0x165667b19e3779f9n;
const P4 = 0x85ebca77c2b2ae63n;
const P5 = 0x27d4eb2f165667c5n;

const rotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (64n - r))) & MASK;
const mul = (a: bigint, b: bigint): bigint => (a * b) & MASK;
const add = (a: bigint, b: bigint): bigint => (a + b) & MASK;

function read64(b: Uint8Array, i: number): bigint {
  let v = 0n;
  for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(b[i + k]!);
  return v;
}

function read32(b: Uint8Array, i: number): bigint {
  return BigInt((b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0);
}

function round(acc: bigint, input: bigint): bigint {
  return mul(rotl(add(acc, mul(input, P2)), 31n), P1);
}

function mergeRound(acc: bigint, val: bigint): bigint {
  return add(mul(acc ^ round(0n, val), P1), P4);
}

/** XXH64 (xxHash's 64-bit hash) of the UTF-8 bytes of `input`, as Envoy's HashUtil::xxHash64. */
export function xxHash64(input: string | Uint8Array, seed = 0n): bigint {
  const b = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  const len = b.length;
  let i = 0;
  let h: bigint;
  if (len >= 32) {
    let v1 = add(add(seed, P1), P2);
    let v2 = add(seed, P2);
    let v3 = seed;
    let v4 = (seed - P1) & MASK;
    for (; i + 32 <= len; i += 32) {
      v1 = round(v1, read64(b, i));
      v2 = round(v2, read64(b, i + 8));
      v3 = round(v3, read64(b, i + 16));
      v4 = round(v4, read64(b, i + 24));
    }
    h = add(add(rotl(v1, 1n), rotl(v2, 7n)), add(rotl(v3, 12n), rotl(v4, 18n)));
    h = mergeRound(h, v1);
    h = mergeRound(h, v2);
    h = mergeRound(h, v3);
    h = mergeRound(h, v4);
  } else {
    h = add(seed, P5);
  }
  h = add(h, BigInt(len));
  for (; i + 8 <= len; i += 8) h = add(mul(rotl(h ^ round(0n, read64(b, i)), 27n), P1), P4);
  if (i + 4 <= len) {
    h = add(mul(rotl(h ^ mul(read32(b, i), P1), 23n), P2), P3);
    i += 4;
  }
  for (; i < len; i++) h = mul(rotl(h ^ mul(BigInt(b[i]!), P5), 11n), P1);
  h ^= h >> 33n;
  h = mul(h, P2);
  h ^= h >> 29n;
  h = mul(h, P3);
  h ^= h >> 32n;
  return h;
}

/** One route hash_policy entry the emulator implements. */
export interface HashPolicyModel {
  header: string;
}

/**
 * The request's hash under the route's hash policies, or undefined when none produced one. Header
 * names are lower case (as the emulator keeps headers); values are hashed as sent.
 */
export function requestHash(
  policies: readonly HashPolicyModel[],
  headers: readonly (readonly [string, string])[],
): bigint | undefined {
  let hash: bigint | undefined;
  for (const p of policies) {
    const values = headers.filter(([k]) => k === p.header).map(([, v]) => v);
    if (values.length === 0) continue;
    // Byte order, as std::sort on string_views.
    values.sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
    let next = 0n;
    for (const v of values) next = xxHash64(v, next);
    hash = hash === undefined ? next : (rotl(hash, 1n) ^ next) & MASK;
  }
  return hash;
}

export interface RingConfig {
  minRingSize: number;
  maxRingSize: number;
}

/** Envoy's defaults (ring_hash.proto): 1024 and 8M entries. */
export const DEFAULT_RING: RingConfig = { minRingSize: 1024, maxRingSize: 8 * 1024 * 1024 };

export interface RingEntry<H> {
  hash: bigint;
  host: H;
}

/**
 * The ring for hosts with their normalized weights (summing to 1), in the order Envoy walks them
 * (localities in order, hosts in order within each). `key` is what a host's entries hash.
 */
export function buildRing<H>(
  weighted: readonly { host: H; key: string; weight: number }[],
  cfg: RingConfig,
): RingEntry<H>[] {
  if (weighted.length === 0) return [];
  const minWeight = Math.min(...weighted.map((w) => w.weight));
  const scale = Math.min(Math.ceil(minWeight * cfg.minRingSize) / minWeight, cfg.maxRingSize);
  const ring: RingEntry<H>[] = [];
  let current = 0;
  let target = 0;
  for (const w of weighted) {
    target += scale * w.weight;
    for (let i = 0; current < target; i++, current++) {
      ring.push({ hash: xxHash64(`${w.key}_${i}`), host: w.host });
    }
  }
  ring.sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  return ring;
}

/** Ring::chooseHost: the first entry at or after `h` (wrapping), then `attempt` entries on. */
export function chooseOnRing<H>(
  ring: readonly RingEntry<H>[],
  h: bigint,
  attempt: number,
): H | undefined {
  if (ring.length === 0) return undefined;
  // Lower bound: the first index whose hash is ≥ h; past the end wraps to 0, as in ketama.
  let lo = 0;
  let hi = ring.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ring[mid]!.hash < h) lo = mid + 1;
    else hi = mid;
  }
  let index = lo === ring.length ? 0 : lo;
  if (attempt > 0) index = (index + attempt) % ring.length;
  return ring[index]!.host;
}

/** LoadBalancerBase::choosePriority: `hash % 100 + 1` against cumulative percentage loads. */
export function priorityByHash(
  h: bigint,
  loads: readonly { priority: number; load: number }[],
): number | undefined {
  const x = Number(h % 100n) + 1;
  let sum = 0;
  for (const l of loads) {
    sum += l.load;
    if (x <= sum) return l.priority;
  }
  return undefined;
}
