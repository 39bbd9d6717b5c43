/**
 * The HTTP/2 transports of the ext_proc server that the interop suites run against (h2spec here,
 * grpc-js and raw node:http2 clients in extproc/grpc/h2-server.test.ts, grpc-go's in
 * h2-server-go.test.ts): every suite loops over TRANSPORTS, so a transport joins all of them here.
 */
import type { H2ServerOptions } from '../../extproc/grpc/h2-server.js';

/** node:http2, or Sluice's own (extproc/grpc/h2-connection.ts). */
export type Transport = 'node' | 'own';

/** 'own' joins once startH2Server takes `transport` (issue 16). */
export const TRANSPORTS: readonly Transport[] = ['node'];

/** The server options on a transport (a property an older H2ServerOptions does not declare). */
export function withTransport(opts: H2ServerOptions, transport: Transport): H2ServerOptions {
  return Object.assign(opts, { transport });
}
