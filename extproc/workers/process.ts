/**
 * The process around `sluice extproc --workers N`: which role this process plays (node:cluster
 * forks the same command line, marked by WORKER_ENV), and the signals and exits of each role.
 * main.ts parses flags and builds the logger and registry; this file only wires a role to them.
 */
import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { ExtprocOptions } from '../run.js';
import { IpcPeer, processChannel } from './ipc.js';
import { startPrimary, WORKER_ENV, type PrimaryOptions } from './primary.js';
import { startWorker } from './worker.js';

/** This process's worker number when it is a worker of `--workers N`, else undefined. */
export function workerId(env: NodeJS.ProcessEnv = process.env): number | undefined {
  if (!cluster.isWorker) return undefined;
  const n = Number(env[WORKER_ENV]);
  return Number.isInteger(n) && n >= 1 ? n : undefined;
}

/**
 * The primary: forks, serves, and returns once it has stopped after SIGTERM/SIGINT. `flush` runs
 * last (the log's buffer). Exit code 1 when it could not start.
 */
export async function runPrimary(opts: PrimaryOptions, flush: () => void): Promise<number> {
  let primary;
  try {
    primary = await startPrimary(opts);
  } catch (err) {
    opts.logger.fatal(
      { event: 'start_failed', reason: err instanceof Error ? err.message : 'unknown' },
      'extproc failed to start',
    );
    flush();
    return 1;
  }
  process.on('SIGHUP', () => void primary.reload());
  await new Promise<void>((resolve) => {
    const stop = (): void => void primary.close().then(resolve);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  flush();
  return 0;
}

/**
 * A worker: serves until the primary says drain (or the primary is gone, or a signal reaches
 * this process directly, as Ctrl-C does to the whole process group), then drains and exits.
 */
export async function runWorker(
  id: number,
  opts: Omit<ExtprocOptions, 'configPath' | 'xds' | 'admin' | 'configSource'> & {
    logger: Logger;
    registry: Registry;
  },
  flush: () => void,
): Promise<number> {
  const peer = new IpcPeer(processChannel());
  // prom-client's own cluster listener answers the registries set here (not used by our primary,
  // which asks over `peer`; set so AggregatorRegistry.clusterMetrics() would also see them).
  AggregatorRegistry.setRegistries([opts.registry]);
  let extproc;
  try {
    extproc = await startWorker({ ...opts, id, peer });
  } catch (err) {
    opts.logger.fatal(
      { event: 'start_failed', reason: err instanceof Error ? err.message : 'unknown' },
      'extproc worker failed to start',
    );
    flush();
    return 1;
  }
  opts.logger.info({ event: 'worker_started', pid: process.pid }, 'extproc worker serving');
  await new Promise<void>((resolve) => {
    let stopping = false;
    const drain = (): void => {
      if (stopping) return;
      stopping = true;
      void extproc.close().then(resolve);
    };
    peer.onNotify('drain', drain);
    // The primary is gone: nobody will ask again; stop rather than serve without shared state.
    process.once('disconnect', drain);
    process.once('SIGTERM', drain);
    process.once('SIGINT', drain);
  });
  flush();
  // The IPC channel would keep the process alive; the primary sees the exit.
  if (process.connected) process.disconnect();
  return 0;
}
