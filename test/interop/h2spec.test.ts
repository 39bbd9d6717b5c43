/**
 * h2spec (HTTP/2 conformance, RFC 7540/9113 and RFC 7541; strict cases included) against the
 * ext_proc server on each HTTP/2 transport, and against the own transport's H2Connection alone
 * under a plain HTTP handler (every case must pass). On the ext_proc server, Sluice's own
 * transport must pass every case but the ones in ALLOWED (each says why); node:http2 may also
 * fail NODE_ALLOWED, what nghttp2 and node do today. h2spec sends plain HTTP/2 requests (GET /),
 * which the ext_proc server answers with a bodiless 415 and END_STREAM; that explains ALLOWED and
 * SKIPPED. Skipped where Go is not installed. The three runs go side by side; each failing case
 * waits out the 1 s timeout: ~8 s in all (node ~7.5 s, own ~2-4 s, H2Connection alone 0.4 s;
 * load 4-7 on 2 cores).
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import {
  H2Connection,
  type ServerStream,
  type StreamEvents,
} from '../../extproc/grpc/h2-connection.js';
import { encodeHeaderBlock } from '../../extproc/grpc/hpack.js';
import { startH2Server, type RunningH2Server } from '../../extproc/grpc/h2-server.js';
import type { DuplexCall } from '../../extproc/stream.js';
import { buildH2spec, listCases, runH2spec, type RunResult } from './h2spec.js';
import { TRANSPORTS, withTransport } from './transports.js';

/** Not run at all: cases that cannot finish or do not apply against this server. */
const EXCLUDED: Record<string, string> = {
  // h2spec opens SETTINGS_MAX_CONCURRENT_STREAMS + 1 streams to see one refused. node's server
  // advertises 2^32-1 (billions of HEADERS frames). The own transport advertises 1,024, but the
  // ext_proc server answers each of h2spec's requests (ended, not gRPC) at once with a 415, so they
  // close before the limit is reached; the refusal is checked against H2Connection alone below.
  'http2/5.1.2/1':
    'the stream limit is unbounded (node) or never reached (requests answered at once)',
};

/** Failures allowed on every transport: cases that need what this server does not do. */
const ALLOWED: Record<string, string> = {
  // Both wait for a DATA frame of the response to GET /, after sending WINDOW_UPDATE / PRIORITY on
  // the half-closed stream; the answer to a request that is not gRPC is a 415 without a body.
  'generic/2/2': 'needs a response body; non-gRPC requests get a bodiless 415',
  'generic/2/3': 'needs a response body; non-gRPC requests get a bodiless 415',
};

/** Cases h2spec itself skips here: each needs a response with a body (a bodiless 415 has none). */
const SKIPPED = new Set(['http2/6.5.3/1', 'http2/6.9.1/1', 'http2/6.9.2/1', 'http2/6.9.2/2']);

/** What node:http2 fails today (node 20.20, nghttp2 1.61.0), measured; never allowed for the own one. */
const NODE_ALLOWED: Record<string, string> = {
  // DATA / HEADERS on a stream closed by RST_STREAM or by END_STREAM both ways: node sends nothing
  // (no STREAM_CLOSED error; h2spec times out waiting).
  'http2/5.1/8': "node ignores DATA on a stream closed by the client's RST_STREAM",
  'http2/5.1/9': "node ignores HEADERS on a stream closed by the client's RST_STREAM",
  'http2/5.1/11': 'node ignores DATA on a closed stream',
  'http2/5.1/12': 'node ignores HEADERS on a closed stream',
  // HEADERS on stream 3 after stream 5: node answers stream 5 and ignores stream 3, where a
  // connection error PROTOCOL_ERROR is due.
  'http2/5.1.1/2': 'node ignores a stream id lower than the last one',
  // node closes the connection (GOAWAY INTERNAL_ERROR) on a PING ACK it did not ask for: "PING
  // Ack is unsolicited. Treat as a connection error" (src/node_http2.cc, HandlePingFrame).
  'http2/6.7/2': 'node closes the connection on an unsolicited PING ACK',
  // Two WINDOW_UPDATEs on stream 0 past 2^31-1: node's GOAWAY carries INTERNAL_ERROR (2, seen
  // on a raw socket), not FLOW_CONTROL_ERROR.
  'http2/6.9.1/2': 'node sends GOAWAY INTERNAL_ERROR, not FLOW_CONTROL_ERROR',
  // The rest fail in some runs only (1 to 3 of 20 each): a request, then a frame on its stream
  // that must be answered with an error. When node's 415 (END_STREAM) has closed the stream before
  // that frame is read, node ignores the frame as on a closed stream (as 5.1/11) or only resets
  // the stream. 6.9/2 and 8.1.2.6/2 did not fail in 40 runs but send the same sequence.
  'http2/5.1/5': 'timing: DATA after END_STREAM, once the 415 closed the stream',
  'http2/5.1/6': 'timing: HEADERS after END_STREAM, once the 415 closed the stream',
  'http2/6.1/2': 'timing: DATA after END_STREAM, once the 415 closed the stream',
  'http2/6.1/3': 'timing: DATA with a bad pad length, RST_STREAM instead of GOAWAY',
  'http2/6.9/2': 'timing: WINDOW_UPDATE 0 on the stream (same sequence as the others)',
  'http2/6.9.1/3': 'timing: stream window overflow, once the 415 closed the stream',
  'http2/8.1/1': 'timing: a second HEADERS without END_STREAM, once the 415 closed the stream',
  'http2/8.1.2.1/3': 'timing: a pseudo-header in trailers, once the 415 closed the stream',
  'http2/8.1.2.6/1': 'timing: content-length mismatch, once the 415 closed the stream',
  'http2/8.1.2.6/2': 'timing: content-length mismatch (same sequence as the others)',
};

