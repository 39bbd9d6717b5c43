/**
 * The router phase's use of a route's `context` section: which window applies, whether the request
 * fits, and what to forward. Refusals are SluiceErrors (400 `context_length_exceeded` in the
 * caller's format); in shadow mode nothing changes and the verdict says what would have happened.
 *
 * Which window: Envoy picks the backend after this phase, so the request must fit every backend
 * the route may send it to — the smallest window among the models they would be asked for (a
 * backend's `modelOverride`, else the model the caller named). Models neither the policy nor the
 * built-in catalog knows do not constrain it; when none is known the request is not checked.
 */
import { SluiceError } from '../errors.js';
import type { Operation } from '../providers/endpoints.js';
import { compileCatalog, type CompiledCatalog } from './catalog.js';
import type { ContextPolicy, ModelWindow } from './schema.js';
import { checksContext, exceededMessage, fitContext } from './window.js';

/** The response header that says how many messages the gateway dropped. */
export const CONTEXT_TRIMMED_HEADER = 'x-sluice-context-trimmed';

export const CONTEXT_VERDICTS = {
  trimmed: 'context_trimmed',
  wouldTrim: 'would_context_trim',
  wouldReject: 'would_context_reject',
} as const;

/** What the access log keeps of the check. */
export interface ContextRecord {
  /** The window the request was held to, and the model it is the window of. */
  contextTokens: number;
  windowModel: string;
  inputTokens: number;
  outputTokens: number;
  /** Messages dropped (enforced) or that would have been (shadow). */
  trimmedMessages?: number;
  inputTokensBefore?: number;
}

export interface ContextOutcome {
  record: ContextRecord;
  verdict?: (typeof CONTEXT_VERDICTS)[keyof typeof CONTEXT_VERDICTS];
  /** The trimmed body to forward (enforced trimming only). */
  body?: Record<string, unknown>;
  /** Messages dropped from what is forwarded (enforced trimming only). */
  dropped?: number;
  /** The 400 to answer (enforced): the request does not fit and cannot be trimmed to. */
  refusal?: SluiceError;
}

const compiled = new WeakMap<ContextPolicy, CompiledCatalog>();

function catalogOf(policy: ContextPolicy): CompiledCatalog {
  let c = compiled.get(policy);
  if (!c) compiled.set(policy, (c = compileCatalog(policy)));
  return c;
}

/** The smallest window among the models the route's backends would be asked for. */
export function windowFor(
  policy: ContextPolicy,
  models: readonly string[],
): { model: string; window: ModelWindow } | undefined {
  const catalog = catalogOf(policy);
  let best: { model: string; window: ModelWindow } | undefined;
  for (const m of new Set(models)) {
    const w = catalog.window(m);
    if (!w) continue;
    const effective = Math.min(w.contextTokens, w.maxInputTokens ?? Infinity);
    const current = best
      ? Math.min(best.window.contextTokens, best.window.maxInputTokens ?? Infinity)
      : Infinity;
    if (effective < current) best = { model: m, window: w };
  }
  return best;
}

export interface ApplyContextInput {
  policy: ContextPolicy;
  shadow: boolean;
  operation: Operation;
  body: Record<string, unknown>;
  /** The model the caller named (for the message). */
  model: string;
  /** The models the route's backends would be asked for. */
  backendModels: readonly string[];
  /** The output limit the request carries upstream (its own, else the gateway's). */
  outputLimit: number | undefined;
}

/**
 * undefined: the request is not checked (an operation that does not generate, or no window).
 * A refusal is returned, not thrown, so the caller can record the check before answering.
 */
export function applyContext(input: ApplyContextInput): ContextOutcome | undefined {
  if (!checksContext(input.operation)) return undefined;
  const found = windowFor(input.policy, input.backendModels);
  if (!found) return undefined;
  const r = fitContext({
    operation: input.operation,
    body: input.body,
    window: found.window,
    overflow: input.policy.contextOverflow,
    outputLimit: input.outputLimit,
    reserveOutputTokens: input.policy.reserveOutputTokens,
  });
  const base = {
    contextTokens: found.window.contextTokens,
    windowModel: found.model,
  };
  if (r.kind === 'fits') {
    return { record: { ...base, inputTokens: r.inputTokens, outputTokens: r.outputTokens } };
  }
  if (r.kind === 'exceeded') {
    const record = { ...base, inputTokens: r.inputTokens, outputTokens: r.outputTokens };
    if (input.shadow) return { record, verdict: CONTEXT_VERDICTS.wouldReject };
    const refusal = new SluiceError('context_length_exceeded', exceededMessage(input.model, r), {
      param: input.operation === 'responses' ? 'input' : 'messages',
    });
    return { record, refusal };
  }
  const record: ContextRecord = {
    ...base,
    inputTokens: r.inputTokens,
    outputTokens: r.outputTokens,
    trimmedMessages: r.dropped,
    inputTokensBefore: r.inputTokensBefore,
  };
  if (input.shadow) return { record, verdict: CONTEXT_VERDICTS.wouldTrim };
  return { record, verdict: CONTEXT_VERDICTS.trimmed, body: r.body, dropped: r.dropped };
}
