// Per-translator conformance: golden request/response pairs, and streams cut at every byte (so
// mid-UTF-8, mid-JSON and mid-event) give exactly the answer the unsplit stream gives.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { anthropicToOpenai } from './anthropic-to-openai.js';
import { openaiToAnthropic, RESPONSE_FORMAT_TOOL } from './openai-to-anthropic.js';
import type { ExchangeRequest, ResponseTranslator, Translator } from './translator.js';

const CTX = { created: 1_700_000_000, maxEventBytes: 1 << 20 };

function backend(provider: ResolvedBackend['provider'], over: Partial<ResolvedBackend> = {}) {
  return { name: 'b', cluster: 'c', provider, credential: 'k', ...over } as ResolvedBackend;
}

function req(api: 'openai' | 'anthropic', body: Record<string, unknown>): ExchangeRequest {
  return {
    api,
    operation: api === 'openai' ? 'chat' : 'messages',
    model: String(body.model),
    body,
    stream: body.stream === true,
    forcedUsage: false,
  };
}

function sent(t: Translator, r: ExchangeRequest, b: ResolvedBackend): Record<string, unknown> {
  const up = t.request(r, b);
  return JSON.parse(up.body!.toString('utf8')) as Record<string, unknown>;
}

function refusal(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof SluiceError, String(e));
    return e;
  }
  assert.fail('no refusal');
}

/** The stream through a fresh translator, cut into pieces at `cuts`. */
function through(make: () => ResponseTranslator, stream: string, cuts: number[]): string {
  const rt = make();
  rt.headers(200, new Map([['content-type', 'text/event-stream']]));
  const bytes = Buffer.from(stream, 'utf8');
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    out.push(rt.stream(bytes.subarray(at, c), c === bytes.length));
    at = c;
  }
  return Buffer.concat(out).toString('utf8');
}

/** Every single cut point, then every byte on its own: all equal to the whole. */
function assertSplitSafe(make: () => ResponseTranslator, stream: string): string {
  const whole = through(make, stream, []);
  const n = Buffer.byteLength(stream);
  for (let c = 1; c < n; c++) assert.equal(through(make, stream, [c]), whole, `cut at ${c}`);
  const each = Array.from({ length: n - 1 }, (_, i) => i + 1);
  assert.equal(through(make, stream, each), whole, 'a byte at a time');
  return whole;
}

function events(sse: string): { event?: string; data: unknown }[] {
  return sse
    .split('\n\n')
    .filter((b) => b.trim() !== '')
    .map((b) => {
      const ev = /^event: (.*)$/m.exec(b)?.[1];
      const data = /^data: (.*)$/m.exec(b)![1]!;
      return { ...(ev ? { event: ev } : {}), data: data === '[DONE]' ? data : JSON.parse(data) };
    });
}

const named = (type: string, data: Record<string, unknown>): string =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

