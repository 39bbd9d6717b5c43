// Two `sluice run` gateways sharing one Redis and one vault key, as two replicas do: an answer
// bought through one is served by the other (called with the official OpenAI SDK), with that
// request's own masked values restored, and `sluice usage` (the real CLI path, reading the same
// Redis) counts the hit as cached, apart from the request a provider answered, with what it saved.
// Runs the real CLI as child processes against a real redis-server (test/redis/server.ts).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { main as usageMain } from '../../operator/usage/main.js';
import { startReplicas, type Replicas, type SluiceRun } from '../support/sluice-run.js';

const KEY = 'sk-sluice-run-cache-demo-0001';
const EMAILS = ['jane.doe@example.com', 'john.roe@example.org'];

const MANIFESTS = `
apiVersion: sluice.dev/v1alpha1
kind: AIRoute
metadata: { name: mock, namespace: default }
spec:
  models: [{ exact: mock-model }]
  backends:
    - name: mock
      provider: openai
      endpoint: { service: { name: sluice-mock-provider, port: 80 } }
      credential: { secretRef: { name: mock-provider } }
---
apiVersion: v1
kind: Secret
metadata: { name: mock-provider, namespace: default }
stringData: { apiKey: sk-mock-provider-key }
---
apiVersion: v1
kind: Secret
metadata:
  name: demo-key
  namespace: sluice-system
  labels: { sluice.dev/consumer: demo, sluice.dev/team: replicas }
stringData: { key: ${KEY} }
---
apiVersion: sluice.dev/v1alpha1
kind: AIPolicy
metadata: { name: gov, namespace: default }
spec:
  targetRefs: [{ name: mock }]
  consumers: { required: true, keys: {} }
  limits:
    rules: [{ name: daily, per: [consumer], spendPerDayUsd: 100 }]
  pricing:
    models: { 'mock-*': { inputPerMTok: 100, outputPerMTok: 100 } }
---
apiVersion: sluice.dev/v1alpha1
kind: AIPolicy
metadata: { name: cache, namespace: default }
spec:
  targetRefs: [{ name: mock }]
  masking: { detectors: [EMAIL], actions: { EMAIL: mask } }
  cache: { ttlSeconds: 300 }
`;

describe('two sluice run gateways sharing Redis: the response cache and sluice usage', () => {
  let replicas: Replicas | undefined;
  let a: SluiceRun | undefined;
  let b: SluiceRun | undefined;

  before(async () => {
    replicas = await startReplicas('sluice-run-cache', MANIFESTS);
    [a, b] = replicas.gateways;
  });

  after(async () => {
    await replicas?.close();
  });

  const client = (g: SluiceRun) =>
    new OpenAI({ baseURL: `${g.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 15_000 });
  const ask = (g: SluiceRun, email: string) =>
    client(g)
      .chat.completions.create({
        model: 'mock-model',
        temperature: 0,
        messages: [{ role: 'user', content: `Write to ${email} today.` }],
      })
      .withResponse();

  it('a miss on one gateway is a hit on the other, counted as cached by sluice usage', async () => {
    for (const g of [a!, b!]) assert.match(g.out(), /"event":"state_store","kind":"redis"/);
    const admin = new Redis(replicas!.redis.url);
    const bought = { tokens: 0 };
    try {
      const miss = await ask(a!, EMAILS[0]!);
      assert.equal(miss.response.headers.get('x-sluice-cache'), 'miss');
      assert.equal(miss.data.choices[0]!.message.content, `echo: Write to ${EMAILS[0]} today.`);
      bought.tokens = miss.data.usage!.total_tokens;
      assert.ok(bought.tokens > 0);
      // The entry is written after the answer: wait for it in Redis, never by asking b (a miss
      // there would store an entry of b's own).
      const end = Date.now() + 10_000;
      while ((await admin.keys('sluice:c:*')).length === 0) {
        assert.ok(Date.now() < end, 'no cache entry in Redis');
        await new Promise((r) => setTimeout(r, 50));
      }
      const hit = await ask(b!, EMAILS[1]!);
      assert.equal(hit.response.headers.get('x-sluice-cache'), 'hit');
      // The entry holds placeholders; b restores this request's own value.
      assert.equal(hit.data.choices[0]!.message.content, `echo: Write to ${EMAILS[1]} today.`);
      assert.deepEqual(hit.data.usage, miss.data.usage);
      for (const k of await admin.keys('sluice:c:*')) {
        const v = (await admin.getBuffer(k))!.toString('latin1');
        for (const e of EMAILS) assert.ok(!v.includes(e), 'an email in a cache value');
      }
    } finally {
      admin.disconnect();
    }

    // `sluice usage --json` on the shared Redis: both writes follow the answers, so poll.
    type Row = {
      consumer: string;
      requests: number;
      totalTokens: number;
      costUsd: string;
      cachedRequests: number;
      savedTokens: number;
      savedUsd: string;
    };
    let doc: { rows: Row[] } | undefined;
    const end = Date.now() + 10_000;
    for (;;) {
      let out = '';
      let err = '';
      const code = await usageMain(['--json', '--redis-url', replicas!.redis.url], {
        out: (s) => (out += s),
        err: (s) => (err += s),
        env: {},
      });
      assert.equal(code, 0, err);
      doc = JSON.parse(out) as { rows: Row[] };
      const r = doc.rows.find((x) => x.consumer === 'demo');
      if ((r?.requests ?? 0) >= 1 && (r?.cachedRequests ?? 0) >= 1) break;
      assert.ok(Date.now() < end, `usage never showed the hit: ${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const demo = doc.rows.find((x) => x.consumer === 'demo')!;
    assert.equal(demo.requests, 1, 'one answer a provider gave');
    assert.equal(demo.cachedRequests, 1, 'one answer from the cache');
    assert.equal(demo.savedTokens, bought.tokens, 'the hit saved what the miss bought');
    assert.equal(demo.savedUsd, demo.costUsd, 'a free hit saved what the miss cost');
    assert.ok(Number(demo.savedUsd) > 0);
    assert.equal(demo.totalTokens, bought.tokens, 'the free hit added no served tokens');
  });
});
