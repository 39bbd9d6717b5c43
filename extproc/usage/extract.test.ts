import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser } from './sse.js';
import { StreamUsage, usageFromJson, type Operation, type TokenUsage } from './extract.js';

function usage(p: Partial<TokenUsage>): TokenUsage {
  return {
    inputTokens: 0,
    outputTokens: 0,
    totalTokens: 0,
    cachedInputTokens: 0,
    cacheCreationInputTokens: 0,
    reasoningTokens: 0,
    estimated: false,
    ...p,
  };
}

/** Streams `text` through the SSE splitter cut at `cuts`; returns the result and usage-only raws. */
function stream(op: Operation, text: string, cuts: number[] = [], maxTextBytes?: number) {
  const input = Buffer.from(text);
  const parser = new SseParser();
  const su = new StreamUsage(op, maxTextBytes === undefined ? {} : { maxTextBytes });
  const usageOnly: string[] = [];
  let prev = 0;
  for (const c of [...cuts, input.length]) {
    for (const e of parser.push(input.subarray(prev, c))) {
      if (su.onEvent(e).usageOnly) usageOnly.push(e.raw.toString());
    }
    prev = c;
  }
  // A stream cut between the final CR and LF leaves that LF over, which is harmless.
  assert.match(parser.end().toString(), /^\n?$/);
  return { ...su.result(), usageOnly };
}

function sse(objs: unknown[], opts: { done?: boolean } = {}): string {
  return (
    objs.map((o) => `data: ${JSON.stringify(o)}\n\n`).join('') +
    (opts.done ? 'data: [DONE]\n\n' : '')
  );
}

const chunk = (delta: object, extra: object = {}) => ({
  id: 'chatcmpl-1',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'gpt-4o-mini-2024-07-18',
  system_fingerprint: 'fp_1',
  choices: [{ index: 0, delta, logprobs: null, finish_reason: null }],
  usage: null,
  ...extra,
});

const CHAT_USAGE = {
  prompt_tokens: 1200,
  completion_tokens: 45,
  total_tokens: 1245,
  prompt_tokens_details: { cached_tokens: 1024, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 12, audio_tokens: 0 },
};

const CHAT_STREAM = sse(
  [
    chunk({ role: 'assistant', content: '', refusal: null }),
    chunk({ content: 'Héllo' }),
    chunk({ content: ' wörld 🌍' }),
    chunk({}, { choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }] }),
    { ...chunk({}), choices: [], usage: CHAT_USAGE },
  ],
  { done: true },
);

test('usageFromJson: OpenAI chat completion', () => {
  const body = {
    id: 'chatcmpl-1',
    object: 'chat.completion',
    model: 'gpt-4o-2024-08-06',
    choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
    usage: CHAT_USAGE,
  };
  assert.deepEqual(usageFromJson('chat', body), {
    model: 'gpt-4o-2024-08-06',
    usage: usage({
      inputTokens: 1200,
      outputTokens: 45,
      totalTokens: 1245,
      cachedInputTokens: 1024,
      reasoningTokens: 12,
    }),
  });
});

test('usageFromJson: legacy completions and embeddings', () => {
  assert.deepEqual(
    usageFromJson('completions', {
      object: 'text_completion',
      model: 'gpt-3.5-turbo-instruct',
      choices: [{ text: 'x', index: 0, logprobs: null, finish_reason: 'length' }],
      usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
    }),
    {
      model: 'gpt-3.5-turbo-instruct',
      usage: usage({ inputTokens: 5, outputTokens: 7, totalTokens: 12 }),
    },
  );
  assert.deepEqual(
    usageFromJson('embeddings', {
      object: 'list',
      data: [{ object: 'embedding', index: 0, embedding: [0.1] }],
      model: 'text-embedding-3-small',
      usage: { prompt_tokens: 8, total_tokens: 8 },
    }),
    { model: 'text-embedding-3-small', usage: usage({ inputTokens: 8, totalTokens: 8 }) },
  );
});

