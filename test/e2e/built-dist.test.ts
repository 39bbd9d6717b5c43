// The build output runs as the image runs it: `npm run build`'s dist/ next to package.json,
// proto/ and a node_modules holding only the production dependencies (those package-lock.json
// does not mark dev), so nothing from test/ or a dev dependency can be reached. `sluice run` on
// the quickstart must start with the Envoy emulator and answer a request through it.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEMO_KEY } from '../../examples/quickstart/quickstart.js';

const REPO = new URL('../../', import.meta.url).pathname;

/** node_modules with the production dependency tree only, as `npm ci --omit=dev` installs it. */
function productionModules(into: string): number {
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean }>;
  };
  let n = 0;
  for (const [path, meta] of Object.entries(lock.packages)) {
    const name = path.slice('node_modules/'.length);
    // Nested copies come with their (linked) parent; dev-only packages stay out.
    if (!path.startsWith('node_modules/') || name.includes('/node_modules/') || meta.dev) continue;
    mkdirSync(dirname(join(into, name)), { recursive: true });
    symlinkSync(join(REPO, path), join(into, name));
    n++;
  }
  return n;
}

function run(cmd: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}:\n${out}`));
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

void describe('e2e: the built product (dist/, production dependencies only)', () => {
  let app: string;
  let child: ChildProcess | undefined;

  before(async () => {
    app = mkdtempSync(join(tmpdir(), 'sluice-dist-'));
    copyFileSync(join(REPO, 'package.json'), join(app, 'package.json'));
    symlinkSync(join(REPO, 'proto'), join(app, 'proto'));
    assert.ok(productionModules(join(app, 'node_modules')) > 10);
    // `npm run build`, into the temporary app instead of the repository's dist/.
    const tsc = join(REPO, 'node_modules/typescript/bin/tsc');
    await run(
      process.execPath,
      [tsc, '-p', 'tsconfig.build.json', '--outDir', join(app, 'dist')],
      REPO,
    );
  });

  after(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    rmSync(app, { recursive: true, force: true });
  });

  void it('sluice run -f examples/quickstart starts with the emulator and answers', async () => {
    const port = await freePort();
    child = spawn(
      process.execPath,
      [
        'dist/operator/cli.js',
        'run',
        '-f',
        join(REPO, 'examples/quickstart'),
        '--mock-provider',
        '--emulator',
        '--no-watch',
        '--port',
        String(port),
        '--admin',
        'off',
        '--log-level',
        'warn',
      ],
      // No ENVOY_BIN, no PATH envoy: the emulator is the data plane either way (--emulator).
      { cwd: app, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '' } },
    );
    // The banner goes to stderr, the (JSON) log to stdout: both end up in a failure's message.
    let output = '';
    const started = new Promise<void>((resolve, reject) => {
      child!.stderr!.on('data', (d: Buffer) => {
        output += d.toString();
        if (output.includes('sluice run: gateway on')) resolve();
      });
      child!.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      child!.once('exit', (code) => reject(new Error(`exited with ${code}:\n${output}`)));
    });
    await started;
    assert.match(output, /data plane: envoy-sim, the Envoy emulator/);

    const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${DEMO_KEY}` },
      body: JSON.stringify({ model: 'mock-model', messages: [{ role: 'user', content: 'hi' }] }),
    });
    const body = (await res.json()) as { choices?: { message?: { content?: string } }[] };
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.match(body.choices?.[0]?.message?.content ?? '', /^echo: /);

    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0, output);
  });
});
