import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  ExtProcFilter,
  type HeaderList,
  type LocalReply,
} from '../../operator/envoy-sim/ext-proc/index.js';
import { utcDay } from '../../extproc/governance/budget.js';
import {
  ROUTER,
  accessLines,
  chatHeaders,
  continued,
  get,
  sendRequest,
  startHarness,
  upstreamFilter,
  waitFor,
  type Harness,
} from './harness.js';

const sha = (k: string) => createHash('sha256').update(k).digest('hex');

const KEYS = {
  alice: 'sk-sluice-alice-0001',
  bob: 'sk-sluice-bob-0002',
  carol: 'sk-sluice-carol-0003',
  dave: 'sk-sluice-dave-0004',
  erin: 'sk-sluice-erin-0005',
  frank: 'sk-sluice-frank-0006',
  grace: 'sk-sluice-grace-0007',
  heidi: 'sk-sluice-heidi-0008',
};

/**
 * Output at $1000 per million tokens and free input: a request's reserved spend is exactly
 * max_tokens × $0.001, whatever the tokenizer says about its prompt.
 */
export const GOVERNANCE_CONFIG = `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: governance-1
backends:
  - name: openai
    cluster: sluice/backend/openai
    provider: openai
    credential: { value: sk-backend-openai-0001 }
  - name: anthropic
    cluster: sluice/backend/anthropic
    provider: anthropic
    credential: { value: sk-ant-backend-0003 }
consumers:
${Object.entries(KEYS)
  .map(([name, key]) => `  - { name: ${name}, team: t-${name}, keyHashes: ['${sha(key)}'] }`)
  .join('\n')}
policies:
  - name: gov
    identity: { keys: {}, jwt: {} }
    access:
      rules:
        - { name: no-claude-for-bob, effect: deny, consumers: [bob], models: ['claude-*'] }
    limits:
      rules:
        - { name: daily-spend, per: [consumer], spendPerDayUsd: 0.25 }
        - { name: tpm, per: [consumer], tokensPerMinute: 100000 }
        - { name: rpm, per: [consumer], requestsPerMinute: 100000 }
    pricing:
      models:
        '*': { inputPerMTok: 0, outputPerMTok: 1000 }
  - name: watch
    mode: shadow
    identity: { keys: {} }
    limits: { rules: [{ name: tiny, per: [consumer], spendPerDayUsd: 0.05 }] }
    pricing: { models: { '*': { inputPerMTok: 0, outputPerMTok: 1000 } } }
routes:
  - name: watched
    models: [{ exact: gpt-watched }]
    backends: [{ name: openai }]
    governance: watch
  - name: blocking
    models: [{ exact: gpt-blocking }]
    backends: [{ name: openai }]
    policy: { name: strict, masking: { actions: { CREDIT_CARD: block } } }
    governance: gov
  - name: gpt
    models: [{ prefix: 'gpt-' }]
    backends: [{ name: openai }]
    governance: gov
  - name: claude
    models: [{ exact: claude-3-5-haiku }, { prefix: 'claude-' }]
    backends: [{ name: anthropic }]
    governance: gov
`;

function headers(key: string | undefined, path = '/v1/chat/completions', extra: HeaderList = []) {
  const base = chatHeaders([], path).filter(([k]) => k !== 'authorization');
  const auth: HeaderList =
    key === undefined
      ? []
      : path === '/v1/messages'
        ? [['x-api-key', key]]
        : [['authorization', `Bearer ${key}`]];
  return [...base, ...auth, ...extra];
}

function refused(r: { kind: string }): LocalReply {
  assert.equal(r.kind, 'local-reply', `expected a local reply, got ${JSON.stringify(r)}`);
  return r as LocalReply;
}

const chat = (maxTokens: number, extra: object = {}) => ({
  model: 'gpt-4o-mini',
  max_tokens: maxTokens,
  messages: [{ role: 'user', content: 'hello' }],
  ...extra,
});

const completion = (total: number) =>
  Buffer.from(
    JSON.stringify({
      id: 'chatcmpl-g',
      object: 'chat.completion',
      model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: total - 3, completion_tokens: 3, total_tokens: total },
    }),
  );

