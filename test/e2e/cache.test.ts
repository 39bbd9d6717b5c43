// The response cache configured the way users configure it: AIRoute and AIPolicy YAML with a
// `cache` section, consumers from `sluice keys create`, run by `sluice run` and called with the
// official SDKs. The mock providers echo the last user message and count what they are sent, so
// a hit is a request the provider never saw.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { MemoryStore } from '../../extproc/state/memory.js';
import { main as keysMain } from '../../operator/keys/main.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import { main as usageMain } from '../../operator/usage/main.js';
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

const UPSTREAM = { openai: 'sk-upstream-cache', anthropic: 'sk-ant-upstream-cache' };
const CONSUMERS = { alice: 'red', bob: 'red', carol: 'blue' } as const;
type ConsumerName = keyof typeof CONSUMERS;
const USAGE = { input: 12, output: 9 };
const PRICE = { inputPerMTok: 1000, outputPerMTok: 1000 };
const EMAILS = ['ada.lovelace@example.org', 'charles.babbage@example.net'];

function route(name: string, model: string, provider: 'openai' | 'anthropic') {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'e2e' },
    spec: {
      models: [{ exact: model }],
      backends: [
        {
          name: provider,
          provider,
          endpoint: { service: { name: `mock-${provider}`, port: 80 } },
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

function manifests(ports: { openai: number; anthropic: number }, ttlSeconds: number) {
  return [
    route('chat', 'gpt-cached', 'openai'),
    route('claude', 'claude-cached', 'anthropic'),
    route('team', 'gpt-team', 'openai'),
    route('masked', 'gpt-masked', 'openai'),
    route('plain', 'gpt-plain', 'openai'),
    policy('identity', ['chat', 'claude', 'team', 'masked', 'plain'], {
      consumers: { required: true, keys: {} },
      // Limits make the gateway keep usage in its state store (what `sluice usage` reads).
      limits: { rules: [{ name: 'daily', per: ['consumer'], spendPerDayUsd: 1000 }] },
      pricing: { models: { '*': PRICE } },
    }),
    policy('cache', ['chat', 'claude'], { cache: { ttlSeconds } }),
    policy('team-cache', ['team'], { cache: { scope: 'team' } }),
    policy('masked-cache', ['masked'], {
      masking: { detectors: ['EMAIL'], actions: { EMAIL: 'mask' } },
      cache: {},
    }),
    secretDoc('openai', UPSTREAM.openai),
    secretDoc('anthropic', UPSTREAM.anthropic),
    ...serviceDocs('mock-openai', ports.openai),
    ...serviceDocs('mock-anthropic', ports.anthropic),
  ];
}

describe('e2e: response cache from AIPolicy YAML with the official SDKs', () => {
  let openaiMock: MockProvider;
  let anthropicMock: MockProvider;
  let g: YamlGateway;
  const state = new MemoryStore();
  let ports: { openai: number; anthropic: number };
  const created = {} as Record<ConsumerName, string>;

  before(async () => {
    openaiMock = await startMockProvider({
      name: 'openai',
      auth: { bearer: UPSTREAM.openai },
      defaults: { usage: USAGE },
    });
    anthropicMock = await startMockProvider({
      name: 'anthropic',
      auth: { anthropicKey: UPSTREAM.anthropic },
      defaults: { usage: USAGE },
    });
    ports = { openai: openaiMock.port, anthropic: anthropicMock.port };
    g = await startYamlGateway(manifests(ports, 300), {
      stateStore: state,
      setup: async (dir) => {
        const file = join(dir, 'keys.yaml');
        for (const [consumer, team] of Object.entries(CONSUMERS)) {
          let out = '';
          const code = await keysMain(
            ['create', '--consumer', consumer, '--team', team, '--file', file, '--json'],
            { out: (s) => (out += s), err: () => undefined },
          );
          assert.equal(code, 0);
          created[consumer as ConsumerName] = (JSON.parse(out) as { key: string }).key;
        }
      },
    });
  });
  after(async () => {
    await g?.close();
    await openaiMock?.close();
    await anthropicMock?.close();
  });

  const openai = (who: ConsumerName, headers: Record<string, string> = {}) =>
    new OpenAI({
      baseURL: `${g.gateway.url}/v1`,
      apiKey: created[who],
      maxRetries: 0,
      timeout: 15_000,
      defaultHeaders: headers,
    });
  const anthropic = (who: ConsumerName) =>
    new Anthropic({ baseURL: g.gateway.url, apiKey: created[who], maxRetries: 0, timeout: 15_000 });

  /** Resolves once `n` more answers were stored (the write follows the caller's answer). */
  async function stored(before: number, n = 1): Promise<void> {
    await until(async () => {
      const v = await counterValue(g.registry, 'sluice_cache_stores_total', { result: 'stored' });
      return v >= before + n ? true : undefined;
    });
  }
  const storedNow = () =>
    counterValue(g.registry, 'sluice_cache_stores_total', { result: 'stored' });

  const ask = (c: OpenAI, content: string, model = 'gpt-cached') =>
    c.chat.completions
      .create({ model, temperature: 0, messages: [{ role: 'user', content }] })
      .withResponse();

  it('OpenAI: a repeated request is served from the cache, JSON then streamed', async () => {
    openaiMock.take();
    const s0 = await storedNow();
    const first = await ask(openai('alice'), 'What is a sluice?');
    assert.equal(first.response.headers.get('x-sluice-cache'), 'miss');
    await stored(s0);
    const second = await ask(openai('alice'), 'What is a sluice?');
    assert.equal(second.response.headers.get('x-sluice-cache'), 'hit');
    assert.match(second.response.headers.get('age') ?? '', /^\d+$/);
    assert.equal(second.data.choices[0]!.message.content, first.data.choices[0]!.message.content);
    assert.deepEqual(second.data.usage, first.data.usage);
    // The same answer, asked for as a stream: replayed as chunks the SDK assembles.
    const stream = openai('alice').chat.completions.stream({
      model: 'gpt-cached',
      temperature: 0,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'What is a sluice?' }],
    });
    const final = await stream.finalChatCompletion();
    assert.equal(final.choices[0]!.message.content, first.data.choices[0]!.message.content);
    assert.equal(final.usage?.total_tokens, USAGE.input + USAGE.output);
    assert.equal(openaiMock.take().length, 1, 'the provider answered once');
  });

  it('OpenAI: a streamed miss is stored and serves a JSON request', async () => {
    openaiMock.take();
    const s0 = await storedNow();
    const stream = await openai('alice').chat.completions.create({
      model: 'gpt-cached',
      temperature: 0,
      stream: true,
      messages: [{ role: 'user', content: 'Streams first, please.' }],
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    assert.match(text, /Streams first/);
    await stored(s0);
    const hit = await ask(openai('alice'), 'Streams first, please.');
    assert.equal(hit.response.headers.get('x-sluice-cache'), 'hit');
    assert.equal(hit.data.choices[0]!.message.content, text);
    assert.equal(hit.data.choices[0]!.finish_reason, 'stop');
    assert.equal(openaiMock.take().length, 1);
  });

  it('Anthropic: JSON miss serves a streamed request, streamed miss serves JSON', async () => {
    anthropicMock.take();
    const body = {
      model: 'claude-cached',
      max_tokens: 64,
      temperature: 0,
      messages: [{ role: 'user' as const, content: 'Name a river.' }],
    };
    let s0 = await storedNow();
    const first = await anthropic('alice').messages.create(body).withResponse();
    assert.equal(first.response.headers.get('x-sluice-cache'), 'miss');
    await stored(s0);
    const replayed = await anthropic('alice').messages.stream(body).finalMessage();
    assert.deepEqual(replayed.content, first.data.content);
    assert.equal(replayed.stop_reason, first.data.stop_reason);
    assert.equal(replayed.usage.output_tokens, USAGE.output);

    s0 = await storedNow();
    const other = { ...body, messages: [{ role: 'user' as const, content: 'Name a lake.' }] };
    const streamed = await anthropic('alice').messages.stream(other).finalMessage();
    await stored(s0);
    const hit = await anthropic('alice').messages.create(other).withResponse();
    assert.equal(hit.response.headers.get('x-sluice-cache'), 'hit');
    assert.deepEqual(hit.data.content, streamed.content);
    assert.equal(anthropicMock.take().length, 2, 'two answers, each bought once');
  });

  it('tenants: consumer scope shares with no one, team scope only within the team', async () => {
    openaiMock.take();
    let s0 = await storedNow();
    await ask(openai('alice'), 'Shared secret plan?');
    await stored(s0);
    const bob = await ask(openai('bob'), 'Shared secret plan?');
    assert.equal(bob.response.headers.get('x-sluice-cache'), 'miss', 'same team, consumer scope');
    assert.equal(openaiMock.take().length, 2);

    s0 = await storedNow();
    await ask(openai('alice'), 'Team question', 'gpt-team');
    await stored(s0);
    const teammate = await ask(openai('bob'), 'Team question', 'gpt-team');
    assert.equal(teammate.response.headers.get('x-sluice-cache'), 'hit');
    const outsider = await ask(openai('carol'), 'Team question', 'gpt-team');
    assert.equal(outsider.response.headers.get('x-sluice-cache'), 'miss');
    assert.equal(openaiMock.take().length, 2, 'alice and carol were answered upstream');
  });

  it('cache-control no-cache and no-store bypass; sampling requests are not cached', async () => {
    openaiMock.take();
    const s0 = await storedNow();
    await ask(openai('carol'), 'Bypass me');
    await stored(s0);
    for (const directive of ['no-cache', 'no-store']) {
      const r = await ask(openai('carol', { 'cache-control': directive }), 'Bypass me');
      assert.equal(r.response.headers.get('x-sluice-cache'), 'bypass', directive);
    }
    const sampled = await openai('carol')
      .chat.completions.create({
        model: 'gpt-cached',
        messages: [{ role: 'user', content: 'Bypass me' }],
      })
      .withResponse();
    assert.equal(sampled.response.headers.get('x-sluice-cache'), 'bypass');
    assert.equal(openaiMock.take().length, 4);
    // A route without a cache section says nothing about a cache.
    const plain = await ask(openai('carol'), 'Bypass me', 'gpt-plain');
    assert.equal(plain.response.headers.get('x-sluice-cache'), null);
  });

  it('masking: the key holds placeholders, and a hit restores this request’s own values', async () => {
    openaiMock.take();
    const s0 = await storedNow();
    const first = await ask(openai('alice'), `Write to ${EMAILS[0]} today.`, 'gpt-masked');
    assert.equal(first.data.choices[0]!.message.content, `echo: Write to ${EMAILS[0]} today.`);
    await stored(s0);
    const second = await ask(openai('alice'), `Write to ${EMAILS[1]} today.`, 'gpt-masked');
    assert.equal(second.response.headers.get('x-sluice-cache'), 'hit');
    assert.equal(second.data.choices[0]!.message.content, `echo: Write to ${EMAILS[1]} today.`);
    const seen = openaiMock.take();
    assert.equal(seen.length, 1);
    assert.ok(!seen[0]!.body.toString('utf8').includes(EMAILS[0]!));
  });

  it('accounting: a hit is logged as a hit, costs nothing and counts what it saved', async () => {
    const hits = g.accessLog.filter(
      (e) => (e['cache'] as { result?: string } | undefined)?.result === 'hit',
    );
    assert.ok(hits.length >= 5);
    for (const h of hits) {
      assert.equal(h['status'], 200);
      assert.equal(h['attempts'], 0);
      assert.ok(!h['cost_usd'], 'a hit costs nothing');
    }
    assert.ok(
      (await counterValue(g.registry, 'sluice_cache_requests_total', { result: 'hit' })) >= 5,
    );
    const saved = await counterValue(g.registry, 'sluice_cache_saved_tokens_total', {
      sluice_route: 'e2e/chat',
      sluice_consumer: 'alice',
    });
    assert.equal(saved, 3 * (USAGE.input + USAGE.output), 'three hits of alice on chat');
    assert.ok(
      (await counterValue(g.registry, 'sluice_cache_saved_usd_total', {
        sluice_route: 'e2e/chat',
      })) > 0,
    );
    for (const line of g.logLines) for (const e of EMAILS) assert.ok(!line.includes(e));
  });

  it('sluice usage counts each hit as cached, apart from provider answers, as the access log does', async () => {
    type Row = {
      consumer: string | null;
      requests: number;
      cachedRequests: number;
      savedTokens: number;
      savedUsd: string;
    };
    const fromLog = (who: string) => {
      const mine = g.accessLog.filter((e) => e['consumer'] === who && e['status'] === 200);
      const hits = mine.filter(
        (e) => (e['cache'] as { result?: string } | undefined)?.result === 'hit',
      );
      return {
        requests: mine.length - hits.length,
        cachedRequests: hits.length,
        savedTokens: hits.reduce(
          (n, e) => n + ((e['cache'] as { savedTokens?: number }).savedTokens ?? 0),
          0,
        ),
      };
    };
    const usage = async (): Promise<Row[]> => {
      let out = '';
      let err = '';
      const code = await usageMain(['--json', '--redis-url', 'redis://unused'], {
        out: (x) => (out += x),
        err: (x) => (err += x),
        env: {},
        open: () => Promise.resolve(state),
      });
      assert.equal(code, 0, err);
      return (JSON.parse(out) as { rows: Row[] }).rows;
    };
    // The usage writes follow the answers: wait until they match the access log.
    const same = async () => {
      const rows = await usage();
      for (const who of ['alice', 'bob', 'carol']) {
        const r = rows.find((x) => x.consumer === who);
        const want = fromLog(who);
        if (
          !r ||
          r.requests !== want.requests ||
          r.cachedRequests !== want.cachedRequests ||
          r.savedTokens !== want.savedTokens
        )
          return undefined;
      }
      return rows;
    };
    const deadline = Date.now() + 5000;
    let rows = await same();
    while (!rows) {
      if (Date.now() > deadline) {
        const got = JSON.stringify(await usage());
        const want = JSON.stringify(['alice', 'bob', 'carol'].map(fromLog));
        assert.fail(`usage ${got} does not match the access log ${want}`);
      }
      await new Promise((r) => setTimeout(r, 20));
      rows = await same();
    }
    const alice = rows.find((x) => x.consumer === 'alice')!;
    assert.ok(alice.cachedRequests >= 4, `alice's hits: ${alice.cachedRequests}`);
    assert.equal(alice.savedTokens, alice.cachedRequests * (USAGE.input + USAGE.output));
    // At $1000 per million tokens, each free hit saved 21 tokens' worth: $0.021.
    assert.equal(alice.savedUsd, (alice.cachedRequests * 0.021).toFixed(6));
    assert.equal(rows.find((x) => x.consumer === 'bob')!.cachedRequests, 1, 'the team hit');
    assert.equal(rows.find((x) => x.consumer === 'carol')!.cachedRequests, 0);
  });

  it('a policy change invalidates the route’s entries', async () => {
    openaiMock.take();
    const s0 = await storedNow();
    await ask(openai('bob'), 'Before the change');
    await stored(s0);
    assert.equal(
      (await ask(openai('bob'), 'Before the change')).response.headers.get('x-sluice-cache'),
      'hit',
    );
    const previous = extprocVersions(g).at(-1);
    await g.write(manifests(ports, 600));
    await untilExtprocApplies(g, previous);
    const after = await ask(openai('bob'), 'Before the change');
    assert.equal(after.response.headers.get('x-sluice-cache'), 'miss');
    assert.equal(openaiMock.take().length, 2);
  });
});