test('usageFromJson: Responses API', () => {
  const body = {
    id: 'resp_1',
    object: 'response',
    status: 'completed',
    model: 'o4-mini-2025-04-16',
    output: [],
    usage: {
      input_tokens: 300,
      input_tokens_details: { cached_tokens: 256 },
      output_tokens: 900,
      output_tokens_details: { reasoning_tokens: 768 },
      total_tokens: 1200,
    },
  };
  assert.deepEqual(usageFromJson('responses', body), {
    model: 'o4-mini-2025-04-16',
    usage: usage({
      inputTokens: 300,
      outputTokens: 900,
      totalTokens: 1200,
      cachedInputTokens: 256,
      reasoningTokens: 768,
    }),
  });
});

test('usageFromJson: Anthropic message counts cache reads and writes as input', () => {
  const body = {
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    model: 'claude-sonnet-4-20250514',
    content: [{ type: 'text', text: 'hi' }],
    stop_reason: 'end_turn',
    usage: {
      input_tokens: 21,
      cache_creation_input_tokens: 188,
      cache_read_input_tokens: 1500,
      output_tokens: 393,
      service_tier: 'standard',
    },
  };
  assert.deepEqual(usageFromJson('messages', body), {
    model: 'claude-sonnet-4-20250514',
    usage: usage({
      inputTokens: 21 + 188 + 1500,
      outputTokens: 393,
      totalTokens: 21 + 188 + 1500 + 393,
      cachedInputTokens: 1500,
      cacheCreationInputTokens: 188,
    }),
  });
  // Null cache fields (older API versions) count as zero.
  assert.deepEqual(
    usageFromJson('messages', {
      usage: { input_tokens: 3, output_tokens: 4, cache_read_input_tokens: null },
    }).usage,
    usage({ inputTokens: 3, outputTokens: 4, totalTokens: 7 }),
  );
});

test('usageFromJson: missing or malformed usage', () => {
  assert.deepEqual(usageFromJson('chat', null), {});
  assert.deepEqual(usageFromJson('chat', { model: 'm', usage: null }), { model: 'm' });
  assert.deepEqual(usageFromJson('chat', { usage: { foo: 1 } }), {});
  assert.deepEqual(
    usageFromJson('chat', { usage: { prompt_tokens: -3, completion_tokens: 'x' } }),
    {
      usage: usage({}),
    },
  );
});

test('chat stream with include_usage: usage, model, text and exactly the usage-only chunk flagged', () => {
  const r = stream('chat', CHAT_STREAM);
  assert.deepEqual(
    r.usage,
    usage({
      inputTokens: 1200,
      outputTokens: 45,
      totalTokens: 1245,
      cachedInputTokens: 1024,
      reasoningTokens: 12,
    }),
  );
  assert.equal(r.model, 'gpt-4o-mini-2024-07-18');
  assert.equal(r.outputText, 'Héllo wörld 🌍');
  assert.equal(r.outputTextBytes, Buffer.byteLength('Héllo wörld 🌍'));
  assert.equal(r.usageOnly.length, 1);
  assert.match(r.usageOnly[0]!, /"choices":\[\],"usage":\{"prompt_tokens":1200/);
  assert.equal(r.partialUsage, undefined);
});

test('chat stream: same result at every split position (mid UTF-8, mid JSON, mid event)', () => {
  const whole = stream('chat', CHAT_STREAM);
  const len = Buffer.byteLength(CHAT_STREAM);
  for (let i = 0; i <= len; i++) {
    assert.deepEqual(stream('chat', CHAT_STREAM, [i]), whole, `split at ${i}`);
  }
  const crlf = CHAT_STREAM.replaceAll('\n', '\r\n');
  const crlfLen = Buffer.byteLength(crlf);
  for (let i = 0; i <= crlfLen; i += 1) {
    const r = stream('chat', crlf, [i, Math.min(crlfLen, i + 7)]);
    assert.deepEqual(r.usage, whole.usage, `crlf split at ${i}`);
    assert.equal(r.outputText, whole.outputText);
    assert.equal(r.usageOnly.length, 1);
  }
});

test('chat stream with tool calls collects names and argument fragments', () => {
  const text = sse(
    [
      chunk({
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            index: 0,
            id: 'call_1',
            type: 'function',
            function: { name: 'get_weather', arguments: '' },
          },
        ],
      }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
    ],
    { done: true },
  );
  const r = stream('chat', text);
  assert.equal(r.outputText, 'get_weather{"city":"Paris"}');
  assert.equal(r.usage, undefined);
  assert.deepEqual(r.usageOnly, []);
});

