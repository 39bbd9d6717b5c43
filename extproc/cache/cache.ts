/**
 * The response cache in the request path. The router phase asks `lookup` after the guard and
 * masking (so the key holds placeholders, never what they stand for) and after identity and
 * access (so the scope is known and a caller who may not use the route learns nothing), and
 * before the budget reservation: a hit is answered at once, with no upstream and nothing
 * reserved. A miss returns a capture that the response phase feeds the provider's answer as it
 * passes (decoded, before placeholders are restored), and that stores it once complete.
 *
 * A cache failure never fails a request: a store that is away or slow, an entry that does not
 * decrypt or names another key, an answer that cannot be rebuilt — each is a miss (counted in
 * sluice_cache_errors_total), and the request goes upstream as if there were no cache.
 *
 * Semantic caching (nearest neighbour on an embedding of the masked prompt) would plug in as a
 * second lookup behind the exact one, in this module: same scope (the index partitioned by the
 * scope's identity and the route's config digest, so tenants stay apart), same entries and
 * replay, a different way to find the digest. It is not built.
 */
import { Counter, type Registry } from 'prom-client';
import type { ApiFormat, Operation } from '../providers/endpoints.js';
import type { Route } from '../config/contract.js';
import type { RuntimeConfig } from '../config/runtime.js';
import type { Caller } from '../governance/identity.js';
import { costMicros, microsToUsd } from '../governance/pricing.js';
import { responseSlots } from '../masking/fields.js';
import type { CompiledMasking } from '../masking/compiled.js';
import { VAULT_DEGRADED, type PolicyState } from '../policy/state.js';
import type { Verdict } from '../wire/mutation.js';
import { usageFromJson, type TokenUsage } from '../usage/extract.js';
import { SseParser } from '../usage/sse.js';
import { cacheable, callsTools, completeAnswer, replayStream, StreamAssembler } from './answer.js';
import { cacheKey, KEY_FORMAT, routeConfigDigest } from './key.js';
import type { CachePolicy } from './schema.js';
import type { CacheStore } from './store.js';

export const CACHE_HEADER = 'x-sluice-cache';

export type CacheResult = 'hit' | 'miss' | 'bypass';

/** Why a request bypassed the cache, for the access log. */
export type BypassReason =
  | 'no_cache'
  | 'no_store'
  | 'shadow'
  | 'scope'
  | 'sampling'
  | 'operation'
  | 'policy_failure'
  | 'key';

/** What the access log says of the cache for one request. */
export interface CacheRecord {
  result: CacheResult;
  reason?: BypassReason;
  /** A hit: seconds since the entry was stored, and what serving it saved. */
  ageSeconds?: number;
  savedTokens?: number;
  savedUsd?: number;
}

/** A stored entry: the answer in its canonical form, bound to the key it was stored under. */
interface CacheEntry {
  v: number;
  digest: string;
  api: ApiFormat;
  operation: Operation;
  /** Wall-clock ms. */
  storedAt: number;
  body: Record<string, unknown>;
}

export interface LookupInput {
  cfg: RuntimeConfig;
  route: Route;
  api: ApiFormat;
  operation: Operation;
  path: string;
  model: string;
  stream: boolean;
  /** The caller asked for stream_options.include_usage (OpenAI). */
  includeUsage: boolean;
  /** The request as it leaves: after the guard and masking. */
  body: Readonly<Record<string, unknown>>;
  headers: ReadonlyMap<string, string>;
  caller: Caller | undefined;
  /** The route policy's state after masking: its output transform restores a hit's placeholders. */
  policy: PolicyState | undefined;
}

export interface Hit {
  kind: 'hit';
  verdict: Verdict;
  /** The usage the original answer reported (what a hit does not buy again). */
  usage: TokenUsage | undefined;
  /** What the request is charged: the policy's share of `usage`; undefined when free. */
  charged: TokenUsage | undefined;
  /** What serving it did not buy (less what it is charged), for the usage report. */
  saved: { tokens: number; micros: number };
  record: CacheRecord;
}

