/**
 * A request whose upstream attempt reaches another worker than its router phase.
 *
 * Envoy runs a request's router filter and its upstream filter on the same worker thread, and
 * that thread's HTTP/2 connection pool to the ext_proc cluster normally holds one connection,
 * so both streams land on the worker that accepted it. Normally is not always: a pool opens a
 * second connection when the first is draining (GOAWAY on a worker's restart) or full, and then
 * the upstream stream arrives where the router phase's state is not. Failing such a request
 * closed would be safe but wrong; so the request id names its owner (`w3.<uuid>`), and the
 * upstream phase asks the owner, through the primary, for what a translator reads of the request
 * (providers/translator.ts ExchangeRequest: small, JSON), translates, and then has the owner
 * record the attempt, in the same order as in one process. The owner records before the upstream
 * phase answers Envoy, so the router phase's response side, which can only run after that, sees
 * every attempt.
 */
import { Counter, type Registry } from 'prom-client';
import { recordAttempt, type RequestStore, type RequestState } from '../pipeline/request-store.js';
import type { RemoteAttempt, RemoteRequest, RemoteRequests } from '../pipeline/upstream.js';
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

function snapshot(s: RequestState): RemoteRequest {
  return {
    api: s.api,
    operation: s.operation,
    model: s.model,
    body: s.body,
    stream: s.stream,
    forcedUsage: s.forcedUsage,
    ...(s.outputTokenCap !== undefined && { outputTokenCap: s.outputTokenCap }),
    ...(s.responseId !== undefined && { responseId: s.responseId }),
    ...(s.resource !== undefined && { resource: s.resource }),
    ...(s.trace !== undefined && { trace: s.trace }),
  };
}

/** The owner's side: answers for the requests of its RequestStore. */
export function serveRequests(peer: IpcPeer, store: RequestStore): void {
  // null, not undefined: JSON drops undefined, and the reply must say "not here".
  peer.handle('request.get', (id: string): RemoteRequest | null => {
    const s = store.get(id);
    return s ? snapshot(s) : null;
  });
  peer.handle('request.begin', (a: RemoteAttempt): boolean => {
    const s = store.get(a.id);
    if (!s) return false;
    recordAttempt(s, a);
    return true;
  });
}

/** The asking side: a worker's upstream phase, for ids of other workers. */
export function remoteRequests(
  peer: IpcPeer,
  self: number,
  registry?: Registry,
  timeoutMs = 2000,
): RemoteRequests {
  // How often Envoy's two filters of one request reached different workers: rare by design.
  const counter = registry
    ? new Counter({
        name: 'sluice_extproc_cross_worker_attempts_total',
        help: 'Upstream attempts whose router phase ran in another extproc worker (served through the primary).',
        registers: [registry],
      })
    : undefined;
  return {
    elsewhere(id) {
      const owner = requestOwner(id);
      return owner !== undefined && owner !== self;
    },
    async get(id) {
      counter?.inc();
      return (await peer.call<RemoteRequest | null>('request.get', id, timeoutMs)) ?? undefined;
    },
    begin: (a) => peer.call<boolean>('request.begin', a, timeoutMs),
  };
}
