/**
 * Binding and stopping a gRPC server, as both of ours (the extproc's ext_proc server and the
 * operator's ADS server) do it: a unix socket's folder is made and a stale socket file removed,
 * port 0 becomes the port actually bound, and shutdown lets open streams finish until a deadline.
 */
import cluster from 'node:cluster';
import { mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';

/**
 * Binds `server` to `listen` (`unix:/path`, `unix:///path` or `host:port`; port 0 picks one)
 * and resolves with what clients dial: `unix:/path` as given, or `host:<bound port>`.
 */
export async function bindGrpcServer(server: grpc.Server, listen: string): Promise<string> {
  if (listen.startsWith('unix:')) {
    const path = listen.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    await mkdir(dirname(path), { recursive: true });
    // A socket file left by a killed predecessor would make bind fail. Not in a cluster worker
    // (`sluice extproc --workers`): the primary binds the socket for all of them, and removing
    // its file would cut every worker off from new connections.
    if (!cluster.isWorker) await unlink(path).catch(() => undefined);
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return listen.startsWith('unix:')
    ? listen
    : `${listen.slice(0, listen.lastIndexOf(':'))}:${port}`;
}

/**
 * Stops accepting, lets open calls finish, and cancels what is still open after `deadlineMs`.
 * Resolves once the server has stopped either way.
 */
export function shutdownGrpcServer(server: grpc.Server, deadlineMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, deadlineMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
