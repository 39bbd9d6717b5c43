/**
 * The ext_proc gRPC server: by default our own (grpc/h2-server.ts, the ExternalProcessor and
 * health services only) on our own HTTP/2 (`--grpc-server h2`) or on node:http2
 * (`node-http2`), or grpc-js's (`--grpc-server grpc-js`). Each hands every Process stream to
 * onStream and serves grpc.health.v1.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { CallMetadata } from './grpc/h2-call.js';
import { startH2Server, type HealthStatus } from './grpc/h2-server.js';
import { bindGrpcServer, shutdownGrpcServer } from './shared/grpc-server.js';
import { extProcService } from './wire/proto.js';
import type { DuplexCall } from './stream.js';

export const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';

/** Which gRPC server carries the ext_proc streams. */
export const GRPC_SERVERS = ['h2', 'node-http2', 'grpc-js'] as const;
export type GrpcServerKind = (typeof GRPC_SERVERS)[number];

export interface GrpcServerOptions {
  /** `unix:/path/to.sock` or `host:port`. */
  listen: string;
  maxMessageBytes: number;
  logger: Logger;
  onStream(call: DuplexCall, metadata: CallMetadata): void;
  /** Default h2. */
  server?: GrpcServerKind | undefined;
}

export interface RunningGrpcServer {
  /** What clients dial: `unix:/path` or `127.0.0.1:port` with the port actually bound. */
  address: string;
  health: HealthStatus;
  /** Stops accepting, lets open streams finish until the deadline, then cancels the rest. */
  shutdown(deadlineMs: number): Promise<void>;
}

export async function startGrpcServer(opts: GrpcServerOptions): Promise<RunningGrpcServer> {
  const initial = { '': 'NOT_SERVING', [EXT_PROC_SERVICE]: 'NOT_SERVING' } as const;
  const kind = opts.server ?? 'h2';
  if (kind === 'h2' || kind === 'node-http2')
    return startH2Server({ ...opts, transport: kind === 'h2' ? 'own' : 'node' }, initial);

  // Loaded only for `--grpc-server grpc-js` (issue 16: grpc-js is ~2.7 MiB of V8 heap the default
  // transport does without); a failure to load fails the start.
  const [{ Server }, { HealthImplementation }] = await Promise.all([
    import('@grpc/grpc-js'),
    import('grpc-health-check'),
  ]);
  const server = new Server({
    // Buffered bodies arrive as one message; grpc-js refuses more than 4 MiB by default.
    'grpc.max_receive_message_length': opts.maxMessageBytes,
    'grpc.max_send_message_length': opts.maxMessageBytes,
  });
  server.addService(extProcService(), {
    Process: (call: grpc.ServerDuplexStream<unknown, unknown>) =>
      opts.onStream(call, call.metadata),
  });
  const health = new HealthImplementation(initial);
  health.addToServer(server);

  const target = await bindGrpcServer(server, opts.listen);
  opts.logger.info(
    { event: 'grpc_listening', address: target, transport: 'grpc-js' },
    'ext_proc server listening',
  );

  return {
    address: target,
    health,
    shutdown: (deadlineMs) => {
      health.setStatus('', 'NOT_SERVING');
      health.setStatus(EXT_PROC_SERVICE, 'NOT_SERVING');
      return shutdownGrpcServer(server, deadlineMs);
    },
  };
}
