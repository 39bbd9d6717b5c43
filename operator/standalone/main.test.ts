import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { main as extprocMain } from '../../extproc/main.js';
import { MAX_WORKERS, WorkersFlag } from '../../extproc/workers/cpus.js';
import { main } from './main.js';
import { captureMain } from '../../test/support/capture-main.js';

describe('sluice run --workers', () => {
  it('is documented in --help', async () => {
    const r = await captureMain(main, ['--help']);
    assert.equal(r.code, 0);
    assert.match(r.out, /^ {2}--workers N\|auto +extproc worker processes behind its one socket/m);
  });

  it('refuses what sluice extproc refuses, with the same words, before starting anything', async () => {
    for (const bad of ['0', '65', '1.5', 'many', '', '0x2', '007']) {
      const run = await captureMain(main, ['-f', '/nonexistent', '--workers', bad]);
      const extproc = await captureMain(extprocMain, [
        '--config',
        '/nonexistent',
        '--workers',
        bad,
      ]);
      assert.equal(run.code, 2, `--workers ${bad}: ${run.err}`);
      assert.equal(extproc.code, 2, `--workers ${bad}`);
      assert.match(run.err, /--workers must be auto or 1 to 64/, `--workers ${bad}`);
    }
  });

  it('takes a count from 1 to 64 or auto, and defaults to 1 (the extproc in process)', () => {
    assert.equal(WorkersFlag.parse(undefined), 1);
    assert.equal(WorkersFlag.parse('2'), 2);
    assert.equal(WorkersFlag.parse(String(MAX_WORKERS)), MAX_WORKERS);
    assert.equal(WorkersFlag.parse('auto'), 'auto');
  });
});
