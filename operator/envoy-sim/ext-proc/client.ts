// The gRPC channel an ext_proc filter opens its streams on (Envoy's client_impl.cc): one per
// configured ext_proc service, shared by every filter instance.
import * as grpc from '@grpc/grpc-js';

export interface ClientOptions {
  channelOptions?: grpc.ChannelOptions;
  /** Delay between half-close and cancel of a stream the server keeps open (default 20 ms). */
  closeGraceMs?: number;
  credentials?: grpc.ChannelCredentials;
}

/** One gRPC channel to an ext_proc server, shared by any number of filters. */
export class ExtProcClient {
  readonly grpc: grpc.Client;
  /** How long after the half-close a still-open stream is cancelled. */
  readonly closeGraceMs: number;
  constructor(target: string, options: ClientOptions = {}) {
    this.closeGraceMs = options.closeGraceMs ?? 20;
    this.grpc = new grpc.Client(target, options.credentials ?? grpc.credentials.createInsecure(), {
      // BUFFERED bodies up to the buffer limit plus protobuf framing must fit in one message.
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
      ...options.channelOptions,
    });
  }
  /** Resolves once the channel is connected, so the first message timers measure the server. */
  connect(timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) =>
      this.grpc.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())),
    );
  }
  close(): void {
    this.grpc.close();
  }
}
