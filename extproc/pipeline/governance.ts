/**
 * Governance in the request path: who is calling, whether they may, and whether the request fits
 * the policy's limits (reserve before forwarding, reconcile once the response is over). The
 * decisions live in governance/; this module only sequences them for one request.
 */
import type { Operation } from '../providers/endpoints.js';
import type { CompiledGovernance, ModelEntry, RuntimeConfig } from '../config/runtime.js';
import { checkAccess } from '../governance/access.js';
import {
  AttemptLedger,
  type Actual,
  type Budget,
  type Reservation,
  type ReserveResult,
} from '../governance/budget.js';
import {
  resolveIdentity,
  type Caller,
  type ConsumerDirectory,
  type IdentityResult,
} from '../governance/identity.js';
import { costMicros, estimateCost, microsToUsd } from '../governance/pricing.js';
import { refusalError, type Refusal } from '../governance/refusal.js';
import { rejected } from '../state/store.js';
import { estimateRequestInputTokens, maxOutputTokens } from '../usage/estimate.js';
import type { TokenUsage } from '../usage/extract.js';

export interface GovernanceState {
  compiled: CompiledGovernance;
  caller: Caller | undefined;
  /** undefined: no limits apply. A fail-open admission has one too: it is settled all the same. */
  reservation: Reservation | undefined;
  /** One per request; the upstream phase begins an attempt each time Envoy tries a backend. */
  ledger: AttemptLedger;
  /** x-ratelimit-* of the admission, for the successful response. */
  headers: Record<string, string>;
  /** Decisions for the access log (`reserved`, `fail_open`, `would_access_denied`…). */
  verdicts: Set<string>;
  /** Prompt tokens as estimated for the reservation (stands in when the response never came). */
  inputEstimate: number;
  /**
   * Output tokens the reservation assumed (the cap times the choices; 0 without limits): what a
   * 2xx answer that reports no usage is charged for its output (pipeline/response.ts).
   */
  outputReserved: number;
  /** Set once the request's spend is known, at the end. */
  costUsd?: number;
  /** The prompt estimate charged for an attempt that got no response (see settleActual). */
  charged?: TokenUsage;
  /** Answered from the response cache: counted as cached in usage, with what it saved. */
  cacheHit?: { route: string; savedTokens: number; savedMicros: number };
}

export interface AdmitInput {
  compiled: CompiledGovernance;
  consumers: ConsumerDirectory;
  headers: ReadonlyMap<string, string>;
  operation: Operation;
  body: Record<string, unknown>;
  model: string;
  route: string;
  budget: Budget | undefined;
  /** Wall-clock ms, for key expiry. */
  wallNow: number;
  /**
   * Filled as admission decides, so a refused request's access-log line still names the caller
   * (when identified) even though admit throws.
   */
  seen?: { caller?: Caller };
  /** The session id of the identified caller's request, if it belongs to one (usage by session). */
  sessionOf?: ((caller: Caller | undefined) => string | undefined) | undefined;
}

export interface Admitted {
  state: GovernanceState;
  /** Request headers that carried identity: they go no further than the gateway. */
  strip: string[];
  /**
   * Output tokens per choice the backend may generate: what the reservation assumed. Set whenever
   * a budget applies and the policy enforces (also when its store failed open: the cap bounds
   * spend by itself); undefined otherwise, and in shadow mode, which must not change traffic.
   */
  outputTokenCap?: number;
}

/**
 * Throws the refusal as a SluiceError (401/403/429/503 in the caller's format), except in shadow
 * mode, where every refusal becomes a `would_*` verdict and the request goes on.
 */
export function admit(input: AdmitInput): Promise<Admitted> {
  // Not async: reserveFor's promise is handed on as it is (an async function would wrap it in
  // one more, resolved a few turns later). A refusal still rejects, never throws.
  let caller: Admitted;
  try {
    caller = admitCaller(input);
  } catch (err) {
    return rejected(err);
  }
  return reserveFor(input, caller);
}

/**
 * The first half of admit: who is calling and whether they may use the route (refusals as in
 * admit). A route with a response cache stops here until the cache has been asked, so a hit
 * reserves nothing; reserveFor is the second half.
 */
export function admitCaller(input: AdmitInput): Admitted {
  const { compiled, headers } = input;
  const policy = compiled.policy;
  const shadow = policy.mode === 'shadow';
  const verdicts = new Set<string>();

  const id = resolveIdentity(policy.identity, headers, input.consumers, input.wallNow);
  let caller: Caller | undefined;
  if (id.ok) caller = id.caller;
  else refuse(shadow, verdicts, id.refusal);
  if (input.seen && caller) input.seen.caller = caller;

  const access = checkAccess(compiled.access, caller, input);
  if (!access.ok) refuse(shadow, verdicts, access.refusal);

  const strip = identityHeaders(compiled, headers);
  const state: GovernanceState = {
    compiled,
    caller,
    reservation: undefined,
    ledger: new AttemptLedger(),
    headers: {},
    verdicts,
    inputEstimate: 0,
    outputReserved: 0,
  };
  return { state, strip };
}

