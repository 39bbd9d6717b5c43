// Gemini generateContent from both caller APIs: golden requests, answers, safety blocks as errors
// in the caller's format, and SSE streams cut at every byte giving what the unsplit stream gives.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { anthropicToGemini } from './anthropic-to-gemini.js';
import { translatorFor } from './index.js';
import { openaiToGemini } from './openai-to-gemini.js';
import type { ExchangeRequest, ResponseTranslator, Translator } from './translator.js';

const CTX = { created: 1_700_000_000, maxEventBytes: 1 << 20 };

function backend(over: Partial<ResolvedBackend> = {}): ResolvedBackend {
  return {
    name: 'g',
    cluster: 'c',
    provider: 'gemini',
    credential: 'AIza',
    ...over,
  };
}

function req(
  api: 'openai' | 'anthropic',
  body: Record<string, unknown>,
  extra: Partial<ExchangeRequest> = {},
): ExchangeRequest {
  return {
    api,
    operation: api === 'openai' ? 'chat' : 'messages',
    model: String(body.model),
    body,
    stream: body.stream === true,
    forcedUsage: false,
    ...extra,
  };
}

function sent(t: Translator, r: ExchangeRequest, b = backend()): Record<string, unknown> {
  return JSON.parse(t.request(r, b).body!.toString('utf8')) as Record<string, unknown>;
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

function through(make: () => ResponseTranslator, stream: string, cuts: number[]): string {
  const rt = make();
  assert.equal(rt.headers(200, new Map([['content-type', 'text/event-stream']])).body, 'stream');
  const bytes = Buffer.from(stream, 'utf8');
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    out.push(rt.stream(bytes.subarray(at, c), c === bytes.length));
    at = c;
  }
  return Buffer.concat(out).toString('utf8');
}

function assertSplitSafe(make: () => ResponseTranslator, stream: string): string {
  const whole = through(make, stream, []);
  const n = Buffer.byteLength(stream);
  for (let i = 1; i < n; i++) assert.equal(through(make, stream, [i]), whole, `cut ${i}`);
  return whole;
}

function dataOf(out: string): Record<string, unknown>[] {
  return out
    .split('\n\n')
    .filter((e) => e.includes('data: '))
    .map((e) => e.slice(e.indexOf('data: ') + 6))
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d) as Record<string, unknown>);
}

const ev = (v: unknown): string => `data: ${JSON.stringify(v)}\r\n\r\n`;
const STREAM =
  ev({
    candidates: [{ content: { role: 'model', parts: [{ text: 'Grüße, ' }] }, index: 0 }],
    responseId: 'r1',
  }) +
  ev({
    candidates: [{ content: { role: 'model', parts: [{ text: '世界' }] }, index: 0 }],
    responseId: 'r1',
  }) +
  ev({
    candidates: [
      {
        content: {
          role: 'model',
          parts: [{ functionCall: { name: 'weather', args: { city: 'Oslo' } } }],
        },
        finishReason: 'STOP',
        index: 0,
      },
    ],
    usageMetadata: {
      promptTokenCount: 9,
      candidatesTokenCount: 4,
      totalTokenCount: 13,
      cachedContentTokenCount: 2,
    },
    responseId: 'r1',
  });

