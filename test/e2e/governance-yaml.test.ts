// Governance configured the way users configure it: AIRoute and AIPolicy YAML (consumers, access,
// limits, pricing) plus consumer Secrets written by `sluice keys create --file`, run by the
// standalone gateway (operator translation → ADS → extproc and the data plane), called with the
// official SDKs. Nothing here hands the extproc a config directly.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { estimateRequestInputTokens } from '../../extproc/usage/estimate.js';
import { main as keysMain } from '../../operator/keys/main.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import {
  counterValue,
  extprocVersions,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  until,
  untilExtprocApplies,
  type YamlGateway,
} from './harness.js';

const UPSTREAM = { openai: 'sk-upstream-gov-yaml', anthropic: 'sk-ant-upstream-gov-yaml' };

/** Consumer → team. Each test uses its own consumers, so limits per consumer never interfere. */
const CONSUMERS = {
  app: 'apps',
  intern: 'interns',
  revokee: 'apps',
  spender: 'apps',
  burster: 'apps',
  streamer: 'apps',
  live: 'apps',
} as const;
type ConsumerName = keyof typeof CONSUMERS;

// USD per million tokens = micro-dollars per token: one token costs exactly $0.001.
const MICROS_PER_TOKEN = 1000;
const PRICE = { inputPerMTok: MICROS_PER_TOKEN, outputPerMTok: MICROS_PER_TOKEN };
/** Every answer of the OpenAI mock reports this usage, so what a request costs is known. */
const USAGE = { input: 12, output: 9 };
const ACTUAL_TOKENS = USAGE.input + USAGE.output;

// The spend tests send this body; the gateway reserves its prompt estimate plus max_tokens. The
// mock answers with more output than max_tokens, so each request costs more than its estimate.
const SPEND_PROMPT = 'one two three four five six seven eight';
const SPEND_MAX_TOKENS = 4;
const spendBody = (model: string) => ({
  model,
  max_tokens: SPEND_MAX_TOKENS,
  messages: [{ role: 'user' as const, content: SPEND_PROMPT }],
});
const SPEND_ESTIMATE_TOKENS =
  estimateRequestInputTokens('chat', spendBody('gpt-budget')) + SPEND_MAX_TOKENS;
// Room for one actual request plus one estimate, and a token: the second request is admitted
// (A + E ≤ L), the third is not (2A + E > L), and the two admitted cost 2A, over L by A − E − 1.
const DAILY_TOKENS = ACTUAL_TOKENS + SPEND_ESTIMATE_TOKENS + 1;
const DAILY_USD = (DAILY_TOKENS * MICROS_PER_TOKEN) / 1e6;

// Tokens per minute: three burst requests fit at once, a fourth does not.
const BURST_MAX_TOKENS = 100;
const burstBody = (model: string, maxTokens = BURST_MAX_TOKENS) => ({
  model,
  max_tokens: maxTokens,
  messages: [{ role: 'user' as const, content: 'hi' }],
});
const BURST_ESTIMATE =
  estimateRequestInputTokens('chat', burstBody('gpt-burst')) + BURST_MAX_TOKENS;
const BURST_FITS = 3;
const TPM = BURST_FITS * BURST_ESTIMATE + Math.floor(BURST_ESTIMATE / 2);
// A stream reservation more than half the minute's tokens: two never fit together.
const STREAM_MAX_TOKENS = Math.floor(TPM / 2) + 1;
const STREAM_ESTIMATE =
  estimateRequestInputTokens('chat', burstBody('gpt-stream', STREAM_MAX_TOKENS)) +
  STREAM_MAX_TOKENS;

const ROUTES = ['chat', 'claude', 'budget', 'burst', 'stream', 'live'];

function route(name: string, models: string[], provider: 'openai' | 'anthropic', svc: string) {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'e2e' },
    spec: {
      models: models.map((exact) => ({ exact })),
      backends: [
        {
          name: provider,
          provider,
          endpoint: { service: { name: svc, port: 80 } },
          credential: { secretRef: { name: provider } },
        },
      ],
    },
  };
}

function policy(name: string, targets: string[], spec: Record<string, unknown>) {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIPolicy',
    metadata: { name, namespace: 'e2e' },
    spec: { targetRefs: targets.map((t) => ({ name: t })), ...spec },
  };
}

