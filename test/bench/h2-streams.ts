/**
 * Minimal reproduction: N concurrent ext_proc bidi streams on ONE grpc-js channel (one HTTP/2
 * connection), as Envoy opens them. Each stream sends request_headers, gets the answer, and
 * stays open until all N have answered; then every stream is half-closed.
 *
 *   node --import tsx test/bench/h2-streams.ts [N...]           (default 500 1000 2000 4000)
 *   H2_SERVER_OPTS='{"grpc.max_concurrent_streams":4294967295}' ...   extra grpc.Server options
 *   H2_CLIENT_OPTS='{...}' ...                                          extra channel options
 *   H2_TCP=1 ...                                                       TCP instead of unix socket
 *
 *   ... --resets 900 1100      K streams answered then cancelled (RST_STREAM) by the client
 *   ... --churn 1000 3         bench open loop (driver, chat-2k) at RATE req/s for SECONDS
 *   H2_CLOSE_GRACE_MS=60000    driver's half-close -> cancel delay in --churn (default 20)
 *   H2_SERVER_DEBUG=HTTP2SESSION   NODE_DEBUG_NATIVE for the server process only
 *
 * Finding: concurrency is not the limit (4000 open streams work). nghttp2 >= 1.57 (Node's)
 * ends a server session with GOAWAY(INTERNAL_ERROR) once the client has sent more than
 * 1000 RST_STREAMs plus 33 per second (the CVE-2023-44487 "rapid reset" token bucket).
 *
 * The server runs in a child process (so each side's errors and event loop are its own);
 * it prints its session/stream errors to stderr prefixed with "server:".
 */
import { fork, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unlinkSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { extProcService } from '../../extproc/wire/proto.js';

type Msg = { request?: string } & Record<string, unknown>;

function parseOpts(v: string | undefined): Record<string, unknown> {
  return v ? (JSON.parse(v) as Record<string, unknown>) : {};
}

function runServer(target: string): void {
  if (target.startsWith('unix:')) {
    try {
      unlinkSync(target.slice(5));
    } catch {
      // none
    }
  }
  const opts = parseOpts(process.env.H2_SERVER_OPTS);
  const server = new grpc.Server(opts);
  let open = 0;
  let errors = 0;
  server.addService(extProcService(), {
    Process: (call: grpc.ServerDuplexStream<Msg, object>) => {
      open++;
      call.on('data', (m: Msg) => {
        if (m.request) call.write({ [m.request]: {} });
      });
      call.on('end', () => call.end());
      call.on('close', () => open--);
      call.on('error', (e: Error) => {
        if (errors++ < 3) process.stderr.write(`server: stream error: ${e.message}\n`);
      });
    },
  });
  server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    process.send?.({ ready: true, port });
  });
  process.on('message', (m: { report?: boolean }) => {
    if (m.report) process.send?.({ open, errors });
  });
}

function startServer(target: string): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(new URL(import.meta.url).pathname, ['--server', target], {
    execArgv: ['--import', 'tsx'],
    // H2_SERVER_DEBUG=HTTP2SESSION sets NODE_DEBUG_NATIVE for the server process only.
    env: process.env.H2_SERVER_DEBUG
      ? { ...process.env, NODE_DEBUG_NATIVE: process.env.H2_SERVER_DEBUG }
      : process.env,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m: { port: number }) => resolve({ child, port: m.port }));
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
}

const REQ: Msg = {
  request_headers: {
    headers: {
      headers: [
        { key: ':method', raw_value: Buffer.from('POST') },
        { key: ':path', raw_value: Buffer.from('/v1/chat/completions') },
        { key: ':authority', raw_value: Buffer.from('gw') },
      ],
    },
    end_of_stream: false,
  },
};

async function trial(target: string, n: number): Promise<string> {
  const Ctor = grpc.makeGenericClientConstructor(extProcService(), 'ExternalProcessor');
  const client = new Ctor(target, grpc.credentials.createInsecure(), {
    'grpc.enable_retries': 0,
    'grpc.enable_channelz': 0,
    ...parseOpts(process.env.H2_CLIENT_OPTS),
  }) as unknown as grpc.Client & {
    Process(): grpc.ClientDuplexStream<Msg, Msg>;
  };
  await new Promise<void>((res, rej) =>
    client.waitForReady(Date.now() + 5000, (e) => (e ? rej(e) : res())),
  );
  const t0 = performance.now();
  const calls: grpc.ClientDuplexStream<Msg, Msg>[] = [];
  const errors = new Map<string, number>();
  let answered = 0;
  let firstErrAt = -1;
  await new Promise<void>((resolve) => {
    let settled = 0;
    const settle = (): void => {
      if (++settled === n) resolve();
    };
    for (let i = 0; i < n; i++) {
      const call = client.Process();
      calls.push(call);
      let done = false;
      call.once('data', () => {
        answered++;
        if (!done) {
          done = true;
          settle();
        }
      });
      call.on('error', (e: grpc.ServiceError) => {
        const k = `${grpc.status[e.code]}: ${e.details}`;
        errors.set(k, (errors.get(k) ?? 0) + 1);
        if (firstErrAt < 0) firstErrAt = i;
        if (!done) {
          done = true;
          settle();
        }
      });
      call.write(REQ);
    }
  });
  const ms = performance.now() - t0;
  // All answered streams are open at once here; now close them.
  await Promise.all(
    calls.map(
      (c) =>
        new Promise<void>((res) => {
          c.on('status', () => res());
          c.on('error', () => res());
          c.end();
        }),
    ),
  );
  client.close();
  const errs = [...errors].map(([k, v]) => `${v}x ${k}`).join('; ');
  return `N=${n}: answered ${answered}/${n} in ${ms.toFixed(0)} ms${errs ? `  ERRORS: ${errs}` : ''}`;
}