describe('openai-to-anthropic: request', () => {
  const b = backend('anthropic', { anthropic: { version: '2023-06-01', defaultMaxTokens: 1000 } });

  it('maps messages, tools, images, stop, user and the output limit (golden)', () => {
    const body = sent(
      openaiToAnthropic,
      req('openai', {
        model: 'claude-x',
        messages: [
          { role: 'system', content: 'sys' },
          { role: 'developer', content: [{ type: 'text', text: 'dev' }] },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'look' },
              {
                type: 'image_url',
                image_url: { url: 'https://img.example/a.png', detail: 'high' },
              },
              { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
            ],
          },
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              { id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } },
              { id: 'call_2', type: 'function', function: { name: 'f', arguments: '{"a":2}' } },
            ],
          },
          { role: 'tool', tool_call_id: 'call_1', content: 'one' },
          { role: 'tool', tool_call_id: 'call_2', content: 'two' },
          { role: 'user', content: 'and?' },
        ],
        tools: [
          {
            type: 'function',
            function: { name: 'f', description: 'd', parameters: { type: 'object' } },
          },
        ],
        tool_choice: 'required',
        parallel_tool_calls: false,
        stop: 'END',
        temperature: 0.5,
        top_p: 0.9,
        user: 'u-1',
        stream: true,
        stream_options: { include_usage: true },
      }),
      b,
    );
    assert.deepEqual(body, {
      model: 'claude-x',
      system: [
        { type: 'text', text: 'sys' },
        { type: 'text', text: 'dev' },
      ],
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'look' },
            { type: 'image', source: { type: 'url', url: 'https://img.example/a.png' } },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'tool_use', id: 'call_1', name: 'f', input: { a: 1 } },
            { type: 'tool_use', id: 'call_2', name: 'f', input: { a: 2 } },
          ],
        },
        {
          role: 'user',
          content: [
            {
              type: 'tool_result',
              tool_use_id: 'call_1',
              content: [{ type: 'text', text: 'one' }],
            },
            {
              type: 'tool_result',
              tool_use_id: 'call_2',
              content: [{ type: 'text', text: 'two' }],
            },
            { type: 'text', text: 'and?' },
          ],
        },
      ],
      max_tokens: 1000,
      temperature: 0.5,
      top_p: 0.9,
      stop_sequences: ['END'],
      stream: true,
      metadata: { user_id: 'u-1' },
      tools: [{ name: 'f', input_schema: { type: 'object' }, description: 'd' }],
      tool_choice: { type: 'any', disable_parallel_tool_use: true },
    });
  });

  it('carries response_format as a forced tool, and reasoning_effort as a thinking budget', () => {
    const schema = { type: 'object', properties: { n: { type: 'number' } } };
    const body = sent(
      openaiToAnthropic,
      req('openai', {
        model: 'm',
        messages: [{ role: 'user', content: 'x' }],
        response_format: { type: 'json_schema', json_schema: { name: 's', schema } },
      }),
      b,
    );
    assert.deepEqual(body.tools, [
      {
        name: RESPONSE_FORMAT_TOOL,
        description: 'Answer with JSON that matches this schema.',
        input_schema: schema,
      },
    ]);
    assert.deepEqual(body.tool_choice, { type: 'tool', name: RESPONSE_FORMAT_TOOL });
    const thinking = sent(
      openaiToAnthropic,
      req('openai', {
        model: 'm',
        messages: [{ role: 'user', content: 'x' }],
        reasoning_effort: 'high',
        max_completion_tokens: 8000,
      }),
      b,
    );
    assert.deepEqual(thinking.thinking, { type: 'enabled', budget_tokens: 7999 });
    assert.equal(thinking.max_tokens, 8000);
  });

  it('refuses what Anthropic cannot express, naming the field', () => {
    const base = { model: 'm', messages: [{ role: 'user', content: 'x' }] };
    for (const [extra, param] of [
      [{ n: 2 }, 'n'],
      [{ logprobs: true }, 'logprobs'],
      [{ seed: 7 }, 'seed'],
      [{ temperature: 1.5 }, 'temperature'],
      [{ audio: { voice: 'x' } }, 'audio'],
      [{ frobnicate: 1 }, 'frobnicate'],
      [{ reasoning_effort: 'high', max_tokens: 500 }, 'reasoning_effort'],
      [
        { messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: {} }] }] },
        'messages[0].content[0].type',
      ],
      // Not silently dropped: the answer would run past where the caller asked it to stop.
      [{ stop: 5 }, 'stop'],
      [{ stop: ['END', 7] }, 'stop'],
    ] as const) {
      const e = refusal(() => openaiToAnthropic.request(req('openai', { ...base, ...extra }), b));
      assert.equal(e.code, 'unsupported_field');
      assert.equal(e.status, 400);
      assert.equal(e.param, param);
    }
    // Neutral values of fields Anthropic lacks are no loss.
    assert.doesNotThrow(() =>
      openaiToAnthropic.request(
        req('openai', { ...base, presence_penalty: 0, n: 1, logprobs: false }),
        b,
      ),
    );
  });
});

