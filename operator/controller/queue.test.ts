import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WorkQueue } from './queue.js';

const backoff = { initialMs: 2, maxMs: 8 };

void describe('WorkQueue', () => {
  it('runs a key once however often it is added while waiting', async () => {
    const runs: string[] = [];
    const q = new WorkQueue((k) => {
      runs.push(k);
      return Promise.resolve();
    });
    q.add('a', 5);
    q.add('a', 5);
    q.add('b');
    q.add('b');
    await new Promise((r) => setTimeout(r, 1));
    await q.idle();
    assert.deepEqual(runs.sort(), ['a', 'b']);
  });

  it('runs a key again when it was added while running, never twice at once', async () => {
    let concurrent = 0;
    let max = 0;
    let runs = 0;
    let release!: () => void;
    const q = new WorkQueue(
      async () => {
        runs++;
        concurrent++;
        max = Math.max(max, concurrent);
        if (runs === 1) await new Promise<void>((r) => (release = r));
        concurrent--;
      },
      { concurrency: 4 },
    );
    q.add('a');
    await new Promise((r) => setImmediate(r));
    q.add('a');
    q.add('a');
    release();
    await q.idle();
    assert.equal(runs, 2);
    assert.equal(max, 1);
  });

  it('retries a failing key with backoff while other keys go on', async () => {
    const runs: string[] = [];
    const errors: number[] = [];
    let failures = 2;
    const q = new WorkQueue(
      (k) => {
        runs.push(k);
        if (k === 'bad' && failures-- > 0) return Promise.reject(new Error('transient'));
        return Promise.resolve();
      },
      { backoff, onError: (_k, _e, attempt) => errors.push(attempt) },
    );
    q.add('bad');
    q.add('good');
    await q.idle();
    assert.deepEqual(runs, ['bad', 'good', 'bad', 'bad']);
    assert.deepEqual(errors, [1, 2]);
  });

  it('drops everything on close', async () => {
    const runs: string[] = [];
    const q = new WorkQueue((k) => {
      runs.push(k);
      return Promise.resolve();
    });
    q.add('later', 50);
    await q.close();
    q.add('after');
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(runs, []);
  });
});