describe('Gemini: translator table and paths', () => {
  it('serves both caller APIs; the Gemini API path and streaming with alt=sse', () => {
    assert.equal(translatorFor('openai', 'chat', 'gemini'), openaiToGemini);
    assert.equal(translatorFor('anthropic', 'messages', 'gemini'), anthropicToGemini);
    const r = req('openai', {
      model: 'gemini-2.5-flash',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(
      openaiToGemini.request(r, backend()).path,
      '/v1beta/models/gemini-2.5-flash:generateContent',
    );
    const s = req('openai', {
      model: 'm',
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(
      openaiToGemini.request(s, backend({ pathPrefix: '/v1' })).path,
      '/v1/models/m:streamGenerateContent?alt=sse',
    );
  });
});

describe('OpenAI → Gemini request', () => {
  it('maps system, parts, tool calls and responses, tools, tool_choice, generationConfig with the cap', () => {
    const body = {
      model: 'gemini-2.5-flash',
      messages: [
        { role: 'system', content: 'Be brief.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Weather?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBO' } },
          ],
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'weather', arguments: '{"city":"Oslo"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '{"sky":"clear"}' },
      ],
      tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object' } } }],
      tool_choice: { type: 'function', function: { name: 'weather' } },
      max_tokens: 5000,
      temperature: 1.5,
      stop: 'END',
    };
    assert.deepEqual(sent(openaiToGemini, req('openai', body, { outputTokenCap: 200 })), {
      contents: [
        {
          role: 'user',
          parts: [{ text: 'Weather?' }, { inlineData: { mimeType: 'image/png', data: 'iVBO' } }],
        },
        { role: 'model', parts: [{ functionCall: { name: 'weather', args: { city: 'Oslo' } } }] },
        {
          role: 'user',
          parts: [{ functionResponse: { name: 'weather', response: { sky: 'clear' } } }],
        },
      ],
      systemInstruction: { parts: [{ text: 'Be brief.' }] },
      tools: [
        { functionDeclarations: [{ name: 'weather', parametersJsonSchema: { type: 'object' } }] },
      ],
      toolConfig: { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['weather'] } },
      generationConfig: { maxOutputTokens: 200, temperature: 1.5, stopSequences: ['END'] },
    });
  });

  it('response_format as a JSON schema; refusals name the field', () => {
    const m = [{ role: 'user', content: 'hi' }];
    const out = sent(
      openaiToGemini,
      req('openai', {
        model: 'm',
        messages: m,
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'x', schema: { type: 'object' } },
        },
      }),
    );
    assert.deepEqual(out.generationConfig, {
      responseMimeType: 'application/json',
      responseJsonSchema: { type: 'object' },
    });
    const refuse = (b: Record<string, unknown>): string | undefined =>
      refusal(() => openaiToGemini.request(req('openai', { model: 'm', ...b }), backend())).param;
    assert.equal(refuse({ messages: m, n: 3 }), 'n');
    assert.equal(refuse({ messages: m, temperature: 3 }), 'temperature');
    assert.equal(
      refuse({
        messages: [
          { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/a.png' } }] },
        ],
      }),
      'messages[0].content[0].image_url.url',
    );
    assert.equal(
      refuse({ messages: [...m, { role: 'tool', tool_call_id: 'nope', content: 'x' }] }),
      'messages[1].tool_call_id',
    );
    // An assistant's legacy function call or audio is refused, never dropped from the history.
    assert.equal(
      refuse({
        messages: [
          ...m,
          { role: 'assistant', content: null, function_call: { name: 'f', arguments: '{}' } },
        ],
      }),
      'messages[1].function_call',
    );
    assert.equal(
      refuse({ messages: [...m, { role: 'assistant', content: 'x', audio: { id: 'a1' } }] }),
      'messages[1].audio',
    );
    assert.equal(refuse({ messages: m, stop: 5 }), 'stop');
  });
});

describe('Anthropic → Gemini request', () => {
  it('maps system, blocks, tool_use/tool_result by name, tools and generationConfig', () => {
    const out = sent(
      anthropicToGemini,
      req('anthropic', {
        model: 'm',
        system: 'Be brief.',
        max_tokens: 300,
        top_k: 4,
        stop_sequences: ['X'],
        tools: [{ name: 'weather', input_schema: { type: 'object' } }],
        tool_choice: { type: 'any' },
        messages: [
          { role: 'user', content: 'Weather?' },
          {
            role: 'assistant',
            content: [{ type: 'tool_use', id: 'tu_1', name: 'weather', input: { city: 'Oslo' } }],
          },
          {
            role: 'user',
            content: [
              { type: 'tool_result', tool_use_id: 'tu_1', content: 'sunny', is_error: true },
            ],
          },
        ],
      }),
    );
    assert.deepEqual(out, {
      contents: [
        { role: 'user', parts: [{ text: 'Weather?' }] },
        { role: 'model', parts: [{ functionCall: { name: 'weather', args: { city: 'Oslo' } } }] },
        {
          role: 'user',
          parts: [{ functionResponse: { name: 'weather', response: { output: 'Error: sunny' } } }],
        },
      ],
      systemInstruction: { parts: [{ text: 'Be brief.' }] },
      tools: [
        { functionDeclarations: [{ name: 'weather', parametersJsonSchema: { type: 'object' } }] },
      ],
      toolConfig: { functionCallingConfig: { mode: 'ANY' } },
      generationConfig: { maxOutputTokens: 300, topK: 4, stopSequences: ['X'] },
    });
    const param = refusal(() =>
      anthropicToGemini.request(
        req('anthropic', {
          model: 'm',
          max_tokens: 5,
          thinking: { type: 'enabled', budget_tokens: 1024 },
          messages: [{ role: 'user', content: 'x' }],
        }),
        backend(),
      ),
    ).param;
    assert.equal(param, 'thinking');
  });
});

