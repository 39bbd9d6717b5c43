// The context window through `sluice run` with the official SDKs: an AIPolicy `context` section
// (windows set per model in the policy) refuses a conversation that cannot fit with a 400 in the
// caller's format, or trims it — whole turns, system messages and the last turn kept, tool calls
// never split from their results — and says how many messages it dropped in a response header,
// the access log and the metrics. The mocks record what actually reached the provider.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import {
  counterValue,
  failure,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  until,
  type YamlGateway,
} from './harness.js';

const UPSTREAM = { openai: 'sk-upstream-ctx', anthropic: 'sk-ant-upstream-ctx' };
const WINDOW = 800;

function route(name: string, models: string[], provider: 'openai' | 'anthropic') {
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
          endpoint: { service: { name: `mock-${provider}`, port: 80 } },
          credential: { secretRef: { name: provider } },
        },
      ],
    },
  };
}

function policy(name: string, targets: string[], context: Record<string, unknown>) {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIPolicy',
    metadata: { name, namespace: 'e2e' },
    spec: { targetRefs: targets.map((t) => ({ name: t })), context },
  };
}

const windows = {
  'gpt-oldest': { contextTokens: WINDOW },
  'gpt-middle': { contextTokens: WINDOW },
  'gpt-strict': { contextTokens: WINDOW },
  'claude-oldest': { contextTokens: WINDOW, maxOutputTokens: 256 },
  'claude-strict': { contextTokens: WINDOW },
};

function manifests(ports: { openai: number; anthropic: number }): unknown[] {
  return [
    route('oldest', ['gpt-oldest'], 'openai'),
    route('middle', ['gpt-middle'], 'openai'),
    route('strict', ['gpt-strict'], 'openai'),
    route('claude-oldest', ['claude-oldest'], 'anthropic'),
    route('claude-strict', ['claude-strict'], 'anthropic'),
    // Built-in windows apply to a model the policy does not name: gpt-4o is far from full here.
    route('roomy', ['gpt-4o'], 'openai'),
    policy('trim-oldest', ['oldest', 'claude-oldest', 'roomy'], {
      contextOverflow: 'trim-oldest',
      models: windows,
      reserveOutputTokens: 100,
    }),
    policy('trim-middle', ['middle'], {
      contextOverflow: 'trim-middle',
      models: windows,
      reserveOutputTokens: 100,
    }),
    policy('reject', ['strict', 'claude-strict'], { models: windows }),
    secretDoc('openai', UPSTREAM.openai),
    secretDoc('anthropic', UPSTREAM.anthropic),
    ...serviceDocs('mock-openai', ports.openai),
    ...serviceDocs('mock-anthropic', ports.anthropic),
  ];
}

/** About 60 tokens of text marked with its turn, so what reached the provider can be read back. */
const para = (tag: string) => `${tag} ${'lorem ipsum dolor sit amet '.repeat(12).trim()}`;

type ChatMessage = OpenAI.Chat.Completions.ChatCompletionMessageParam;

/** System, then `turns` turns (every third with a tool call and its result), then the question. */
function chatConversation(turns: number): ChatMessage[] {
  const messages: ChatMessage[] = [{ role: 'system', content: 'Answer briefly.' }];
  for (let i = 0; i < turns; i++) {
    messages.push({ role: 'user', content: para(`u${i}`) });
    if (i % 3 === 1) {
      messages.push({
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: `call_${i}`,
            type: 'function',
            function: { name: 'lookup', arguments: JSON.stringify({ q: para(`q${i}`) }) },
          },
        ],
      });
      messages.push({ role: 'tool', tool_call_id: `call_${i}`, content: para(`t${i}`) });
    }
    messages.push({ role: 'assistant', content: para(`a${i}`) });
  }
  messages.push({ role: 'user', content: 'LAST: and so?' });
  return messages;
}

const tag = (m: { content?: unknown }): string => {
  const c = m.content;
  if (typeof c === 'string') return c.split(' ')[0]!;
  if (Array.isArray(c)) {
    const b = c[0] as Record<string, unknown>;
    if (b.type === 'text') return String(b.text).split(' ')[0]!;
    if (b.type === 'tool_result') return `result:${String(b.tool_use_id)}`;
    if (b.type === 'tool_use') return `use:${String(b.id)}`;
  }
  return c === null ? 'tool_calls' : '?';
};

