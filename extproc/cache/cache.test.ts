import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { ExtprocConfig } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import type { PolicyState } from '../policy/state.js';
import { ResponseCache, type Hit, type LookupInput } from './cache.js';
import { MemoryCacheStore, type CacheStore } from './store.js';

function runtime(
  cache: Record<string, unknown>,
  mode: 'enforce' | 'shadow' = 'enforce',
  masking?: Record<string, unknown>,
) {
  return new RuntimeConfig(
    ExtprocConfig.parse({
      apiVersion: 'sluice.dev/extproc/v1',
      kind: 'ExtprocConfig',
      backends: [{ name: 'openai', cluster: 'c', provider: 'openai' }],
      routes: [
        {
          name: 'r',
          models: [{ prefix: 'gpt-' }],
          backends: [{ name: 'openai' }],
          policy: { name: 'p', mode, cache, ...(masking && { masking }) },
        },
      ],
    }),
    new Map(),
  );
}

const answer = (content: string, extra: Record<string, unknown> = {}) => ({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-x',
  choices: [{ index: 0, message: { role: 'assistant', content, ...extra }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 100, completion_tokens: 50, total_tokens: 150 },
});

function setup(
  cache: Record<string, unknown> = {},
  opts: { mode?: 'enforce' | 'shadow'; store?: CacheStore; masking?: Record<string, unknown> } = {},
) {
  const cfg = runtime(cache, opts.mode, opts.masking);
  const registry = new Registry();
  const store = opts.store ?? new MemoryCacheStore({ maxBytes: 1 << 20, now: () => 0 });
  const clock = { wall: 1_000_000 };
  const c = new ResponseCache({ store, registry, wallNow: () => clock.wall });
  const input = (over: Partial<LookupInput> = {}): LookupInput => ({
    cfg,
    route: cfg.routes[0]!,
    api: 'openai',
    operation: 'chat',
    path: '/v1/chat/completions',
    model: 'gpt-x',
    stream: false,
    includeUsage: false,
    body: { model: 'gpt-x', temperature: 0, messages: [{ role: 'user', content: 'q' }] },
    headers: new Map(),
    caller: { consumer: 'alice', team: 'red', method: 'key' },
    policy: undefined,
    ...over,
  });
  /** Stores `body` as the answer to `req` the way a miss does. */
  const fill = async (req: LookupInput, body: Record<string, unknown>) => {
    const r = await c.lookup(req);
    assert.ok(r && r.kind !== 'hit' && r.capture, `expected a capture, got ${r?.kind}`);
    r.capture.start(200, false, true);
    r.capture.push(Buffer.from(JSON.stringify(body)));
    await r.capture.finish();
  };
  return { c, registry, store, input, fill, clock };
}

async function metric(registry: Registry, name: string, labels: Record<string, string>) {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .reduce((a, v) => a + v.value, 0);
}

describe('response cache', () => {
  it('a route without a cache section is not asked', async () => {
    const cfg = new RuntimeConfig(
      ExtprocConfig.parse({
        apiVersion: 'sluice.dev/extproc/v1',
        kind: 'ExtprocConfig',
        backends: [{ name: 'openai', cluster: 'c', provider: 'openai' }],
        routes: [{ name: 'r', models: [{ prefix: 'gpt-' }], backends: [{ name: 'openai' }] }],
      }),
      new Map(),
    );
    const { c, input } = setup();
    assert.equal(await c.lookup(input({ cfg, route: cfg.routes[0]! })), undefined);
  });

  it('misses, stores a complete answer, then serves it with age and usage', async () => {
    const { c, input, fill, registry, clock } = setup();
    await fill(input(), answer('hello'));
    clock.wall += 5400;
    const hit = (await c.lookup(input())) as Hit;
    assert.equal(hit.kind, 'hit');
    assert.deepEqual(JSON.parse(hit.verdict.body), answer('hello'));
    assert.deepEqual(hit.verdict.headers.slice(0, 3), [
      ['content-type', 'application/json'],
      ['x-sluice-cache', 'hit'],
      ['age', '5'],
    ]);
    assert.equal(hit.usage?.totalTokens, 150);
    assert.equal(hit.charged, undefined);
    assert.equal(hit.record.savedTokens, 150);
    assert.equal(await metric(registry, 'sluice_cache_requests_total', { result: 'hit' }), 1);
    assert.equal(await metric(registry, 'sluice_cache_requests_total', { result: 'miss' }), 1);
  });

  it('charges a hit the configured share of the original usage', async () => {
    const { c, input, fill } = setup({ hitCostFraction: 0.1 });
    await fill(input(), answer('hello'));
    const hit = (await c.lookup(input())) as Hit;
    assert.deepEqual(
      [hit.charged?.inputTokens, hit.charged?.outputTokens, hit.charged?.totalTokens],
      [10, 5, 15],
    );
    assert.equal(hit.record.savedTokens, 135);
  });

  it('bypasses what it must not serve or store', async () => {
    const cases: [string, ReturnType<typeof setup>, Partial<LookupInput>][] = [
      ['shadow', setup({}, { mode: 'shadow' }), {}],
      ['scope', setup(), { caller: undefined }],
      [
        'scope',
        setup({ scope: 'team' }),
        { caller: { consumer: 'a', team: undefined, method: 'key' } },
      ],
      ['sampling', setup(), { body: { model: 'gpt-x', messages: [] } }],
      ['sampling', setup(), { body: { model: 'gpt-x', temperature: 0.7, messages: [] } }],
      ['operation', setup(), { operation: 'completions' }],
      ['operation', setup(), { operation: 'embeddings', stream: true }],
      ['no_store', setup(), { headers: new Map([['cache-control', 'max-age=0, No-Store']]) }],
      ['no_cache', setup(), { headers: new Map([['cache-control', 'no-cache']]) }],
      [
        'policy_failure',
        setup(),
        { policy: { failedOpen: true, verdicts: new Set() } as unknown as PolicyState },
      ],
    ];
    for (const [reason, { c, input }, over] of cases) {
      const r = await c.lookup(input(over));
      assert.equal(r?.kind, 'bypass', reason);
      assert.equal(r.record.reason, reason);
      // no-cache alone still stores the fresh answer for the next request.
      assert.equal(r.capture !== undefined, reason === 'no_cache', reason);
    }
    const { c, input } = setup({ cacheNonDeterministic: true });
    assert.equal((await c.lookup(input({ body: { model: 'gpt-x', messages: [] } })))?.kind, 'miss');
  });

  it('keeps consumers and teams apart by scope', async () => {
    const bob = { consumer: 'bob', team: 'red', method: 'key' as const };
    const consumer = setup();
    await consumer.fill(consumer.input(), answer('alice only'));
    assert.equal((await consumer.c.lookup(consumer.input({ caller: bob })))?.kind, 'miss');
    const team = setup({ scope: 'team' });
    await team.fill(team.input(), answer('red team'));
    assert.equal((await team.c.lookup(team.input({ caller: bob })))?.kind, 'hit');
    const carol = { consumer: 'carol', team: 'blue', method: 'key' as const };
    assert.equal((await team.c.lookup(team.input({ caller: carol })))?.kind, 'miss');
  });

  it('stores no tool-call answer unless allowed, nothing too large, nothing incomplete', async () => {
    const tool = answer('', {
      content: null,
      tool_calls: [{ id: 't', type: 'function', function: { name: 'f', arguments: '{}' } }],
    });
    const plain = setup();
    await plain.fill(plain.input(), tool);
    assert.equal((await plain.c.lookup(plain.input()))?.kind, 'miss');
    assert.equal(
      await metric(plain.registry, 'sluice_cache_stores_total', { result: 'tool_calls' }),
      1,
    );
    const allowed = setup({ cacheToolCalls: true });
    await allowed.fill(allowed.input(), tool);
    assert.equal((await allowed.c.lookup(allowed.input()))?.kind, 'hit');

    const small = setup({ maxEntryBytes: 1024 });
    await small.fill(small.input(), answer('x'.repeat(2000)));
    assert.equal((await small.c.lookup(small.input()))?.kind, 'miss');

    const cut = setup();
    await cut.fill(cut.input(), { ...answer('x'), choices: [{ index: 0, message: {} }] });
    assert.equal((await cut.c.lookup(cut.input()))?.kind, 'miss');
    assert.equal(
      await metric(cut.registry, 'sluice_cache_stores_total', { result: 'incomplete' }),
      1,
    );
  });

  it('on a masking route, an answer holding personal data of its own is not stored', async () => {
    const { c, input, fill, registry } = setup({}, { masking: { detectors: ['EMAIL'] } });
    const state = (cfg: LookupInput['cfg']) =>
      ({
        policy: cfg.policyFor('r'),
        failedOpen: false,
        verdicts: new Set(),
      }) as unknown as PolicyState;
    const req = input();
    const masked = input({ policy: state(req.cfg) });
    await fill(masked, answer('Write to someone.else@example.com instead.'));
    assert.equal((await c.lookup(masked))?.kind, 'miss');
    assert.equal(
      await metric(registry, 'sluice_cache_stores_total', { result: 'personal_data' }),
      1,
    );
    await fill(masked, answer('Write to [EMAIL_1] instead.'));
    assert.equal((await c.lookup(masked))?.kind, 'hit');
  });

  it('embeddings are cached whatever the sampling fields, as JSON only', async () => {
    const { c, input, fill } = setup();
    const req = input({
      operation: 'embeddings',
      path: '/v1/embeddings',
      body: { model: 'gpt-x', input: ['a', 'b'] },
    });
    const vectors = {
      object: 'list',
      data: [{ object: 'embedding', index: 0, embedding: [0.1, -0.2] }],
      model: 'gpt-x',
      usage: { prompt_tokens: 2, total_tokens: 2 },
    };
    await fill(req, vectors);
    const hit = (await c.lookup(req)) as Hit;
    assert.equal(hit.kind, 'hit');
    assert.deepEqual(JSON.parse(hit.verdict.body), vectors);
    assert.equal(hit.usage?.inputTokens, 2);
  });

  it('a non-2xx answer is not captured', async () => {
    const { c, input } = setup();
    const r = await c.lookup(input());
    assert.ok(r?.kind === 'miss' && r.capture);
    r.capture.start(500, false, true);
    r.capture.push(Buffer.from(JSON.stringify(answer('error'))));
    await r.capture.finish();
    assert.equal((await c.lookup(input()))?.kind, 'miss');
  });

  it('never serves an entry stored under another digest; a failing store is a miss', async () => {
    const entries = new Map<string, string>();
    const forged: CacheStore = {
      kind: 'memory',
      get: () => [...entries.values()][0],
      set: (d, v) => void entries.set(d, v),
      close: () => undefined,
    };
    const { c, input, fill, registry } = setup({}, { store: forged });
    await fill(input(), answer('for q'));
    // Every read now returns that entry, whatever is asked.
    const other = input({
      body: { model: 'gpt-x', temperature: 0, messages: [{ role: 'user', content: 'other' }] },
    });
    assert.equal((await c.lookup(other))?.kind, 'miss');
    assert.equal(await metric(registry, 'sluice_cache_errors_total', { op: 'get' }), 1);

    const broken: CacheStore = {
      kind: 'redis',
      get: () => Promise.reject(new Error('down')),
      set: () => Promise.reject(new Error('down')),
      close: () => undefined,
    };
    const b = setup({}, { store: broken });
    await b.fill(b.input(), answer('x'));
    assert.equal((await b.c.lookup(b.input()))?.kind, 'miss');
    assert.equal(await metric(b.registry, 'sluice_cache_errors_total', { op: 'set' }), 1);

    const stalled: CacheStore = {
      kind: 'redis',
      get: () => new Promise(() => undefined),
      set: () => undefined,
      close: () => undefined,
    };
    const s = setup({}, { store: stalled });
    assert.equal((await s.c.lookup(s.input()))?.kind, 'miss');
  });

  it('replays a stored answer as a stream for a streamed request', async () => {
    const { c, input, fill } = setup();
    await fill(input(), answer('streamed'));
    const hit = (await c.lookup(input({ stream: true, includeUsage: true }))) as Hit;
    assert.equal(hit.verdict.headers[0]![1], 'text/event-stream');
    assert.match(hit.verdict.body, /"content":"streamed"/);
    assert.match(hit.verdict.body, /"usage":\{"prompt_tokens":100/);
    assert.ok(hit.verdict.body.endsWith('data: [DONE]\n\n'));
  });
});
