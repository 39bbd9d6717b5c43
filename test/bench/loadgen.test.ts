// The Go load generator's own tests (the per-request sequence marker, the trace file, the
// exchange replay) run in `npm test`'s bench tier too: the bench's figures rest on them.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const DIR = fileURLToPath(new URL('./loadgen', import.meta.url));
// As buildLoadgen builds it: no workspace from above the repo, go.sum as committed.
const env = { ...process.env, GOWORK: 'off', GOFLAGS: '-mod=readonly', CGO_ENABLED: '0' };
const go = spawnSync('go', ['env', 'GOVERSION'], { encoding: 'utf8', env });

test(
  'the load generator passes go test',
  { skip: go.error || go.status !== 0 ? 'go not found' : false, timeout: 300_000 },
  () => {
    const run = spawnSync('go', ['test', './...'], { cwd: DIR, encoding: 'utf8', env });
    assert.equal(run.status, 0, `go test failed:\n${run.stdout}\n${run.stderr}`);
  },
);