const ANSWER = {
  candidates: [
    {
      content: {
        role: 'model',
        parts: [
          { text: 'think', thought: true },
          { text: 'Sunny.' },
          { functionCall: { name: 'weather', args: { city: 'Oslo' } } },
        ],
      },
      finishReason: 'STOP',
    },
  ],
  usageMetadata: {
    promptTokenCount: 10,
    candidatesTokenCount: 3,
    thoughtsTokenCount: 2,
    totalTokenCount: 15,
  },
  responseId: 'abc',
};

describe('Gemini answers → the caller format', () => {
  it('OpenAI and Anthropic shapes, thoughts as reasoning, usage from usageMetadata', () => {
    const o = openaiToGemini.response(
      req('openai', { model: 'gm', messages: [] }),
      backend(),
      CTX,
    )!;
    o.headers(200, new Map([['content-type', 'application/json']]));
    const oj = JSON.parse(o.json(Buffer.from(JSON.stringify(ANSWER))).toString()) as Record<
      string,
      unknown
    >;
    assert.deepEqual(oj.choices, [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: 'Sunny.',
          tool_calls: [
            {
              id: 'call_0',
              type: 'function',
              function: { name: 'weather', arguments: '{"city":"Oslo"}' },
            },
          ],
          reasoning_content: 'think',
        },
        logprobs: null,
        finish_reason: 'tool_calls',
      },
    ]);
    assert.deepEqual(oj.usage, {
      prompt_tokens: 10,
      completion_tokens: 5,
      total_tokens: 15,
      prompt_tokens_details: { cached_tokens: 0 },
    });
    const a = anthropicToGemini.response(
      req('anthropic', { model: 'gm', messages: [] }),
      backend(),
      CTX,
    )!;
    a.headers(200, new Map([['content-type', 'application/json']]));
    const aj = JSON.parse(a.json(Buffer.from(JSON.stringify(ANSWER))).toString()) as Record<
      string,
      unknown
    >;
    assert.equal(aj.stop_reason, 'tool_use');
    assert.deepEqual(aj.usage, {
      input_tokens: 10,
      output_tokens: 5,
      cache_read_input_tokens: 0,
      cache_creation_input_tokens: 0,
    });
  });

  it("a Gemini error becomes Anthropic's error type for its status, as every Anthropic answer", () => {
    for (const [status, type] of [
      [413, 'request_too_large'],
      [529, 'overloaded_error'],
      [503, 'overloaded_error'],
      [500, 'api_error'],
      [400, 'invalid_request_error'],
    ] as const) {
      const a = anthropicToGemini.response(
        req('anthropic', { model: 'gm', messages: [] }),
        backend(),
        CTX,
      )!;
      const body = Buffer.from(JSON.stringify({ error: { code: status, message: 'no' } }));
      const out = JSON.parse(a.error(status, body).toString()) as { error: { type: string } };
      assert.equal(out.error.type, type, String(status));
    }
  });

  it('a safety block is an error in the caller format, not an empty answer', () => {
    const blocked = Buffer.from(JSON.stringify({ promptFeedback: { blockReason: 'SAFETY' } }));
    const o = openaiToGemini.response(
      req('openai', { model: 'gm', messages: [] }),
      backend(),
      CTX,
    )!;
    o.headers(200, new Map([['content-type', 'application/json']]));
    const e = refusal(() => o.json(blocked));
    assert.equal(e.status, 400);
    assert.match(e.message, /blocked the prompt \(SAFETY\)/);
    const streamOut = through(
      () =>
        anthropicToGemini.response(
          req('anthropic', { model: 'gm', messages: [] }),
          backend(),
          CTX,
        )!,
      ev({ candidates: [{ content: { role: 'model', parts: [] }, finishReason: 'SAFETY' }] }),
      [],
    );
    assert.match(streamOut, /event: error\ndata: .*withheld the answer \(SAFETY\)/);
  });

  it('Google error bodies in each caller format', () => {
    const body = Buffer.from(
      JSON.stringify({
        error: { code: 429, message: 'Quota exceeded.', status: 'RESOURCE_EXHAUSTED' },
      }),
    );
    const o = openaiToGemini.response(
      req('openai', { model: 'gm', messages: [] }),
      backend(),
      CTX,
    )!;
    assert.deepEqual(JSON.parse(o.error(429, body).toString()), {
      error: {
        message: 'Quota exceeded.',
        type: 'rate_limit_error',
        param: null,
        code: 'RESOURCE_EXHAUSTED',
      },
    });
    const a = anthropicToGemini.response(
      req('anthropic', { model: 'gm', messages: [] }),
      backend(),
      CTX,
    )!;
    assert.deepEqual(JSON.parse(a.error(429, body).toString()), {
      type: 'error',
      error: { type: 'rate_limit_error', message: 'Quota exceeded.' },
    });
  });
});