describe('openai-to-anthropic: response', () => {
  const make =
    (body: Record<string, unknown> = { model: 'm', messages: [], stream: true }) =>
    () =>
      openaiToAnthropic.response(
        { ...req('openai', body), forcedUsage: true },
        backend('anthropic'),
        CTX,
      )!;

  it('translates a JSON answer with text, thinking and tool calls (golden)', () => {
    const rt = make()();
    rt.headers(200, new Map([['content-type', 'application/json']]));
    const out = JSON.parse(
      rt
        .json(
          Buffer.from(
            JSON.stringify({
              id: 'msg_1',
              type: 'message',
              role: 'assistant',
              model: 'claude-x',
              content: [
                { type: 'thinking', thinking: 'hmm', signature: 's' },
                { type: 'text', text: 'ok' },
                { type: 'tool_use', id: 'tu_1', name: 'f', input: { a: 1 } },
              ],
              stop_reason: 'tool_use',
              stop_sequence: null,
              usage: { input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 2 },
            }),
          ),
        )
        .toString(),
    ) as Record<string, unknown>;
    assert.deepEqual(out, {
      id: 'msg_1',
      object: 'chat.completion',
      created: CTX.created,
      model: 'claude-x',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: 'ok',
            tool_calls: [
              { id: 'tu_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } },
            ],
            reasoning_content: 'hmm',
          },
          logprobs: null,
          finish_reason: 'tool_calls',
        },
      ],
      usage: {
        prompt_tokens: 12,
        completion_tokens: 5,
        total_tokens: 17,
        prompt_tokens_details: { cached_tokens: 2 },
      },
    });
  });

  it('turns an Anthropic error into an OpenAI error object', () => {
    const rt = make()();
    const start = rt.headers(429, new Map([['content-type', 'application/json']]));
    assert.equal(start.body, 'whole');
    const e = JSON.parse(
      rt
        .error(
          429,
          Buffer.from('{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'),
        )
        .toString(),
    ) as Record<string, unknown>;
    assert.deepEqual(e, {
      error: {
        message: 'slow down',
        type: 'rate_limit_error',
        param: null,
        code: 'rate_limit_error',
      },
    });
  });

  const stream =
    named('message_start', {
      message: {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-x',
        content: [],
        usage: { input_tokens: 7, output_tokens: 1 },
      },
    }) +
    named('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }) +
    named('ping', {}) +
    named('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'héllo 😀 ' } }) +
    named('content_block_stop', { index: 0 }) +
    named('content_block_start', {
      index: 1,
      content_block: { type: 'tool_use', id: 'tu_1', name: 'f', input: {} },
    }) +
    named('content_block_delta', {
      index: 1,
      delta: { type: 'input_json_delta', partial_json: '{"a":' },
    }) +
    named('content_block_delta', {
      index: 1,
      delta: { type: 'input_json_delta', partial_json: '"ü"}' },
    }) +
    named('content_block_stop', { index: 1 }) +
    named('message_delta', {
      delta: { stop_reason: 'tool_use', stop_sequence: null },
      usage: { output_tokens: 9 },
    }) +
    named('message_stop', {});

  it('translates a stream event by event, whatever the cuts (golden)', () => {
    const out = assertSplitSafe(make(), stream);
    const ev = events(out);
    const chunk = (delta: unknown, finish: string | null = null) => ({
      data: {
        id: 'msg_1',
        object: 'chat.completion.chunk',
        created: CTX.created,
        model: 'claude-x',
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      },
    });
    assert.deepEqual(ev, [
      chunk({ role: 'assistant', content: '' }),
      chunk({ content: 'héllo 😀 ' }),
      chunk({
        tool_calls: [
          { index: 0, id: 'tu_1', type: 'function', function: { name: 'f', arguments: '' } },
        ],
      }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '{"a":' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '"ü"}' } }] }),
      chunk({}, 'tool_calls'),
      {
        data: {
          id: 'msg_1',
          object: 'chat.completion.chunk',
          created: CTX.created,
          model: 'claude-x',
          choices: [],
          usage: {
            prompt_tokens: 7,
            completion_tokens: 9,
            total_tokens: 16,
            prompt_tokens_details: { cached_tokens: 0 },
          },
        },
      },
      { data: '[DONE]' },
    ]);
  });

  it('releases each event as soon as it is complete (not buffered)', () => {
    const rt = make()();
    rt.headers(200, new Map([['content-type', 'text/event-stream']]));
    const first = stream.indexOf('event: content_block_start');
    assert.ok(
      rt
        .stream(Buffer.from(stream.slice(0, first)), false)
        .toString()
        .includes('"role":"assistant"'),
    );
    assert.equal(rt.stream(Buffer.from('event: content_block_delta\ndata: {"ty'), false).length, 0);
  });

  it('carries the response_format tool as content', () => {
    const s =
      named('message_start', {
        message: { id: 'm', model: 'c', usage: { input_tokens: 1, output_tokens: 1 } },
      }) +
      named('content_block_start', {
        index: 0,
        content_block: { type: 'tool_use', id: 't', name: RESPONSE_FORMAT_TOOL, input: {} },
      }) +
      named('content_block_delta', {
        index: 0,
        delta: { type: 'input_json_delta', partial_json: '{"n":1}' },
      }) +
      named('message_delta', { delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 3 } }) +
      named('message_stop', {});
    const out = events(
      assertSplitSafe(
        make({ model: 'm', messages: [], stream: true, response_format: { type: 'json_object' } }),
        s,
      ),
    );
    const deltas = out.map(
      (e) =>
        (e.data as { choices?: { delta?: { content?: string }; finish_reason?: string }[] })
          .choices?.[0],
    );
    assert.equal(deltas.map((d) => d?.delta?.content ?? '').join(''), '{"n":1}');
    assert.equal(deltas.find((d) => d?.finish_reason)?.finish_reason, 'stop');
  });
});

