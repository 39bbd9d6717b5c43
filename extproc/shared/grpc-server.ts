/**
 * Binding and stopping a gRPC server, as all of ours do it (the extproc's ext_proc server on
 * grpc-js or on its own HTTP/2 or node:http2, extproc/grpc/h2-server.ts, and the operator's ADS server): a unix
 * socket's folder is made and a stale socket file removed, port 0 becomes the port actually
 * bound, and shutdown lets open streams finish until a deadline, then cancels the rest.
 */
import cluster from 'node:cluster';
import { mkdir, unlink } from 'node:fs/promises';
import type { Server as NetServer } from 'node:net';
import { dirname } from 'node:path';
// Types only: the extproc's default transport (node:http2) uses this module without grpc-js,
// which is loaded by the servers that are grpc-js's (see bindGrpcServer).
import type * as grpc from '@grpc/grpc-js';

/** Where a `--listen` value points: `unix:/path`, `unix:///path` or `host:port`. */
export type ListenAddress = { path: string } | { host: string; port: number };

export function parseListen(listen: string): ListenAddress {
  const path = socketPath(listen);
  if (path !== undefined) return { path };
  const i = listen.lastIndexOf(':');
  const digits = listen.slice(i + 1);
  const port = Number(digits);
  if (i < 0 || !/^\d{1,5}$/.test(digits) || port > 65535) {
    throw new Error(`--listen ${listen}: expected unix:/path or host:port`);
  }
  return { host: listen.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port };
}

/** The socket file of `unix:/path` or `unix:///path`; undefined for host:port. */
function socketPath(listen: string): string | undefined {
  return listen.startsWith('unix:')
    ? listen.slice('unix:'.length).replace(/^\/\/(?=\/)/, '')
    : undefined;
}

/**
 * Before binding a unix socket: its folder made, and a socket file left by a killed predecessor
 * (which would make the bind fail) removed. Not in a cluster worker (`sluice extproc
 * --workers`): the primary binds the socket for all of them (it removed a stale file before
 * forking), and removing its file would cut every worker off from new connections.
 */
export async function prepareSocket(listen: string): Promise<void> {
  const path = socketPath(listen);
  if (path === undefined) return;
  await mkdir(dirname(path), { recursive: true });
  if (!cluster.isWorker) await unlink(path).catch(() => undefined);
}

/** What clients dial: `unix:/path` as given, or `host:<bound port>` (port 0 resolved). */
export function dialAddress(listen: string, boundPort: number): string {
  return listen.startsWith('unix:')
    ? listen
    : `${listen.slice(0, listen.lastIndexOf(':'))}:${boundPort}`;
}

/**
 * Binds `server` to `listen` (`unix:/path`, `unix:///path` or `host:port`; port 0 picks one)
 * and resolves with what clients dial: `unix:/path` as given, or `host:<bound port>`.
 */
export async function bindGrpcServer(server: grpc.Server, listen: string): Promise<string> {
  await prepareSocket(listen);
  // The caller built `server` with grpc-js: this import is already loaded, never a first load.
  const { ServerCredentials } = await import('@grpc/grpc-js');
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return dialAddress(listen, port);
}

/**
 * A graceful stop bounded by a deadline: `graceful` is started and calls `done` once what was
 * open has finished; if it has not by `deadlineMs`, `force` cancels what is left. Resolves once
 * the server has stopped either way.
 */
export function stopWithin(
  deadlineMs: number,
  graceful: (done: () => void) => void,
  force: () => void,
): Promise<void> {
  return new Promise<void>((resolve) => {
    let over = false;
    const timer = setTimeout(() => {
      over = true;
      force();
      resolve();
    }, deadlineMs);
    graceful(() => {
      if (over) return;
      over = true;
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Stops accepting, lets open calls finish, and cancels what is still open after `deadlineMs`.
 * Resolves once the server has stopped either way.
 */
export function shutdownGrpcServer(server: grpc.Server, deadlineMs: number): Promise<void> {
  return stopWithin(
    deadlineMs,
    (done) => server.tryShutdown(() => done()),
    () => server.forceShutdown(),
  );
}

/**
 * Binds a node:net server (node:http2's included) to `listen` and resolves with what clients dial;
 * errors after the bind go to `onError`.
 */
export async function listenServer(
  server: NetServer,
  listen: string,
  onError: (err: Error) => void,
): Promise<string> {
  const where = parseListen(listen);
  await prepareSocket(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if ('path' in where) server.listen(where.path, done);
    else server.listen(where.port, where.host, done);
  });
  server.on('error', onError);
  const bound = server.address();
  return dialAddress(
    listen,
    typeof bound === 'object' && bound ? bound.port : 'port' in where ? where.port : 0,
  );
}

/**
 * Stops a server's connections: each open one is closed gracefully (`close` sends GOAWAY and calls
 * `closed` once it is gone), and past the deadline `force` cancels what is left.
 */
export function drainConnections<C>(
  deadlineMs: number,
  open: C[],
  close: (c: C, closed: () => void) => void,
  force: () => void,
): Promise<void> {
  return stopWithin(
    deadlineMs,
    (done) => {
      let left = open.length;
      if (left === 0) done();
      for (const c of open)
        close(c, () => {
          if (--left === 0) done();
        });
    },
    force,
  );
}
