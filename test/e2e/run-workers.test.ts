// `sluice run --workers 2` (the real CLI, a child process): the extproc runs as a primary with two
// worker processes behind its socket, configured from the YAML over the in-process ADS, with one
// budget for both. Requests come through the gateway (the emulator holds one connection to the
// extproc, so they land on one worker) and straight onto the extproc socket over a connection of
// the test's own (node:cluster hands it to the other worker): the access log's `worker` field
// shows both served, and exactly the per-minute limit passes from the two together.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { main as keysMain } from '../../operator/keys/main.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import {
  ExtProcClient,
  ExtProcFilter,
  type HeaderList,
} from '../../operator/envoy-sim/ext-proc/index.js';
import { ROUTER } from '../conformance/harness.js';
import { freePort, serviceDocs, until } from './harness.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const MODEL = 'gpt-workers';
const RPM = 25;
const BURST = 40;

function chat(text: string): Buffer {
  return Buffer.from(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: text }] }));
}

function requestHeaders(body: Buffer, key: string): HeaderList {
  return [
    [':method', 'POST'],
    [':path', '/v1/chat/completions'],
    [':scheme', 'http'],
    [':authority', 'gateway.local'],
    ['content-type', 'application/json'],
    ['content-length', String(body.length)],
    ['authorization', `Bearer ${key}`],
  ];
}

describe('e2e: sluice run --workers 2', () => {
  let mock: MockProvider;
  let openGate: () => void = () => undefined;
  let dir: string;
  let tmp: string;
  let proc: ChildProcess | undefined;
  let port: number;
  let adminPort: number;
  let key: string;
  let out = '';
  let err = '';
  const clients: ExtProcClient[] = [];

  const accessLines = (): Record<string, unknown>[] =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l['log'] === 'access');

  before(async () => {
    // Admitted requests are held at the provider until every request has been judged.
    const gate = new Promise<void>((r) => (openGate = r));
    mock = await startMockProvider({ name: 'workers', defaults: { hold: gate } });
    dir = await mkdtemp(join(tmpdir(), 'sluice-run-workers-'));
    // sluice run keeps the extproc socket in a private directory under TMPDIR: the test's own.
    tmp = await mkdtemp(join(tmpdir(), 'sluice-run-workers-tmp-'));
    let created = '';
    const code = await keysMain(
      ['create', '--consumer', 'app', '--team', 'ops', '--file', join(dir, 'keys.yaml'), '--json'],
      { out: (s) => (created += s), err: (s) => (err += s) },
    );
    assert.equal(code, 0, err);
    key = (JSON.parse(created) as { key: string }).key;
    const docs = [
      {
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'AIRoute',
        metadata: { name: 'workers', namespace: 'e2e' },
        spec: {
          models: [{ exact: MODEL }],
          backends: [
            {
              name: 'mock',
              provider: 'openai-compatible',
              endpoint: { service: { name: 'mock-workers', port: 80 } },
            },
          ],
        },
      },
      {
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'AIPolicy',
        metadata: { name: 'limits', namespace: 'e2e' },
        spec: {
          targetRefs: [{ name: 'workers' }],
          consumers: { required: true, keys: {} },
          limits: { rules: [{ name: 'rpm', per: ['consumer'], requestsPerMinute: RPM }] },
        },
      },
      ...serviceDocs('mock-workers', mock.port),
    ];
    await writeFile(join(dir, 'gateway.yaml'), docs.map((d) => stringify(d)).join('---\n'));
    port = await freePort();
    adminPort = await freePort();
    proc = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'operator/cli.ts',
        'run',
        '-f',
        dir,
        '--port',
        String(port),
        '--admin',
        `127.0.0.1:${adminPort}`,
        '--emulator',
        '--no-watch',
        '--workers',
        '2',
        '--shutdown-grace-ms',
        '5000',
      ],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, TMPDIR: tmp, SLUICE_REDIS_URL: '' },
      },
    );
    proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    await until(() => err.includes('sluice run: gateway on') || proc!.exitCode !== null, 90_000);
    assert.equal(proc.exitCode, null, err);
  });

  after(async () => {
    openGate();
    for (const c of clients) c.close();
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await mock?.close();
    await rm(dir, { recursive: true, force: true });
    await rm(tmp, { recursive: true, force: true });
  });

  it('runs two workers behind the socket, ready only when both serve the config', async () => {
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
    assert.equal(ready.status, 200);
    // Each worker's own log reaches the primary's stdout through its pipe, written within a
    // second (the access log's buffered destination), so it may trail the readiness answer.
    const started = () =>
      out.split('\n').filter((l) => l.includes('"event":"worker_started"')).length;
    await until(() => started() >= 2, 10_000);
    assert.equal(started(), 2, out);
  });

  it('spends one budget: exactly the limit passes from both workers at once', async () => {
    // A per-minute bucket: the burst must not straddle a minute, or two windows would admit.
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 15_000) await new Promise((r) => setTimeout(r, left + 500));
    const [work] = (await readdir(tmp)).filter((d) => d.startsWith('sluice-'));
    assert.ok(work, 'the run keeps its extproc socket under TMPDIR');
    const direct = new ExtProcClient(`unix:${join(tmp, work, 'extproc.sock')}`, {
      channelOptions: { 'grpc.enable_retries': 0, 'grpc.use_local_subchannel_pool': 1 },
    });
    clients.push(direct);
    await direct.connect();

    // Half through the gateway (held at the provider once admitted), half as router phases on
    // the test's connection, whose streams stay open until every request has been judged: a
    // stream closed before its request reached a provider gives its request back to the bucket.
    const viaGateway = Array.from({ length: BURST / 2 }, (_, i) =>
      fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: chat(`gateway ${i}`),
      }),
    );
    const filters = Array.from({ length: BURST / 2 }, () => new ExtProcFilter(direct, ROUTER));
    const routed = await Promise.all(
      filters.map((f, i) => {
        const body = chat(`direct ${i}`);
        return f.runRequest(requestHeaders(body, key), [body]);
      }),
    );
    let refusedViaGateway = 0;
    const answered = viaGateway.map((p) =>
      p.then(async (res) => {
        if (res.status === 429) refusedViaGateway++;
        await res.arrayBuffer();
        return res.status;
      }),
    );
    // Every gateway request is judged: refused (429) or held at the provider.
    await until(() => refusedViaGateway + mock.requests.length === BURST / 2, 60_000);
    const passedDirect = routed.filter((r) => r.kind === 'continue').length;
    const refusedDirect = routed.filter((r) => r.kind === 'local-reply' && r.status === 429).length;
    const passed = passedDirect + mock.requests.length;
    assert.equal(passed, RPM, 'no double spend across workers');
    assert.equal(refusedDirect + refusedViaGateway, BURST - RPM);
    openGate();
    const statuses = await Promise.all(answered);
    assert.equal(statuses.filter((s) => s === 200).length, mock.requests.length);
    for (const f of filters) f.close();

    // Both workers judged part of the burst (the refusals are in the access log at once).
    const workers = await until(() => {
      const w = new Set(accessLines().map((l) => l['worker']));
      return w.size === 2 ? w : undefined;
    }, 20_000);
    assert.deepEqual([...workers].sort(), [1, 2]);
  });
});
