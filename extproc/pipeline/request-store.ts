import type { ApiFormat, Operation } from '../providers/endpoints.js';
import type { Provider } from '../config/contract.js';
import type { PolicyState } from '../policy/state.js';
import { MemoryVault, type Vault } from '../masking/vault.js';
import type { GovernanceState } from './governance.js';
import type { RequestTrace } from '../telemetry/trace-context.js';
import { TransientMap } from '../shared/transient-map.js';

/**
 * What the router phase learned about a request, for the upstream phase of the same request
 * (a separate ext_proc stream in the same process, once per upstream attempt) and for the
 * response. Keyed by an unguessable id the router phase puts in a header.
 */
export interface RequestState {
  id: string;
  api: ApiFormat;
  operation: Operation;
  model: string;
  routeName: string;
  /** The client's request as it should leave (after router-phase processing), parsed once. */
  body: Record<string, unknown>;
  /** The same bytes Envoy forwards unless the upstream phase replaces them. */
  rawBody: Buffer;
  stream: boolean;
  /** include_usage was added by the gateway: the extra usage chunk is not the client's to see. */
  forcedUsage: boolean;
  /** startedAtMs: wall clock when the upstream phase began it (timed attempt spans). */
  attempts: { backend: string; provider: Provider; startedAtMs?: number; spanId?: string }[];
  /** Tracing on: the request's trace; each attempt hands the provider a span of it. */
  trace?: RequestTrace;
  createdAt: number;
  /** The route's policy and what the response needs of it (placeholders to restore, counts). */
  policy?: PolicyState;
  /** The route's governance decisions: caller, reservation, per-attempt ledger. */
  governance?: GovernanceState;
  /**
   * Output tokens per choice the backend may generate (governance's reservation assumed no more);
   * each upstream attempt writes it into the backend's own field (providers/output-cap.ts).
   */
  outputTokenCap?: number;
  /** A Responses turn the gateway keeps: the id its answer carries (pipeline/sessions.ts). */
  responseId?: string;
  /**
   * Not a model call: GET/DELETE of a response its provider keeps, or its input items, sent to
   * the backend that keeps it (pipeline/sessions.ts); the upstream phase sets only path and
   * credential, and refuses any other backend.
   */
  resource?: KeptResource;
}

/** A request for a provider-kept response, as the upstream phase forwards it. */
export interface KeptResource {
  /** The one backend that may take it. */
  backend: string;
  /** `/responses/{id}` or `/responses/{id}/input_items`. */
  call: string;
  /** The caller's query string, without `?`. */
  query: string;
}

export class RequestStore {
  /** Each request's state until its stream ends: a TransientMap (shared/transient-map.ts). */
  private readonly entries = new TransientMap<string, RequestState>();
  private readonly sweeper: NodeJS.Timeout;
  /**
   * Conversation state of reversible masking, shared by every request of the process (in memory
   * by default; the Redis vault of the governance work plugs in here).
   */
  readonly vault: Vault;

  /** Entries of requests whose stream never ended cleanly are dropped after maxAgeMs. */
  constructor(
    private readonly now: () => number,
    private readonly maxAgeMs = 15 * 60 * 1000,
    vault?: Vault,
  ) {
    this.vault = vault ?? new MemoryVault({ now });
    this.sweeper = setInterval(() => this.sweep(), Math.min(60_000, maxAgeMs)).unref();
  }

  put(state: RequestState): void {
    this.entries.set(state.id, state);
  }

  get(id: string): RequestState | undefined {
    return this.entries.get(id);
  }

  delete(id: string): void {
    this.entries.delete(id);
  }

  get size(): number {
    return this.entries.size;
  }

  sweep(): void {
    const cutoff = this.now() - this.maxAgeMs;
    for (const [id, s] of this.entries) if (s.createdAt < cutoff) this.entries.delete(id);
  }

  close(): void {
    clearInterval(this.sweeper);
    this.vault.close();
  }
}

/**
 * An upstream attempt begins: listed for the end record (and its span) and counted by the
 * request's governance ledger. The one place it is done, for a request of this process and for
 * one of another worker's (workers/requests.ts runs it on the owner).
 */
export function recordAttempt(
  state: RequestState,
  a: {
    backend: string;
    provider: Provider;
    startedAtMs?: number | undefined;
    spanId?: string | undefined;
  },
): void {
  // Fields set one by one: conditional spreads made throwaway objects on every attempt.
  const entry: RequestState['attempts'][number] = { backend: a.backend, provider: a.provider };
  if (a.startedAtMs !== undefined) entry.startedAtMs = a.startedAtMs;
  if (a.spanId !== undefined) entry.spanId = a.spanId;
  state.attempts.push(entry);
  state.governance?.ledger.begin();
}
