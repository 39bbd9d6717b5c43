/**
 * Conversation metrics, with bounded labels only (route; never a session id):
 * - `sluice_session_turns_total{sluice_route}`: requests that belong to a session (one per turn);
 * - `sluice_session_turn{sluice_route}`: a histogram of each such request's turn number. A
 *   session that reached turn k contributed one observation at each of 1..k, so the number of
 *   sessions that reached at least turn k is the count of observations equal to k, and the
 *   distribution of turns per session follows from the buckets without a session id;
 * - `sluice_session_tokens_total{sluice_route,gen_ai_token_type}`: tokens of session requests;
 * - `sluice_context_trimmed_messages_total{sluice_route}` and
 *   `sluice_context_requests_total{sluice_route,result}` (fits, trimmed, rejected, and the
 *   shadow-mode would_trim, would_reject): what the context window check did.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { TokenUsage } from '../usage/extract.js';

/** Fibonacci-like: short chats and long agent loops both land in a bucket of their own. */
const TURN_BUCKETS = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233];

export type ContextResult = 'fits' | 'trimmed' | 'rejected' | 'would_trim' | 'would_reject';

export interface ConversationRecord {
  /** The request's session: its id is for logs only and never becomes a label. */
  session?: { id: string; turn: number } | undefined;
  context?: { result: ContextResult; trimmedMessages?: number | undefined } | undefined;
  usage?: TokenUsage | undefined;
}

export class ConversationMetrics {
  private readonly turns: Counter<string>;
  private readonly turn: Histogram<string>;
  private readonly tokens: Counter<string>;
  private readonly trimmed: Counter<string>;
  private readonly checks: Counter<string>;

  constructor(registers: Registry[]) {
    this.turns = new Counter({
      name: 'sluice_session_turns_total',
      help: 'Requests that belong to a session (the session header of an authenticated caller), one per turn.',
      labelNames: ['sluice_route'],
      registers,
    });
    this.turn = new Histogram({
      name: 'sluice_session_turn',
      help: 'The turn number of each session request: sessions that reached turn k are the observations equal to k.',
      labelNames: ['sluice_route'],
      buckets: TURN_BUCKETS,
      registers,
    });
    this.tokens = new Counter({
      name: 'sluice_session_tokens_total',
      help: 'Tokens of session requests by type (input, output).',
      labelNames: ['sluice_route', 'gen_ai_token_type'],
      registers,
    });
    this.trimmed = new Counter({
      name: 'sluice_context_trimmed_messages_total',
      help: "Messages the gateway dropped to fit a request in its model's context window.",
      labelNames: ['sluice_route'],
      registers,
    });
    this.checks = new Counter({
      name: 'sluice_context_requests_total',
      help: 'Requests checked against their context window, by result.',
      labelNames: ['sluice_route', 'result'],
      registers,
    });
  }

  /** `route` is the already-bounded route label. */
  record(route: string, r: ConversationRecord): void {
    if (r.session) {
      this.turns.inc({ sluice_route: route });
      if (r.session.turn > 0) this.turn.observe({ sluice_route: route }, r.session.turn);
      const u = r.usage;
      if (u) {
        if (u.inputTokens > 0)
          this.tokens.inc({ sluice_route: route, gen_ai_token_type: 'input' }, u.inputTokens);
        if (u.outputTokens > 0)
          this.tokens.inc({ sluice_route: route, gen_ai_token_type: 'output' }, u.outputTokens);
      }
    }
    if (r.context) {
      this.checks.inc({ sluice_route: route, result: r.context.result });
      if (r.context.result === 'trimmed' && (r.context.trimmedMessages ?? 0) > 0)
        this.trimmed.inc({ sluice_route: route }, r.context.trimmedMessages);
    }
  }
}
