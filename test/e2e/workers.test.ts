// `sluice extproc --workers 2` as production runs it (a child process, node:cluster, one socket):
// budgets, the vault and the cache are one state for both workers, a request whose upstream
// attempt reaches the other worker is served, config changes reach both, /metrics adds them up,
// a worker that dies is replaced, and SIGTERM drains both before the primary exits.
//
// Two driver connections stand in for two Envoy worker threads: node:cluster's primary hands
// accepted connections to its workers in turn, so they land on different workers (the access
// log's `worker` field proves which).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import {
  ExtProcClient,
  ExtProcFilter,
  type Continued,
  type HeaderList,
  type PhaseResult,
} from '../../operator/envoy-sim/ext-proc/index.js';
import { CONFIG, ROUTER, upstreamFilter } from '../conformance/harness.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const KEY = 'sk-workers-test-key';
/** A consumer of its own for the budget burst: its bucket starts empty. */
const BURST_KEY = 'sk-workers-burst-key';
const MODEL = 'gpt-4o-mini-governed';
const CLUSTER = 'sluice/backend/openai';
const RPM = 25;

function config(version: string, extraModel?: string): string {
  const doc = parseYaml(CONFIG) as {
    version: string;
    routes: Record<string, unknown>[];
    consumers?: object[];
    policies?: object[];
  };
  doc.version = version;
  doc.consumers = [
    { name: 'bot', team: 'ops', keyHashes: [createHash('sha256').update(KEY).digest('hex')] },
    {
      name: 'burst',
      team: 'ops',
      keyHashes: [createHash('sha256').update(BURST_KEY).digest('hex')],
    },
  ];
  doc.policies = [
    {
      name: 'gov',
      identity: { keys: {} },
      limits: { rules: [{ name: 'rpm', per: ['consumer'], requestsPerMinute: RPM }] },
    },
  ];
  doc.routes.unshift({
    name: 'governed',
    models: [{ exact: MODEL }, ...(extraModel ? [{ exact: extraModel }] : [])],
    backends: [{ name: 'openai' }],
    policy: { name: 'pii', masking: {} },
    governance: 'gov',
  });
  return stringifyYaml(doc);
}

function headers(body: Buffer, session?: string, key = KEY): HeaderList {
  return [
    [':method', 'POST'],
    [':path', '/v1/chat/completions'],
    [':scheme', 'http'],
    [':authority', 'gateway.local'],
    ['content-type', 'application/json'],
    ['content-length', String(body.length)],
    ['authorization', `Bearer ${key}`],
    ...(session ? ([['x-sluice-session', session]] as HeaderList) : []),
  ];
}

function chat(text: string, model = MODEL): Buffer {
  return Buffer.from(JSON.stringify({ model, messages: [{ role: 'user', content: text }] }));
}

