import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { requestId } from './request-id.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

void describe('requestId', () => {
  void it('is a random version 4 UUID in randomUUID form, unique across pool refills', () => {
    const seen = new Set<string>();
    // Several refills of the 128-id pool.
    for (let i = 0; i < 1000; i++) {
      const id = requestId();
      assert.match(id, UUID_V4);
      seen.add(id);
    }
    assert.equal(seen.size, 1000);
  });

  void it('uses every hex digit in the random positions', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      for (const c of requestId().replaceAll('-', '')) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    assert.equal(counts.size, 16);
  });
});