export type Lookup =
  | Hit
  | { kind: 'miss'; capture: CacheCapture | undefined; record: CacheRecord }
  | { kind: 'bypass'; capture: CacheCapture | undefined; record: CacheRecord };

export interface ResponseCacheOptions {
  store: CacheStore;
  registry: Registry;
  /** Wall-clock ms: entry ages are compared across replicas. */
  wallNow: () => number;
  /** Reports failures (never request content). */
  onError?: (op: 'get' | 'set' | 'serve', err: unknown) => void;
  /** The longest a lookup may take before it counts as a miss. */
  lookupTimeoutMs?: number;
}

/** The route's cache section: the policy's, when it enforces (a shadow policy changes nothing). */
export function cachePolicyOf(route: Route): CachePolicy | undefined {
  return route.policy?.cache;
}

export class ResponseCache {
  private readonly requests: Counter<string>;
  private readonly savedTokens: Counter<string>;
  private readonly savedUsd: Counter<string>;
  private readonly stores: Counter<string>;
  private readonly errors: Counter<string>;
  private readonly policies = new WeakMap<Route, CachePolicy | null>();

  constructor(private readonly opts: ResponseCacheOptions) {
    const registers = [opts.registry];
    // Label values come from config (route and consumer names) or fixed sets: bounded.
    this.requests = new Counter({
      name: 'sluice_cache_requests_total',
      help: 'Requests to routes with a response cache, by result (hit, miss, bypass).',
      labelNames: ['sluice_route', 'result'],
      registers,
    });
    this.savedTokens = new Counter({
      name: 'sluice_cache_saved_tokens_total',
      help: 'Tokens a provider did not generate or read because a cached answer was served.',
      labelNames: ['sluice_route', 'sluice_consumer', 'gen_ai_token_type'],
      registers,
    });
    this.savedUsd = new Counter({
      name: 'sluice_cache_saved_usd_total',
      help: "Spend avoided by cached answers at the governance policy's prices (less what a hit is charged).",
      labelNames: ['sluice_route', 'sluice_consumer'],
      registers,
    });
    this.stores = new Counter({
      name: 'sluice_cache_stores_total',
      help: 'Answers offered to the cache, by outcome (stored, too_large, tool_calls, personal_data, incomplete, error).',
      labelNames: ['sluice_route', 'result'],
      registers,
    });
    this.errors = new Counter({
      name: 'sluice_cache_errors_total',
      help: 'Cache operations that failed and were treated as a miss (get, set, serve).',
      labelNames: ['op'],
      registers,
    });
  }

  get storeKind(): 'memory' | 'redis' {
    return this.opts.store.kind;
  }

  /** The route's cache policy, parsed once per config version. */
  policyFor(route: Route): CachePolicy | undefined {
    let p = this.policies.get(route);
    if (p === undefined) {
      p = cachePolicyOf(route) ?? null;
      this.policies.set(route, p);
    }
    return p ?? undefined;
  }

  /** Undefined: the route has no cache. Never throws. */
  async lookup(input: LookupInput): Promise<Lookup | undefined> {
    const policy = this.policyFor(input.route);
    if (!policy) return undefined;
    const route = input.route.name;
    const bypass = (reason: BypassReason, capture?: CacheCapture): Lookup => {
      this.requests.inc({ sluice_route: route, result: 'bypass' });
      return { kind: 'bypass', capture, record: { result: 'bypass', reason } };
    };
    if (input.route.policy?.mode === 'shadow') return bypass('shadow');
    if (!cacheable(input.operation, input.stream)) return bypass('operation');
    const p = input.policy;
    // Masking did not run as configured: the prompt may hold what it protects.
    if (p && (p.failedOpen || p.verdicts.has(VAULT_DEGRADED))) return bypass('policy_failure');
    const scope = scopeOf(policy, input.caller);
    if (!scope) return bypass('scope');
    if (!policy.cacheNonDeterministic && !deterministic(input.operation, input.body))
      return bypass('sampling');
    const directive = cacheControl(input.headers.get('cache-control'));
    if (directive === 'no-store') return bypass('no_store');
    let digest: string;
    try {
      digest = cacheKey({
        route,
        config: routeConfigDigest(input.cfg, route),
        model: input.model,
        api: input.api,
        operation: input.operation,
        path: input.path,
        scope,
        body: input.body,
      });
    } catch {
      return bypass('key');
    }
    const capture = new CacheCapture(this, {
      digest,
      route,
      api: input.api,
      operation: input.operation,
      policy,
      masking: p?.policy.masking,
    });
    // no-cache: the caller wants a fresh answer; that answer may still be stored for others.
    if (directive === 'no-cache') return bypass('no_cache', capture);
    const entry = await this.read(digest, input);
    if (entry) {
      const hit = this.serve(entry, input, policy);
      if (hit) return hit;
    }
    this.requests.inc({ sluice_route: route, result: 'miss' });
    return { kind: 'miss', capture, record: { result: 'miss' } };
  }