/** Answers each message with the empty answer of its kind; ends when the client half-closes. */
function echo(call: DuplexCall): void {
  call.on('data', (m) => {
    if (m.request) call.write({ [m.request]: {} });
  });
  call.on('end', () => call.end());
}

const build = buildH2spec();
const skip = 'skipped' in build ? build.skipped : false;

/**
 * The own transport's H2Connection under an ordinary HTTP handler: each request is answered when
 * it ends, with 200, a body and trailers. Here streams stay open until the request ends, so the
 * cases the ext_proc server's early 415 makes moot (ALLOWED, SKIPPED) check the connection
 * itself: frames on open, half-closed and closed streams, request validation, flow control of
 * what it sends. A small stream limit lets 5.1.2 run too. No case is allowed.
 */
const HEAD_200 = encodeHeaderBlock([
  [':status', '200'],
  ['content-type', 'text/plain'],
]);
const TRAILERS = encodeHeaderBlock([['x-done', '1']]);
const BODY = Buffer.from('hello from sluice h2-connection');

function plainHandler(stream: ServerStream): StreamEvents {
  return {
    data: () => undefined,
    end: () => {
      stream.headers(HEAD_200, false);
      stream.data(BODY);
      stream.trailers(TRAILERS);
    },
    aborted: () => undefined,
  };
}

// The runs mostly wait (each failing case for h2spec's timeout): side by side, not in turn.
describe('h2spec', { concurrency: true }, () => {
  for (const transport of TRANSPORTS) {
    describe(`h2spec against the ext_proc server (${transport})`, { skip }, () => {
      let server: RunningH2Server;
      let run: RunResult;
      before(async () => {
        if ('skipped' in build) return;
        server = await startH2Server(
          withTransport(
            {
              listen: '127.0.0.1:0',
              maxMessageBytes: 64 * 1024,
              logger: pino({ level: 'silent' }),
              onStream: echo,
            },
            transport,
          ),
          { '': 'SERVING' },
        );
        const port = Number(server.address.slice(server.address.lastIndexOf(':') + 1));
        const cases = listCases(build.path);
        const listed = [ALLOWED, NODE_ALLOWED].flatMap((l) => Object.keys(l));
        for (const id of [...listed, ...SKIPPED])
          assert.ok(
            cases.some((c) => c.id === id),
            `no h2spec case ${id}`,
          );
        run = await runH2spec(build.path, cases, {
          host: '127.0.0.1',
          port,
          exclude: Object.keys(EXCLUDED),
          // A passing case's frame comes at once; only failures wait this long (half of h2spec's 2 s).
          timeoutSeconds: 1,
        });
      });
      after(async () => {
        await server?.shutdown(100);
      });

      it('passes every case but the allowed ones', { timeout: 150_000 }, () => {
        const allowed = transport === 'node' ? { ...ALLOWED, ...NODE_ALLOWED } : ALLOWED;
        const unexpected: string[] = [];
        const counts = { passed: 0, failed: 0, skipped: 0, 'not-run': 0 };
        for (const [id, o] of run.outcomes) {
          counts[o.result]++;
          if (o.result === 'failed' && !(id in allowed))
            unexpected.push(`${id}: ${o.detail.replace(/\s+/g, ' ')}`);
          if (o.result === 'skipped' && !SKIPPED.has(id))
            unexpected.push(`${id}: skipped by h2spec (not expected)`);
        }
        const allowedFailing = [...run.outcomes]
          .filter(([id, o]) => o.result === 'failed' && id in allowed)
          .map(([id]) => id);
        console.log(
          `h2spec ${transport}: ${JSON.stringify(counts)} in ${(run.ms / 1000).toFixed(1)} s; ` +
            `allowed failures: ${allowedFailing.join(' ') || 'none'}`,
        );
        assert.deepEqual(unexpected, [], `h2spec cases failed on ${transport}`);
      });
    });
  }

  describe('h2spec against H2Connection (own transport, plain HTTP handler)', { skip }, () => {
    let server: net.Server;
    const conns: H2Connection[] = [];
    let run: RunResult;
    before(async () => {
      if ('skipped' in build) return;
      server = net.createServer((socket) => {
        conns.push(
          new H2Connection(socket, {
            onStream: plainHandler,
            maxConcurrentStreams: 100,
            initialWindowSize: 1 << 20,
            connectionWindowSize: 16 << 20,
            maxHeaderListSize: 64 << 10,
          }),
        );
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      run = await runH2spec(build.path, listCases(build.path), {
        host: '127.0.0.1',
        port: (server.address() as net.AddressInfo).port,
        timeoutSeconds: 1,
      });
    });
    after(async () => {
      for (const c of conns) c.destroy();
      await new Promise((r) => server?.close(r));
    });

    it('passes every case', { timeout: 150_000 }, () => {
      const bad = [...run.outcomes]
        .filter(([, o]) => o.result !== 'passed')
        .map(
          ([id, o]) =>
            `${id}: ${o.result}${'detail' in o ? ` ${o.detail.replace(/\s+/g, ' ')}` : ''}`,
        );
      console.log(
        `h2spec H2Connection: ${run.outcomes.size - bad.length} of ${run.outcomes.size} pass in ${(run.ms / 1000).toFixed(1)} s`,
      );
      assert.deepEqual(bad, []);
    });
  });
});