describe('e2e: context window (trim and reject) through sluice run', () => {
  let openaiMock: MockProvider;
  let anthropicMock: MockProvider;
  let g: YamlGateway;
  let openai: OpenAI;
  let anthropic: Anthropic;

  before(async () => {
    openaiMock = await startMockProvider({ name: 'openai', auth: { bearer: UPSTREAM.openai } });
    anthropicMock = await startMockProvider({
      name: 'anthropic',
      auth: { anthropicKey: UPSTREAM.anthropic },
    });
    g = await startYamlGateway(
      manifests({ openai: openaiMock.port, anthropic: anthropicMock.port }),
    );
    const opts = { apiKey: 'unused', maxRetries: 0, timeout: 15_000 };
    openai = new OpenAI({ ...opts, baseURL: `${g.gateway.url}/v1` });
    anthropic = new Anthropic({ ...opts, baseURL: g.gateway.url });
  });
  after(async () => {
    await g?.close();
    await openaiMock?.close();
    await anthropicMock?.close();
  });

  it('OpenAI: trim-oldest forwards whole recent turns, the system message and the question', async () => {
    openaiMock.take();
    const messages = chatConversation(12);
    const { response } = await openai.chat.completions
      .create({ model: 'gpt-oldest', messages, max_tokens: 50 })
      .withResponse();
    const [sent] = openaiMock.take();
    const forwarded = sent!.json!.messages as ChatMessage[];
    const dropped = messages.length - forwarded.length;
    assert.ok(dropped > 0, 'something was dropped');
    assert.equal(response.headers.get('x-sluice-context-trimmed'), String(dropped));
    assert.equal(tag(forwarded[0]!), 'Answer');
    assert.equal(tag(forwarded.at(-1)!), 'LAST:');
    // The oldest go first: what is left is a suffix of the conversation after the system message.
    assert.deepEqual(
      forwarded.slice(1).map(tag),
      messages.slice(messages.length - (forwarded.length - 1)).map(tag),
    );
    // A kept tool result always has its call, and a kept call its result.
    const calls = new Set(
      forwarded.flatMap((m) =>
        m.role === 'assistant' && m.tool_calls ? m.tool_calls.map((c) => c.id) : [],
      ),
    );
    const results = new Set(forwarded.flatMap((m) => (m.role === 'tool' ? [m.tool_call_id] : [])));
    assert.deepEqual([...calls].sort(), [...results].sort());
    // The first kept turn starts with the user.
    assert.equal(forwarded[1]!.role, 'user');
    const line = await until(() =>
      g.accessLog.find((l) => l['route'] === 'e2e/oldest' && l['context'] !== undefined),
    );
    const ctx = line['context'] as Record<string, unknown>;
    assert.equal(ctx['trimmed_messages'], dropped);
    assert.equal(ctx['context_tokens'], WINDOW);
    assert.ok((line['verdicts'] as string[]).includes('context_trimmed'));
    assert.ok(
      (await counterValue(g.registry, 'sluice_context_trimmed_messages_total', {
        sluice_route: 'e2e/oldest',
      })) >= dropped,
    );
  });

  it('OpenAI: trim-middle keeps the first turn and drops the ones after it', async () => {
    openaiMock.take();
    const messages = chatConversation(12);
    await openai.chat.completions.create({ model: 'gpt-middle', messages, max_tokens: 50 });
    const forwarded = openaiMock.take()[0]!.json!.messages as ChatMessage[];
    const tags = forwarded.map(tag);
    assert.deepEqual(tags.slice(0, 3), ['Answer', 'u0', 'a0']);
    assert.ok(!tags.includes('u1'), 'the second turn is dropped before later ones');
    assert.equal(tags.at(-1), 'LAST:');
  });

  it('OpenAI: a conversation that fits is forwarded untouched, with no header', async () => {
    openaiMock.take();
    const messages = chatConversation(2);
    const { response } = await openai.chat.completions
      .create({ model: 'gpt-oldest', messages, max_tokens: 50 })
      .withResponse();
    assert.equal(response.headers.get('x-sluice-context-trimmed'), null);
    assert.equal((openaiMock.take()[0]!.json!.messages as unknown[]).length, messages.length);
    // A built-in window (gpt-4o, 128k) takes the long one as it is.
    await openai.chat.completions.create({ model: 'gpt-4o', messages: chatConversation(12) });
    assert.equal(
      (openaiMock.take()[0]!.json!.messages as unknown[]).length,
      chatConversation(12).length,
    );
  });

  it('OpenAI: reject answers 400 context_length_exceeded with the counts, nothing sent', async () => {
    openaiMock.take();
    const err = (await failure(
      openai.chat.completions.create({
        model: 'gpt-strict',
        messages: chatConversation(12),
        max_tokens: 100,
      }),
    )) as InstanceType<typeof OpenAI.BadRequestError>;
    assert.ok(err instanceof OpenAI.BadRequestError, String(err));
    assert.equal(err.code, 'context_length_exceeded');
    assert.match(
      err.message,
      /context window of 800 tokens; this request needs about \d+ \(\d+ estimated input \+ 100 output limit\)/,
    );
    assert.equal(openaiMock.take().length, 0);
  });

  it('Anthropic: trim-oldest drops tool_use with its tool_result, and the result says so', async () => {
    anthropicMock.take();
    const messages: Anthropic.MessageParam[] = [];
    for (let i = 0; i < 8; i++) {
      messages.push({ role: 'user', content: para(`u${i}`) });
      if (i % 2 === 0) {
        messages.push({
          role: 'assistant',
          content: [
            { type: 'tool_use', id: `tu_${i}`, name: 'lookup', input: { q: para(`q${i}`) } },
          ],
        });
        messages.push({
          role: 'user',
          content: [{ type: 'tool_result', tool_use_id: `tu_${i}`, content: para(`t${i}`) }],
        });
      }
      messages.push({ role: 'assistant', content: [{ type: 'text', text: para(`a${i}`) }] });
    }
    messages.push({ role: 'user', content: 'LAST: and so?' });
    const { response } = await anthropic.messages
      .create({ model: 'claude-oldest', system: 'Answer briefly.', max_tokens: 64, messages })
      .withResponse();
    const sent = anthropicMock.take()[0]!.json!;
    const forwarded = sent.messages as Anthropic.MessageParam[];
    const dropped = messages.length - forwarded.length;
    assert.ok(dropped > 0);
    assert.equal(response.headers.get('x-sluice-context-trimmed'), String(dropped));
    assert.equal(sent.system, 'Answer briefly.');
    assert.equal(forwarded[0]!.role, 'user');
    assert.notEqual(tag(forwarded[0]!).slice(0, 7), 'result:', 'no orphan tool_result first');
    const uses = forwarded
      .map(tag)
      .filter((t) => t.startsWith('use:'))
      .map((t) => t.slice(4));
    const results = forwarded
      .map(tag)
      .filter((t) => t.startsWith('result:'))
      .map((t) => t.slice(7));
    assert.deepEqual(uses, results);
    assert.equal(tag(forwarded.at(-1)!), 'LAST:');
  });

  it('Anthropic: reject answers an invalid_request_error with context_length_exceeded', async () => {
    anthropicMock.take();
    const messages: Anthropic.MessageParam[] = [];
    for (let i = 0; i < 10; i++) {
      messages.push({ role: 'user', content: para(`u${i}`) });
      messages.push({ role: 'assistant', content: para(`a${i}`) });
    }
    messages.push({ role: 'user', content: 'LAST' });
    const err = (await failure(
      anthropic.messages.create({ model: 'claude-strict', max_tokens: 64, messages }),
    )) as InstanceType<typeof Anthropic.BadRequestError>;
    assert.ok(err instanceof Anthropic.BadRequestError, String(err));
    const body = err.error as { type: string; error: { type: string; message: string } };
    assert.equal(body.error.type, 'invalid_request_error');
    assert.match(body.error.message, /context window of 800 tokens/);
    assert.equal(err.headers?.get('x-sluice-error-code'), 'context_length_exceeded');
    assert.equal(anthropicMock.take().length, 0);
  });
});