function answer(text: string): { headers: HeaderList; body: Buffer } {
  const body = Buffer.from(
    JSON.stringify({
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 1,
      model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
    }),
  );
  return {
    headers: [
      [':status', '200'],
      ['content-type', 'application/json'],
      ['content-length', String(body.length)],
    ],
    body,
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let dir: string;
let cfgPath: string;
let adminPort: number;
let socket: string;
let proc: ChildProcess;
const out: string[] = [];
const clients: ExtProcClient[] = [];

function lines(): Record<string, unknown>[] {
  return out
    .join('')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function metrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
}

async function ready(): Promise<boolean | undefined> {
  const r = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
  return r.status === 200 ? true : undefined;
}

/**
 * A connection of its own: another Envoy worker thread. (grpc-js shares one connection between
 * channels to the same target unless each has a local subchannel pool.)
 */
async function connect(): Promise<ExtProcClient> {
  const c = new ExtProcClient(socket, {
    channelOptions: { 'grpc.enable_retries': 0, 'grpc.use_local_subchannel_pool': 1 },
  });
  await c.connect();
  clients.push(c);
  return c;
}

function continued(r: PhaseResult, what: string): Continued {
  if (r.kind !== 'continue') assert.fail(`${what}: ${r.status} ${r.body.toString()}`);
  return r;
}

/** The router phase on `routerConn`, the upstream attempt on `upstreamConn`. */
async function request(
  routerConn: ExtProcClient,
  upstreamConn: ExtProcClient,
  body: Buffer,
  session?: string,
) {
  const router = new ExtProcFilter(routerConn, ROUTER);
  const routed = await router.runRequest(headers(body, session), [body]);
  if (routed.kind !== 'continue') return { router, routed, upstream: undefined };
  const up = new ExtProcFilter(upstreamConn, upstreamFilter(CLUSTER));
  const upstream = await up.runRequest(
    routed.headers,
    routed.hasBody ? [routed.body] : [],
    undefined,
    {
      dataWithHeaders: true,
    },
  );
  up.close();
  return { router, routed, upstream };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-workers-'));
  cfgPath = join(dir, 'extproc.yaml');
  writeFileSync(cfgPath, config('v1'));
  adminPort = await freePort();
  socket = `unix:${join(dir, 'extproc.sock')}`;
  proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'operator/cli.ts'),
      'extproc',
      '--config',
      cfgPath,
      '--listen',
      socket,
      '--admin',
      `127.0.0.1:${adminPort}`,
      '--workers',
      '2',
      '--shutdown-grace-ms',
      '5000',
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SLUICE_REDIS_URL: '' } },
  );
  proc.stdout!.on('data', (c: Buffer) => out.push(c.toString('utf8')));
  proc.stderr!.on('data', (c: Buffer) => out.push(c.toString('utf8')));
  await until('the extproc is ready', ready, 60_000);
});

