/**
 * A request whose upstream attempt reaches another worker than its router phase.
 *
 * Envoy runs a request's router filter and its upstream filter on the same worker thread, and
 * that thread's HTTP/2 connection pool to the ext_proc cluster normally holds one connection,
 * so both streams land on the worker that accepted it. Normally is not always: a pool opens a
 * second connection when the first is draining (GOAWAY on a worker's restart) or full, and then
 * the upstream stream arrives where the router phase's state is not. Failing such a request
 * closed would be safe but wrong; so the request id names its owner (`w3.<uuid>`), and the
 * upstream phase asks the owner, through the primary, to record the attempt and return what a
 * translator reads of the request (providers/translator.ts ExchangeRequest: small, JSON). The
 * owner records the attempt before it answers, so the router phase's response side, which can
 * only run after Envoy got this answer, always sees it.
 */
import type { Provider } from '../config/contract.js';
import type { RequestState, RequestStore } from '../pipeline/request-store.js';
import type { BackendApi } from '../providers/provider.js';
import { translatorFor } from '../providers/index.js';
import type { ExchangeRequest } from '../providers/translator.js';
import type { IpcPeer } from './ipc.js';

const OWNER = /^w(\d{1,3})\./;

/** Request ids of worker `n`: its tag, then an unguessable id. */
export function workerRequestId(worker: number, uuid: string): string {
  return `w${worker}.${uuid}`;
}

/** The worker that created a request id, or undefined for an id without a worker tag. */
export function requestOwner(id: string): number | undefined {
  const m = OWNER.exec(id);
  return m ? Number(m[1]) : undefined;
}

export interface AttemptArgs {
  id: string;
  backend: string;
  provider: Provider;
  backendApi: BackendApi;
  startedAtMs?: number;
}

export type AttemptReply =
  | { found: false }
  | {
      found: true;
      supported: false;
      api: ExchangeRequest['api'];
      operation: ExchangeRequest['operation'];
    }
  | { found: true; supported: true; request: ExchangeRequest };

/** The bookkeeping of an attempt on its request's state (the one place it is done). */
export function recordAttempt(
  state: RequestState,
  attempt: { backend: string; provider: Provider; startedAtMs?: number | undefined },
): void {
  state.attempts.push({
    backend: attempt.backend,
    provider: attempt.provider,
    ...(attempt.startedAtMs !== undefined && { startedAtMs: attempt.startedAtMs }),
  });
  state.governance?.ledger.begin();
}

function snapshot(s: RequestState): ExchangeRequest {
  return {
    api: s.api,
    operation: s.operation,
    model: s.model,
    body: s.body,
    stream: s.stream,
    forcedUsage: s.forcedUsage,
    ...(s.outputTokenCap !== undefined && { outputTokenCap: s.outputTokenCap }),
  };
}

/** The owner's side: answers attempts on the requests of its RequestStore. */
export function serveAttempts(peer: IpcPeer, store: RequestStore): void {
  peer.handle('request.attempt', (a: AttemptArgs): AttemptReply => {
    const state = store.get(a.id);
    if (!state) return { found: false };
    if (!translatorFor(state.api, state.operation, a.backendApi)) {
      return { found: true, supported: false, api: state.api, operation: state.operation };
    }
    recordAttempt(state, a);
    return { found: true, supported: true, request: snapshot(state) };
  });
}

/** What the upstream phase uses for a request that is not in its own store. */
export interface RemoteRequests {
  /** True when `id` belongs to another worker (so asking is worth a round trip). */
  elsewhere(id: string): boolean;
  attempt(args: AttemptArgs): Promise<AttemptReply>;
}

export function remoteRequests(peer: IpcPeer, self: number, timeoutMs = 2000): RemoteRequests {
  return {
    elsewhere(id) {
      const owner = requestOwner(id);
      return owner !== undefined && owner !== self;
    },
    attempt: (args) => peer.call<AttemptReply>('request.attempt', args, timeoutMs),
  };
}