test('chat stream without usage (client did not ask, none forced): no usage, no usage-only', () => {
  const text = sse([chunk({ content: 'a' }), chunk({ content: 'b' })], { done: true }).replaceAll(
    ',"usage":null',
    '',
  );
  const r = stream('chat', text);
  assert.equal(r.usage, undefined);
  assert.equal(r.outputText, 'ab');
  assert.deepEqual(r.usageOnly, []);
});

test('a chunk that has choices and usage (continuous usage stats) is not usage-only', () => {
  const text = sse([
    chunk({ content: 'a' }, { usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }),
    chunk({ content: 'b' }, { usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } }),
  ]);
  const r = stream('chat', text);
  assert.deepEqual(r.usage, usage({ inputTokens: 3, outputTokens: 2, totalTokens: 5 }));
  assert.deepEqual(r.usageOnly, []);
});

test('legacy completions stream', () => {
  const c = (text: string, extra: object = {}) => ({
    id: 'cmpl-1',
    object: 'text_completion',
    created: 1,
    model: 'gpt-3.5-turbo-instruct',
    choices: [{ text, index: 0, logprobs: null, finish_reason: null }],
    usage: null,
    ...extra,
  });
  const text = sse(
    [
      c('Once'),
      c(' upon'),
      c('', { choices: [], usage: { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 } }),
    ],
    { done: true },
  );
  const r = stream('completions', text);
  assert.equal(r.outputText, 'Once upon');
  assert.deepEqual(r.usage, usage({ inputTokens: 4, outputTokens: 2, totalTokens: 6 }));
  assert.equal(r.usageOnly.length, 1);
});

function responsesStream(terminal: 'response.completed' | 'response.incomplete', named = true) {
  const resp = (status: string, u: unknown) => ({
    id: 'resp_1',
    object: 'response',
    status,
    model: 'gpt-4.1-2025-04-14',
    output: [],
    usage: u,
  });
  const events: [string, object][] = [
    [
      'response.created',
      { type: 'response.created', sequence_number: 0, response: resp('in_progress', null) },
    ],
    [
      'response.in_progress',
      { type: 'response.in_progress', sequence_number: 1, response: resp('in_progress', null) },
    ],
    [
      'response.output_item.added',
      {
        type: 'response.output_item.added',
        sequence_number: 2,
        output_index: 0,
        item: { type: 'message', id: 'msg_1', role: 'assistant', content: [] },
      },
    ],
    [
      'response.output_text.delta',
      {
        type: 'response.output_text.delta',
        sequence_number: 3,
        item_id: 'msg_1',
        output_index: 0,
        content_index: 0,
        delta: 'Bonjour ',
      },
    ],
    [
      'response.output_text.delta',
      {
        type: 'response.output_text.delta',
        sequence_number: 4,
        item_id: 'msg_1',
        output_index: 0,
        content_index: 0,
        delta: 'à tous',
      },
    ],
    [
      'response.output_text.done',
      {
        type: 'response.output_text.done',
        sequence_number: 5,
        item_id: 'msg_1',
        output_index: 0,
        content_index: 0,
        text: 'Bonjour à tous',
      },
    ],
    [
      'response.function_call_arguments.delta',
      {
        type: 'response.function_call_arguments.delta',
        sequence_number: 6,
        item_id: 'fc_1',
        output_index: 1,
        delta: '{"q":1}',
      },
    ],
    [
      terminal,
      {
        type: terminal,
        sequence_number: 7,
        response: resp(terminal === 'response.completed' ? 'completed' : 'incomplete', {
          input_tokens: 40,
          input_tokens_details: { cached_tokens: 0 },
          output_tokens: 9,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: 49,
        }),
      },
    ],
  ];
  return events
    .map(([name, o]) => (named ? `event: ${name}\n` : '') + `data: ${JSON.stringify(o)}\n\n`)
    .join('');
}