  private async read(digest: string, input: LookupInput): Promise<CacheEntry | undefined> {
    let raw: string | undefined;
    try {
      raw = await withTimeout(this.opts.store.get(digest), this.opts.lookupTimeoutMs ?? 100);
    } catch (err) {
      this.fail('get', err);
      return undefined;
    }
    if (raw === undefined) return undefined;
    try {
      const e = JSON.parse(raw) as CacheEntry;
      // Never serve an entry stored for another request, format or API.
      if (
        e.v !== KEY_FORMAT ||
        e.digest !== digest ||
        e.api !== input.api ||
        e.operation !== input.operation ||
        !completeAnswer(input.operation, e.body)
      )
        throw new Error('entry does not match its key');
      return e;
    } catch (err) {
      this.fail('get', err);
      return undefined;
    }
  }

  private serve(entry: CacheEntry, input: LookupInput, policy: CachePolicy): Hit | undefined {
    try {
      const body = restore(entry.body, input);
      const usage = usageFromJson(input.operation, entry.body).usage;
      const ageSeconds = Math.max(0, Math.floor((this.opts.wallNow() - entry.storedAt) / 1000));
      const text = input.stream
        ? replayStream(input.operation, body, { includeUsage: input.includeUsage })
        : JSON.stringify(body);
      const verdict: Verdict = {
        status: 200,
        headers: [
          ['content-type', input.stream ? 'text/event-stream' : 'application/json'],
          [CACHE_HEADER, 'hit'],
          ['age', String(ageSeconds)],
        ],
        body: text,
        details: 'sluice_cache_hit',
      };
      const f = policy.hitCostFraction;
      const charged = usage && f > 0 ? scaleUsage(usage, f) : undefined;
      const route = input.route.name;
      const consumer = input.caller?.consumer ?? '';
      const record: CacheRecord = { result: 'hit', ageSeconds };
      const saved = { tokens: 0, micros: 0 };
      if (usage) {
        const savedIn = usage.inputTokens - (charged?.inputTokens ?? 0);
        const savedOut = usage.outputTokens - (charged?.outputTokens ?? 0);
        const labels = { sluice_route: route, sluice_consumer: consumer };
        this.savedTokens.inc({ ...labels, gen_ai_token_type: 'input' }, savedIn);
        this.savedTokens.inc({ ...labels, gen_ai_token_type: 'output' }, savedOut);
        record.savedTokens = savedIn + savedOut;
        saved.tokens = savedIn + savedOut;
        const price = input.cfg.governanceFor(route)?.prices.lookup(input.model);
        if (price) {
          saved.micros = Math.round(costMicros(price, usage) * (1 - f));
          const usd = microsToUsd(costMicros(price, usage)) * (1 - f);
          if (usd > 0) this.savedUsd.inc(labels, usd);
          record.savedUsd = usd;
        }
      }
      this.requests.inc({ sluice_route: route, result: 'hit' });
      return { kind: 'hit', verdict, usage, charged, saved, record };
    } catch (err) {
      this.fail('serve', err);
      return undefined;
    }
  }

