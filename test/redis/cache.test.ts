// The response cache shared by two extproc replicas through Redis (test/redis/server.ts): an
// answer bought on one replica is served by the other, to the same consumer only, with each
// request's own values restored; Redis holds sealed values under keyed names only (scanned
// here for the prompt's and the answer's text); a value moved to another key is not served, and
// Redis going away turns lookups into misses rather than failures.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { run } from '../../extproc/run.js';
import { ExtProcClient, type HeaderList } from '../../operator/envoy-sim/ext-proc/index.js';
import { chatHeaders, continued, get, sendRequest, type Harness } from '../conformance/harness.js';
import { startRedis, type RedisHandle } from './server.js';

const KEYS = { alice: 'sk-sluice-alice-cache-0001', bob: 'sk-sluice-bob-cache-0002' };
const sha = (k: string): string => createHash('sha256').update(k).digest('hex');
const TTL_SECONDS = 120;

const CONFIG = `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: cache-redis-1
backends:
  - name: openai
    cluster: sluice/backend/openai
    provider: openai
    credential: { value: sk-backend-openai-0001 }
consumers:
  - { name: alice, keyHashes: ['${sha(KEYS.alice)}'] }
  - { name: bob, keyHashes: ['${sha(KEYS.bob)}'] }
policies:
  - { name: keys, identity: { keys: {} } }
routes:
  - name: cached
    models: [{ exact: gpt-cached }]
    backends: [{ name: openai }]
    governance: keys
    policy:
      name: pii-cache
      masking: { detectors: [EMAIL], timeoutMs: 1000 }
      cache: { ttlSeconds: ${TTL_SECONDS} }
  - name: plain
    models: [{ exact: gpt-plain }]
    backends: [{ name: openai }]
    governance: keys
    policy: { name: plain-cache, cache: {} }
`;

const EMAILS = ['jane.doe@example.com', 'john.roe@example.net', 'max.mu@example.org'];
const ANSWER = 'Your invoice went to';
const JSON_HEADERS: HeaderList = [
  [':status', '200'],
  ['content-type', 'application/json'],
];

async function replica(redisUrl: string, keyFile: string, name: string): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), `sluice-redis-cache-${name}-`));
  const configPath = join(dir, 'extproc.yaml');
  await writeFile(configPath, CONFIG);
  const logs: string[] = [];
  const registry = new Registry();
  const ext = await run({
    configPath,
    listen: `unix:${join(dir, 'extproc.sock')}`,
    maxMessageBytes: 16 * 1024 * 1024,
    watchConfig: false,
    shutdownGraceMs: 1000,
    logger: pino({ level: 'trace' }, { write: (s: string) => logs.push(s) }),
    registry,
    now: () => performance.now(),
    env: { SLUICE_REDIS_URL: redisUrl, SLUICE_VAULT_KEY_FILE: keyFile },
    warmTokenizer: false,
  });
  const client = new ExtProcClient(ext.grpcAddress);
  return {
    ext,
    client,
    logs,
    registry,
    dir,
    configPath,
    async stop() {
      client.close();
      await ext.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function request(content: string, key: string, stream = false, model = 'gpt-cached') {
  const body = Buffer.from(
    JSON.stringify({
      model,
      temperature: 0,
      ...(stream ? { stream: true } : {}),
      messages: [{ role: 'user', content }],
    }),
  );
  const headers = chatHeaders([['content-length', String(body.length)]]).map(
    ([k, v]): [string, string] => [k, k === 'authorization' ? `Bearer ${key}` : v],
  );
  return { headers, body };
}

/** One request: a hit comes back as the router's immediate response; a miss is answered here. */
async function ask(
  r: Harness,
  content: string,
  opts: { key?: string; stream?: boolean; answer?: string; model?: string } = {},
): Promise<{ cache: string | undefined; body: string; sent?: string }> {
  const { headers, body } = request(content, opts.key ?? KEYS.alice, opts.stream, opts.model);
  const res = await sendRequest(r, headers, body, 'sluice/backend/openai');
  if (res.routed.kind === 'local-reply') {
    assert.equal(res.routed.status, 200, res.routed.body.toString());
    return { cache: get(res.routed.headers, 'x-sluice-cache'), body: res.routed.body.toString() };
  }
  const sent = continued(res.upstream).body.toString('utf8');
  const out = continued(
    await res.router.runResponse(JSON_HEADERS, [
      Buffer.from(
        JSON.stringify({
          id: 'chatcmpl-1',
          object: 'chat.completion',
          created: 1,
          model: 'gpt-cached',
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: opts.answer ?? `${ANSWER} [EMAIL_1].` },
              finish_reason: 'stop',
            },
          ],
          usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
        }),
      ),
    ]),
  );
  return { cache: get(out.headers, 'x-sluice-cache'), body: out.body.toString(), sent };
}

