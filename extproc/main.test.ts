// `sluice extproc` as a process: its log lines reach stdout while it runs, not only at shutdown
// (the log is buffered for throughput, and a quiet extproc would otherwise show nothing in
// `kubectl logs` until it stopped).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

const children: ReturnType<typeof spawn>[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

it('writes its start-up lines to stdout while it keeps running', async () => {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'operator/cli.ts',
      'extproc',
      '--config',
      'examples/extproc.yaml',
      '--listen',
      '127.0.0.1:0',
      '--admin',
      'off',
      '--no-watch',
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (out += d));
  const exited = once(child, 'exit');
  const deadline = Date.now() + 30_000;
  while (!/"event":"config_applied"/.test(out) || !/"event":"state_store"/.test(out)) {
    assert.equal(child.exitCode, null, `extproc exited early: ${out}`);
    assert.ok(Date.now() < deadline, `no start-up lines on stdout within 30 s; got: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // Still running: the lines came from the timed flush, not from the flush at shutdown.
  assert.equal(child.exitCode, null);
  for (const line of out.trim().split('\n')) JSON.parse(line);
  child.kill('SIGTERM');
  await exited;
});

it('refuses a --workers that is neither auto nor 1 to 64, naming the flag', async () => {
  for (const bad of ['0', '65', 'many', '1.5']) {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'operator/cli.ts',
        'extproc',
        '--config',
        'examples/extproc.yaml',
        '--workers',
        bad,
      ],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    children.push(child);
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (err += d));
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 2, `--workers ${bad}`);
    assert.match(err, /--workers must be auto or 1 to 64/, `--workers ${bad}`);
  }
});
