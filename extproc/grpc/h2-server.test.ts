/**
 * The ext_proc server, on each HTTP/2 transport (test/interop/transports.ts), against grpc-js's
 * client (the gRPC semantics Envoy relies on: framing, metadata, trailers, status codes,
 * deadlines, cancellation, size limits, health, GOAWAY on shutdown) and a raw node:http2 client
 * for what grpc-js would never send. The same server against grpc-go's client:
 * h2-server-go.test.ts; against h2spec: test/interop/h2spec.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import pino from 'pino';
import { TRANSPORTS, withTransport, type Transport } from '../../test/interop/transports.js';
import { referenceService } from '../wire/proto.js';
import { NodeSink } from './h2-transport-node.js';
import type { DuplexCall, ProcessingRequest } from '../stream.js';
import { encodeGrpcMessage, H2Call, parseTimeoutMs, Status, type CallMetadata } from './h2-call.js';
import {
  decodeHealthRequest,
  PROCESS_PATH,
  startH2Server,
  type RunningH2Server,
} from './h2-server.js';

const EXT_PROC = 'envoy.service.ext_proc.v3.ExternalProcessor';
const MAX = 64 * 1024;

type Handler = (call: DuplexCall, md: CallMetadata) => void;

/** Answers every message with the empty answer of its kind; ends when the client half-closes. */
export const echo: Handler = (call) => {
  call.on('data', (m) => {
    if (m.request) call.write({ [m.request]: {} });
  });
  call.on('end', () => call.end());
};

interface Harness {
  server: RunningH2Server;
  address: string;
  client: grpc.Client;
  health: grpc.Client;
  /** What the server's handler saw, per stream. */
  seen: { md: CallMetadata; events: string[] }[];
  handler: { current: Handler };
}

const ProcessClient = grpc.makeGenericClientConstructor(referenceService(), EXT_PROC);
const HealthClient = grpc.makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');

async function harness(dir: string, name: string, transport: Transport): Promise<Harness> {
  const handler = { current: echo };
  const seen: Harness['seen'] = [];
  const server = await startH2Server(
    withTransport(
      {
        listen: `unix:${join(dir, `${name}.sock`)}`,
        maxMessageBytes: MAX,
        logger: pino({ level: 'silent' }),
        onStream(call, md) {
          const rec = { md, events: [] as string[] };
          seen.push(rec);
          call.on('cancelled', () => rec.events.push('cancelled'));
          call.on('error', (e) => rec.events.push(`error:${e.message}`));
          handler.current(call, md);
        },
      },
      transport,
    ),
    { '': 'SERVING', [EXT_PROC]: 'SERVING' },
  );
  const client = new ProcessClient(server.address, grpc.credentials.createInsecure());
  const health = new HealthClient(server.address, grpc.credentials.createInsecure());
  return { server, address: server.address, client, health, seen, handler: handler };
}

function open(
  h: Harness,
  md = new grpc.Metadata(),
  deadline?: number,
): grpc.ClientDuplexStream<object, Record<string, unknown>> {
  const process = (h.client as unknown as Record<string, (...a: unknown[]) => unknown>)['Process']!;
  return process.call(
    h.client,
    md,
    deadline === undefined ? {} : { deadline },
  ) as grpc.ClientDuplexStream<object, Record<string, unknown>>;
}

/** Sends messages, half-closes, collects the answers and the final status. */
function exchange(
  call: grpc.ClientDuplexStream<object, Record<string, unknown>>,
  messages: object[],
  halfClose = true,
): Promise<{ answers: Record<string, unknown>[]; status: grpc.StatusObject }> {
  return new Promise((resolve) => {
    const answers: Record<string, unknown>[] = [];
    call.on('data', (a: Record<string, unknown>) => answers.push(a));
    call.on('error', () => undefined);
    call.on('status', (status: grpc.StatusObject) => resolve({ answers, status }));
    for (const m of messages) call.write(m);
    if (halfClose) call.end();
  });
}

const headersMsg = (eos = false): object => ({
  request_headers: {
    headers: { headers: [{ key: ':path', raw_value: Buffer.from('/v1/chat') }] },
    end_of_stream: eos,
  },
});

function unary<T>(client: grpc.Client, method: string, req: object, deadline?: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!;
    fn.call(
      client,
      req,
      new grpc.Metadata(),
      deadline ? { deadline } : {},
      (err: Error | null, res: T) => (err ? reject(err) : resolve(res)),
    );
  });
}

const until = async (ok: () => boolean, ms = 2000): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
};

