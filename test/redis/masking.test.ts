// Reversible masking across two extproc replicas sharing Redis (test/redis/server.ts): a
// conversation keeps its placeholders whichever replica serves a turn, each replica restores the
// other's, and while Redis is down the policy's failure mode decides. Nothing of the values
// reaches the logs.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { run } from '../../extproc/run.js';
import {
  ExtProcClient,
  type HeaderList,
  type LocalReply,
} from '../../operator/envoy-sim/ext-proc/index.js';
import {
  chatHeaders,
  continued,
  get,
  sendRequest,
  waitFor,
  type Harness,
} from '../conformance/harness.js';
import { startRedis, type RedisHandle } from './server.js';

// A conversation belongs to an authenticated caller: the turns carry a virtual key.
const KEYS = { alice: 'sk-sluice-alice-redis-0001', bob: 'sk-sluice-bob-redis-0002' };
const sha = (k: string): string => createHash('sha256').update(k).digest('hex');

const CONFIG = `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: masking-redis-1
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
  - name: closed
    models: [{ exact: gpt-closed }]
    backends: [{ name: openai }]
    governance: keys
    policy: { name: strict, masking: { timeoutMs: 1000 } }
  - name: open
    models: [{ exact: gpt-open }]
    backends: [{ name: openai }]
    governance: keys
    policy: { name: lenient, failureMode: open, masking: { timeoutMs: 1000 } }
`;

const EMAIL = 'jane.doe@example.com';
const CARD = '4111 1111 1111 1111';
const PHONE = '+1 415 555 0132';
const JSON_HEADERS: HeaderList = [
  [':status', '200'],
  ['content-type', 'application/json'],
];

interface Replica extends Harness {
  /** The Redis state store's readiness, to wait for after a restart. */
  ready(ms: number): Promise<void>;
}

