// `sluice run` stops like a gateway should (issue 11 item 10): on SIGTERM it accepts no new
// connection, lets a response stream in flight finish, then exits 0; a second signal stops it at
// once. The real CLI runs as a child process, so the signals are real.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import { freePort, serviceDocs, until } from './harness.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const WORDS = 'one two three four five six seven eight nine ten';

interface Child {
  proc: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

async function startRun(dir: string, port: number): Promise<Child> {
  const proc = spawn(
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
      'off',
      '--emulator',
      '--no-watch',
      '--shutdown-grace-ms',
      '20000',
      '--log-level',
      'warn',
    ],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  await until(() => err.includes('sluice run: gateway on') || proc.exitCode !== null, 60_000);
  assert.equal(proc.exitCode, null, err);
  return { proc, stderr: () => err, exited };
}

/** A streaming chat call; resolves its reader once the first bytes arrived. */
async function openStream(port: number): Promise<ReadableStreamDefaultReader<Uint8Array>> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'slow-model',
      stream: true,
      messages: [{ role: 'user', content: WORDS }],
    }),
  });
  assert.equal(res.status, 200);
  return res.body!.getReader();
}

async function readAll(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  let text = '';
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text;
    text += decoder.decode(value, { stream: true });
  }
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

describe('e2e: sluice run on SIGTERM', () => {
  let mock: MockProvider;
  let dir: string;
  const children: Child[] = [];

  before(async () => {
    // A word every 200 ms: the stream is in flight for about two seconds.
    mock = await startMockProvider({ name: 'slow', defaults: { chunkDelayMs: 200 } });
    dir = await mkdtemp(join(tmpdir(), 'sluice-shutdown-'));
    const route = {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name: 'slow', namespace: 'e2e' },
      spec: {
        models: [{ exact: 'slow-model' }],
        backends: [
          {
            name: 'mock',
            provider: 'openai-compatible',
            endpoint: { service: { name: 'mock-slow', port: 80 } },
          },
        ],
      },
    };
    const docs = [route, ...serviceDocs('mock-slow', mock.port)];
    await writeFile(join(dir, 'gateway.yaml'), docs.map((d) => stringify(d)).join('---\n'));
  });
  after(async () => {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    await mock?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses new connections, lets the stream in flight finish, then exits 0', async () => {
    const port = await freePort();
    const child = await startRun(dir, port);
    children.push(child);
    const reader = await openStream(port);
    child.proc.kill('SIGTERM');
    await until(() => child.stderr().includes('draining'), 10_000);
    const body = readAll(reader);
    // Draining: the listener is closed to newcomers while the stream goes on.
    assert.equal(await refused(port), true, 'a new connection is refused while draining');
    const text = await body;
    for (const w of WORDS.split(' ')) assert.ok(text.includes(w), `"${w}" arrived: ${text}`);
    assert.match(text, /data: \[DONE\]/);
    assert.equal(await child.exited, 0, child.stderr());
  });

  it('stops at once on a second signal', async () => {
    const port = await freePort();
    const child = await startRun(dir, port);
    children.push(child);
    const reader = await openStream(port);
    child.proc.kill('SIGTERM');
    await until(() => child.stderr().includes('draining'), 10_000);
    child.proc.kill('SIGTERM');
    assert.equal(await child.exited, 1, child.stderr());
    // Cut, not drained: the stream (two seconds of words) never reached its end.
    const text = await readAll(reader).catch(() => '');
    assert.doesNotMatch(text, /data: \[DONE\]/);
  });
});