/**
 * K streams, each answered and then cancelled by the client (one RST_STREAM(CANCEL) each, as
 * the driver's close grace or Envoy's reset sends), 100 at a time, then one more exchange.
 */
async function resets(target: string, k: number): Promise<string> {
  const Ctor = grpc.makeGenericClientConstructor(extProcService(), 'ExternalProcessor');
  const client = new Ctor(target, grpc.credentials.createInsecure(), {
    'grpc.enable_retries': 0,
    ...parseOpts(process.env.H2_CLIENT_OPTS),
  }) as unknown as grpc.Client & { Process(): grpc.ClientDuplexStream<Msg, Msg> };
  const errors = new Map<string, number>();
  const one = (cancel: boolean): Promise<void> =>
    new Promise((res) => {
      const call = client.Process();
      call.on('error', (e: grpc.ServiceError) => {
        if (e.code !== grpc.status.CANCELLED) {
          const key = `${grpc.status[e.code]}: ${e.details}`;
          errors.set(key, (errors.get(key) ?? 0) + 1);
        }
        res();
      });
      call.once('data', () => {
        if (cancel) call.cancel();
        else call.end();
      });
      call.on('status', () => res());
      call.write(REQ);
    });
  const t0 = performance.now();
  for (let i = 0; i < k; i += 100)
    await Promise.all(Array.from({ length: Math.min(100, k - i) }, () => one(true)));
  const ms = performance.now() - t0;
  await one(false);
  client.close();
  const errs = [...errors].map(([e, v]) => `${v}x ${e}`).join('; ');
  return `resets K=${k} in ${ms.toFixed(0)} ms: ${errs ? `ERRORS: ${errs}` : 'no errors'}`;
}

/** Bench-like churn: the open loop of test/bench with the chat-2k payload (driver client). */
async function churn(target: string, rate: number, seconds: number): Promise<string> {
  const { ExtProcClient } = await import('../../operator/envoy-sim/ext-proc/index.js');
  const { openLoop } = await import('./scenarios.js');
  const pl = await import('./payloads.js');
  const client = new ExtProcClient(target, {
    // H2_CLOSE_GRACE_MS: the driver's half-close -> cancel (RST_STREAM) delay, default 20.
    closeGraceMs: Number(process.env.H2_CLOSE_GRACE_MS ?? 20),
    channelOptions: {
      'grpc.enable_retries': 0,
      'grpc.enable_channelz': 0,
      ...(parseOpts(process.env.H2_CLIENT_OPTS) as grpc.ChannelOptions),
    },
  });
  await client.connect();
  const body = pl.chatRequestBody(2048);
  const res = pl.chatResponseBody();
  const p = {
    reqHeaders: pl.requestHeaders(body),
    reqBody: body,
    resHeaders: pl.jsonResponseHeaders(res),
    resChunks: [res],
    sse: false,
    upstream: true,
  };
  const r = await openLoop(
    { name: 'floor', client, streamedFromStart: true },
    p,
    rate,
    seconds,
    Number(process.env.H2_CAP ?? 1e9),
  );
  client.close();
  return `churn ${rate}/s x ${seconds}s: completed ${r.completed}/${r.scheduled}, errors ${r.rec.errors}, dropped ${r.dropped}, maxInFlight ${r.maxInFlight}${r.rec.firstError ? `  FIRST ERROR: ${r.rec.firstError}` : ''}`;
}

async function main(): Promise<void> {
  const churnIdx = process.argv.indexOf('--churn');
  const ns =
    churnIdx >= 0 || process.argv.includes('--resets') ? [] : process.argv.slice(2).map(Number);
  const target = process.env.H2_TCP
    ? '127.0.0.1:0'
    : `unix:${join(tmpdir(), `h2s-${process.pid}.sock`)}`;
  const { child, port } = await startServer(target);
  const dial = target.startsWith('unix:') ? target : `127.0.0.1:${port}`;
  try {
    const resetIdx = process.argv.indexOf('--resets');
    if (resetIdx >= 0) {
      for (const k of process.argv.slice(resetIdx + 1).map(Number)) {
        process.stdout.write(`${await resets(dial, k)}\n`);
      }
      return;
    }
    if (churnIdx >= 0) {
      const [rate, secs] = process.argv.slice(churnIdx + 1).map(Number);
      process.stdout.write(`${await churn(dial, rate ?? 2000, secs ?? 3)}\n`);
      return;
    }
    for (const n of ns.length ? ns : [500, 1000, 2000, 4000]) {
      process.stdout.write(`${await trial(dial, n)}\n`);
    }
  } finally {
    child.kill('SIGTERM');
  }
}

if (process.argv[2] === '--server') runServer(process.argv[3]!);
else
  main().catch((e: unknown) => {
    process.stderr.write(`${String(e)}\n`);
    process.exit(1);
  });