async function replica(redisUrl: string, keyFile: string, name: string): Promise<Replica> {
  const dir = await mkdtemp(join(tmpdir(), `sluice-redis-mask-${name}-`));
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
    ready: (ms) => (ext.stateStore as unknown as { ready(ms: number): Promise<void> }).ready(ms),
    async stop() {
      client.close();
      await ext.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function turn(
  r: Replica,
  model: string,
  content: string,
  session: string,
  key: string = KEYS.alice,
): Promise<
  | {
      sent: string;
      answer: (text: string) => Promise<string>;
      /** The response headers of the last answer. */
      answered: () => HeaderList;
    }
  | LocalReply
> {
  const body = Buffer.from(JSON.stringify({ model, messages: [{ role: 'user', content }] }));
  const headers = chatHeaders([
    ['content-length', String(body.length)],
    ['x-sluice-session', session],
  ]).map(([k, v]): [string, string] => [k, k === 'authorization' ? `Bearer ${key}` : v]);
  const res = await sendRequest(r, headers, body, 'sluice/backend/openai');
  if (res.routed.kind === 'local-reply') return res.routed;
  const sent = continued(res.upstream).body.toString('utf8');
  let answerHeaders: HeaderList = [];
  return {
    sent,
    answered: () => answerHeaders,
    answer: async (text) => {
      const out = continued(
        await res.router.runResponse(JSON_HEADERS, [
          Buffer.from(
            JSON.stringify({
              object: 'chat.completion',
              choices: [{ index: 0, message: { role: 'assistant', content: text } }],
              usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
            }),
          ),
        ]),
      );
      answerHeaders = out.headers;
      return (JSON.parse(out.body.toString()) as { choices: { message: { content: string } }[] })
        .choices[0]!.message.content;
    },
  };
}

function ok<T extends object>(r: T | LocalReply): T {
  if ('kind' in r && r.kind === 'local-reply') {
    throw new Error(`expected the request to continue, got ${r.status} ${r.body.toString()}`);
  }
  return r as T;
}

describe('masking over Redis: one conversation, two replicas', () => {
  let redis: RedisHandle;
  let dir: string;
  let a: Replica;
  let b: Replica;

  before(async () => {
    redis = await startRedis();
    dir = await mkdtemp(join(tmpdir(), 'sluice-vault-key-'));
    const keyFile = join(dir, 'vault.key');
    await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    a = await replica(redis.url, keyFile, 'a');
    b = await replica(redis.url, keyFile, 'b');
  });

  after(async () => {
    await a?.stop();
    await b?.stop();
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps placeholders across turns served by either replica, and restores both ways', async () => {
    const t1 = ok(await turn(a, 'gpt-closed', `card ${CARD}, mail ${EMAIL}`, 'conv-1'));
    assert.equal(t1.sent.includes(EMAIL) || t1.sent.includes(CARD), false);
    assert.match(t1.sent, /card \[CREDIT_CARD_1\], mail \[EMAIL_1\]/);
    assert.equal(await t1.answer('Noted [EMAIL_1].'), `Noted ${EMAIL}.`);

    const t2 = ok(await turn(b, 'gpt-closed', `again ${EMAIL}, phone ${PHONE}`, 'conv-1'));
    assert.match(t2.sent, /again \[EMAIL_1\], phone \[PHONE_1\]/);
    assert.equal(
      await t2.answer('Refunded [CREDIT_CARD_1], will call [PHONE_1].'),
      `Refunded ${CARD}, will call ${PHONE}.`,
      "B restores A's placeholder",
    );

    const t3 = ok(await turn(a, 'gpt-closed', 'anything else?', 'conv-1'));
    assert.equal(await t3.answer('Call [PHONE_1].'), `Call ${PHONE}.`, "A restores B's");

    // Another conversation on the same replicas has its own numbering.
    const other = ok(await turn(b, 'gpt-closed', `${PHONE}`, 'conv-2'));
    assert.match(other.sent, /\[PHONE_1\]/);
    assert.equal(await other.answer('[CREDIT_CARD_1]'), '[CREDIT_CARD_1]');
  });

  it("another caller sending the same session id gets none of the conversation's values", async () => {
    const t1 = ok(await turn(a, 'gpt-closed', `mail ${EMAIL}`, 'conv-shared'));
    assert.match(t1.sent, /mail \[EMAIL_1\]/);
    // Bob, authenticated, on the other replica, with Alice's session id.
    const bob = ok(await turn(b, 'gpt-closed', 'what is [EMAIL_1]?', 'conv-shared', KEYS.bob));
    assert.equal(await bob.answer('It is [EMAIL_1].'), 'It is [EMAIL_1].');
    const alice = ok(await turn(b, 'gpt-closed', 'and?', 'conv-shared'));
    assert.equal(await alice.answer('It is [EMAIL_1].'), `It is ${EMAIL}.`);
  });

  it('while Redis is down: closed refuses with policy_unavailable, open masks within the request; then recovers', async () => {
    await redis.kill();
    try {
      const closed = await turn(a, 'gpt-closed', `mail ${EMAIL}`, 'conv-3');
      assert.ok('kind' in closed && closed.kind === 'local-reply');
      assert.equal(closed.status, 503);
      assert.equal(get(closed.headers, 'x-sluice-error-code'), 'policy_unavailable');
      assert.equal(get(closed.headers, 'x-sluice-policy-failure'), 'closed');
      assert.match(closed.body.toString(), /"code":"policy_unavailable"/);
      assert.ok(!closed.body.toString().includes(EMAIL));

      // Open mode never sends a value unmasked because the vault is away: the request gets a
      // vault of its own, whose placeholders restore in its answer. Only earlier turns' are lost,
      // and their numbers are not reused.
      const open = ok(
        await turn(b, 'gpt-open', `earlier [EMAIL_1], now mail ${EMAIL} or ${PHONE}`, 'conv-3'),
      );
      assert.ok(!open.sent.includes(EMAIL) && !open.sent.includes(PHONE), open.sent);
      assert.match(open.sent, /earlier \[EMAIL_1\], now mail \[EMAIL_2\] or \[PHONE_1\]/);
      assert.equal(
        await open.answer('ok [EMAIL_2], [PHONE_1], not [EMAIL_1]'),
        `ok ${EMAIL}, ${PHONE}, not [EMAIL_1]`,
      );
      assert.equal(get(open.answered(), 'x-sluice-policy-failure'), 'degraded');
      assert.match(
        await a.registry.metrics(),
        /sluice_vault_failures_total\{reason="unavailable"\} 1/,
      );
      assert.match(
        await b.registry.metrics(),
        /sluice_vault_failures_total\{reason="unavailable"\} 1/,
      );
      assert.match(
        await b.registry.metrics(),
        /sluice_policy_failures_total\{sluice_route="open",sluice_policy="lenient",failure_mode="degraded"\} 1/,
      );
      await waitFor(() => b.logs.some((l) => l.includes('"vault_degraded"')));
      const line = JSON.parse(b.logs.find((l) => l.includes('"vault_degraded"'))!) as {
        policy_failure?: string;
      };
      assert.equal(line.policy_failure, 'degraded');
    } finally {
      await redis.restart();
    }
    await a.ready(10_000);
    const again = ok(await turn(a, 'gpt-closed', `mail ${EMAIL}`, 'conv-3'));
    assert.match(again.sent, /mail \[EMAIL_1\]/);
    assert.equal(await again.answer('[EMAIL_1]'), EMAIL);
  });

  it('keeps the values out of every log line', async () => {
    for (const r of [a, b]) {
      await waitFor(() => r.logs.some((l) => l.includes('"log":"access"')));
      const all = r.logs.join('\n');
      for (const v of [EMAIL, 'jane.doe', CARD, '4111111111111111', PHONE, '415 555 0132']) {
        assert.ok(!all.includes(v), `"${v}" logged`);
      }
      assert.match(all, /"event":"vault","kind":"redis"/);
    }
  });
});
