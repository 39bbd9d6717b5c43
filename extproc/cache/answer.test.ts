import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { SseParser } from '../usage/sse.js';
import { callsTools, completeAnswer, replayStream, StreamAssembler } from './answer.js';

const chat = {
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1_700_000_000,
  model: 'gpt-4o-2024-08-06',
  system_fingerprint: 'fp_1',
  choices: [
    {
      index: 0,
      message: { role: 'assistant', content: 'Hello [EMAIL_1], "quoted" ünïcode 😀' },
      logprobs: null,
      finish_reason: 'stop',
    },
    {
      index: 1,
      message: {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"x"}' } },
          { id: 'call_2', type: 'function', function: { name: 'other', arguments: '{}' } },
        ],
      },
      logprobs: null,
      finish_reason: 'tool_calls',
    },
  ],
  usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 },
};

const message = {
  id: 'msg_1',
  type: 'message',
  role: 'assistant',
  model: 'claude-test',
  content: [
    { type: 'thinking', thinking: 'Let me think', signature: 'sig' },
    { type: 'text', text: 'Hi [EMAIL_1] — ok' },
    { type: 'tool_use', id: 'toolu_1', name: 'lookup', input: { q: 'x', n: [1, 2] } },
  ],
  stop_reason: 'tool_use',
  stop_sequence: null,
  usage: { input_tokens: 20, output_tokens: 9, cache_read_input_tokens: 0 },
};

function assemble(operation: 'chat' | 'messages', text: string) {
  const a = new StreamAssembler(operation);
  const p = new SseParser({ maxEventBytes: 1 << 20 });
  // Cut at every 7 bytes: the assembler must not depend on where chunks end.
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += 7)
    for (const e of p.push(bytes.subarray(i, i + 7))) a.onEvent(e);
  return a.result();
}

function sdkFetch(text: string): typeof fetch {
  return () =>
    Promise.resolve(
      new Response(text, { status: 200, headers: { 'content-type': 'text/event-stream' } }),
    );
}

describe('stream replay and assembly', () => {
  it('an OpenAI chat answer replays as a stream the OpenAI SDK reads back to the same answer', async () => {
    const text = replayStream('chat', chat, { includeUsage: true });
    assert.ok(text.endsWith('data: [DONE]\n\n'));
    const client = new OpenAI({ apiKey: 'k', baseURL: 'http://x/v1', fetch: sdkFetch(text) });
    const final = await client.chat.completions
      .stream({ model: 'gpt-4o', messages: [{ role: 'user', content: 'q' }] })
      .finalChatCompletion();
    assert.equal(final.id, chat.id);
    assert.equal(final.choices[0]!.message.content, chat.choices[0]!.message.content);
    assert.equal(final.choices[0]!.finish_reason, 'stop');
    assert.deepEqual(
      final.choices[1]!.message.tool_calls?.map((t) => t.type === 'function' && t.function),
      chat.choices[1]!.message.tool_calls!.map((t) => t.function),
    );
    assert.deepEqual(final.usage, chat.usage);
    // And back: the replayed stream assembles into the answer it came from.
    assert.deepEqual(assemble('chat', text), chat);
  });

  it('without include_usage the replay carries no usage chunk', () => {
    const text = replayStream('chat', chat, { includeUsage: false });
    assert.ok(!text.includes('"usage"'));
  });

  it('an Anthropic message replays as events the Anthropic SDK reads back to the same message', async () => {
    const text = replayStream('messages', message, { includeUsage: false });
    const client = new Anthropic({ apiKey: 'k', baseURL: 'http://x', fetch: sdkFetch(text) });
    const final = await client.messages
      .stream({
        model: 'claude-test',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'q' }],
      })
      .finalMessage();
    assert.deepEqual(final.content, message.content);
    assert.equal(final.stop_reason, 'tool_use');
    assert.equal(final.usage.output_tokens, 9);
    assert.equal(final.usage.input_tokens, 20);
    assert.deepEqual(assemble('messages', text), message);
  });

  it('a stream cut before its end is not an answer', () => {
    const openai = replayStream('chat', chat, { includeUsage: true });
    assert.equal(assemble('chat', openai.slice(0, openai.indexOf('data: [DONE]'))), undefined);
    const anthropic = replayStream('messages', message, { includeUsage: false });
    assert.equal(
      assemble('messages', anthropic.slice(0, anthropic.indexOf('event: message_stop'))),
      undefined,
    );
  });

  it('what cannot be rebuilt faithfully is not assembled', () => {
    const withLogprobs =
      'data: {"object":"chat.completion.chunk","id":"c","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[]},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n';
    assert.equal(assemble('chat', withLogprobs), undefined);
    assert.equal(assemble('chat', 'data: not json\n\ndata: [DONE]\n\n'), undefined);
  });

  it('knows complete answers and tool calls', () => {
    assert.ok(completeAnswer('chat', chat));
    assert.ok(!completeAnswer('chat', { ...chat, choices: [{ index: 0, message: {} }] }));
    assert.ok(completeAnswer('messages', message));
    assert.ok(!completeAnswer('messages', { ...message, stop_reason: null }));
    assert.ok(callsTools('chat', chat));
    assert.ok(!callsTools('chat', { ...chat, choices: [chat.choices[0]] }));
    assert.ok(callsTools('messages', message));
    assert.ok(!callsTools('messages', { ...message, content: [message.content[1]] }));
  });
});