describe('anthropic-to-openai: request', () => {
  it('maps system, blocks, tool use and results, tools and thinking (golden)', () => {
    const body = sent(
      anthropicToOpenai,
      req('anthropic', {
        model: 'gpt-x',
        max_tokens: 100,
        system: [{ type: 'text', text: 'sys' }],
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'look' },
              { type: 'image', source: { type: 'base64', media_type: 'image/jpeg', data: 'BBBB' } },
            ],
          },
          {
            role: 'assistant',
            content: [
              { type: 'thinking', thinking: 'x', signature: 'y' },
              { type: 'text', text: 'calling' },
              { type: 'tool_use', id: 'tu_1', name: 'f', input: { a: 1 } },
            ],
          },
          {
            role: 'user',
            content: [
              { type: 'tool_result', tool_use_id: 'tu_1', content: 'bad', is_error: true },
              { type: 'text', text: 'then?' },
            ],
          },
        ],
        tools: [{ name: 'f', description: 'd', input_schema: { type: 'object' } }],
        tool_choice: { type: 'any', disable_parallel_tool_use: true },
        stop_sequences: ['END'],
        thinking: { type: 'enabled', budget_tokens: 4000 },
        metadata: { user_id: 'u' },
        stream: true,
      }),
      backend('openai'),
    );
    assert.deepEqual(body, {
      model: 'gpt-x',
      messages: [
        { role: 'system', content: 'sys' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'look' },
            { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,BBBB' } },
          ],
        },
        {
          role: 'assistant',
          content: 'calling',
          tool_calls: [
            { id: 'tu_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'tu_1', content: 'Error: bad' },
        { role: 'user', content: [{ type: 'text', text: 'then?' }] },
      ],
      max_completion_tokens: 100,
      stop: ['END'],
      stream: true,
      stream_options: { include_usage: true },
      user: 'u',
      tools: [
        {
          type: 'function',
          function: { name: 'f', parameters: { type: 'object' }, description: 'd' },
        },
      ],
      tool_choice: 'required',
      parallel_tool_calls: false,
      reasoning_effort: 'medium',
    });
    // OpenAI-compatible servers read max_tokens.
    const vllm = sent(
      anthropicToOpenai,
      req('anthropic', { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
      backend('openai-compatible'),
    );
    assert.equal(vllm.max_tokens, 5);
  });

  it('refuses what OpenAI cannot express, naming the field', () => {
    const base = { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] };
    for (const [extra, param] of [
      [{ top_k: 5 }, 'top_k'],
      [{ tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, 'tools[0]'],
      [
        {
          messages: [
            { role: 'user', content: [{ type: 'document', source: { type: 'text', data: 'x' } }] },
          ],
        },
        'messages[0].content[0].source',
      ],
    ] as const) {
      const e = refusal(() =>
        anthropicToOpenai.request(req('anthropic', { ...base, ...extra }), backend('openai')),
      );
      assert.equal(e.code, 'unsupported_field');
      assert.equal(e.param, param);
    }
  });
});

