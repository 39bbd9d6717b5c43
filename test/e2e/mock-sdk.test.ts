// The mock providers speak the real APIs: the official SDKs, pointed straight at them (no gateway),
// accept their answers — JSON, streams and tool calls — through their own parsers and stream
// accumulators, which check the event order and shapes the translators are held to.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';

describe('mock providers through the official SDKs', () => {
  let mock: MockProvider;
  let openai: OpenAI;
  let anthropic: Anthropic;
  const tool = { name: 'get_weather', arguments: { city: 'Zürich', days: 2 } };

  before(async () => {
    mock = await startMockProvider({ auth: { bearer: 'sk-o', anthropicKey: 'sk-a' } });
    openai = new OpenAI({ apiKey: 'sk-o', baseURL: `${mock.url}/v1`, maxRetries: 0 });
    anthropic = new Anthropic({ apiKey: 'sk-a', baseURL: mock.url, maxRetries: 0 });
  });
  after(async () => {
    await mock?.close();
  });

  it('openai: chat completion, whole and streamed with usage', async () => {
    mock.enqueue({ content: 'héllo there', usage: { input: 3, output: 2 } });
    const r = await openai.chat.completions.create({
      model: 'm',
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.equal(r.choices[0]!.message.content, 'héllo there');
    mock.enqueue({ content: 'one two', usage: { input: 3, output: 2 } });
    const s = openai.chat.completions.stream({
      model: 'm',
      messages: [{ role: 'user', content: 'x' }],
      stream_options: { include_usage: true },
    });
    const done = await s.finalChatCompletion();
    assert.equal(done.choices[0]!.message.content, 'one two');
    assert.equal(done.usage?.completion_tokens, 2);
  });

  it('openai: a tool call, whole and streamed (the SDK assembles the argument deltas)', async () => {
    const tools: OpenAI.ChatCompletionTool[] = [
      { type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } },
    ];
    mock.enqueue({ toolCall: tool });
    const r = await openai.chat.completions.create({
      model: 'm',
      messages: [{ role: 'user', content: 'x' }],
      tools,
    });
    const call = r.choices[0]!.message.tool_calls![0]!;
    assert.equal(r.choices[0]!.finish_reason, 'tool_calls');
    assert.equal(call.type === 'function' && call.function.name, 'get_weather');
    mock.enqueue({ toolCall: tool });
    const s = openai.chat.completions.stream({
      model: 'm',
      messages: [{ role: 'user', content: 'x' }],
      tools,
    });
    const done = await s.finalChatCompletion();
    const streamed = done.choices[0]!.message.tool_calls![0]!;
    assert.deepEqual(
      JSON.parse(streamed.type === 'function' ? streamed.function.arguments : '{}'),
      tool.arguments,
    );
  });

  it('anthropic: a message, whole and streamed (the SDK checks the event sequence)', async () => {
    mock.enqueue({ content: 'héllo there', usage: { input: 3, output: 2 } });
    const m = await anthropic.messages.create({
      model: 'm',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.deepEqual(
      m.content,
      [{ type: 'text', text: 'héllo there', citations: undefined }].map(({ type, text }) => ({
        type,
        text,
      })),
    );
    mock.enqueue({ content: 'one two', usage: { input: 3, output: 2 } });
    const final = await anthropic.messages
      .stream({ model: 'm', max_tokens: 16, messages: [{ role: 'user', content: 'x' }] })
      .finalMessage();
    assert.equal(final.content[0]!.type === 'text' && final.content[0]!.text, 'one two');
    assert.equal(final.usage.output_tokens, 2);
  });

  it('anthropic: a tool_use block, whole and streamed (input_json_delta assembled)', async () => {
    const tools: Anthropic.Tool[] = [{ name: 'get_weather', input_schema: { type: 'object' } }];
    mock.enqueue({ toolCall: tool });
    const m = await anthropic.messages.create({
      model: 'm',
      max_tokens: 16,
      tools,
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.equal(m.stop_reason, 'tool_use');
    const block = m.content.find((b) => b.type === 'tool_use');
    assert.deepEqual(block?.type === 'tool_use' && block.input, tool.arguments);
    mock.enqueue({ toolCall: tool, content: 'Let me look.' });
    const final = await anthropic.messages
      .stream({ model: 'm', max_tokens: 16, tools, messages: [{ role: 'user', content: 'x' }] })
      .finalMessage();
    assert.deepEqual(
      final.content.map((b) => b.type),
      ['text', 'tool_use'],
    );
    const streamed = final.content[1]!;
    assert.deepEqual(streamed.type === 'tool_use' && streamed.input, tool.arguments);
  });

  it('errors in each API’s own shape reach the SDKs as their typed errors', async () => {
    mock.enqueue({ status: 429 });
    await assert.rejects(
      openai.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
      OpenAI.RateLimitError,
    );
    mock.enqueue({ status: 529 });
    await assert.rejects(
      anthropic.messages.create({
        model: 'm',
        max_tokens: 4,
        messages: [{ role: 'user', content: 'x' }],
      }),
      (e: unknown) => e instanceof Anthropic.APIError && e.status === 529,
    );
  });
});
