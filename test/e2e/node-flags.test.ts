// The extproc's node flags (extproc/workers/node-flags.ts) reach the processes that serve: the
// workers of `sluice extproc --workers 2` started without them (as a user might), read back from
// each worker's command line in /proc.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { CONFIG } from '../conformance/harness.js';
import { EXTPROC_NODE_FLAGS } from '../../extproc/workers/node-flags.js';

const ROOT = new URL('../../', import.meta.url).pathname;

/** A process's argv as the kernel holds it (NUL-separated). */
function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
}

let proc: ChildProcess | undefined;
let dir: string | undefined;

after(async () => {
  if (proc && proc.exitCode === null) {
    const exited = new Promise((r) => proc!.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

void describe('the extproc node flags', { skip: !existsSync('/proc/self/cmdline') }, () => {
  it('are on the command line of every worker of sluice extproc --workers 2', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-node-flags-'));
    const cfgPath = join(dir, 'extproc.yaml');
    writeFileSync(cfgPath, CONFIG);
    const out: string[] = [];
    // The primary starts without the flags: the workers get them anyway.
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
        `unix:${join(dir, 'extproc.sock')}`,
        '--admin',
        'off',
        '--workers',
        '2',
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => out.push(d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => out.push(d));
    assert.ok(!cmdline(proc.pid!).some((a) => EXTPROC_NODE_FLAGS.includes(a)));
    const pids = (): number[] =>
      out
        .join('')
        .split('\n')
        .filter((l) => l.includes('"event":"worker_started"'))
        .map((l) => Number((JSON.parse(l) as { pid: number }).pid));
    const end = Date.now() + 60_000;
    while (pids().length < 2) {
      assert.equal(proc.exitCode, null, `the extproc exited:\n${out.join('')}`);
      assert.ok(Date.now() < end, `workers did not start:\n${out.join('')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const pid of pids()) {
      const argv = cmdline(pid);
      for (const flag of EXTPROC_NODE_FLAGS) {
        assert.ok(argv.includes(flag), `worker ${pid} runs without ${flag}: ${argv.join(' ')}`);
      }
      // The worker's own loader flags are kept after them.
      assert.ok(argv.includes('tsx'), argv.join(' '));
    }
  });
});