after(() => {
  for (const c of clients) c.close();
  if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('sluice extproc --workers 2', () => {
  let a: ExtProcClient;
  let b: ExtProcClient;

  it('spreads connections over both workers', async () => {
    a = await connect();
    b = await connect();
    const one = await request(a, a, chat('hello'));
    const two = await request(b, b, chat('hello'));
    continued(one.upstream!, 'a');
    continued(two.upstream!, 'b');
    await one.router.runResponse(answer('hi').headers, [answer('hi').body]);
    await two.router.runResponse(answer('hi').headers, [answer('hi').body]);
    const workers = await until('access lines of both requests', () => {
      const w = new Set(
        lines()
          .filter((l) => l['log'] === 'access')
          .map((l) => l['worker']),
      );
      return Promise.resolve(w.size === 2 ? w : undefined);
    });
    assert.deepEqual([...workers].sort(), [1, 2]);
  });

  it('spends one budget: exactly the limit passes from both workers at once', async () => {
    // A per-minute bucket: the burst must not straddle a minute, or two windows would admit.
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 10_000) await new Promise((r) => setTimeout(r, left + 500));
    // Every stream stays open until all 40 are answered: a stream that ends before its request
    // reached a provider gives its request back to the bucket (attempts never made are not
    // charged), which would let one more through and make "exactly the limit" a race.
    const filters = Array.from(
      { length: 40 },
      (_, i) => new ExtProcFilter(i % 2 === 0 ? a : b, ROUTER),
    );
    const tries = await Promise.all(
      filters.map((f, i) => {
        const body = chat(`request ${i}`);
        return f.runRequest(headers(body, undefined, BURST_KEY), [body]);
      }),
    );
    for (const f of filters) f.close();
    const passed = tries.filter((r) => r.kind === 'continue').length;
    const refused = tries.filter((r) => r.kind === 'local-reply' && r.status === 429).length;
    assert.equal(passed, RPM, 'no double spend across workers');
    assert.equal(refused, 40 - RPM);
  });

  it('numbers placeholders once for the conversation, whichever worker masks', async () => {
    const session = 'conv-workers-1';
    // The minute's budget is spent; the next config version raises the limit (a config change
    // reaches both workers: checked here by the version gauge and readiness).
    writeFileSync(
      cfgPath,
      config('v2').replace(`requestsPerMinute: ${RPM}`, 'requestsPerMinute: 100000'),
    );
    await until('v2 on every worker', async () =>
      (await metrics()).includes('sluice_config_info{version="v2"} 1') && (await ready())
        ? true
        : undefined,
    );
    const first = await request(a, a, chat('Write to ada@example.com please.'), session);
    const sent1 = continued(first.upstream!, 'first').body.toString();
    assert.match(sent1, /\[EMAIL_1\]/);
    assert.ok(!sent1.includes('ada@example.com'));
    await first.router.runResponse(answer('ok').headers, [answer('ok').body]);

    const second = await request(b, b, chat('Now bob@example.com and ada@example.com.'), session);
    const sent2 = continued(second.upstream!, 'second').body.toString();
    assert.match(sent2, /\[EMAIL_2\] and \[EMAIL_1\]/, sent2);
    const reply = answer('Sent to [EMAIL_1] and [EMAIL_2].');
    const res = continued(await second.router.runResponse(reply.headers, [reply.body]), 'reply');
    assert.match(res.body.toString(), /Sent to ada@example\.com and bob@example\.com\./);
  });

  it('serves an upstream attempt that reaches the other worker than its router phase', async () => {
    const r = await request(a, b, chat('cross the workers'));
    const up = continued(r.upstream!, 'upstream on the other worker');
    assert.equal(up.headers.find((h) => h[0] === ':path')?.[1], '/v1/chat/completions');
    const res = continued(
      await r.router.runResponse(answer('fine').headers, [answer('fine').body]),
      'response',
    );
    assert.match(res.body.toString(), /fine/);
    assert.match(await metrics(), /sluice_extproc_cross_worker_attempts_total 1/);
  });

  it('serves a config change on every worker', async () => {
    writeFileSync(
      cfgPath,
      config('v3', 'gpt-4o-mini-new').replace(
        `requestsPerMinute: ${RPM}`,
        'requestsPerMinute: 100000',
      ),
    );
    await until('v3 on every worker', async () =>
      (await metrics()).includes('sluice_config_info{version="v3"} 1') && (await ready())
        ? true
        : undefined,
    );
    for (const c of [a, b]) {
      const r = await request(c, c, chat('new model', 'gpt-4o-mini-new'));
      continued(r.upstream!, 'the model v3 added');
      r.router.close();
    }
  });

  it('adds up metrics over the workers, and keeps per-config gauges at 1', async () => {
    const sum = (text: string) =>
      [...text.matchAll(/^sluice_requests_total\{[^}]*\} (\d+)/gm)].reduce(
        (n, m) => n + Number(m[1]),
        0,
      );
    // Workers buffer their log lines (up to a second): wait until every line is out.
    const text = await until('every access line written', async () => {
      const t = await metrics();
      return sum(t) === lines().filter((l) => l['log'] === 'access').length ? t : undefined;
    });
    assert.ok(sum(text) > 0);
    assert.match(text, /^sluice_config_info\{version="v3"\} 1$/m);
    assert.match(text, /^process_cpu_seconds_total /m);
  });

  it('replaces a worker that dies', async () => {
    const started = lines().filter((l) => l['event'] === 'worker_started');
    const victim = started.find((l) => l['worker'] === 2)!;
    process.kill(Number(victim['pid']), 'SIGKILL');
    await until('the primary notices', () =>
      Promise.resolve(lines().some((l) => l['event'] === 'worker_exited') ? true : undefined),
    );
    await until('a new worker 2 serves', async () =>
      lines().filter((l) => l['event'] === 'worker_started' && l['worker'] === 2).length === 2 &&
      (await ready())
        ? true
        : undefined,
    );
    const c = await connect();
    const d = await connect();
    for (const conn of [c, d])
      continued((await request(conn, conn, chat('again'))).upstream!, 'after restart');
  });

  it('drains both workers on SIGTERM: an open request finishes, then the primary exits 0', async () => {
    const open = new ExtProcFilter(a, ROUTER);
    const body = chat('in flight at shutdown');
    continued(await open.runRequest(headers(body), [body]), 'in flight');
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    proc.kill('SIGTERM');
    await until('draining', async () =>
      (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 503 ? true : undefined,
    );
    const res = await open.runResponse(answer('late').headers, [answer('late').body]);
    continued(res, 'the open request after SIGTERM');
    assert.equal(await exited, 0);
    const events = lines().map((l) => l['event']);
    assert.equal(events.filter((e) => e === 'worker_stopped').length, 2);
    assert.ok(events.includes('stopped'));
  });
});
