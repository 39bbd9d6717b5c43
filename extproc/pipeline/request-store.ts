import type { ApiFormat, Operation } from '../api/endpoints.js';
import type { Provider } from '../config/contract.js';

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
  attempts: { backend: string; provider: Provider }[];
  createdAt: number;
}

export class RequestStore {
  private readonly entries = new Map<string, RequestState>();
  private readonly sweeper: NodeJS.Timeout;

  /** Entries of requests whose stream never ended cleanly are dropped after maxAgeMs. */
  constructor(
    private readonly now: () => number,
    private readonly maxAgeMs = 15 * 60 * 1000,
  ) {
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
  }
}