describe('Gemini SSE → the caller stream, cut at every byte', () => {
  it('OpenAI chunks with a tool call, finish reason and usage', () => {
    const r = req('openai', { model: 'gm', messages: [], stream: true }, { forcedUsage: true });
    const out = assertSplitSafe(() => openaiToGemini.response(r, backend(), CTX)!, STREAM);
    const events = dataOf(out);
    const deltas = events.map((e) => (e.choices as { delta?: unknown }[])[0]?.delta);
    assert.deepEqual(deltas.slice(0, 4), [
      { role: 'assistant', content: '' },
      { content: 'Grüße, ' },
      { content: '世界' },
      {
        tool_calls: [
          {
            index: 0,
            id: 'call_0',
            type: 'function',
            function: { name: 'weather', arguments: '{"city":"Oslo"}' },
          },
        ],
      },
    ]);
    assert.equal(
      (events.at(-2)!.choices as { finish_reason: string }[])[0]!.finish_reason,
      'tool_calls',
    );
    assert.deepEqual(events.at(-1)!.usage, {
      prompt_tokens: 9,
      completion_tokens: 4,
      total_tokens: 13,
      prompt_tokens_details: { cached_tokens: 2 },
    });
    assert.ok(out.endsWith('data: [DONE]\n\n'));
  });

  it('Anthropic events with indices in order and usage in message_delta', () => {
    const r = req('anthropic', { model: 'gm', messages: [], stream: true });
    const out = assertSplitSafe(() => anthropicToGemini.response(r, backend(), CTX)!, STREAM);
    assert.deepEqual(
      [...out.matchAll(/^event: (.+)$/gm)].map((m) => m[1]),
      [
        'message_start',
        'content_block_start',
        'content_block_delta',
        'content_block_delta',
        'content_block_stop',
        'content_block_start',
        'content_block_delta',
        'content_block_stop',
        'message_delta',
        'message_stop',
      ],
    );
    const events = dataOf(out);
    assert.deepEqual(events[8], {
      type: 'message_delta',
      delta: { stop_reason: 'tool_use', stop_sequence: null },
      usage: {
        input_tokens: 7,
        output_tokens: 4,
        cache_read_input_tokens: 2,
        cache_creation_input_tokens: 0,
      },
    });
  });

  it('a stream cut before its finish reason ends in an error', () => {
    const cut = STREAM.slice(0, STREAM.indexOf('data: ', 10));
    const out = through(
      () =>
        openaiToGemini.response(
          req('openai', { model: 'gm', messages: [], stream: true }),
          backend(),
          CTX,
        )!,
      cut,
      [],
    );
    assert.match(out, /"code":"bad_upstream_response"/);
  });
});
