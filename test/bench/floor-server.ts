/**
 * The benchmark's floor: an ExternalProcessor that does no work, answering every message at
 * once with the empty answer of the same kind. Same protos, same grpc-js server, same socket
 * type as the extproc, so sluice/floor isolates what Sluice itself costs.
 *
 * Run as a child: `node --import tsx test/bench/floor-server.ts unix:/path`; prints "ready".
 */
import { unlinkSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { extProcService } from '../../extproc/wire/proto.js';

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

const target = process.argv[2];
if (!target?.startsWith('unix:')) {
  process.stderr.write('usage: floor-server.ts unix:/path/to.sock\n');
  process.exit(2);
}
try {
  unlinkSync(target.slice('unix:'.length));
} catch {
  // nothing left over
}
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