test('Responses API stream: usage from the terminal event, text and argument deltas', () => {
  const expected = usage({ inputTokens: 40, outputTokens: 9, totalTokens: 49 });
  for (const terminal of ['response.completed', 'response.incomplete'] as const) {
    for (const named of [true, false]) {
      const r = stream('responses', responsesStream(terminal, named));
      assert.deepEqual(r.usage, expected, `${terminal} named=${named}`);
      assert.equal(r.model, 'gpt-4.1-2025-04-14');
      assert.equal(r.outputText, 'Bonjour à tous{"q":1}');
      assert.deepEqual(r.usageOnly, []);
    }
  }
  const text = responsesStream('response.completed');
  const whole = stream('responses', text);
  for (let i = 0; i <= Buffer.byteLength(text); i++) {
    assert.deepEqual(stream('responses', text, [i]), whole, `split at ${i}`);
  }
});

test('Responses API stream cut before the terminal event: no usage', () => {
  const text = responsesStream('response.completed');
  const cut = text.slice(0, text.indexOf('event: response.completed'));
  const r = stream('responses', cut);
  assert.equal(r.usage, undefined);
  assert.equal(r.model, 'gpt-4.1-2025-04-14');
  assert.equal(r.outputText, 'Bonjour à tous{"q":1}');
});

const ANTHROPIC_EVENTS: [string, object][] = [
  [
    'message_start',
    {
      type: 'message_start',
      message: {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        content: [],
        model: 'claude-opus-4-1-20250805',
        stop_reason: null,
        stop_sequence: null,
        usage: {
          input_tokens: 25,
          cache_creation_input_tokens: 100,
          cache_read_input_tokens: 2000,
          output_tokens: 1,
        },
      },
    },
  ],
  [
    'content_block_start',
    {
      type: 'content_block_start',
      index: 0,
      content_block: { type: 'thinking', thinking: '', signature: '' },
    },
  ],
  [
    'content_block_delta',
    {
      type: 'content_block_delta',
      index: 0,
      delta: { type: 'thinking_delta', thinking: 'Let me think. ' },
    },
  ],
  [
    'content_block_delta',
    {
      type: 'content_block_delta',
      index: 0,
      delta: { type: 'signature_delta', signature: 'EqQBCgIYAhIM' },
    },
  ],
  ['content_block_stop', { type: 'content_block_stop', index: 0 }],
  ['ping', { type: 'ping' }],
  [
    'content_block_start',
    { type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } },
  ],
  [
    'content_block_delta',
    { type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'こんにちは' } },
  ],
  ['content_block_stop', { type: 'content_block_stop', index: 1 }],
  [
    'content_block_start',
    {
      type: 'content_block_start',
      index: 2,
      content_block: { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: {} },
    },
  ],
  [
    'content_block_delta',
    {
      type: 'content_block_delta',
      index: 2,
      delta: { type: 'input_json_delta', partial_json: '{"location": "San Fra' },
    },
  ],
  [
    'content_block_delta',
    {
      type: 'content_block_delta',
      index: 2,
      delta: { type: 'input_json_delta', partial_json: 'ncisco"}' },
    },
  ],
  ['content_block_stop', { type: 'content_block_stop', index: 2 }],
  [
    'message_delta',
    {
      type: 'message_delta',
      delta: { stop_reason: 'tool_use', stop_sequence: null },
      usage: { output_tokens: 89 },
    },
  ],
  ['message_stop', { type: 'message_stop' }],
];

