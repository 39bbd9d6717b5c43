import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface Readiness {
  ready: boolean;
  reason?: string;
}

export interface AdminOptions {
  listen: string;
  registry: Registry;
  ready(): Readiness;
}

/**
 * The one readiness rule of every command with an admin endpoint: draining wins, then whatever
 * the command still waits for (`waitingFor`, a short reason such as "no config"), else ready.
 */
export function readiness(draining: boolean, waitingFor: string | undefined): Readiness {
  if (draining) return { ready: false, reason: 'draining' };
  return waitingFor === undefined ? { ready: true } : { ready: false, reason: waitingFor };
}

export interface RunningAdmin {
  address: string;
  close(): Promise<void>;
}

/** /metrics, /healthz (the process answers) and /readyz (config loaded, serving, not draining). */
export async function startAdmin(opts: AdminOptions): Promise<RunningAdmin> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const r = opts.ready();
      res
        .writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' })
        .end(r.ready ? 'ready\n' : `${r.reason}\n`);
    } else if (path === '/metrics') {
      opts.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': opts.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  const { host, port } = splitHostPort(opts.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    address: `${addr.address}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  if (i <= 0) throw new Error(`"${s}" is not host:port`);
  const port = Number(s.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`"${s}" has no valid port`);
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port };
}