/** A refusal: thrown, or in shadow mode a `would_*` verdict (a function, not a closure per call). */
function refuse(shadow: boolean, verdicts: Set<string>, r: Refusal): void {
  if (!shadow) throw refusalError(r);
  verdicts.add(`would_${r.code}`);
}

/**
 * The second half of admit: the budget reservation of a caller admitCaller let in. Not async:
 * with a store that answers in this turn (the memory store) the reservation is made without a
 * promise per step; a refusal rejects.
 */
export function reserveFor(input: AdmitInput, let_in: Admitted): Promise<Admitted> {
  const { state, strip } = let_in;
  const limits = state.compiled.budget;
  const budget = input.budget;
  if (!limits || !budget) return Promise.resolve({ state, strip });
  try {
    const inputTokens = estimateRequestInputTokens(input.operation, input.body);
    state.inputEstimate = inputTokens;
    const out = outputReservation(input.operation, input.body, limits.limits.defaultMaxTokens);
    state.outputReserved = out.perChoice * out.choices;
    const est = estimateCost(state.compiled.prices.lookup(input.model), {
      inputTokens,
      maxOutputTokens: state.outputReserved,
    });
    const caller = state.caller;
    const r = budget.reserveNow(
      limits,
      {
        consumer: caller?.consumer,
        team: caller?.team,
        model: input.model,
        route: input.route,
        session: input.sessionOf?.(caller),
      },
      { tokens: est.tokens, costUsd: microsToUsd(est.costMicros) },
    );
    if (r instanceof Promise) return r.then((x) => reserved(state, strip, out.perChoice, x));
    return Promise.resolve(reserved(state, strip, out.perChoice, r));
  } catch (err) {
    return rejected(err);
  }
}

/** What admission makes of the reservation's result (throws a refusal). */
function reserved(
  state: GovernanceState,
  strip: string[],
  perChoice: number,
  r: ReserveResult,
): Admitted {
  if (!r.ok) {
    // A refused reservation took nothing: shadow mode cannot get here (it forces admission).
    throw refusalError(r.refusal);
  }
  const verdicts = state.verdicts;
  state.headers = r.headers;
  // The provider is held to what was reserved (providers/output-cap.ts applies it per attempt).
  // 0 (defaultMaxTokens: 0 and no cap asked) reserves no output and cannot be a provider's cap.
  const shadow = state.compiled.policy.mode === 'shadow';
  const admitted: Admitted =
    !shadow && perChoice > 0 ? { state, strip, outputTokenCap: perChoice } : { state, strip };
  // A fail-open admission is settled like a reservation: charged once the store is back.
  state.reservation = r.reservation;
  if (r.failOpen) {
    verdicts.add('fail_open');
    return admitted;
  }
  verdicts.add('reserved');
  if (r.wouldRefuse) {
    const spend = r.wouldRefuse.metric === 'spendDay' || r.wouldRefuse.metric === 'spendMonth';
    verdicts.add(spend ? 'would_budget_exceeded' : 'would_rate_limit_exceeded');
  }
  return admitted;
}

/**
 * The models `/v1/models` shows this caller: each listed model is judged by its route's
 * governance policy, as a call to it would be. A model whose route refuses the caller's identity
 * or whose access rules deny the caller is left out, so the list never names a model the caller
 * cannot use and says nothing about what other consumers may do. Routes in shadow mode only
 * report, so their models stay listed.
 *
 * Throws 401 (in the caller's format) when some route refused the caller's identity (required
 * and missing, or a credential that is not accepted) and no route identified them: an empty 200
 * would hide that the credential is the problem. Without any route requiring identity and without
 * a credential that is refused, nothing changes for anonymous callers.
 */
export function modelsVisible(
  cfg: RuntimeConfig,
  headers: ReadonlyMap<string, string>,
  wallNow: number,
): { models: ModelEntry[]; caller: Caller | undefined } {
  const identities = new Map<CompiledGovernance, IdentityResult>();
  const models: ModelEntry[] = [];
  let refused: Refusal | undefined;
  let caller: Caller | undefined;
  for (const m of cfg.models) {
    const route = cfg.routeForModel(m.id);
    const g = route && cfg.governanceFor(route.name);
    if (!route || !g || g.policy.mode === 'shadow') {
      models.push(m);
      continue;
    }
    let id = identities.get(g);
    if (!id) {
      id = resolveIdentity(g.policy.identity, headers, cfg.consumers, wallNow);
      identities.set(g, id);
    }
    if (!id.ok) {
      refused ??= id.refusal;
      continue;
    }
    caller ??= id.caller;
    if (checkAccess(g.access, id.caller, { model: m.id, route: route.name }).ok) models.push(m);
  }
  if (refused && !caller) throw refusalError(refused);
  return { models, caller };
}

