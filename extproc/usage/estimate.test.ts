import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  estimateRequestInputTokens,
  estimateRequestTokens,
  estimateTokens,
  estimateUsage,
  maxOutputTokens,
  promptText,
  tokenizerLoadMs,
  warmTokenizer,
} from './estimate.js';

// Must stay the first test: it checks that importing the module did not load the tokenizer.
test('the tokenizer is loaded lazily, on first use', () => {
  assert.equal(tokenizerLoadMs(), undefined);
  const ms = warmTokenizer();
  assert.ok(ms > 0);
  assert.equal(tokenizerLoadMs(), ms);
  assert.equal(warmTokenizer(), 0);
});

test('estimateTokens counts o200k tokens; special-token text is plain text', () => {
  assert.equal(estimateTokens(''), 0);
  assert.equal(estimateTokens('hello world'), 2);
  assert.ok(estimateTokens('a <|endoftext|> b') > 3);
});

const IMAGE_DATA = 'data:image/png;base64,' + 'A'.repeat(5000);

test('promptText: OpenAI chat messages, parts, tool calls, tool results and tool definitions', () => {
  const body = {
    model: 'gpt-4o',
    messages: [
      { role: 'system', content: 'You are terse.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is in this image?' },
          { type: 'image_url', image_url: { url: IMAGE_DATA } },
        ],
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'lookup', arguments: '{"q":"cat"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'A cat.' },
    ],
    tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }],
  };
  const text = promptText('chat', body);
  for (const s of [
    'You are terse.',
    'What is in this image?',
    '{"q":"cat"}',
    'A cat.',
    '"parameters"',
  ]) {
    assert.ok(text.includes(s), s);
  }
  assert.ok(!text.includes('base64'), 'image bytes are not text');
  assert.ok(!text.includes('call_1'), 'ids are not model input');
  const n = estimateRequestInputTokens('chat', body);
  // 4 messages x 3 + 3 priming + an image estimate + the text.
  assert.ok(n > estimateTokens(text) + 15 + 500, String(n));
});

test('promptText: Responses input string or items, and instructions', () => {
  assert.equal(
    promptText('responses', { instructions: 'Be brief.', input: 'Tell me a joke' }),
    'Be brief.\nTell me a joke',
  );
  const text = promptText('responses', {
    input: [
      {
        role: 'user',
        content: [
          { type: 'input_text', text: 'Weather?' },
          { type: 'input_image', image_url: IMAGE_DATA },
        ],
      },
      { type: 'function_call', call_id: 'c1', name: 'weather', arguments: '{"city":"Oslo"}' },
      { type: 'function_call_output', call_id: 'c1', output: '{"temp":3}' },
      { role: 'assistant', content: [{ type: 'output_text', text: 'It is 3°C.' }] },
      { role: 'user', content: 'Thanks' },
    ],
    tools: [{ type: 'function', name: 'weather', parameters: {} }],
  });
  for (const s of [
    'Weather?',
    'weather',
    '{"city":"Oslo"}',
    '{"temp":3}',
    'It is 3°C.',
    'Thanks',
  ]) {
    assert.ok(text.includes(s), s);
  }
  assert.ok(!text.includes('base64'));
});

test('promptText: Anthropic system, blocks, tool_use input, tool_result content, tools', () => {
  const text = promptText('messages', {
    system: [{ type: 'text', text: 'You are Claude.', cache_control: { type: 'ephemeral' } }],
    messages: [
      {
        role: 'user',
        content: [
          {
            type: 'image',
            source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo' },
          },
          { type: 'text', text: 'Describe' },
        ],
      },
      {
        role: 'assistant',
        content: [{ type: 'tool_use', id: 'toolu_1', name: 'zoom', input: { level: 2 } }],
      },
      {
        role: 'user',
        content: [
          {
            type: 'tool_result',
            tool_use_id: 'toolu_1',
            content: [{ type: 'text', text: 'zoomed' }],
          },
        ],
      },
      { role: 'user', content: 'plain string' },
    ],
    tools: [{ name: 'zoom', input_schema: { type: 'object' } }],
  });
  for (const s of [
    'You are Claude.',
    'Describe',
    'zoom',
    '{"level":2}',
    'zoomed',
    'plain string',
    'input_schema',
  ]) {
    assert.ok(text.includes(s), s);
  }
  assert.ok(!text.includes('iVBORw0KGgo'));
  assert.equal(promptText('messages', { system: 'sys', messages: [] }), 'sys');
});

test('completions and embeddings: strings, string arrays and token-id arrays', () => {
  assert.equal(promptText('completions', { prompt: ['a', 'b'] }), 'a\nb');
  assert.equal(estimateRequestInputTokens('completions', { prompt: [1, 2, 3] }), 3);
  assert.equal(
    estimateRequestInputTokens('embeddings', {
      input: [
        [1, 2, 3],
        [4, 5],
      ],
    }),
    5,
  );
  assert.equal(estimateRequestInputTokens('embeddings', { input: 'hello world' }), 2);
  assert.equal(estimateRequestInputTokens('embeddings', { input: ['hello world', 'hello'] }), 3);
  assert.equal(estimateRequestInputTokens('chat', 'not an object'), 0);
});

test('estimateRequestTokens adds the output cap per choice', () => {
  const input = estimateRequestInputTokens('chat', { messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(
    estimateRequestTokens('chat', {
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 100,
      n: 2,
    }),
    input + 200,
  );
  assert.equal(
    estimateRequestTokens('chat', {
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 100,
      max_completion_tokens: 50,
    }),
    input + 50,
  );
  assert.equal(
    estimateRequestTokens('chat', { messages: [{ role: 'user', content: 'hi' }] }),
    input,
  );
  assert.equal(
    estimateRequestTokens(
      'chat',
      { messages: [{ role: 'user', content: 'hi' }] },
      { defaultMaxOutputTokens: 4096 },
    ),
    input + 4096,
  );
  assert.equal(maxOutputTokens('responses', { max_output_tokens: 64 }), 64);
  assert.equal(maxOutputTokens('messages', { max_tokens: 1024 }), 1024);
  assert.equal(estimateRequestTokens('embeddings', { input: 'hello world', max_tokens: 9 }), 2);
});

test('estimateUsage: estimated flag, truncated-text scaling, reported partial counts win', () => {
  const body = { messages: [{ role: 'user', content: 'Say hello' }] };
  const u = estimateUsage('chat', body, 'hello world');
  assert.equal(u.estimated, true);
  assert.equal(u.outputTokens, 2);
  assert.equal(u.inputTokens, estimateRequestInputTokens('chat', body));
  assert.equal(u.totalTokens, u.inputTokens + 2);

  const scaled = estimateUsage('chat', body, 'hello world', { outputTextBytes: 110 });
  assert.equal(scaled.outputTokens, 20);

  const reported = {
    inputTokens: 2125,
    outputTokens: 1,
    totalTokens: 2126,
    cachedInputTokens: 2000,
    cacheCreationInputTokens: 100,
    reasoningTokens: 0,
    estimated: false,
  };
  const p = estimateUsage('messages', body, 'hello world', { reported });
  assert.deepEqual(p, { ...reported, outputTokens: 2, totalTokens: 2127, estimated: true });

  assert.equal(estimateUsage('embeddings', { input: 'hello world' }, '').outputTokens, 0);
});