const contentOf = (body: string): string =>
  (JSON.parse(body) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;

async function counter(r: Harness, name: string, labels: string): Promise<number> {
  const m = new RegExp(`^${name}\\{${labels}\\} (\\d+)`, 'm').exec(await r.registry.metrics());
  return m ? Number(m[1]) : 0;
}

describe('response cache over Redis: two replicas', () => {
  let redis: RedisHandle;
  let admin: Redis;
  let dir: string;
  let a: Harness;
  let b: Harness;

  before(async () => {
    redis = await startRedis();
    admin = new Redis(redis.url);
    dir = await mkdtemp(join(tmpdir(), 'sluice-cache-key-'));
    const keyFile = join(dir, 'vault.key');
    await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    a = await replica(redis.url, keyFile, 'a');
    b = await replica(redis.url, keyFile, 'b');
  });

  after(async () => {
    admin?.disconnect();
    await a?.stop();
    await b?.stop();
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const stored = (r: Harness) =>
    counter(r, 'sluice_cache_stores_total', 'sluice_route="cached",result="stored"');

  it('an answer bought on one replica is served by the other, with its own values restored', async () => {
    const miss = await ask(a, `Where did my invoice go? ${EMAILS[0]}`);
    assert.equal(miss.cache, 'miss');
    assert.equal(miss.sent?.includes(EMAILS[0]!), false);
    assert.equal(contentOf(miss.body), `${ANSWER} ${EMAILS[0]}.`);
    await waitFor2(async () => (await stored(a)) === 1);

    const hit = await ask(b, `Where did my invoice go? ${EMAILS[1]}`);
    assert.equal(hit.cache, 'hit');
    assert.equal(contentOf(hit.body), `${ANSWER} ${EMAILS[1]}.`);

    const streamed = await ask(b, `Where did my invoice go? ${EMAILS[2]}`, { stream: true });
    assert.equal(streamed.cache, 'hit');
    const text = streamed.body
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)) as { choices: { delta: { content?: string } }[] })
      .map((c) => c.choices[0]?.delta.content ?? '')
      .join('');
    assert.equal(text, `${ANSWER} ${EMAILS[2]}.`);
    assert.ok(streamed.body.endsWith('data: [DONE]\n\n'));
  });

  it('another consumer is not served the entry, on either replica', async () => {
    const bob = await ask(b, `Where did my invoice go? ${EMAILS[0]}`, { key: KEYS.bob });
    assert.equal(bob.cache, 'miss');
    await waitFor2(async () => (await stored(b)) === 1);
  });

  it('Redis holds sealed values under keyed names, with the TTL; nothing of the prompt or answer', async () => {
    const keys = await admin.keys('sluice:c:*');
    assert.equal(keys.length, 2, 'alice’s and bob’s entries');
    for (const k of keys) {
      assert.match(k, /^sluice:c:[0-9a-f]{64}$/);
      const v = (await admin.getBuffer(k))!;
      const text = v.toString('latin1');
      for (const needle of [...EMAILS, ANSWER, 'EMAIL_1', 'invoice', 'choices', 'gpt-cached'])
        assert.ok(!text.includes(needle), `Redis value holds ${needle}`);
      const ttl = await admin.pttl(k);
      assert.ok(ttl > 0 && ttl <= TTL_SECONDS * 1000, `ttl ${ttl}`);
    }
    // And no log line of either replica holds a value or the answer.
    for (const line of [...a.logs, ...b.logs])
      for (const needle of [...EMAILS, ANSWER]) assert.ok(!line.includes(needle));
  });

  it('a value moved to another key is not served: a miss, counted as an error', async () => {
    const [k1, k2] = await admin.keys('sluice:c:*');
    const v2 = (await admin.getBuffer(k2!))!;
    // Both entries are swapped to the other's key.
    const v1 = (await admin.getBuffer(k1!))!;
    await admin.set(k1!, v2);
    await admin.set(k2!, v1);
    const errorsBefore = await counter(b, 'sluice_cache_errors_total', 'op="get"');
    const r = await ask(b, `Where did my invoice go? ${EMAILS[1]}`);
    assert.equal(r.cache, 'miss');
    assert.equal(await counter(b, 'sluice_cache_errors_total', 'op="get"'), errorsBefore + 1);
  });

  it('with Redis away a lookup is a miss, the request goes upstream, and the store failure is counted', async () => {
    await redis.kill();
    try {
      const before = await counter(a, 'sluice_cache_errors_total', 'op="get"');
      const r = await ask(a, 'What is the capital of France?', { model: 'gpt-plain' });
      assert.equal(r.cache, 'miss');
      assert.equal(contentOf(r.body), `${ANSWER} [EMAIL_1].`);
      assert.equal(await counter(a, 'sluice_cache_errors_total', 'op="get"'), before + 1);
      await waitFor2(async () => (await counter(a, 'sluice_cache_errors_total', 'op="set"')) === 1);
    } finally {
      await redis.restart();
    }
  });
});

async function waitFor2(cond: () => Promise<boolean>, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
