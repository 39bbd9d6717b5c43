// The stateful Responses API on a backend that keeps no state, through `sluice run` with the
// official `openai` SDK: a Claude route (the Anthropic mock) answers responses.create with
// previous_response_id, streaming, retrieve, delete and the input-items listing, the gateway
// keeping each turn (sealed, bound to the caller's key, with a TTL). Another key gets 404 and
// never the content; masking keeps the same placeholders across turns and restores them; each
// turn is charged once; anonymous callers are told to authenticate or send store: false.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { MemoryStore } from '../../extproc/state/memory.js';
import { main as keysMain } from '../../operator/keys/main.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import { secretDoc, serviceDocs, startYamlGateway, type YamlGateway } from './harness.js';

const UPSTREAM = 'sk-ant-upstream-responses';
const EMAIL = 'jane.doe@example.com';
const DAY_MS = 86_400_000;
/** The default TTL of a stored response (sessions/schema.ts), 30 days. */
const TTL_MS = 30 * DAY_MS;
// USD per million tokens = micro-dollars per token.
const PRICE = { inputPerMTok: 1000, outputPerMTok: 1000 };

function route(name: string, model: string) {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'e2e' },
    spec: {
      models: [{ exact: model }],
      backends: [
        {
          name: 'anthropic',
          provider: 'anthropic',
          endpoint: { service: { name: 'mock-anthropic', port: 80 } },
          credential: { secretRef: { name: 'anthropic' } },
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

async function keys(argv: string[]): Promise<string> {
  let out = '';
  let err = '';
  const code = await keysMain(argv, { out: (s) => (out += s), err: (s) => (err += s) });
  assert.equal(code, 0, `sluice keys ${argv[0]}: ${err}`);
  return out;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => assert.fail(`succeeded: ${JSON.stringify(v)}`),
    (e: unknown) => e,
  );
}

/** The user/assistant texts the Anthropic mock was sent, in order. */
function sentTexts(json: Record<string, unknown> | undefined): string[] {
  const msgs = (json?.messages ?? []) as {
    role: string;
    content: { type: string; text?: string }[];
  }[];
  return msgs.map((m) => `${m.role}: ${m.content.map((b) => b.text ?? `<${b.type}>`).join('')}`);
}

describe('e2e: stateful Responses API on an Anthropic backend', () => {
  let mock: MockProvider;
  let g: YamlGateway;
  let now = Date.UTC(2026, 11, 6, 12);
  const stateStore = new MemoryStore();
  const key: Record<'alice' | 'bob', string> = { alice: '', bob: '' };

  before(async () => {
    mock = await startMockProvider({ name: 'anthropic', auth: { anthropicKey: UPSTREAM } });
    g = await startYamlGateway(
      [
        route('claude', 'claude-r'),
        route('claude-open', 'claude-open'),
        route('claude-short', 'claude-short'),
        policy('identity', ['claude', 'claude-short'], {
          consumers: { required: true, keys: {} },
          pricing: { models: { 'claude-*': PRICE } },
          // A limit keeps usage in the state store, so what each turn is charged can be read.
          limits: { rules: [{ name: 'rpm', per: ['consumer'], requestsPerMinute: 1000 }] },
        }),
        policy('pii', ['claude'], { masking: { detectors: ['EMAIL'] } }),
        policy('short', ['claude-short'], { sessions: { ttlSeconds: 120, maxStoredBytes: 4096 } }),
        secretDoc('anthropic', UPSTREAM),
        ...serviceDocs('mock-anthropic', mock.port),
      ],
      {
        stateStore,
        wallClock: () => now,
        setup: async (dir) => {
          const file = join(dir, 'keys.yaml');
          for (const consumer of ['alice', 'bob'] as const) {
            const out = await keys(['create', '--consumer', consumer, '--file', file, '--json']);
            key[consumer] = (JSON.parse(out) as { key: string }).key;
          }
        },
      },
    );
  });
  after(async () => {
    await g?.close();
    await mock?.close();
  });

  const client = (apiKey: string) =>
    new OpenAI({ baseURL: `${g.gateway.url}/v1`, apiKey, maxRetries: 0, timeout: 15_000 });

  let first: OpenAI.Responses.Response;
  let second: OpenAI.Responses.Response;

  it('continues a conversation with previous_response_id, masked the same way each turn', async () => {
    const alice = client(key.alice);
    mock.take();
    first = await alice.responses.create({
      model: 'claude-r',
      instructions: 'You are terse.',
      input: `My email is ${EMAIL}. Remember it.`,
      max_output_tokens: 200,
    });
    assert.match(first.id, /^resp_[0-9a-f]{48}$/);
    assert.equal(first.status, 'completed');
    // The mock echoes what it read; the caller gets its own value back.
    assert.equal(first.output_text, `echo: My email is ${EMAIL}. Remember it.`);
    assert.equal((first as { store?: boolean }).store, true);
    const [t1] = mock.take();
    assert.deepEqual(t1!.json!.system, [{ type: 'text', text: 'You are terse.' }]);
    assert.deepEqual(sentTexts(t1!.json), ['user: My email is [EMAIL_1]. Remember it.']);

    second = await alice.responses.create({
      model: 'claude-r',
      previous_response_id: first.id,
      input: 'What is my email?',
    });
    assert.equal(second.previous_response_id, first.id);
    assert.equal(second.output_text, 'echo: What is my email?');
    const [t2] = mock.take();
    // The whole conversation went again, the same value under the same placeholder, and the
    // first turn's instructions were not carried over (as OpenAI does).
    assert.deepEqual(sentTexts(t2!.json), [
      'user: My email is [EMAIL_1]. Remember it.',
      'assistant: echo: My email is [EMAIL_1]. Remember it.',
      'user: What is my email?',
    ]);
    assert.equal(t2!.json!.system, undefined);
    assert.ok(!JSON.stringify(t2!.json).includes(EMAIL));
  });

  it('streams a turn as Responses events, and stores it before the last event reaches the caller', async () => {
    const alice = client(key.alice);
    mock.take();
    const stream = await alice.responses.create({
      model: 'claude-r',
      previous_response_id: second.id,
      input: `Write to ${EMAIL} please`,
      stream: true,
    });
    const types: string[] = [];
    let text = '';
    let done: OpenAI.Responses.Response | undefined;
    for await (const e of stream) {
      types.push(e.type);
      if (e.type === 'response.output_text.delta') text += e.delta;
      if (e.type === 'response.completed') {
        done = e.response;
        // Continued at once, from inside the stream: the turn is already stored.
        const next = await alice.responses.create({
          model: 'claude-r',
          previous_response_id: e.response.id,
          input: 'ok',
        });
        assert.equal(next.output_text, 'echo: ok');
      }
    }
    assert.deepEqual(
      [types[0], types[1], types.at(-1)],
      ['response.created', 'response.in_progress', 'response.completed'],
    );
    assert.ok(types.includes('response.output_text.done'));
    assert.equal(text, `echo: Write to ${EMAIL} please`);
    assert.ok(done);
    assert.ok(done.usage && done.usage.input_tokens > 0 && done.usage.output_tokens > 0);
    const sent = mock.take();
    assert.equal(sent.length, 2);
    assert.ok(!JSON.stringify(sent.map((s) => s.json)).includes(EMAIL));
    // Turn three and its continuation used the placeholder turn one gave the same value.
    assert.ok(sentTexts(sent[0]!.json).at(-1)!.includes('[EMAIL_1]'));

    const got = await alice.responses.retrieve(done.id);
    assert.equal(got.id, done.id);
    assert.equal(got.output_text, `echo: Write to ${EMAIL} please`);
  });

  it('retrieves a response and lists the items it was generated from', async () => {
    const alice = client(key.alice);
    const got = await alice.responses.retrieve(first.id);
    assert.equal(got.output_text, first.output_text);
    assert.deepEqual(got.usage, first.usage);
    const items: OpenAI.Responses.ResponseItem[] = [];
    for await (const item of alice.responses.inputItems.list(second.id, { order: 'asc', limit: 1 }))
      items.push(item);
    const texts = items.map((i) =>
      i.type === 'message'
        ? `${i.role}: ${(i.content as { text?: string }[]).map((c) => c.text ?? '').join('')}`
        : i.type,
    );
    assert.deepEqual(texts, [
      `user: My email is ${EMAIL}. Remember it.`,
      `assistant: echo: My email is ${EMAIL}. Remember it.`,
      'user: What is my email?',
    ]);
    assert.ok(items.every((i) => typeof i.id === 'string' && i.id.length > 0));
  });

  it('answers another key 404 for every use of the id, never the content', async () => {
    const bob = client(key.bob);
    mock.take();
    const errors = [
      await rejection(bob.responses.retrieve(first.id)),
      await rejection(bob.responses.inputItems.list(first.id)),
      await rejection(bob.responses.delete(first.id)),
      await rejection(
        bob.responses.create({ model: 'claude-r', previous_response_id: first.id, input: 'x' }),
      ),
    ];
    for (const e of errors) {
      assert.ok(e instanceof OpenAI.NotFoundError, String(e));
      assert.equal(e.status, 404);
      assert.equal((e.error as { code?: string }).code, 'response_not_found');
      assert.ok(!JSON.stringify(e.error).includes(EMAIL));
      assert.ok(!e.message.includes('echo'));
    }
    assert.deepEqual(mock.take(), []);
    // Still there for its owner.
    assert.equal((await client(key.alice).responses.retrieve(first.id)).id, first.id);
  });

  it('carries a function call and its output across turns', async () => {
    const alice = client(key.alice);
    mock.take();
    mock.enqueue({
      toolCall: { id: 'toolu_weather_1', name: 'get_weather', arguments: { city: 'Paris' } },
    });
    const tools: OpenAI.Responses.Tool[] = [
      {
        type: 'function',
        name: 'get_weather',
        description: 'Current weather',
        parameters: {
          type: 'object',
          properties: { city: { type: 'string' } },
          required: ['city'],
        },
        strict: false,
      },
    ];
    const asked = await alice.responses.create({
      model: 'claude-r',
      input: 'Weather in Paris?',
      tools,
      tool_choice: 'required',
    });
    const call = asked.output.find((o) => o.type === 'function_call');
    assert.ok(call && call.type === 'function_call', JSON.stringify(asked.output));
    assert.equal(call.name, 'get_weather');
    assert.equal(call.call_id, 'toolu_weather_1');
    assert.deepEqual(JSON.parse(call.arguments), { city: 'Paris' });
    const [first] = mock.take();
    assert.deepEqual(first!.json!.tool_choice, { type: 'any' });

    const answered = await alice.responses.create({
      model: 'claude-r',
      previous_response_id: asked.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21°C' }],
      tools,
    });
    assert.equal(answered.status, 'completed');
    const [second] = mock.take();
    const msgs = second!.json!.messages as { role: string; content: Record<string, unknown>[] }[];
    assert.deepEqual(
      msgs.map((m) => [m.role, m.content.map((b) => b.type)]),
      [
        ['user', ['text']],
        ['assistant', ['tool_use']],
        ['user', ['tool_result']],
      ],
    );
    assert.equal(msgs[1]!.content[0]!.id, 'toolu_weather_1');
    assert.equal(msgs[2]!.content[0]!.tool_use_id, 'toolu_weather_1');
  });

  it('keeps a conversation (Conversations API) that each turn naming it grows', async () => {
    const alice = client(key.alice);
    const conv = await alice.conversations.create({
      items: [{ type: 'message', role: 'user', content: `I am Jane <${EMAIL}>.` }],
      metadata: { topic: 'intro' },
    });
    assert.match(conv.id, /^conv_/);
    assert.deepEqual(conv.metadata, { topic: 'intro' });
    mock.take();
    const r1 = await alice.responses.create({
      model: 'claude-r',
      conversation: conv.id,
      input: 'Who am I?',
    });
    const r2 = await alice.responses.create({
      model: 'claude-r',
      conversation: conv.id,
      input: 'Sure?',
    });
    assert.equal(r2.output_text, 'echo: Sure?');
    const sent = mock.take();
    // Consecutive user items are one Anthropic user turn; the mock echoes that turn's text.
    assert.deepEqual(sentTexts(sent[1]!.json), [
      'user: I am Jane <[EMAIL_1]>.Who am I?',
      'assistant: echo: I am Jane <[EMAIL_1]>.Who am I?',
      'user: Sure?',
    ]);
    const items: string[] = [];
    for await (const i of alice.conversations.items.list(conv.id, { order: 'asc' }))
      if (i.type === 'message')
        items.push((i.content as { text?: string }[]).map((c) => c.text ?? '').join(''));
    assert.deepEqual(items, [
      `I am Jane <${EMAIL}>.`,
      'Who am I?',
      `echo: I am Jane <${EMAIL}>.Who am I?`,
      'Sure?',
      'echo: Sure?',
    ]);
    assert.equal((await alice.responses.retrieve(r1.id)).id, r1.id);

    const bob = client(key.bob);
    for (const call of [
      () => bob.conversations.retrieve(conv.id),
      () => bob.conversations.items.list(conv.id),
      () => bob.responses.create({ model: 'claude-r', conversation: conv.id, input: 'x' }),
    ]) {
      const e = await rejection(call());
      assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    }
    const updated = await alice.conversations.update(conv.id, { metadata: { topic: 'done' } });
    assert.deepEqual(updated.metadata, { topic: 'done' });
    const deleted = await alice.conversations.delete(conv.id);
    assert.equal(deleted.deleted, true);
    const gone = await rejection(alice.conversations.retrieve(conv.id));
    assert.ok(gone instanceof OpenAI.NotFoundError, String(gone));
  });

  it('adds, retrieves and deletes single conversation items, and keeps concurrent turns', async () => {
    const alice = client(key.alice);
    const conv = await alice.conversations.create({});
    const added = await alice.conversations.items.create(conv.id, {
      items: [
        { type: 'message', role: 'user', content: 'first' },
        { type: 'message', role: 'user', content: 'second' },
      ],
    });
    assert.equal(added.data.length, 2);
    const [first, second] = added.data as { id: string }[];
    const got = await alice.conversations.items.retrieve(second!.id, { conversation_id: conv.id });
    assert.equal(got.id, second!.id);
    assert.equal((got as { content: { text: string }[] }).content[0]!.text, 'second');
    const bob = client(key.bob);
    for (const call of [
      () => bob.conversations.items.retrieve(first!.id, { conversation_id: conv.id }),
      () => bob.conversations.items.delete(first!.id, { conversation_id: conv.id }),
    ]) {
      const e = await rejection(call());
      assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    }
    const after = await alice.conversations.items.delete(first!.id, { conversation_id: conv.id });
    assert.equal(after.id, conv.id);
    assert.equal(after.object, 'conversation');
    const gone = await rejection(
      alice.conversations.items.retrieve(first!.id, { conversation_id: conv.id }),
    );
    assert.ok(gone instanceof OpenAI.NotFoundError, String(gone));

    // Three turns at once on one conversation: each question and answer is kept.
    mock.take();
    await Promise.all(
      ['a', 'b', 'c'].map((x) =>
        alice.responses.create({ model: 'claude-r', conversation: conv.id, input: `turn ${x}` }),
      ),
    );
    mock.take();
    const texts: string[] = [];
    for await (const i of alice.conversations.items.list(conv.id, { order: 'asc' }))
      if (i.type === 'message')
        texts.push((i.content as { text?: string }[]).map((c) => c.text ?? '').join(''));
    assert.equal(texts[0], 'second');
    for (const x of ['a', 'b', 'c']) {
      const at = texts.indexOf(`turn ${x}`);
      assert.ok(at > 0, `turn ${x} kept`);
      assert.match(texts[at + 1]!, new RegExp(`^echo: .*turn ${x}$`));
    }
    assert.equal(texts.length, 7);
  });

  it('charges each turn once', async () => {
    const alice = client(key.alice);
    const day = new Date(now).toISOString().slice(0, 10);
    const before = await usageOf(day);
    const r = await alice.responses.create({
      model: 'claude-r',
      previous_response_id: first.id,
      input: 'Once more',
    });
    await alice.responses.retrieve(r.id);
    await alice.responses.inputItems.list(r.id);
    const after = await usageOf(day);
    assert.equal(after.requests - before.requests, 1);
    assert.equal(after.inputTokens - before.inputTokens, r.usage!.input_tokens);
    assert.equal(after.outputTokens - before.outputTokens, r.usage!.output_tokens);
    const line = g.accessLog.filter((l) => l['operation'] === 'responses').at(-1)!;
    assert.equal(line['status'], 200);
  });

  async function usageOf(
    day: string,
  ): Promise<{ requests: number; inputTokens: number; outputTokens: number }> {
    const rows = (await stateStore.usage('day', day)).filter((r) => r.dims.consumer === 'alice');
    const sum = { requests: 0, inputTokens: 0, outputTokens: 0 };
    for (const r of rows) {
      sum.requests += r.values.requests;
      sum.inputTokens += r.values.inputTokens;
      sum.outputTokens += r.values.outputTokens;
    }
    return sum;
  }

  it('deletes a response for its owner', async () => {
    const alice = client(key.alice);
    const r = await alice.responses.create({ model: 'claude-r', input: 'to delete' });
    await alice.responses.delete(r.id);
    const e = await rejection(alice.responses.retrieve(r.id));
    assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    const e2 = await rejection(
      alice.responses.create({ model: 'claude-r', previous_response_id: r.id, input: 'x' }),
    );
    assert.ok(e2 instanceof OpenAI.NotFoundError, String(e2));
  });

  it('forgets a response after its TTL', async () => {
    const alice = client(key.alice);
    const r = await alice.responses.create({ model: 'claude-r', input: 'short-lived' });
    now += TTL_MS - 1000;
    assert.equal((await alice.responses.retrieve(r.id)).id, r.id);
    now += 1000;
    const e = await rejection(alice.responses.retrieve(r.id));
    assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    const e2 = await rejection(
      alice.responses.create({ model: 'claude-r', previous_response_id: r.id, input: 'x' }),
    );
    assert.ok(e2 instanceof OpenAI.NotFoundError, String(e2));
  });

  it('keeps turns as long and as large as the route’s sessions policy says', async () => {
    const alice = client(key.alice);
    const r = await alice.responses.create({ model: 'claude-short', input: 'brief' });
    now += 119_000;
    assert.equal((await alice.responses.retrieve(r.id)).id, r.id);
    now += 1000;
    const e = await rejection(alice.responses.retrieve(r.id));
    assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    const big = 'x'.repeat(5000);
    const tooLarge = await rejection(alice.responses.create({ model: 'claude-short', input: big }));
    assert.ok(tooLarge instanceof OpenAI.APIError && tooLarge.status === 413, String(tooLarge));
    assert.equal((tooLarge.error as { code?: string }).code, 'request_too_large');
    const unstored = await alice.responses.create({
      model: 'claude-short',
      input: big,
      store: false,
    });
    assert.equal(unstored.status, 'completed');
  });

  it('tells an anonymous caller to authenticate or send store: false', async () => {
    const anon = client('unused');
    const e = await rejection(anon.responses.create({ model: 'claude-open', input: 'hi' }));
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal((e.error as { code?: string }).code, 'identity_required');
    assert.equal((e.error as { param?: string }).param, 'store');
    const ok = await anon.responses.create({ model: 'claude-open', input: 'hi', store: false });
    assert.equal(ok.output_text, 'echo: hi');
    assert.equal((ok as { store?: boolean }).store, false);
    // Nothing was stored; and a credential no policy accepts is told so, as /v1/models does.
    const gone = await rejection(anon.responses.retrieve(ok.id));
    assert.ok(gone instanceof OpenAI.AuthenticationError, String(gone));
    const none = await rejection(client(key.alice).responses.retrieve(ok.id));
    assert.ok(none instanceof OpenAI.NotFoundError, String(none));
  });

  it('refuses what Anthropic cannot carry, in OpenAI format', async () => {
    const e = await rejection(
      client(key.alice).responses.create({
        model: 'claude-r',
        input: 'hi',
        tools: [{ type: 'web_search' }],
      }),
    );
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal((e.error as { code?: string }).code, 'unsupported_field');
    assert.equal((e.error as { param?: string }).param, 'tools[0].type');
  });
});