const JSON_RESPONSE: HeaderList = [
  [':status', '200'],
  ['content-type', 'application/json'],
];

let h: Harness;
before(async () => {
  h = await startHarness(GOVERNANCE_CONFIG);
});
after(async () => {
  await h.stop();
});

async function usageOf(consumer: string) {
  await h.ext.settled();
  const rows = await h.ext.stateStore.usage('day', utcDay(Date.now()));
  return rows.find((r) => r.dims.consumer === consumer)?.values;
}

describe('conformance: governance identity and access', () => {
  it('accepts a valid virtual key and strips every identity header before upstream', async () => {
    const jwt = Buffer.from(JSON.stringify({ sub: 'someone' })).toString('base64url');
    const { routed, upstream } = await sendRequest(
      h,
      headers(KEYS.alice, '/v1/chat/completions', [['x-jwt-payload', jwt]]),
      chat(10),
      'sluice/backend/openai',
    );
    const r = continued(routed);
    assert.equal(get(r.headers, 'x-jwt-payload'), undefined);
    assert.ok(!JSON.stringify(r.headers).includes(KEYS.alice), 'the virtual key went on');
    const sent = continued(upstream);
    assert.equal(get(sent.headers, 'authorization'), 'Bearer sk-backend-openai-0001');
    assert.ok(!JSON.stringify(sent.headers).includes(KEYS.alice));
  });

  for (const [what, key] of [
    ['missing', undefined],
    ['unknown', 'sk-sluice-not-a-key'],
  ] as const) {
    it(`answers a ${what} key with 401 in the OpenAI format`, async () => {
      const { routed } = await sendRequest(h, headers(key), chat(10), 'sluice/backend/openai');
      const r = refused(routed);
      assert.equal(r.status, 401);
      const body = JSON.parse(r.body.toString()) as { error: { type: string; code: string } };
      assert.equal(body.error.type, 'authentication_error');
      assert.equal(body.error.code, 'unauthenticated');
    });

    it(`answers a ${what} key with 401 in the Anthropic format`, async () => {
      const { routed } = await sendRequest(
        h,
        headers(key, '/v1/messages'),
        { model: 'claude-3-5-haiku', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] },
        'sluice/backend/anthropic',
      );
      const r = refused(routed);
      assert.equal(r.status, 401);
      const body = JSON.parse(r.body.toString()) as { type: string; error: { type: string } };
      assert.equal(body.type, 'error');
      assert.equal(body.error.type, 'authentication_error');
    });
  }

  it('refuses a denied model with 403 naming the rule', async () => {
    const { routed } = await sendRequest(
      h,
      headers(KEYS.bob, '/v1/messages'),
      { model: 'claude-3-5-haiku', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] },
      'sluice/backend/anthropic',
    );
    const r = refused(routed);
    assert.equal(r.status, 403);
    const body = JSON.parse(r.body.toString()) as { error: { type: string; message: string } };
    assert.equal(body.error.type, 'permission_error');
    assert.match(body.error.message, /no-claude-for-bob/);
  });
});

describe('conformance: /v1/models under governance', () => {
  const list = async (key: string | undefined) => {
    const f = new ExtProcFilter(h.client, ROUTER);
    const base: HeaderList = [
      [':method', 'GET'],
      [':path', '/v1/models'],
      [':scheme', 'http'],
      [':authority', 'g'],
    ];
    const r = refused(
      await f.runRequest(key === undefined ? base : [...base, ['authorization', `Bearer ${key}`]]),
    );
    f.close();
    return { status: r.status, body: JSON.parse(r.body.toString()) as Record<string, any> };
  };

  it('answers 401 without a valid key, and each caller only the models it may use', async () => {
    const anonymous = await list(undefined);
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.error.code, 'unauthenticated');
    assert.equal((await list('sk-sluice-not-a-key')).status, 401);
    const ids = (b: Record<string, any>) => (b.data as { id: string }[]).map((m) => m.id);
    const alice = await list(KEYS.alice);
    assert.equal(alice.status, 200);
    assert.deepEqual(ids(alice.body), ['gpt-watched', 'gpt-blocking', 'claude-3-5-haiku']);
    // The deny rule hides the model from bob; the shadow route's model stays listed.
    assert.deepEqual(ids((await list(KEYS.bob)).body), ['gpt-watched', 'gpt-blocking']);
  });
});

