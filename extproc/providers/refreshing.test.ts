// Cached credentials are not handed out in the last quarter of their life (at most their last
// 30 s): a request never leaves with a token that expires before the provider checks it. In that
// margin a fresh one is fetched; if fetching fails, the old one serves while it is still valid,
// and after that the request fails closed with the source's own error.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Refreshing, type Expiring } from './refreshing.js';

interface Token extends Expiring {
  n: number;
  expiration: Date;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function source(lifeMs: number, fail: (n: number) => boolean = () => false) {
  let calls = 0;
  const src = new Refreshing<Token>(
    {
      fetch: () => {
        calls++;
        if (fail(calls)) return Promise.reject(new Error('issuer says no (names a secret)'));
        return Promise.resolve({ n: calls, expiration: new Date(Date.now() + lifeMs) });
      },
      // No timer refresh within the test: only requests drive it.
      aheadMs: 0,
      retryMs: 60_000,
    },
    () => new Error('no usable credentials'),
  );
  return { src, calls: () => calls };
}

describe('refreshing credentials: the margin before expiry', () => {
  it('the last quarter of a short-lived token is not handed out: a fresh one is fetched', async () => {
    const { src, calls } = source(400);
    try {
      assert.equal((await src.get()).n, 1);
      await sleep(150);
      assert.equal((await src.get()).n, 1, 'well within its life: cached');
      await sleep(180);
      // ~330 ms into a 400 ms life: 70 ms left, inside the 100 ms margin.
      const t = await src.get();
      assert.equal(t.n, 2);
      assert.equal(calls(), 2);
      assert.ok(t.expiration.getTime() - Date.now() > 300);
    } finally {
      src.close();
    }
  });

  it('in the margin, a failed fetch leaves the old token serving while it is valid, then fails closed', async () => {
    const { src, calls } = source(300, (n) => n > 1);
    try {
      assert.equal((await src.get()).n, 1);
      await sleep(250);
      // In the margin, the fetch fails: the old token still has ~50 ms.
      assert.equal((await src.get()).n, 1);
      assert.equal(calls(), 2);
      await sleep(80);
      await assert.rejects(src.get(), /no usable credentials/);
    } finally {
      src.close();
    }
  });
});
