// Scriptable ext_proc servers on the official schema, for the driver's self-tests and for
// any suite that needs a server which misbehaves on purpose.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { bindGrpcServer, shutdownGrpcServer } from '../../extproc/shared/grpc-server.js';
import {
  extProcCodec,
  type ProcessingRequest,
  type ProcessingResponse,
} from '../../operator/envoy-sim/ext-proc/codec.js';

/** Server side of one Process stream, read as a queue. */
export class FakeCall {
  readonly received: ProcessingRequest[] = [];
  readonly metadata: grpc.Metadata;
  /** The client half-closed (Envoy's closeStream()). */
  halfClosed = false;
  cancelled = false;
  private pending: ProcessingRequest[] = [];
  private waiter: ((m: ProcessingRequest | null) => void) | null = null;
  private ended = false;
  private readonly gone: Promise<void>;
  private markGone!: () => void;

  constructor(readonly stream: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) {
    this.metadata = stream.metadata;
    this.gone = new Promise((resolve) => (this.markGone = resolve));
    stream.on('data', (m: ProcessingRequest) => {
      this.received.push(m);
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = null;
        w(m);
      } else this.pending.push(m);
    });
    stream.on('end', () => {
      this.halfClosed = true;
      this.finishReads();
    });
    stream.on('cancelled', () => {
      this.cancelled = true;
      this.finishReads();
    });
    stream.on('error', () => this.finishReads());
  }

  private finishReads(): void {
    this.ended = true;
    this.markGone();
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(null);
    }
  }

  /** Next message from the client, or null once it half-closed or cancelled. */
  next(): Promise<ProcessingRequest | null> {
    const m = this.pending.shift();
    if (m) return Promise.resolve(m);
    if (this.ended) return Promise.resolve(null);
    // One reader at a time: a second waiter used to replace the first, which then never settled.
    if (this.waiter) return Promise.reject(new Error('FakeCall.next(): another read is pending'));
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** Like next(), but fails the test if the stream ended. */
  async expect(): Promise<ProcessingRequest> {
    const m = await this.next();
    if (!m) throw new Error('client ended the stream');
    return m;
  }

  send(r: ProcessingResponse): void {
    if (!this.cancelled) this.stream.write(r);
  }

  /** Close with OK: Envoy continues without the processor. */
  end(): void {
    if (!this.cancelled) this.stream.end();
  }

  fail(code: grpc.status, details = 'fake failure'): void {
    if (!this.cancelled) this.stream.emit('error', { code, details } as grpc.ServiceError);
  }

  /**
   * Resolves when the client is gone (half-close or cancel). It does not read the queue, so the
   * handler and the test can both wait for it; messages still land in `received`.
   */
  closed(): Promise<void> {
    return this.gone;
  }
}

export interface FakeServer {
  target: string;
  calls: FakeCall[];
  stop(): Promise<void>;
}

export type FakeHandler = (call: FakeCall) => void | Promise<void>;

/** Starts a server on a Unix socket; the handler runs once per Process stream. */
export async function startFakeServer(handler: FakeHandler): Promise<FakeServer> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-fake-extproc-'));
  const target = `unix:${join(dir, 'extproc.sock')}`;
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
  const calls: FakeCall[] = [];
  server.addService(extProcCodec().service, {
    Process: (stream: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
      const call = new FakeCall(stream);
      calls.push(call);
      Promise.resolve(handler(call)).catch((e: unknown) => {
        call.fail(grpc.status.INTERNAL, `handler threw: ${String(e)}`);
      });
    },
  });
  await bindGrpcServer(server, target);
  return {
    target,
    calls,
    // Streams the client never closed would keep a graceful shutdown waiting: 200 ms, then cut.
    stop: () =>
      shutdownGrpcServer(server, 200).then(() => rmSync(dir, { recursive: true, force: true })),
  };
}

/** Shorthand answers. */
export const answer = {
  continue(kind: NonNullable<ProcessingRequest['request']>): ProcessingResponse {
    const r: ProcessingResponse = {};
    r[kind] = {};
    return r;
  },
  raw(name: string, value: string): { header: { key: string; raw_value: Buffer } } {
    return { header: { key: name, raw_value: Buffer.from(value, 'latin1') } };
  },
};

/** A well-behaved pass-through server: continue every message. */
export const passThrough: FakeHandler = async (call) => {
  for (;;) {
    const m = await call.next();
    if (!m) return;
    call.send(answer.continue(m.request!));
  }
};
