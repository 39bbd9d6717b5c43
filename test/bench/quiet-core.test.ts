import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { pausedDuring } from './quiet-core.js';

/** The process's state letter from /proc/PID/stat: T when stopped, S or R otherwise. */
function state(pid: number): string {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
}

function sleeper(): ChildProcess {
  return spawn('sleep', ['30'], { stdio: 'ignore' });
}

/** Stopping and continuing is asynchronous for the target: wait for the state to show it. */
async function until(pid: number, want: (s: string) => boolean): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const s = state(pid);
    if (want(s)) return s;
    await new Promise((r) => setTimeout(r, 5));
  }
  return state(pid);
}

test('the other servers are stopped during the point and running after it', async () => {
  const a = sleeper();
  const b = sleeper();
  try {
    const during = await pausedDuring([a.pid!, b.pid!], async () => [
      await until(a.pid!, (s) => s === 'T'),
      await until(b.pid!, (s) => s === 'T'),
    ]);
    assert.deepEqual(during, ['T', 'T']);
    assert.notEqual(await until(a.pid!, (s) => s !== 'T'), 'T');
    assert.notEqual(await until(b.pid!, (s) => s !== 'T'), 'T');
  } finally {
    a.kill('SIGKILL');
    b.kill('SIGKILL');
  }
});

test('they are continued when the point fails, and a gone process is skipped', async () => {
  const a = sleeper();
  const gone = sleeper();
  gone.kill('SIGKILL');
  await new Promise((r) => gone.once('exit', r));
  try {
    await assert.rejects(
      pausedDuring([gone.pid!, a.pid!], async () => {
        assert.equal(await until(a.pid!, (s) => s === 'T'), 'T');
        throw new Error('loadgen failed');
      }),
      /loadgen failed/,
    );
    assert.notEqual(await until(a.pid!, (s) => s !== 'T'), 'T');
  } finally {
    a.kill('SIGKILL');
  }
});