function anthropicStream(events = ANTHROPIC_EVENTS): string {
  return events.map(([n, o]) => `event: ${n}\ndata: ${JSON.stringify(o)}\n\n`).join('');
}

test('Anthropic stream: input from message_start, cumulative output from message_delta', () => {
  const text = anthropicStream();
  const r = stream('messages', text);
  assert.deepEqual(
    r.usage,
    usage({
      inputTokens: 25 + 100 + 2000,
      outputTokens: 89,
      totalTokens: 25 + 100 + 2000 + 89,
      cachedInputTokens: 2000,
      cacheCreationInputTokens: 100,
    }),
  );
  assert.equal(r.model, 'claude-opus-4-1-20250805');
  assert.equal(r.outputText, 'Let me think. こんにちは{"location": "San Francisco"}');
  assert.deepEqual(r.usageOnly, []);
  for (let i = 0; i <= Buffer.byteLength(text); i++) {
    assert.deepEqual(stream('messages', text, [i]), r, `split at ${i}`);
  }
});

test('Anthropic: message_delta may restate input and cache counts; they replace earlier ones', () => {
  const events = ANTHROPIC_EVENTS.map(([n, o]): [string, object] =>
    n === 'message_delta'
      ? [
          n,
          {
            ...o,
            usage: {
              input_tokens: 30,
              cache_read_input_tokens: 2000,
              cache_creation_input_tokens: null,
              output_tokens: 90,
            },
          },
        ]
      : [n, o],
  );
  const r = stream('messages', anthropicStream(events));
  assert.deepEqual(
    r.usage,
    usage({
      inputTokens: 30 + 100 + 2000,
      outputTokens: 90,
      totalTokens: 30 + 100 + 2000 + 90,
      cachedInputTokens: 2000,
      cacheCreationInputTokens: 100,
    }),
  );
});

test('Anthropic stream cut before message_delta: only partial usage', () => {
  const r = stream('messages', anthropicStream(ANTHROPIC_EVENTS.slice(0, 8)));
  assert.equal(r.usage, undefined);
  assert.deepEqual(
    r.partialUsage,
    usage({
      inputTokens: 2125,
      outputTokens: 1,
      totalTokens: 2126,
      cachedInputTokens: 2000,
      cacheCreationInputTokens: 100,
    }),
  );
});

test('output text is bounded by maxTextBytes, and the full size is still counted', () => {
  const text = sse([chunk({ content: 'é'.repeat(100) }), chunk({ content: 'x'.repeat(100) })]);
  const r = stream('chat', text, [], 150);
  assert.ok(Buffer.byteLength(r.outputText) <= 150);
  assert.ok(Buffer.byteLength(r.outputText) >= 50);
  assert.equal(r.outputTextBytes, 300);
  const r2 = stream('chat', text, [], 200);
  assert.equal(r2.outputText, 'é'.repeat(100));
});

test('events that cannot matter are not JSON-parsed; malformed JSON is ignored', () => {
  const realParse = JSON.parse;
  let calls = 0;
  JSON.parse = ((s: string): unknown => {
    calls++;
    return realParse(s) as unknown;
  }) as typeof JSON.parse;
  try {
    stream('messages', anthropicStream());
    // message_start, 5 content_block_delta, message_delta; not ping / block start-stop / stop.
    assert.equal(calls, 7);
    calls = 0;
    stream('chat', CHAT_STREAM);
    assert.equal(calls, 5); // [DONE] is not parsed
    calls = 0;
    stream('responses', responsesStream('response.completed'));
    // created (model), 3 deltas, completed; not in_progress (model known), item added, text done.
    assert.equal(calls, 5);
  } finally {
    JSON.parse = realParse;
  }
  const r = stream('chat', 'data: {"choices": [\n\n' + sse([chunk({ content: 'ok' })]));
  assert.equal(r.outputText, 'ok');
});