describe('conformance: governance budgets', () => {
  it('admits exactly what fits among concurrent requests; the rest get 429 with retry-after', async () => {
    // $0.25 a day fits two requests reserving $0.10 each.
    const results = await Promise.all(
      Array.from({ length: 12 }, () =>
        sendRequest(h, headers(KEYS.carol), chat(100), 'sluice/backend/openai'),
      ),
    );
    const passed = results.filter((r) => r.routed.kind === 'continue');
    const refusals = results.filter((r) => r.routed.kind === 'local-reply');
    assert.equal(passed.length, 2);
    assert.equal(refusals.length, 10);
    for (const { routed } of refusals) {
      const r = refused(routed);
      assert.equal(r.status, 429);
      assert.ok(Number(get(r.headers, 'retry-after')) >= 1);
      const body = JSON.parse(r.body.toString()) as { error: { type: string; code: string } };
      assert.equal(body.error.type, 'rate_limit_error');
      assert.equal(body.error.code, 'budget_exceeded');
    }
    for (const p of passed) p.router.close();
  });

  it('reconciles with actual usage: the next admission sees 13 tokens, not the estimate', async () => {
    const first = await sendRequest(h, headers(KEYS.dave), chat(50), 'sluice/backend/openai');
    continued(first.upstream);
    const r1 = continued(await first.router.runResponse(JSON_RESPONSE, [completion(13)]));
    const remaining1 = Number(get(r1.headers, 'x-ratelimit-remaining-tokens'));
    assert.equal(get(r1.headers, 'x-ratelimit-limit-tokens'), '100000');
    assert.ok(remaining1 < 100000 - 50);
    await h.ext.settled();
    const second = await sendRequest(h, headers(KEYS.dave), chat(50), 'sluice/backend/openai');
    const r2 = continued(await second.router.runResponse(JSON_RESPONSE, [completion(13)]));
    const remaining2 = Number(get(r2.headers, 'x-ratelimit-remaining-tokens'));
    assert.equal(remaining1 - remaining2, 13);
    const line = await waitFor(() => accessLines(h).some((l) => l.consumer === 'dave')).then(() =>
      accessLines(h).find((l) => l.consumer === 'dave')!,
    );
    assert.equal(line.team, 't-dave');
    assert.equal(line.cost_usd, 0.003);
    assert.ok((line.verdicts as string[]).includes('reserved'));
  });

  it('reconciles a client abort mid-stream with the partial usage', async () => {
    const { router } = await sendRequest(
      h,
      headers(KEYS.erin),
      chat(200, { stream: true }),
      'sluice/backend/openai',
    );
    const s = router.streamResponse([
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ]);
    await s.headers;
    const delta = (content: string) =>
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content } }] })}\n\n`;
    s.write(Buffer.from(delta('Once upon') + delta(' a time')));
    await s[Symbol.asyncIterator]().next();
    router.close();
    await waitFor(() => accessLines(h).some((l) => l.consumer === 'erin'));
    const u = await usageOf('erin');
    assert.ok(u, 'no usage recorded');
    assert.equal(u.requests, 1);
    assert.ok(u.outputTokens >= 2 && u.outputTokens < 200, `output ${u.outputTokens}`);
  });

  it('releases a reservation that never reached upstream, and counts retries per attempt', async () => {
    const router = new ExtProcFilter(h.client, {
      processingMode: {
        requestHeaderMode: 'SEND',
        responseHeaderMode: 'SEND',
        requestBodyMode: 'BUFFERED',
        responseBodyMode: 'BUFFERED',
      },
      allowModeOverride: true,
      messageTimeoutMs: 5000,
    });
    const body = Buffer.from(JSON.stringify(chat(200)));
    continued(await router.runRequest(headers(KEYS.frank), [body]));
    router.close();
    await waitFor(() => accessLines(h).some((l) => l.consumer === 'frank'));
    assert.equal(await usageOf('frank'), undefined, 'a released request was counted');

    // $0.20 each against $0.25 a day: these fit only if the aborted request's share came back.
    const startedMs = Date.now();
    const { router: r2, routed } = await sendRequest(
      h,
      headers(KEYS.frank),
      chat(200),
      'sluice/backend/openai',
    );
    // Envoy retries: the upstream filter runs once more for the second attempt.
    const again = new ExtProcFilter(h.client, upstreamFilter('sluice/backend/openai'));
    continued(await again.runRequest(continued(routed).headers, [continued(routed).body]));
    again.close();
    continued(await r2.runResponse(JSON_RESPONSE, [completion(13)]));
    await waitFor(() => accessLines(h).some((l) => l.consumer === 'frank' && l.attempts === 2));
    const u = await usageOf('frank');
    assert.equal(u?.requests, 1, 'the usage report counts the client request once');
    assert.equal(u?.totalTokens, 13, 'the retried attempt had no usage to count');
    // Requests per minute count both attempts (the released request gave its own back). The
    // reservation's minute is one of those the request ran in.
    const minutes = new Set([startedMs, Date.now()].map((t) => Math.floor(t / 60_000) * 60_000));
    const levels = await h.ext.stateStore.levels(
      'gov',
      [...minutes].map((m) => `rpm|consumer=frank|requests|${m}`),
      Date.now(),
    );
    assert.equal(
      levels.reduce((a, b) => a + b, 0),
      2,
    );
    const third = await sendRequest(h, headers(KEYS.frank), chat(200), 'sluice/backend/openai');
    continued(third.routed);
    third.router.close();
  });
});

describe('conformance: governance shadow mode and late refusals', () => {
  it('shadow mode lets refused requests through and logs would_* verdicts', async () => {
    const anon = await sendRequest(
      h,
      headers(undefined),
      chat(10, { model: 'gpt-watched' }),
      'sluice/backend/openai',
    );
    continued(anon.routed);
    anon.router.close();
    const over = await sendRequest(
      h,
      headers(KEYS.grace),
      chat(100, { model: 'gpt-watched' }),
      'sluice/backend/openai',
    );
    continued(over.routed);
    over.router.close();
    await waitFor(() => accessLines(h).some((l) => l.consumer === 'grace'));
    const verdicts = accessLines(h)
      .filter((l) => l.governance_policy === 'watch')
      .flatMap((l) => l.verdicts as string[]);
    assert.ok(verdicts.includes('would_unauthenticated'), verdicts.join());
    assert.ok(verdicts.includes('would_budget_exceeded'), verdicts.join());
  });

  it('gives a reservation back when masking refuses the request afterwards', async () => {
    const card = chat(200, {
      model: 'gpt-blocking',
      messages: [{ role: 'user', content: 'my card is 4111 1111 1111 1111' }],
    });
    const blocked = await sendRequest(h, headers(KEYS.heidi), card, 'sluice/backend/openai');
    assert.equal(refused(blocked.routed).status, 403);
    await h.ext.settled();
    // $0.20 against $0.25: fits only if the blocked request's $0.20 came back.
    const ok = await sendRequest(
      h,
      headers(KEYS.heidi),
      chat(200, { model: 'gpt-blocking' }),
      'sluice/backend/openai',
    );
    continued(ok.routed);
    ok.router.close();
  });
});

describe('conformance: governance metrics', () => {
  it('counts spend per consumer and team', async () => {
    await h.ext.settled();
    const text = await h.registry.metrics();
    const spend = text.split('\n').filter((l) => l.startsWith('sluice_spend_usd_total{'));
    assert.ok(
      spend.some((l) => l.includes('sluice_consumer="dave"') && l.includes('sluice_team="t-dave"')),
      spend.join('\n'),
    );
  });
});