function manifests(ports: { openai: number; anthropic: number; burst: number }, liveUsd: number) {
  return [
    route('chat', ['gpt-main', 'gpt-restricted'], 'openai', 'mock-openai'),
    route('claude', ['claude-main'], 'anthropic', 'mock-anthropic'),
    route('budget', ['gpt-budget'], 'openai', 'mock-openai'),
    route('burst', ['gpt-burst'], 'openai', 'mock-burst'),
    route('stream', ['gpt-stream'], 'openai', 'mock-openai'),
    route('live', ['gpt-live'], 'openai', 'mock-openai'),
    // Identity, access and prices for every route; each limits policy adds its own section.
    policy('identity', ROUTES, {
      consumers: { required: true, keys: {} },
      access: {
        default: 'allow',
        rules: [
          {
            name: 'interns-not-restricted',
            effect: 'deny',
            teams: ['interns'],
            models: ['gpt-restricted'],
          },
        ],
      },
      pricing: { models: { 'gpt-*': PRICE, 'claude-*': PRICE } },
    }),
    policy('budget', ['budget'], {
      limits: {
        rules: [
          { name: 'daily', per: ['consumer'], spendPerDayUsd: DAILY_USD },
          // Generous: here only so that successes carry x-ratelimit-* headers.
          { name: 'rpm', per: ['consumer'], requestsPerMinute: 1000 },
        ],
      },
    }),
    policy('tpm', ['burst', 'stream'], {
      limits: { rules: [{ name: 'tpm', per: ['consumer'], tokensPerMinute: TPM }] },
    }),
    policy('live-budget', ['live'], {
      limits: { rules: [{ name: 'live-daily', per: ['consumer'], spendPerDayUsd: liveUsd }] },
    }),
    secretDoc('openai', UPSTREAM.openai),
    secretDoc('anthropic', UPSTREAM.anthropic),
    ...serviceDocs('mock-openai', ports.openai),
    ...serviceDocs('mock-anthropic', ports.anthropic),
    ...serviceDocs('mock-burst', ports.burst),
  ];
}

/** `sluice keys …` in-process, exactly as the CLI runs it; fails the test on a non-zero exit. */
async function keys(argv: string[]): Promise<string> {
  let out = '';
  let err = '';
  const code = await keysMain(argv, { out: (s) => (out += s), err: (s) => (err += s) });
  assert.equal(code, 0, `sluice keys ${argv[0]}: ${err}`);
  return out;
}

interface Created {
  key: string;
  keyId: string;
}

function minuteOf(ms: number): number {
  return Math.floor(ms / 60_000);
}

function dayOf(ms: number): number {
  return Math.floor(ms / 86_400_000);
}

