/**
 * The HTTP/2 transports of the ext_proc server that the interop suites run against (h2spec here,
 * grpc-js and raw node:http2 clients in extproc/grpc/h2-server.test.ts, grpc-go's in
 * h2-server-go.test.ts): every suite loops over TRANSPORTS, so a transport joins all of them here.
 */
import type { H2ServerOptions, H2Transport } from '../../extproc/grpc/h2-server.js';

export type Transport = H2Transport;

/** node:http2, and Sluice's own (extproc/grpc/h2-connection.ts). */
export const TRANSPORTS: readonly Transport[] = ['node', 'own'];

export function withTransport(opts: H2ServerOptions, transport: Transport): H2ServerOptions {
  return { ...opts, transport };
}
