import { it } from 'node:test';
import assert from 'node:assert/strict';
import { measurePropagation } from './propagation.js';

it('measures setSnapshot → ACK for every change (small run; figures come from npm run bench)', async () => {
  const r = await measurePropagation({ changes: 20, clusters: 50 });
  assert.equal(r.samples.length, 20);
  assert.ok(r.p50 > 0 && r.p50 <= r.p99 && r.p99 <= r.max);
  assert.ok(r.serverP50 <= r.p50);
});