describe('anthropic-to-openai: response', () => {
  const make = () => () =>
    anthropicToOpenai.response(
      req('anthropic', { model: 'm', messages: [], stream: true }),
      backend('openai'),
      CTX,
    )!;
  const data = (v: unknown): string => `data: ${JSON.stringify(v)}\n\n`;
  const c = (delta: unknown, finish: string | null = null) =>
    data({
      id: 'chatcmpl-1',
      object: 'chat.completion.chunk',
      created: 1,
      model: 'gpt-x',
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
  const stream =
    c({ role: 'assistant', content: '' }) +
    c({ reasoning_content: 'think…' }) +
    c({ content: 'héllo 😀' }) +
    c({
      tool_calls: [
        { index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '' } },
      ],
    }) +
    c({ tool_calls: [{ index: 0, function: { arguments: '{"a":1}' } }] }) +
    c({
      tool_calls: [
        { index: 1, id: 'call_2', type: 'function', function: { name: 'g', arguments: '{}' } },
      ],
    }) +
    c({}, 'tool_calls') +
    data({
      id: 'chatcmpl-1',
      object: 'chat.completion.chunk',
      created: 1,
      model: 'gpt-x',
      choices: [],
      usage: {
        prompt_tokens: 11,
        completion_tokens: 6,
        total_tokens: 17,
        prompt_tokens_details: { cached_tokens: 3 },
      },
    }) +
    'data: [DONE]\n\n';

  it('rebuilds Anthropic events with block indices in order, whatever the cuts (golden)', () => {
    const ev = events(assertSplitSafe(make(), stream));
    const e = (type: string, d: Record<string, unknown>) => ({ event: type, data: { type, ...d } });
    assert.deepEqual(ev, [
      e('message_start', {
        message: {
          id: 'chatcmpl-1',
          type: 'message',
          role: 'assistant',
          model: 'gpt-x',
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: 0, output_tokens: 0 },
        },
      }),
      e('content_block_start', {
        index: 0,
        content_block: { type: 'thinking', thinking: '', signature: '' },
      }),
      e('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'think…' } }),
      e('content_block_stop', { index: 0 }),
      e('content_block_start', { index: 1, content_block: { type: 'text', text: '' } }),
      e('content_block_delta', { index: 1, delta: { type: 'text_delta', text: 'héllo 😀' } }),
      e('content_block_stop', { index: 1 }),
      e('content_block_start', {
        index: 2,
        content_block: { type: 'tool_use', id: 'call_1', name: 'f', input: {} },
      }),
      e('content_block_delta', {
        index: 2,
        delta: { type: 'input_json_delta', partial_json: '{"a":1}' },
      }),
      e('content_block_stop', { index: 2 }),
      e('content_block_start', {
        index: 3,
        content_block: { type: 'tool_use', id: 'call_2', name: 'g', input: {} },
      }),
      e('content_block_delta', {
        index: 3,
        delta: { type: 'input_json_delta', partial_json: '{}' },
      }),
      e('content_block_stop', { index: 3 }),
      e('message_delta', {
        delta: { stop_reason: 'tool_use', stop_sequence: null },
        usage: {
          input_tokens: 8,
          output_tokens: 6,
          cache_read_input_tokens: 3,
          cache_creation_input_tokens: 0,
        },
      }),
      e('message_stop', {}),
    ]);
  });

  it('translates a JSON answer and an error (golden)', () => {
    const rt = make()();
    rt.headers(200, new Map([['content-type', 'application/json']]));
    const m = JSON.parse(
      rt
        .json(
          Buffer.from(
            JSON.stringify({
              id: 'chatcmpl-1',
              object: 'chat.completion',
              model: 'gpt-x',
              choices: [
                {
                  index: 0,
                  message: {
                    role: 'assistant',
                    content: 'hi',
                    tool_calls: [
                      {
                        id: 'c',
                        type: 'function',
                        function: { name: 'f', arguments: '{"x":true}' },
                      },
                    ],
                  },
                  finish_reason: 'length',
                },
              ],
              usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
            }),
          ),
        )
        .toString(),
    ) as Record<string, unknown>;
    assert.deepEqual(m, {
      id: 'chatcmpl-1',
      type: 'message',
      role: 'assistant',
      model: 'gpt-x',
      content: [
        { type: 'text', text: 'hi' },
        { type: 'tool_use', id: 'c', name: 'f', input: { x: true } },
      ],
      stop_reason: 'max_tokens',
      stop_sequence: null,
      usage: {
        input_tokens: 3,
        output_tokens: 4,
        cache_read_input_tokens: 0,
        cache_creation_input_tokens: 0,
      },
    });
    const err = JSON.parse(
      make()()
        .error(500, Buffer.from('{"error":{"message":"boom","type":"server_error"}}'))
        .toString(),
    ) as Record<string, unknown>;
    assert.deepEqual(err, { type: 'error', error: { type: 'api_error', message: 'boom' } });
    // A body that is not JSON says only the status; nothing of it leaks.
    const html = JSON.parse(make()().error(502, Buffer.from('<html>proxy</html>')).toString()) as {
      error: { message: string };
    };
    assert.equal(html.error.message, 'The backend answered with status 502.');
  });

  it('ends a stream cut before [DONE] as a whole Anthropic stream', () => {
    const cut = stream.slice(
      0,
      stream.indexOf(
        'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"',
      ),
    );
    const ev = events(through(make(), cut, []));
    assert.deepEqual(
      ev.slice(-2).map((x) => x.event),
      ['message_delta', 'message_stop'],
    );
  });
});