/**
 * Output tokens the request may generate: its own cap (or the policy default) per choice, times
 * the choices the provider generates and bills: chat's `n`, and for legacy completions
 * `best_of`, whose candidates are all generated (and billed) although only `n` are returned.
 * Embeddings generate none.
 */
function outputReservation(
  op: Operation,
  body: Record<string, unknown>,
  defaultMax: number,
): { perChoice: number; choices: number } {
  if (op === 'embeddings') return { perChoice: 0, choices: 1 };
  const perChoice = maxOutputTokens(op, body) ?? defaultMax;
  let choices = 1;
  if (op === 'chat' || op === 'completions') choices = Math.max(choices, count(body.n));
  if (op === 'completions') choices = Math.max(choices, count(body.best_of));
  return { perChoice, choices };
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 1 ? Math.floor(v) : 1;
}

/** The identity headers each compiled policy reads, listed once per config, not per request. */
const identityHeaderNames = new WeakMap<CompiledGovernance, readonly string[]>();

/** Every identity header the policy reads that the request carries, valid or not. */
function identityHeaders(
  compiled: CompiledGovernance,
  headers: ReadonlyMap<string, string>,
): string[] {
  let names = identityHeaderNames.get(compiled);
  if (names === undefined) {
    const id = compiled.policy.identity;
    const set = new Set<string>(id?.keys?.headers ?? []);
    if (id?.jwt) set.add(id.jwt.header);
    if (id?.mesh) set.add(id.mesh.header);
    names = [...set];
    identityHeaderNames.set(compiled, names);
  }
  // Sized first: an array grown by push holds room for 16 or more.
  let n = 0;
  for (const h of names) if (headers.has(h)) n++;
  const out = new Array<string>(n);
  n = 0;
  for (const h of names) if (headers.has(h)) out[n++] = h;
  return out;
}

export interface RequestEnd {
  /** The response the router saw; undefined: none came (abort or error before headers). */
  responded: boolean;
  usage: TokenUsage | undefined;
  model: string;
}

/**
 * What the last attempt used, for reconcile and the access log. The router phase only sees the
 * response of the last attempt: Envoy retried the earlier ones before any response reached the
 * router (a retriable status, which providers do not bill, or a reset or per-try timeout, whose
 * outcome the upstream phase cannot see), so they count as requests but stay at 0 tokens. No
 * response at all after the last attempt was made: the provider may have read the prompt, so
 * the prompt estimate is charged, marked estimated. That is what an attempt that timed out or
 * was reset leaves: Envoy answers the caller itself (504/503, shaped by local_reply_config) and
 * the router filter never sees that reply (Filter::onLocalReply, Envoy 1.34+) — its stream just
 * ends — so the request settles here, and nothing stays reserved.
 */
export function settleActual(g: GovernanceState, o: RequestEnd): Actual {
  const price = g.compiled.prices.lookup(o.model);
  if (o.usage) {
    return {
      tokens: o.usage.totalTokens,
      costUsd: microsToUsd(costMicros(price, o.usage)),
      usage: o.usage,
    };
  }
  if (o.responded || g.ledger.attempts === 0) return { tokens: 0, costUsd: 0 };
  const usage: TokenUsage = {
    inputTokens: g.inputEstimate,
    outputTokens: 0,
    totalTokens: g.inputEstimate,
    cachedInputTokens: 0,
    cacheCreationInputTokens: 0,
    reasoningTokens: 0,
    estimated: true,
  };
  g.charged = usage;
  return { tokens: g.inputEstimate, costUsd: microsToUsd(costMicros(price, usage)), usage };
}

/**
 * Settles the request's reservation exactly once (the caller guarantees one call): released when
 * no attempt reached upstream, otherwise reconciled with the ledger's total.
 */
export function finishGovernance(
  g: GovernanceState,
  o: RequestEnd,
  budget: Budget | undefined,
): Promise<unknown> | undefined {
  const attempts = g.ledger.attempts;
  if (attempts > 0) g.ledger.record(attempts, settleActual(g, o));
  const total = g.ledger.total();
  g.costUsd = total.costUsd;
  const r = g.reservation;
  const hit = g.cacheHit;
  if (hit && budget) {
    // A charged hit reserved (and made its one "attempt"); a free one reserved nothing and is
    // written on its own, when the policy keeps usage (it has limits) at all.
    const actual = {
      ...total,
      cached: { savedTokens: hit.savedTokens, savedMicros: hit.savedMicros },
    };
    if (r) return budget.reconcile(r, actual);
    const limits = g.compiled.budget;
    if (!limits) return undefined;
    const c = g.caller;
    return budget.recordCached(
      limits,
      { consumer: c?.consumer, team: c?.team, model: o.model, route: hit.route },
      actual,
    );
  }
  if (!r || !budget) return undefined;
  return attempts === 0 ? budget.release(r) : budget.reconcile(r, total);
}