/** The rejection of a promise that must reject (a resolved one fails the test). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => assert.fail('the request was admitted'),
    (e: unknown) => e,
  );
}

describe('e2e: governance from AIPolicy YAML and `sluice keys` with the official SDKs', () => {
  let openaiMock: MockProvider;
  let anthropicMock: MockProvider;
  let burstMock: MockProvider;
  let openBurst!: () => void;
  let g: YamlGateway;
  let keysFile: string;
  const created = {} as Record<ConsumerName, Created>;
  let ports: { openai: number; anthropic: number; burst: number };

  before(async () => {
    openaiMock = await startMockProvider({
      name: 'openai',
      auth: { bearer: UPSTREAM.openai },
      defaults: { usage: USAGE },
    });
    anthropicMock = await startMockProvider({
      name: 'anthropic',
      auth: { anthropicKey: UPSTREAM.anthropic },
    });
    // Answers only once the burst test opens the gate, so its admitted requests stay in flight
    // (reserved, not yet reconciled) while the others are judged.
    const gate = new Promise<void>((r) => (openBurst = r));
    burstMock = await startMockProvider({
      name: 'burst',
      auth: { bearer: UPSTREAM.openai },
      defaults: { hold: gate, usage: USAGE },
    });
    ports = { openai: openaiMock.port, anthropic: anthropicMock.port, burst: burstMock.port };
    g = await startYamlGateway(manifests(ports, DAILY_USD), {
      setup: async (dir) => {
        keysFile = join(dir, 'keys.yaml');
        for (const [consumer, team] of Object.entries(CONSUMERS)) {
          const out = await keys([
            'create',
            '--consumer',
            consumer,
            '--team',
            team,
            '--file',
            keysFile,
            '--json',
          ]);
          created[consumer as ConsumerName] = JSON.parse(out) as Created;
        }
      },
    });
  });
  after(async () => {
    openBurst?.();
    await g?.close();
    await openaiMock?.close();
    await anthropicMock?.close();
    await burstMock?.close();
  });

  const openai = (apiKey: string, headers: Record<string, string | null> = {}) =>
    new OpenAI({
      baseURL: `${g.gateway.url}/v1`,
      apiKey,
      maxRetries: 0,
      defaultHeaders: headers,
    });
  const anthropic = (apiKey: string, headers: Record<string, string | null> = {}) =>
    new Anthropic({ baseURL: g.gateway.url, apiKey, maxRetries: 0, defaultHeaders: headers });
  const chat = (c: OpenAI, model = 'gpt-main') =>
    c.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });
  const message = (c: Anthropic) =>
    c.messages.create({
      model: 'claude-main',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    });
  const keyOf = (c: ConsumerName) => created[c].key;

  it('the keys file holds digests only', async () => {
    const text = await readFile(keysFile, 'utf8');
    for (const c of Object.keys(CONSUMERS) as ConsumerName[]) {
      assert.ok(!text.includes(keyOf(c)), `the keys file holds the raw key of ${c}`);
      assert.match(keyOf(c), /^sk-sluice-/);
    }
  });

  it('a virtual key is accepted and never reaches the provider (OpenAI, Bearer)', async () => {
    openaiMock.take();
    const r = await chat(openai(keyOf('app')));
    assert.equal(r.choices[0]?.message.content, 'echo: hi');
    const [seen] = openaiMock.take();
    assert.ok(seen);
    assert.equal(seen.headers['authorization'], `Bearer ${UPSTREAM.openai}`);
    assert.ok(!JSON.stringify(seen.headers).includes(keyOf('app')), 'the virtual key was sent');
  });

  it('a virtual key is accepted and never reaches the provider (Anthropic, x-api-key)', async () => {
    anthropicMock.take();
    const m = await message(anthropic(keyOf('app')));
    assert.equal(m.content[0]?.type === 'text' ? m.content[0].text : '', 'echo: hi');
    const [seen] = anthropicMock.take();
    assert.ok(seen);
    assert.equal(seen.headers['x-api-key'], UPSTREAM.anthropic);
    assert.equal(seen.headers['authorization'], undefined);
    assert.ok(!JSON.stringify(seen.headers).includes(keyOf('app')), 'the virtual key was sent');
  });

  it('no key and a bad key are AuthenticationErrors (401) in both SDKs; nothing is sent', async () => {
    openaiMock.take();
    anthropicMock.take();
    const cases: [unknown, RegExp][] = [
      [
        await rejection(chat(openai('unused', { authorization: null }))),
        /A valid API key or identity is required/,
      ],
      [await rejection(chat(openai('sk-sluice-not-a-key'))), /The API key is not valid/],
    ];
    for (const [err, message] of cases) {
      assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
      assert.equal(err.status, 401);
      assert.match(err.message, message);
    }
    const none = await rejection(
      message(anthropic('unused', { 'x-api-key': null, authorization: null })),
    );
    assert.ok(none instanceof Anthropic.AuthenticationError, String(none));
    assert.match(none.message, /A valid API key or identity is required/);
    const bad = await rejection(message(anthropic('sk-sluice-not-a-key')));
    assert.ok(bad instanceof Anthropic.AuthenticationError, String(bad));
    assert.match(bad.message, /The API key is not valid/);
    assert.deepEqual(openaiMock.take(), []);
    assert.deepEqual(anthropicMock.take(), []);
  });

  it('a key revoked with `sluice keys revoke --file` is refused once the reload applies', async () => {
    const key = keyOf('revokee');
    await chat(openai(key));
    await message(anthropic(key));
    const previous = extprocVersions(g).at(-1);
    const out = await keys(['revoke', '--id', created.revokee.keyId, '--file', keysFile]);
    assert.match(out, /Revoked key/);
    await untilExtprocApplies(g, previous);
    openaiMock.take();
    anthropicMock.take();
    const e1 = await rejection(chat(openai(key)));
    assert.ok(e1 instanceof OpenAI.AuthenticationError, String(e1));
    assert.match(e1.message, /The API key is not valid/);
    const e2 = await rejection(message(anthropic(key)));
    assert.ok(e2 instanceof Anthropic.AuthenticationError, String(e2));
    assert.deepEqual(openaiMock.take(), []);
    assert.deepEqual(anthropicMock.take(), []);
    // The other keys in the same file are untouched.
    assert.ok((await chat(openai(keyOf('app')))).choices[0]);
  });

  it('an access rule denies a model to a team: 403 naming the rule; /v1/models hides it', async () => {
    const intern = openai(keyOf('intern'));
    openaiMock.take();
    const err = await rejection(chat(intern, 'gpt-restricted'));
    assert.ok(err instanceof OpenAI.PermissionDeniedError, String(err));
    assert.equal(err.status, 403);
    assert.match(err.message, /"interns-not-restricted"/);
    assert.deepEqual(openaiMock.take(), []);
    // Another team may use it, and the intern may use the rest.
    assert.ok((await chat(openai(keyOf('app')), 'gpt-restricted')).choices[0]);
    assert.ok((await chat(intern, 'gpt-main')).choices[0]);

    const ids = async (c: OpenAI) => {
      const out: string[] = [];
      for await (const m of c.models.list()) out.push(m.id);
      return out.sort();
    };
    const all = [
      'claude-main',
      'gpt-budget',
      'gpt-burst',
      'gpt-live',
      'gpt-main',
      'gpt-restricted',
      'gpt-stream',
    ];
    assert.deepEqual(await ids(openai(keyOf('app'))), all);
    assert.deepEqual(
      await ids(intern),
      all.filter((m) => m !== 'gpt-restricted'),
    );
    const anon = await rejection(ids(openai('unused', { authorization: null })));
    assert.ok(anon instanceof OpenAI.AuthenticationError, String(anon));
  });

  it('a daily spend limit: admitted until the next estimate would not fit, then RateLimitError', async () => {
    const c = openai(keyOf('spender'));
    const startDay = dayOf(Date.now());
    let admitted = 0;
    let refused: unknown;
    for (let i = 0; i < 10 && refused === undefined; i++) {
      try {
        const { response } = await c.chat.completions
          .create(spendBody('gpt-budget'))
          .withResponse();
        admitted++;
        assert.equal(response.headers.get('x-ratelimit-limit-requests'), '1000');
        // This minute's requests so far (fewer when the minute turned during the test).
        const remaining = Number(response.headers.get('x-ratelimit-remaining-requests'));
        assert.ok(remaining >= 1000 - admitted && remaining < 1000, `remaining ${remaining}`);
        assert.ok(response.headers.get('x-ratelimit-reset-requests'));
      } catch (err) {
        refused = err;
      }
    }
    assert.ok(refused instanceof OpenAI.RateLimitError, String(refused));
    assert.equal(refused.status, 429);
    assert.match(refused.message, /Daily spend limit "daily" reached/);
    const retryAfter = Number(refused.headers?.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 86_400, `retry-after ${retryAfter}`);
    // Admission is all or nothing against what was spent plus the next estimate.
    if (dayOf(Date.now()) === startDay) assert.equal(admitted, 2);
    else assert.ok(admitted >= 2);

    // What was recorded: the reconciled actual cost of each admitted request, never more than
    // one request's estimate error over the limit.
    const spentUsd = await counterValue(g.registry, 'sluice_spend_usd_total', {
      sluice_consumer: 'spender',
    });
    const spent = Math.round(spentUsd * 1e6);
    assert.equal(spent, admitted * ACTUAL_TOKENS * MICROS_PER_TOKEN);
    const limit = DAILY_TOKENS * MICROS_PER_TOKEN;
    const estimateError = (ACTUAL_TOKENS - SPEND_ESTIMATE_TOKENS) * MICROS_PER_TOKEN;
    if (dayOf(Date.now()) === startDay) {
      assert.ok(spent > limit, 'the setup is meant to end just over the limit');
      assert.ok(spent - limit <= estimateError, `${spent - limit} micro-USD over the limit`);
    }
    const logged = g.accessLog
      .filter((e) => e['consumer'] === 'spender' && e['status'] === 200)
      .map((e) => Math.round((e['cost_usd'] as number) * 1e6));
    assert.deepEqual(logged, Array<number>(admitted).fill(ACTUAL_TOKENS * MICROS_PER_TOKEN));
  });

  it('tokens per minute under 20 parallel requests: no more are admitted than fit', async () => {
    const c = openai(keyOf('burster'));
    const startMinute = minuteOf(Date.now());
    let refusals = 0;
    const calls = Array.from({ length: 20 }, () =>
      c.chat.completions
        .create(burstBody('gpt-burst'))
        .withResponse()
        .catch((err: unknown) => {
          refusals++;
          return err;
        }),
    );
    // Every request has been judged once each one was either refused or reached the mock.
    await until(() => refusals + burstMock.requests.length === 20 || undefined);
    const minutes = new Set([startMinute, minuteOf(Date.now())]).size;
    openBurst();
    const results = await Promise.all(calls);
    const ok = results.filter((r) => !(r instanceof Error)) as { response: Response }[];
    const errors = results.filter((r) => r instanceof Error);
    assert.equal(ok.length, burstMock.requests.length);
    // Fixed one-minute windows: a burst that straddles a boundary may use two.
    if (minutes === 1) assert.equal(ok.length, BURST_FITS);
    else assert.ok(ok.length <= BURST_FITS * minutes, `${ok.length} admitted`);
    for (const err of errors) {
      assert.ok(err instanceof OpenAI.RateLimitError, String(err));
      assert.match(err.message, /Tokens-per-minute limit "tpm" reached/);
      assert.ok(Number(err.headers?.get('retry-after')) >= 1);
      assert.equal(err.headers?.get('x-ratelimit-limit-tokens'), String(TPM));
    }
    const remaining: number[] = [];
    for (const { response } of ok) {
      assert.equal(response.headers.get('x-ratelimit-limit-tokens'), String(TPM));
      remaining.push(Number(response.headers.get('x-ratelimit-remaining-tokens')));
    }
    // Each admission saw the reservations admitted before it, none reconciled yet.
    if (minutes === 1) {
      assert.deepEqual(
        remaining.sort((a, b) => a - b),
        [3, 2, 1].map((n) => TPM - n * BURST_ESTIMATE),
      );
    }
  });

  it('a client abort mid-stream: the reservation is reconciled to the partial usage', async () => {
    const c = openai(keyOf('streamer'));
    const startMinute = minuteOf(Date.now());
    openaiMock.enqueue({
      chunkDelayMs: 20,
      content: Array.from({ length: 200 }, (_, i) => `word${i}`).join(' '),
    });
    const controller = new AbortController();
    const stream = await c.chat.completions.create(
      { ...burstBody('gpt-stream', STREAM_MAX_TOKENS), stream: true },
      { signal: controller.signal },
    );
    let chunks = 0;
    try {
      for await (const _ of stream) {
        if (++chunks === 3) controller.abort();
      }
    } catch {
      // Aborting may end the iteration or throw, depending on where the SDK was.
    }
    assert.equal(chunks, 3);
    const line = await until(() =>
      g.accessLog.find((e) => e['consumer'] === 'streamer' && e['outcome'] === 'aborted'),
    );
    const used = (line['tokens'] as { total: number } | undefined)?.total;
    assert.ok(used !== undefined && used > 0 && used < STREAM_ESTIMATE, `used ${used}`);

    // Two such reservations never fit the minute together: this one is admitted only because
    // the aborted request's reservation was replaced by what it actually used.
    const { response } = await c.chat.completions
      .create(burstBody('gpt-stream', STREAM_MAX_TOKENS))
      .withResponse();
    const remaining = Number(response.headers.get('x-ratelimit-remaining-tokens'));
    if (minuteOf(Date.now()) === startMinute) {
      assert.equal(remaining, TPM - used - STREAM_ESTIMATE);
    } else {
      assert.ok([TPM - STREAM_ESTIMATE, TPM - used - STREAM_ESTIMATE].includes(remaining));
    }
  });

  it('raising a limit by rewriting the YAML applies under load, no request dropped', async () => {
    const c = openai(keyOf('live'));
    let stop = false;
    let gateOpen = false;
    let refusedBefore = 0;
    const afterGate: string[] = [];
    const failures: unknown[] = [];
    const worker = async (): Promise<void> => {
      while (!stop) {
        const startedAfterGate = gateOpen;
        try {
          await c.chat.completions.create(spendBody('gpt-live'));
          if (startedAfterGate) afterGate.push('ok');
        } catch (err) {
          if (err instanceof OpenAI.RateLimitError && !startedAfterGate) refusedBefore++;
          else failures.push(err);
        }
      }
    };
    const workers = [worker(), worker(), worker()];
    // Traffic runs into the old limit first, so the change happens under load.
    await until(() => refusedBefore > 0 || undefined);
    const previous = extprocVersions(g).at(-1);
    await g.write(manifests(ports, 100));
    await untilExtprocApplies(g, previous);
    gateOpen = true;
    await until(() => afterGate.length >= 10 || undefined);
    stop = true;
    await Promise.all(workers);
    // Every request started once the extproc held the new limit was admitted; none failed.
    assert.deepEqual(failures, []);
    assert.ok(afterGate.length >= 10);
  });

  it('no log line of the whole run holds a virtual key', () => {
    assert.ok(
      g.accessLog.some((e) => e['consumer'] === 'app'),
      'no access log names a consumer',
    );
    for (const line of g.logLines) {
      for (const c of Object.keys(CONSUMERS) as ConsumerName[]) {
        assert.ok(!line.includes(keyOf(c)), `a log line holds the key of ${c}`);
      }
    }
  });
});
