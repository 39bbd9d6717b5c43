// Two `sluice run` gateways sharing one Redis and one vault key, as two replicas do: a
// conversation of the stateful Responses API on a Claude route (the built-in mock speaking
// Anthropic Messages) started on one is continued, retrieved, listed and deleted on the other,
// with the official OpenAI SDK; another key gets 404 on both; Redis holds sealed records under
// keyed names only (scanned for the conversation's text). Real CLI child processes against a real
// redis-server (test/redis/server.ts).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { startReplicas, type Replicas, type SluiceRun } from '../support/sluice-run.js';

const KEYS = { alice: 'sk-sluice-run-responses-alice-01', bob: 'sk-sluice-run-responses-bob-002' };
const EMAIL = 'jane.doe@example.com';

const consumer = (name: string, key: string) => `
apiVersion: v1
kind: Secret
metadata:
  name: ${name}-key
  namespace: sluice-system
  labels: { sluice.dev/consumer: ${name} }
stringData: { key: ${key} }
`;

const MANIFESTS = `
apiVersion: sluice.dev/v1alpha1
kind: AIRoute
metadata: { name: claude, namespace: default }
spec:
  models: [{ exact: claude-mock }]
  backends:
    - name: mock
      provider: anthropic
      endpoint: { service: { name: sluice-mock-provider, port: 80 } }
      credential: { secretRef: { name: mock-provider } }
---
apiVersion: v1
kind: Secret
metadata: { name: mock-provider, namespace: default }
stringData: { apiKey: sk-mock-provider-key }
---
${consumer('alice', KEYS.alice)}
---
${consumer('bob', KEYS.bob)}
---
apiVersion: sluice.dev/v1alpha1
kind: AIPolicy
metadata: { name: gov, namespace: default }
spec:
  targetRefs: [{ name: claude }]
  consumers: { required: true, keys: {} }
  masking: { detectors: [EMAIL], actions: { EMAIL: mask } }
`;

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => assert.fail(`succeeded: ${JSON.stringify(v)}`),
    (e: unknown) => e,
  );
}

describe('two sluice run gateways sharing Redis: one Responses conversation', () => {
  let replicas: Replicas | undefined;
  let a: SluiceRun | undefined;
  let b: SluiceRun | undefined;

  before(async () => {
    replicas = await startReplicas('sluice-run-responses', MANIFESTS);
    [a, b] = replicas.gateways;
  });

  after(async () => {
    await replicas?.close();
  });

  const client = (g: SluiceRun, key = KEYS.alice) =>
    new OpenAI({ baseURL: `${g.url}/v1`, apiKey: key, maxRetries: 0, timeout: 15_000 });

  it('is started on one replica and continued, read and deleted on the other', async () => {
    for (const g of [a!, b!]) assert.match(g.out(), /"event":"sessions","kind":"redis"/);
    const first = await client(a!).responses.create({
      model: 'claude-mock',
      input: `My email is ${EMAIL}.`,
    });
    assert.equal(first.output_text, `echo: My email is ${EMAIL}.`);

    // Streamed on b, continuing a's turn.
    const stream = await client(b!).responses.create({
      model: 'claude-mock',
      previous_response_id: first.id,
      input: 'And again?',
      stream: true,
    });
    let second: OpenAI.Responses.Response | undefined;
    for await (const e of stream) if (e.type === 'response.completed') second = e.response;
    assert.ok(second);
    assert.equal(second.previous_response_id, first.id);

    const items = await client(a!).responses.inputItems.list(second.id, { order: 'asc' });
    const texts = items.data.map((i) =>
      i.type === 'message' ? (i.content as { text?: string }[]).map((c) => c.text).join('') : '',
    );
    assert.deepEqual(texts, [`My email is ${EMAIL}.`, `echo: My email is ${EMAIL}.`, 'And again?']);

    for (const g of [a!, b!]) {
      const e = await rejection(client(g, KEYS.bob).responses.retrieve(first.id));
      assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    }

    const admin = new Redis(replicas!.redis.url);
    try {
      const names = await admin.keys('sluice:s:*');
      assert.equal(names.length, 2, 'one record per stored turn');
      for (const k of names) {
        assert.ok(!k.includes(first.id) && !k.includes('alice'), 'a plain name in Redis');
        const v = (await admin.getBuffer(k))!.toString('latin1');
        for (const s of [EMAIL, 'echo:', 'And again', first.id])
          assert.ok(!v.includes(s), `"${s}" in a session value`);
        assert.ok((await admin.pttl(k)) > 0, 'a record without a TTL');
      }
    } finally {
      admin.disconnect();
    }

    await client(b!).responses.delete(first.id);
    const gone = await rejection(client(a!).responses.retrieve(first.id));
    assert.ok(gone instanceof OpenAI.NotFoundError, String(gone));
    // The turn after it keeps its own snapshot.
    assert.equal((await client(a!).responses.retrieve(second.id)).id, second.id);
  });
});
