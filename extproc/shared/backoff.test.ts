import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay } from './backoff.js';

void describe('backoffDelay', () => {
  it('doubles up to the ceiling, jittered in its upper half', () => {
    const b = { initialMs: 100, maxMs: 1000 };
    assert.equal(
      backoffDelay(b, 0, () => 0),
      50,
    );
    assert.equal(
      backoffDelay(b, 0, () => 1),
      100,
    );
    assert.equal(
      backoffDelay(b, 3, () => 1),
      800,
    );
    assert.equal(
      backoffDelay(b, 20, () => 1),
      1000,
    );
  });
});
