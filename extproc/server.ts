import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { bindGrpcServer, shutdownGrpcServer } from './shared/grpc-server.js';
import { extProcService } from './wire/proto.js';
import type { DuplexCall } from './stream.js';

export const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';

export interface GrpcServerOptions {
  /** `unix:/path/to.sock` or `host:port`. */
  listen: string;
  maxMessageBytes: number;
  logger: Logger;
  onStream(call: DuplexCall, metadata: grpc.Metadata): void;
}

export interface RunningGrpcServer {
  /** What clients dial: `unix:/path` or `127.0.0.1:port` with the port actually bound. */
  address: string;
  health: HealthImplementation;
  /** Stops accepting, lets open streams finish until the deadline, then cancels the rest. */
  shutdown(deadlineMs: number): Promise<void>;
}

export async function startGrpcServer(opts: GrpcServerOptions): Promise<RunningGrpcServer> {
  const server = new grpc.Server({
    // Buffered bodies arrive as one message; grpc-js refuses more than 4 MiB by default.
    'grpc.max_receive_message_length': opts.maxMessageBytes,
    'grpc.max_send_message_length': opts.maxMessageBytes,
  });
  server.addService(extProcService(), {
    Process: (call: grpc.ServerDuplexStream<unknown, unknown>) =>
      opts.onStream(call, call.metadata),
  });
  const health = new HealthImplementation({ '': 'NOT_SERVING', [EXT_PROC_SERVICE]: 'NOT_SERVING' });
  health.addToServer(server);

  const target = await bindGrpcServer(server, opts.listen);
  opts.logger.info({ event: 'grpc_listening', address: target }, 'ext_proc server listening');

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