  /** Called by a capture with a complete answer. Never throws; the write is not awaited by anyone. */
  store(c: CaptureTarget, body: Record<string, unknown>): Promise<void> {
    const route = c.route;
    // The prompt was masked, but the model may have written personal data of its own (which the
    // live answer's scan replaced): such an answer is not kept.
    if (c.masking && holdsFindings(c.operation, body, c.masking)) {
      this.stores.inc({ sluice_route: route, result: 'personal_data' });
      return Promise.resolve();
    }
    if (!c.policy.cacheToolCalls && callsTools(c.operation, body)) {
      this.stores.inc({ sluice_route: route, result: 'tool_calls' });
      return Promise.resolve();
    }
    const entry: CacheEntry = {
      v: KEY_FORMAT,
      digest: c.digest,
      api: c.api,
      operation: c.operation,
      storedAt: this.opts.wallNow(),
      body,
    };
    const text = JSON.stringify(entry);
    if (Buffer.byteLength(text) > c.policy.maxEntryBytes) {
      this.stores.inc({ sluice_route: route, result: 'too_large' });
      return Promise.resolve();
    }
    return Promise.resolve()
      .then(() => this.opts.store.set(c.digest, text, c.policy.ttlSeconds * 1000))
      .then(
        () => void this.stores.inc({ sluice_route: route, result: 'stored' }),
        (err: unknown) => {
          this.stores.inc({ sluice_route: route, result: 'error' });
          this.fail('set', err);
        },
      );
  }

  /** An answer that was not stored because it was incomplete or could not be rebuilt. */
  incomplete(route: string): void {
    this.stores.inc({ sluice_route: route, result: 'incomplete' });
  }

  private fail(op: 'get' | 'set' | 'serve', err: unknown): void {
    this.errors.inc({ op });
    this.opts.onError?.(op, err);
  }

  close(): void {
    this.opts.store.close();
  }
}

interface CaptureTarget {
  digest: string;
  route: string;
  api: ApiFormat;
  operation: Operation;
  policy: CachePolicy;
  /** The route's masking: an answer in which its detectors find anything is not stored. */
  masking: CompiledMasking | undefined;
}

/**
 * Watches one response go by (decoded, as the provider wrote it, before placeholders are restored:
 * the stored answer holds them as the key does) and stores it when it is a complete 2xx answer.
 * Memory is bounded: a JSON answer is kept up to maxEntryBytes, a stream's events are folded into
 * the answer as they come and the capture gives up past four times that many bytes.
 */
export class CacheCapture {
  private state: 'idle' | 'json' | 'sse' | 'off' = 'idle';
  private chunks: Buffer[] = [];
  private bytes = 0;
  private parser: SseParser | undefined;
  private assembler: StreamAssembler | undefined;
  private stored: Promise<void> | undefined;

  constructor(
    private readonly cache: ResponseCache,
    private readonly target: CaptureTarget,
  ) {}

  /** The response's headers: only a 2xx body in a readable encoding is captured. */
  start(status: number, sse: boolean, readable: boolean): void {
    if (this.state !== 'idle') return;
    if (status < 200 || status >= 300 || !readable) {
      this.state = 'off';
      return;
    }
    this.state = sse ? 'sse' : 'json';
    if (sse) {
      this.parser = new SseParser({ maxEventBytes: this.target.policy.maxEntryBytes });
      this.assembler = new StreamAssembler(this.target.operation);
    }
  }

  /** A decoded piece of the body. */
  push(data: Buffer): void {
    if (this.state !== 'json' && this.state !== 'sse') return;
    this.bytes += data.length;
    const limit = this.target.policy.maxEntryBytes * (this.state === 'sse' ? 4 : 1);
    if (this.bytes > limit) {
      this.off();
      return;
    }
    if (this.state === 'json') {
      this.chunks.push(data);
      return;
    }
    try {
      for (const e of this.parser!.push(data)) this.assembler!.onEvent(e);
    } catch {
      this.off();
    }
  }

  /** The response ended as Envoy delivered it; stores the answer if it is complete. */
  finish(): Promise<void> {
    if (this.stored) return this.stored;
    this.stored = this.settle();
    return this.stored;
  }