for (const transport of TRANSPORTS) {
  describe(`h2 ext_proc server (${transport}): grpc-js client`, () => {
    let dir: string;
    let h: Harness;
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'sluice-h2-'));
      h = await harness(dir, 'main', transport);
    });
    after(async () => {
      h.client.close();
      h.health.close();
      await h.server.shutdown(100);
      rmSync(dir, { recursive: true, force: true });
    });

    it('answers each message in order with the matching oneof, then OK in trailers', async () => {
      h.handler.current = echo;
      const md = new grpc.Metadata();
      md.set('x-sluice-filter', 'upstream');
      const r = await exchange(open(h, md), [
        headersMsg(),
        { request_body: { body: Buffer.from('{"model":"m"}'), end_of_stream: true } },
        { response_headers: { headers: { headers: [] } } },
        { response_body: { body: Buffer.alloc(0), end_of_stream: true } },
      ]);
      assert.equal(r.status.code, grpc.status.OK);
      assert.deepEqual(
        r.answers.map((a) => a.response),
        ['request_headers', 'request_body', 'response_headers', 'response_body'],
      );
      const seen = h.seen.at(-1)!;
      assert.deepEqual(seen.md.get('x-sluice-filter'), ['upstream']);
      assert.deepEqual(seen.md.get('absent'), []);
    });

    it('decodes a body split over many DATA frames, and messages packed into one', async () => {
      const got: ProcessingRequest[] = [];
      h.handler.current = (call) => {
        call.on('data', (m) => {
          got.push(m);
          call.write({ [m.request!]: {} });
        });
        call.on('end', () => call.end());
      };
      const big = Buffer.alloc(MAX - 100, 'x');
      const r = await exchange(open(h), [
        headersMsg(),
        { request_body: { body: big, end_of_stream: false } },
        { request_body: { body: Buffer.from('tail'), end_of_stream: true } },
      ]);
      assert.equal(r.status.code, grpc.status.OK);
      assert.equal(got.length, 3);
      assert.equal(got[1]!.request_body!.body!.length, big.length);
      assert.ok(got[1]!.request_body!.body!.equals(big));
      assert.equal(got[2]!.request_body!.body!.toString(), 'tail');
    });

    it('refuses a message over the limit with RESOURCE_EXHAUSTED and tells the handler', async () => {
      h.handler.current = echo;
      const r = await exchange(open(h), [{ request_body: { body: Buffer.alloc(MAX + 1) } }], false);
      assert.equal(r.status.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(r.status.details, /larger than max/);
      await until(() => h.seen.at(-1)!.events.some((e) => e.startsWith('error:')));
    });

    it('refuses an answer over the limit with RESOURCE_EXHAUSTED', async () => {
      h.handler.current = (call) =>
        call.on('data', () =>
          call.write({
            request_body: { response: { body_mutation: { body: Buffer.alloc(MAX + 10) } } },
          }),
        );
      const r = await exchange(open(h), [headersMsg()], false);
      assert.equal(r.status.code, grpc.status.RESOURCE_EXHAUSTED);
    });

    it('sends the handler status and message (percent-encoded) in a trailers-only answer', async () => {
      h.handler.current = (call) =>
        call.on('data', () =>
          (call as unknown as { end(c: number, m: string): void }).end(
            Status.INTERNAL,
            'bad — really',
          ),
        );
      const r = await exchange(open(h), [headersMsg()], false);
      assert.equal(r.status.code, grpc.status.INTERNAL);
      assert.equal(r.status.details, 'bad — really');
      assert.equal(r.answers.length, 0);
    });

    it('fails a message it cannot parse with INTERNAL', async () => {
      // A raw client: grpc-js would only send well-formed messages.
      const s = http2.connect('http://x', {
        path: h.address.slice('unix:'.length),
      } as http2.SecureClientSessionOptions);
      try {
        const st = s.request({
          ':method': 'POST',
          ':path': PROCESS_PATH,
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        const garbage = Buffer.from([0, 0, 0, 0, 3, 0x12, 0x05, 0x01]); // a field longer than the message
        st.end(garbage);
        const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve) => {
          st.on('response', (hd) => hd['grpc-status'] && resolve(hd));
          st.on('trailers', resolve);
          st.resume();
        });
        assert.equal(trailers['grpc-status'], String(Status.INTERNAL));
      } finally {
        s.close();
      }
    });

    it('refuses a compressed message with UNIMPLEMENTED and grpc-accept-encoding: identity', async () => {
      const s = http2.connect('http://x', {
        path: h.address.slice('unix:'.length),
      } as http2.SecureClientSessionOptions);
      try {
        const st = s.request({
          ':method': 'POST',
          ':path': PROCESS_PATH,
          'content-type': 'application/grpc',
          'grpc-encoding': 'gzip',
        });
        st.end(Buffer.from([1, 0, 0, 0, 1, 0]));
        const hd = await new Promise<http2.IncomingHttpHeaders>((resolve) => {
          st.on('response', (x) => x['grpc-status'] && resolve(x));
          st.on('trailers', resolve);
          st.resume();
        });
        assert.equal(hd['grpc-status'], String(Status.UNIMPLEMENTED));
        assert.equal(hd['grpc-accept-encoding'], 'identity');
      } finally {
        s.close();
      }
    });

    it(
      'reads an empty message whose prefix ends the DATA frame (a default HealthCheckRequest)',
      {
        timeout: 5000,
      },
      async () => {
        const s = http2.connect('http://x', {
          path: h.address.slice('unix:'.length),
        } as http2.SecureClientSessionOptions);
        try {
          const st = s.request({
            ':method': 'POST',
            ':path': '/grpc.health.v1.Health/Check',
            'content-type': 'application/grpc',
          });
          st.end(Buffer.from([0, 0, 0, 0, 0]));
          const chunks: Buffer[] = [];
          st.on('data', (c: Buffer) => chunks.push(c));
          const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve) =>
            st.on('trailers', resolve),
          );
          assert.equal(trailers['grpc-status'], '0');
          // SERVING (1), framed.
          assert.deepEqual([...Buffer.concat(chunks)], [0, 0, 0, 0, 2, 0x08, 1]);
        } finally {
          s.close();
        }
      },
    );

    it('answers a request that is not gRPC with HTTP 415', async () => {
      const s = http2.connect('http://x', {
        path: h.address.slice('unix:'.length),
      } as http2.SecureClientSessionOptions);
      try {
        const st = s.request({
          ':method': 'POST',
          ':path': PROCESS_PATH,
          'content-type': 'application/json',
        });
        st.end('{}');
        const hd = await new Promise<http2.IncomingHttpHeaders>((resolve) =>
          st.on('response', resolve),
        );
        assert.equal(hd[':status'], 415);
        st.resume();
      } finally {
        s.close();
      }
    });

    it('answers an unknown method with UNIMPLEMENTED', async () => {
      const Other = grpc.makeGenericClientConstructor(
        {
          Nope: {
            path: '/envoy.service.ext_proc.v3.ExternalProcessor/Nope',
            requestStream: false,
            responseStream: false,
            requestSerialize: (x: Buffer) => x,
            requestDeserialize: (x: Buffer) => x,
            responseSerialize: (x: Buffer) => x,
            responseDeserialize: (x: Buffer) => x,
          },
        },
        'x',
      );
      const c = new Other(h.address, grpc.credentials.createInsecure());
      try {
        await assert.rejects(
          unary(c, 'Nope', Buffer.alloc(0)),
          (e: grpc.ServiceError) => e.code === grpc.status.UNIMPLEMENTED,
        );
      } finally {
        c.close();
      }
    });

    it("ends a call past the client's deadline with DEADLINE_EXCEEDED and cancels the handler", async () => {
      h.handler.current = () => undefined; // never answers
      const r = await exchange(
        open(h, new grpc.Metadata(), Date.now() + 150),
        [headersMsg()],
        false,
      );
      assert.equal(r.status.code, grpc.status.DEADLINE_EXCEEDED);
      await until(() => h.seen.at(-1)!.events.includes('cancelled'));
    });

    it('tells the handler when the client cancels', async () => {
      h.handler.current = (call) => call.on('data', (m) => call.write({ [m.request!]: {} }));
      const call = open(h);
      const first = new Promise((resolve) => call.once('data', resolve));
      call.on('error', () => undefined);
      call.write(headersMsg());
      await first;
      call.cancel();
      await until(() => h.seen.at(-1)!.events.includes('cancelled'));
    });

    it('serves grpc.health.v1 Check (NOT_FOUND for an unknown service) and Watch', async () => {
      assert.deepEqual(await unary(h.health, 'Check', { service: EXT_PROC }), {
        status: 'SERVING',
      });
      assert.deepEqual(await unary(h.health, 'Check', { service: '' }), { status: 'SERVING' });
      await assert.rejects(
        unary(h.health, 'Check', { service: 'nope' }),
        (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND,
      );
      const watch = (
        h.health as unknown as Record<
          string,
          (...a: unknown[]) => grpc.ClientReadableStream<{ status: string }>
        >
      )['Watch']!.call(h.health, { service: EXT_PROC });
      const statuses: string[] = [];
      watch.on('data', (m: { status: string }) => statuses.push(m.status));
      watch.on('error', () => undefined);
      await until(() => statuses.length === 1);
      h.server.health.setStatus(EXT_PROC, 'NOT_SERVING');
      await until(() => statuses.length === 2);
      h.server.health.setStatus(EXT_PROC, 'SERVING');
      await until(() => statuses.length === 3);
      assert.deepEqual(statuses, ['SERVING', 'NOT_SERVING', 'SERVING']);
      watch.cancel();
    });
  });

  describe(`h2 ext_proc server (${transport}): shutdown`, () => {
    it('sends GOAWAY: open streams finish, new ones fail, the rest are cancelled at the deadline', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'sluice-h2-'));
      const h = await harness(dir, 'stop', transport);
      try {
        // A stream that finishes during the grace period, and one that never does.
        h.handler.current = (call) => {
          call.on('data', (m) => call.write({ [m.request!]: {} }));
          call.on('end', () => call.end());
        };
        const finishing = open(h);
        const f = exchange(finishing, [headersMsg()], false);
        await until(() => h.seen.length === 1);
        const stuck = open(h);
        const s = exchange(stuck, [headersMsg()], false);
        await until(() => h.seen.length === 2);
        const health = new Promise<string[]>((resolve) => {
          const w = (
            h.health as unknown as Record<
              string,
              (...a: unknown[]) => grpc.ClientReadableStream<{ status: string }>
            >
          )['Watch']!.call(h.health, { service: EXT_PROC });
          const got: string[] = [];
          w.on('data', (m: { status: string }) => got.push(m.status));
          w.on('error', () => resolve(got));
          w.on('status', () => resolve(got));
        });
        await new Promise((r) => setTimeout(r, 50));
        const stopped = h.server.shutdown(400);
        await new Promise((r) => setTimeout(r, 50));
        // The open stream still works after the GOAWAY.
        finishing.write({ request_body: { body: Buffer.from('x'), end_of_stream: true } });
        finishing.end();
        const fin = await f;
        assert.equal(fin.status.code, grpc.status.OK);
        assert.equal(fin.answers.length, 2);
        // A new call is refused: the server no longer accepts streams or connections.
        const late = await exchange(
          open(h, new grpc.Metadata(), Date.now() + 1000),
          [headersMsg()],
          false,
        );
        assert.notEqual(late.status.code, grpc.status.OK);
        await stopped;
        const st = await s;
        assert.notEqual(st.status.code, grpc.status.OK);
        await new Promise((r) => setTimeout(r, 200));
        console.error(JSON.stringify(h.seen.map((x) => x.events)));
        await until(() => h.seen[1]!.events.includes('cancelled'));
        assert.deepEqual(await health, ['SERVING', 'NOT_SERVING']);
      } finally {
        h.client.close();
        h.health.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

describe('h2 ext_proc server: codecs', () => {
  it('parses grpc-timeout as the spec writes it, and ignores malformed values', () => {
    assert.equal(parseTimeoutMs('100m'), 100);
    assert.equal(parseTimeoutMs('2S'), 2000);
    assert.equal(parseTimeoutMs('1H'), 3_600_000);
    assert.equal(parseTimeoutMs('5000u'), 5);
    assert.equal(parseTimeoutMs('123456789m'), undefined);
    assert.equal(parseTimeoutMs('10x'), undefined);
    assert.equal(parseTimeoutMs(undefined), undefined);
  });

  it('percent-encodes grpc-message', () => {
    assert.equal(encodeGrpcMessage('ok 100%'), 'ok 100%25');
    assert.equal(encodeGrpcMessage('é\n'), '%C3%A9%0A');
  });

  it('reads a HealthCheckRequest and refuses a truncated one', () => {
    assert.equal(decodeHealthRequest(Buffer.from([0x0a, 0x02, 0x61, 0x62])), 'ab');
    assert.equal(decodeHealthRequest(Buffer.alloc(0)), '');
    assert.throws(() => decodeHealthRequest(Buffer.from([0x0a, 0x05, 0x61])));
  });
});

describe('a closed call', () => {
  it('leaves nothing of its handler reachable from its node:http2 stream', async () => {
    // node:http2 keeps a closed stream's objects until a full collection (young collections see
    // its native handle as a root), so whatever the stream still points at is promoted: issue 16.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const kept: http2.ServerHttp2Stream[] = [];
    let state: WeakRef<object> | undefined;
    const server = http2.createServer();
    server.on('stream', (stream) => {
      kept.push(stream);
      const call = new H2Call(
        new NodeSink(stream),
        (b) => b,
        (m: object) => Buffer.from(JSON.stringify(m)),
        MAX,
        1000,
      );
      const handlerState = { parsed: new Array(1000).fill('x') };
      state = new WeakRef(handlerState);
      call.on('data', () => void handlerState.parsed.length);
      call.on('end', () => call.end());
      call.on('error', () => void handlerState.parsed.length);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const client = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const req = client.request({
        ':method': 'POST',
        ':path': PROCESS_PATH,
        'content-type': 'application/grpc',
      });
      req.end(Buffer.from([0, 0, 0, 0, 0]));
      req.resume();
      await new Promise((r) => req.on('close', r));
      while (!kept[0]?.closed) await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      gc();
      assert.equal(kept.length, 1);
      assert.equal(state?.deref(), undefined, 'the stream still holds the handler');
    } finally {
      client.close();
      server.close();
    }
  });
});
