/**
 * The router phase's conversation step (issue 18): which session a request belongs to, the key
 * Envoy hashes for session affinity, and the context window check — kept here so the router only
 * calls it at three points (after identity, once the conversation is whole, on the answer's
 * headers) and hands its record to the access log.
 */
import { WIRE, type Route } from '../config/contract.js';
import type { CompiledGovernance } from '../config/runtime.js';
import { applyContext, CONTEXT_TRIMMED_HEADER, type ContextOutcome } from '../context/apply.js';
import {
  affinityKey,
  DEFAULT_SESSION_HEADER,
  SessionIds,
  sessionValue,
  turnOf,
  type Caller,
} from '../context/session.js';
import type { Operation } from '../providers/endpoints.js';
import type { ContextResult } from '../telemetry/conversation-metrics.js';
import type { RequestRecord } from '../telemetry/telemetry.js';
import { maxOutputTokens } from '../usage/estimate.js';
import type { Outcome } from '../wire/mutation.js';

/** Without a key of the gateway's (no vault key), ids are stable for this process only. */
const PROCESS_IDS = new SessionIds();

/** The session header of a route: affinity's, else masking's, else the default. */
function sessionHeaderOf(route: Route): string {
  return (
    route.affinity?.sessionHeader ?? route.policy?.masking?.sessionHeader ?? DEFAULT_SESSION_HEADER
  );
}

export class ConversationStep {
  private session: { id: string; turn: number } | undefined;
  private context: ContextOutcome | undefined;
  private dropped = 0;

  constructor(private readonly ids: SessionIds = PROCESS_IDS) {}

  /** The session id of `caller`'s request (usage reports); undefined outside a session. */
  sessionId(
    route: Route,
    caller: Caller | undefined,
    headers: ReadonlyMap<string, string>,
  ): string | undefined {
    const value = sessionValue(headers, sessionHeaderOf(route));
    return caller && value !== undefined ? this.ids.id(route.name, caller, value) : undefined;
  }

  /**
   * After identity: the session this request belongs to, and the affinity key. Returns the
   * header changes: the key set (overwriting any a client sent) on a route with affinity, a
   * client's own key removed elsewhere, and our own session header removed (it is the gateway's).
   */
  identify(input: {
    route: Route;
    operation: Operation;
    body: Record<string, unknown>;
    headers: ReadonlyMap<string, string>;
    caller: Caller | undefined;
  }): { setHeaders: [string, string][]; removeHeaders: string[] } {
    const { route, headers, caller } = input;
    const name = sessionHeaderOf(route);
    const value = sessionValue(headers, name);
    if (caller && value !== undefined) {
      this.session = {
        id: this.ids.id(route.name, caller, value),
        turn: turnOf(input.operation, input.body),
      };
    }
    const setHeaders: [string, string][] = [];
    const removeHeaders: string[] = [];
    const key = route.affinity ? affinityKey(route.name, caller, value) : undefined;
    if (key !== undefined) setHeaders.push([WIRE.affinityHeader, key]);
    else if (headers.has(WIRE.affinityHeader)) removeHeaders.push(WIRE.affinityHeader);
    if (route.affinity && name.startsWith('x-sluice-') && headers.has(name)) {
      removeHeaders.push(name);
    }
    return { setHeaders, removeHeaders };
  }

  /**
   * Once the conversation is whole (a Responses turn's history rebuilt): the context window.
   * Throws `context_length_exceeded` (enforced reject, or nothing left to trim); trims `body` in
   * place and returns true when it dropped messages.
   */
  fit(input: {
    route: Route;
    operation: Operation;
    model: string;
    body: Record<string, unknown>;
    backendModels: readonly string[];
    governance: CompiledGovernance | undefined;
    /** The route policy's verdicts (access log): the check adds its own. */
    verdicts: Set<string> | undefined;
  }): boolean {
    const policy = input.route.policy;
    if (!policy?.context) return false;
    // The limit the request leaves with: its own, else the one an enforcing budget sets
    // (providers/output-cap.ts applies it upstream).
    const budget = input.governance?.budget;
    const cap =
      budget && budget.mode === 'enforce' && budget.limits.defaultMaxTokens > 0
        ? budget.limits.defaultMaxTokens
        : undefined;
    const outputLimit = maxOutputTokens(input.operation, input.body) ?? cap;
    const outcome = applyContext({
      policy: policy.context,
      shadow: policy.mode === 'shadow',
      operation: input.operation,
      body: input.body,
      model: input.model,
      backendModels: input.backendModels,
      outputLimit,
    });
    this.context = outcome;
    if (outcome?.verdict) input.verdicts?.add(outcome.verdict);
    if (outcome?.refusal) throw outcome.refusal;
    if (!outcome?.body) return false;
    // In place: every later step (guard, masking, cache, the upstream phase) reads this object.
    for (const k of Object.keys(input.body)) delete input.body[k];
    Object.assign(input.body, outcome.body);
    this.dropped = outcome.dropped ?? 0;
    return true;
  }

  /** The answer's headers: how many messages were dropped, when some were. */
  withResponseHeaders(outcome: Outcome): Outcome {
    if (this.dropped === 0 || outcome.kind !== 'continue') return outcome;
    const m = outcome.mutation ?? {};
    return {
      kind: 'continue',
      mutation: {
        ...m,
        setHeaders: [...(m.setHeaders ?? []), [CONTEXT_TRIMMED_HEADER, String(this.dropped)]],
      },
    };
  }

  /** The record's conversation fields. */
  record(): Pick<RequestRecord, 'session' | 'context'> {
    const out: Pick<RequestRecord, 'session' | 'context'> = {};
    if (this.session) out.session = this.session;
    const c = this.context;
    if (c) {
      const result: ContextResult = c.refusal
        ? 'rejected'
        : c.verdict === 'context_trimmed'
          ? 'trimmed'
          : c.verdict === 'would_context_trim'
            ? 'would_trim'
            : c.verdict === 'would_context_reject'
              ? 'would_reject'
              : 'fits';
      out.context = { result, ...c.record };
    }
    return out;
  }
}