  private settle(): Promise<void> {
    const state = this.state;
    this.state = 'off';
    let body: Record<string, unknown> | undefined;
    try {
      if (state === 'json') {
        const parsed = JSON.parse(Buffer.concat(this.chunks).toString('utf8')) as unknown;
        if (completeAnswer(this.target.operation, parsed)) body = parsed;
      } else if (state === 'sse') {
        for (const e of this.parser!.push(Buffer.from('\n\n'))) this.assembler!.onEvent(e);
        body = this.assembler!.result();
      } else {
        return Promise.resolve();
      }
    } catch {
      body = undefined;
    }
    this.chunks = [];
    if (!body) {
      this.cache.incomplete(this.target.route);
      return Promise.resolve();
    }
    return this.cache.store(this.target, body);
  }

  private off(): void {
    this.state = 'off';
    this.chunks = [];
    this.parser = undefined;
    this.assembler = undefined;
  }
}

/** The identity entries are shared under; undefined: the request lacks it and is not cached. */
function scopeOf(
  policy: CachePolicy,
  caller: Caller | undefined,
): { kind: CachePolicy['scope']; id: string } | undefined {
  switch (policy.scope) {
    case 'route':
      return { kind: 'route', id: '' };
    case 'team':
      return caller?.team ? { kind: 'team', id: caller.team } : undefined;
    case 'consumer':
      return caller ? { kind: 'consumer', id: caller.consumer } : undefined;
  }
}

/**
 * Whether the provider answers the request the same way each time, as far as the request says:
 * embeddings do not sample; chat and messages do unless `temperature` is 0 (both APIs default to
 * 1 when it is absent).
 */
export function deterministic(operation: Operation, body: Readonly<Record<string, unknown>>) {
  if (operation === 'embeddings') return true;
  return body.temperature === 0;
}

/** The request's cache directive: no-store wins over no-cache. */
function cacheControl(value: string | undefined): 'no-store' | 'no-cache' | undefined {
  if (!value) return undefined;
  const parts = value.toLowerCase().split(',');
  let out: 'no-store' | 'no-cache' | undefined;
  for (const p of parts) {
    const d = p.split('=', 1)[0]!.trim();
    if (d === 'no-store') return 'no-store';
    if (d === 'no-cache') out = 'no-cache';
  }
  return out;
}

/**
 * The stored answer with this request's placeholders restored (and new findings in it masked),
 * exactly as a live answer is treated in the response phase.
 */
function restore(body: Record<string, unknown>, input: LookupInput): Record<string, unknown> {
  const copy = structuredClone(body);
  const output = input.policy?.output;
  if (!output || !(output.scans || output.restores)) return copy;
  const list = responseSlots(input.operation, copy);
  for (const slot of list.slots) {
    const to = output.whole(slot.text, slot.json);
    if (to !== slot.text) slot.set(to);
  }
  list.commit();
  return copy;
}

function holdsFindings(
  operation: Operation,
  body: Record<string, unknown>,
  masking: CompiledMasking,
): boolean {
  // Slots are only read here (nothing is set or committed), so the body is left as it is.
  return responseSlots(operation, body).slots.some(
    (slot) => masking.detectors.detect(slot.text).length > 0,
  );
}

function scaleUsage(u: TokenUsage, f: number): TokenUsage {
  const s = (n: number): number => Math.round(n * f);
  const inputTokens = s(u.inputTokens);
  const outputTokens = s(u.outputTokens);
  return {
    inputTokens,
    outputTokens,
    totalTokens: inputTokens + outputTokens,
    cachedInputTokens: s(u.cachedInputTokens),
    cacheCreationInputTokens: s(u.cacheCreationInputTokens),
    reasoningTokens: s(u.reasoningTokens),
    estimated: u.estimated,
  };
}

async function withTimeout<T>(v: Promise<T> | T, ms: number): Promise<T> {
  if (!(v instanceof Promise)) return v;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      v,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('cache lookup timed out')), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
