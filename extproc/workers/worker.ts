/**
 * One worker of `sluice extproc --workers N`: the whole ext_proc server (run.ts) on the socket the
 * primary shares, with what must be one per pod reached over IPC (primary.ts): its config, and —
 * without Redis — budgets and usage, the vault and the response cache. The worker answers the
 * primary's metrics scrapes, cross-worker attempts on its requests (requests.ts), and "drain".
 */
import type { ConfigSourceEvents } from '../config/load.js';
import type { RuntimeConfig } from '../config/runtime.js';
import { run, type ExtprocOptions, type RunningExtproc } from '../run.js';
import { requestId } from '../telemetry/request-id.js';
import { fromWire, type ConfigWire } from './config-wire.js';
import type { IpcPeer } from './ipc.js';
import type { Hello, MetricsJson } from './primary.js';
import { remoteRequests, serveRequests, workerRequestId } from './requests.js';
import { IpcCacheStore, IpcSessionStore, IpcStateStore, IpcVault } from './shared-state.js';

export type WorkerOptions = Omit<
  ExtprocOptions,
  'configPath' | 'xds' | 'admin' | 'configSource'
> & {
  /** 1-based; names this worker's request ids. */
  id: number;
  peer: IpcPeer;
};

/** A config source fed by the primary: the current config first, then every push. */
function primaryConfig(peer: IpcPeer, opts: WorkerOptions) {
  return (events: ConfigSourceEvents) => ({
    async start(): Promise<RuntimeConfig> {
      peer.onNotify('config', (w: ConfigWire) => {
        let cfg: RuntimeConfig;
        try {
          cfg = fromWire(w);
        } catch (err) {
          // The primary compiled the same document; refusing here means the two disagree.
          const reason = err instanceof Error ? err.message : 'unexpected failure';
          opts.logger.error(
            { event: 'config_rejected', source: 'primary', reason },
            'config refused',
          );
          events.onRejected(reason);
          return;
        }
        // Serving is reported once the config is applied: one naming a backend whose packages
        // this worker has not loaded yet applies after they load, or is refused.
        const applied = events.onConfig(cfg);
        if (!applied) peer.notify('serving', { version: cfg.version });
        else
          void applied.then((ok) => {
            if (ok) peer.notify('serving', { version: cfg.version });
          });
      });
      return fromWire(await peer.call<ConfigWire>('config.get', null, 30_000));
    },
    reload: () => Promise.resolve(),
    close() {},
  });
}

export async function startWorker(opts: WorkerOptions): Promise<RunningExtproc> {
  const { peer, id } = opts;
  const hello = await peer.call<Hello>('hello', { pid: process.pid }, 30_000);
  const extproc = await run({
    ...opts,
    admin: undefined,
    configSource: primaryConfig(peer, opts),
    newId: () => workerRequestId(id, requestId()),
    remoteRequests: remoteRequests(peer, id, opts.registry),
    ...(hello.sharedStore && { stateStore: new IpcStateStore(peer) }),
    ...(hello.sharedVault && {
      vault: new IpcVault(peer, Buffer.from(hello.sharedVault.key, 'base64')),
    }),
    ...(hello.sharedCache && { cacheStore: new IpcCacheStore(peer) }),
    ...(hello.sharedSessions &&
      hello.sharedVault && {
        sessions: {
          store: new IpcSessionStore(peer),
          key: Buffer.from(hello.sharedVault.key, 'base64'),
        },
      }),
  });
  serveRequests(peer, extproc.requests);
  peer.handle('metrics', (): Promise<MetricsJson> => opts.registry.getMetricsAsJSON());
  peer.notify('serving', { version: extproc.config().version });
  return extproc;
}
