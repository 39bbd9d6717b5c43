/**
 * The benchmark's floor: an ExternalProcessor that does no work, answering every message at
 * once with the empty answer of the same kind. Same protos, same codec, same grpc-js server,
 * same socket type as the extproc, so sluice/floor isolates what Sluice itself costs.
 *
 * With `--transport http2` it speaks gRPC on node:http2 directly instead of through grpc-js
 * (length-prefixed messages, grpc-status in trailers; nothing else of gRPC is needed by
 * Envoy's ext_proc client): grpc-js floor vs this one is what the gRPC library costs.
 *
 * Run as a child: `node --import tsx test/bench/floor-server.ts unix:/path [--transport
 * grpc-js|http2]`; prints "ready".
 */
import { unlinkSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { decodeProcessingRequest } from '../../extproc/wire/decode.js';
import { extProcService, responseEncoder } from '../../extproc/wire/proto.js';

type Message = { request?: string } & Record<string, unknown>;

const KINDS = [
  'request_headers',
  'request_body',
  'request_trailers',
  'response_headers',
  'response_body',
  'response_trailers',
];

// Answers are immutable, so one object per kind is enough: no allocation per message.
const ANSWERS = new Map(KINDS.map((k) => [k, { [k]: {} }]));

function serve(call: grpc.ServerDuplexStream<Message, object>): void {
  call.on('data', (m: Message) => {
    const answer = m.request === undefined ? undefined : ANSWERS.get(m.request);
    if (answer) call.write(answer);
  });
  // Envoy half-closes when the request is done; ending here lets the client skip its cancel timer.
  call.on('end', () => call.end());
  call.on('error', () => undefined);
}

function grpcJs(target: string): void {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
  });
  server.addService(extProcService(), { Process: serve });
  server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) {
      process.stderr.write(`floor: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write('ready\n');
  });
  const stop = (): void => server.forceShutdown();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

const PROCESS_PATH = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';

/** gRPC's message framing: a compressed flag byte, a 4-byte big-endian length, the message. */
function frame(msg: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + msg.length);
  out[0] = 0;
  out.writeUInt32BE(msg.length, 1);
  msg.copy(out, 5);
  return out;
}

function rawHttp2(target: string): void {
  const encode = responseEncoder();
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    if (headers[':path'] !== PROCESS_PATH) {
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' },
        { endStream: true },
      );
      return;
    }
    // endStream spelled out, as the extproc does (h2-server.ts RESPOND_OPTIONS): without it node's
    // respond() makes a hidden class per call, and the floor would pay what Sluice no longer does.
    stream.respond(
      { ':status': 200, 'content-type': 'application/grpc' },
      { endStream: false, waitForTrailers: true },
    );
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    let pending: Buffer = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 5) {
        const len = pending.readUInt32BE(1);
        if (pending.length < 5 + len) break;
        // Decoded like the extproc decodes it, so both floors pay the same codec.
        const m = decodeProcessingRequest(pending.subarray(5, 5 + len));
        pending = pending.subarray(5 + len);
        const answer = m.request === undefined ? undefined : ANSWERS.get(m.request);
        if (answer) stream.write(frame(encode(answer)));
      }
    });
    stream.on('end', () => stream.end());
  });
  server.on('error', (err) => {
    process.stderr.write(`floor: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(target.slice('unix:'.length), () => process.stdout.write('ready\n'));
  const stop = (): void => {
    server.close();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

const [target, flag, transport = 'grpc-js'] = process.argv.slice(2);
if (
  !target?.startsWith('unix:') ||
  (flag !== undefined && flag !== '--transport') ||
  !['grpc-js', 'http2'].includes(transport)
) {
  process.stderr.write('usage: floor-server.ts unix:/path/to.sock [--transport grpc-js|http2]\n');
  process.exit(2);
}
try {
  unlinkSync(target.slice('unix:'.length));
} catch {
  // nothing left over
}
if (transport === 'http2') rawHttp2(target);
else grpcJs(target);
