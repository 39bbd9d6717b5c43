// Bedrock Converse from both caller APIs: golden requests, answers, errors, and ConverseStream's
// binary event stream cut at every byte (mid-prelude, mid-header, mid-payload, mid-UTF-8) giving
// exactly what the unsplit stream gives; CRC failures and exceptions in the caller's format.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { anthropicToBedrock } from './anthropic-to-bedrock.js';
import {
  cappedMaxTokens,
  ConverseStreamDecoder,
  eventStreamCodec,
  loadEventStreamCodec,
  type ConverseEvent,
} from './bedrock-converse.js';
import { openaiToBedrock } from './openai-to-bedrock.js';
import { translatorFor } from './index.js';
import type { ExchangeRequest, ResponseTranslator, Translator } from './translator.js';

// Loaded before a config with a Bedrock backend is applied (providers/packages.ts); here by hand.
await loadEventStreamCodec();

const CTX = { created: 1_700_000_000, maxEventBytes: 1 << 20 };
const MODEL = 'anthropic.claude-3-5-sonnet-20240620-v1:0';

function backend(over: Partial<ResolvedBackend> = {}): ResolvedBackend {
  return {
    name: 'b',
    cluster: 'c',
    provider: 'aws-bedrock',
    credential: undefined,
    aws: { region: 'us-east-1' },
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

/** One ConverseStream frame as Bedrock sends it. */
function frame(type: string, payload: unknown): Buffer {
  return Buffer.from(
    eventStreamCodec().encode({
      headers: {
        ':event-type': { type: 'string', value: type },
        ':content-type': { type: 'string', value: 'application/json' },
        ':message-type': { type: 'string', value: 'event' },
      },
      body: Buffer.from(JSON.stringify(payload), 'utf8'),
    }),
  );
}

function exceptionFrame(type: string, message: string): Buffer {
  return Buffer.from(
    eventStreamCodec().encode({
      headers: {
        ':exception-type': { type: 'string', value: type },
        ':content-type': { type: 'string', value: 'application/json' },
        ':message-type': { type: 'string', value: 'exception' },
      },
      body: Buffer.from(JSON.stringify({ message }), 'utf8'),
    }),
  );
}

const STREAM_HEADERS = new Map([
  ['content-type', 'application/vnd.amazon.eventstream'],
  ['x-amzn-requestid', 'req-1'],
]);

function through(make: () => ResponseTranslator, bytes: Buffer, cuts: number[]): string {
  const rt = make();
  const start = rt.headers(200, STREAM_HEADERS);
  assert.equal(start.body, 'stream');
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    out.push(rt.stream(bytes.subarray(at, c), c === bytes.length));
    at = c;
  }
  return Buffer.concat(out).toString('utf8');
}

/** Every single cut point, then every byte on its own: all equal to the whole. */
function assertSplitSafe(make: () => ResponseTranslator, bytes: Buffer): string {
  const whole = through(make, bytes, []);
  for (let i = 1; i < bytes.length; i++) assert.equal(through(make, bytes, [i]), whole, `cut ${i}`);
  const each = Array.from({ length: bytes.length - 1 }, (_, i) => i + 1);
  assert.equal(through(make, bytes, each), whole, 'byte by byte');
  return whole;
}

function sse(text: string): Record<string, unknown>[] {
  return text
    .split('\n\n')
    .filter((e) => e.includes('data: '))
    .map((e) => e.slice(e.indexOf('data: ') + 6))
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d) as Record<string, unknown>);
}

const TEXT_STREAM = Buffer.concat([
  frame('messageStart', { role: 'assistant' }),
  frame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'Grüße, ' }, p: 'abc' }),
  frame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: '世界' } }),
  frame('contentBlockStop', { contentBlockIndex: 0 }),
  frame('contentBlockStart', {
    contentBlockIndex: 1,
    start: { toolUse: { toolUseId: 'tu_1', name: 'weather' } },
  }),
  frame('contentBlockDelta', { contentBlockIndex: 1, delta: { toolUse: { input: '{"city":' } } }),
  frame('contentBlockDelta', { contentBlockIndex: 1, delta: { toolUse: { input: '"Oslo"}' } } }),
  frame('contentBlockStop', { contentBlockIndex: 1 }),
  frame('messageStop', { stopReason: 'tool_use' }),
  frame('metadata', {
    usage: { inputTokens: 11, outputTokens: 7, totalTokens: 18, cacheReadInputTokens: 2 },
    metrics: { latencyMs: 5 },
  }),
]);

describe('translator table', () => {
  it('serves both caller APIs on Bedrock Converse', () => {
    assert.equal(translatorFor('openai', 'chat', 'bedrock-converse'), openaiToBedrock);
    assert.equal(translatorFor('anthropic', 'messages', 'bedrock-converse'), anthropicToBedrock);
    // Embeddings go through InvokeModel (openai-to-bedrock-embeddings.ts), legacy completions nowhere.
    assert.notEqual(translatorFor('openai', 'embeddings', 'bedrock-converse'), openaiToBedrock);
    assert.equal(translatorFor('openai', 'completions', 'bedrock-converse'), undefined);
  });
});

describe('OpenAI Chat Completions → Converse request', () => {
  it('maps system, parts, images, PDFs, tool calls and results, tools, inference config', () => {
    const r = req('openai', {
      model: 'claude',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'developer', content: [{ type: 'text', text: 'Use metric.' }] },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Weather here?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBO' } },
            { type: 'file', file: { file_data: 'data:application/pdf;base64,JVBE' } },
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
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
        { role: 'user', content: 'Thanks' },
      ],
      tools: [
        {
          type: 'function',
          function: {
            name: 'weather',
            description: 'Weather by city',
            parameters: { type: 'object', properties: { city: { type: 'string' } } },
          },
        },
      ],
      tool_choice: 'required',
      max_tokens: 300,
      temperature: 0.2,
      top_p: 0.9,
      stop: ['END'],
      user: 'u1',
    });
    const b = backend({
      modelOverride: MODEL,
      aws: {
        region: 'us-east-1',
        guardrail: { identifier: 'gr-1', version: '2', trace: 'enabled' },
      },
    });
    const up = openaiToBedrock.request(r, b);
    assert.equal(up.path, '/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse');
    assert.deepEqual(JSON.parse(up.body!.toString()), {
      messages: [
        {
          role: 'user',
          content: [
            { text: 'Weather here?' },
            { image: { format: 'png', source: { bytes: 'iVBO' } } },
            { document: { format: 'pdf', name: 'document-1', source: { bytes: 'JVBE' } } },
          ],
        },
        {
          role: 'assistant',
          content: [{ toolUse: { toolUseId: 'call_1', name: 'weather', input: { city: 'Oslo' } } }],
        },
        {
          role: 'user',
          content: [
            { toolResult: { toolUseId: 'call_1', content: [{ text: 'sunny' }] } },
            { text: 'Thanks' },
          ],
        },
      ],
      system: [{ text: 'Be brief.' }, { text: 'Use metric.' }],
      inferenceConfig: { maxTokens: 300, temperature: 0.2, topP: 0.9, stopSequences: ['END'] },
      toolConfig: {
        tools: [
          {
            toolSpec: {
              name: 'weather',
              description: 'Weather by city',
              inputSchema: {
                json: { type: 'object', properties: { city: { type: 'string' } } },
              },
            },
          },
        ],
        toolChoice: { any: {} },
      },
      guardrailConfig: { guardrailIdentifier: 'gr-1', guardrailVersion: '2', trace: 'enabled' },
    });
  });

  it('streams to converse-stream and asks for the event stream', () => {
    const up = openaiToBedrock.request(
      req('openai', { model: MODEL, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      backend({ pathPrefix: '/proxy/' }),
    );
    assert.equal(up.path, `/proxy/model/${encodeURIComponent(MODEL)}/converse-stream`);
    assert.ok(up.headers.some(([k, v]) => k === 'accept' && v.includes('eventstream')));
  });

  it('holds the output limit to the budget cap, adding it when the caller set none', () => {
    const base = { model: MODEL, messages: [{ role: 'user', content: 'hi' }] };
    const cfg = (body: Record<string, unknown>, cap?: number): unknown =>
      sent(openaiToBedrock, req('openai', body, { outputTokenCap: cap })).inferenceConfig;
    assert.deepEqual(cfg({ ...base, max_completion_tokens: 5000 }, 100), { maxTokens: 100 });
    assert.deepEqual(cfg({ ...base, max_tokens: 50 }, 100), { maxTokens: 50 });
    assert.deepEqual(cfg({ ...base, max_tokens: -1 }, 100), { maxTokens: 100 });
    assert.deepEqual(cfg(base, 100), { maxTokens: 100 });
    assert.equal(cfg(base), undefined);
    assert.equal(cappedMaxTokens(2.5, undefined), undefined);
  });

  it('refuses what Converse cannot express, naming the field', () => {
    const m = [{ role: 'user', content: 'hi' }];
    const refuse = (body: Record<string, unknown>): string | undefined =>
      refusal(() => openaiToBedrock.request(req('openai', { model: MODEL, ...body }), backend()))
        .param;
    assert.equal(
      refuse({
        messages: [
          {
            role: 'user',
            content: [{ type: 'image_url', image_url: { url: 'https://x.example/a.png' } }],
          },
        ],
      }),
      'messages[0].content[0].image_url.url',
    );
    assert.equal(refuse({ messages: m, n: 2 }), 'n');
    assert.equal(refuse({ messages: m, temperature: 1.5 }), 'temperature');
    assert.equal(
      refuse({ messages: m, response_format: { type: 'json_object' } }),
      'response_format',
    );
    assert.equal(refuse({ messages: m, frequency_penalty: 0.5 }), 'frequency_penalty');
    const tools = [{ type: 'function', function: { name: 'f' } }];
    assert.equal(refuse({ messages: m, tools, tool_choice: 'none' }), 'tool_choice');
    assert.equal(refuse({ messages: m, tools, parallel_tool_calls: false }), 'parallel_tool_calls');
    assert.equal(
      refuse({
        messages: [
          {
            role: 'user',
            content: [{ type: 'image_url', image_url: { url: 'data:image/bmp;base64,Qk0=' } }],
          },
        ],
      }),
      'messages[0].content[0].image_url.url',
    );
  });
});

describe('Anthropic Messages → Converse request', () => {
  it('maps system with cache points, blocks, tool results, thinking, tools and top_k', () => {
    const r = req('anthropic', {
      model: MODEL,
      system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }],
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Look' },
            { type: 'image', source: { type: 'base64', media_type: 'image/jpeg', data: '/9j/' } },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'hmm', signature: 'sig' },
            { type: 'tool_use', id: 'tu_1', name: 'weather', input: { city: 'Oslo' } },
          ],
        },
        {
          role: 'user',
          content: [{ type: 'tool_result', tool_use_id: 'tu_1', content: 'boom', is_error: true }],
        },
      ],
      tools: [{ name: 'weather', input_schema: { type: 'object' } }],
      tool_choice: { type: 'tool', name: 'weather' },
      max_tokens: 1000,
      stop_sequences: ['STOP'],
      top_k: 5,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      metadata: { user_id: 'u' },
    });
    assert.deepEqual(sent(anthropicToBedrock, r), {
      messages: [
        {
          role: 'user',
          content: [{ text: 'Look' }, { image: { format: 'jpeg', source: { bytes: '/9j/' } } }],
        },
        {
          role: 'assistant',
          content: [
            { reasoningContent: { reasoningText: { text: 'hmm', signature: 'sig' } } },
            { toolUse: { toolUseId: 'tu_1', name: 'weather', input: { city: 'Oslo' } } },
          ],
        },
        {
          role: 'user',
          content: [
            { toolResult: { toolUseId: 'tu_1', content: [{ text: 'boom' }], status: 'error' } },
          ],
        },
      ],
      system: [{ text: 'Be brief.' }, { cachePoint: { type: 'default' } }],
      inferenceConfig: { maxTokens: 1000, stopSequences: ['STOP'] },
      toolConfig: {
        tools: [{ toolSpec: { name: 'weather', inputSchema: { json: { type: 'object' } } } }],
        toolChoice: { tool: { name: 'weather' } },
      },
      additionalModelRequestFields: {
        top_k: 5,
        thinking: { type: 'enabled', budget_tokens: 1024 },
      },
    });
  });

  it('holds max_tokens to the cap and refuses what Converse cannot express', () => {
    const m = [{ role: 'user', content: 'hi' }];
    const capped = sent(
      anthropicToBedrock,
      req('anthropic', { model: MODEL, messages: m, max_tokens: 9000 }, { outputTokenCap: 64 }),
    );
    assert.deepEqual(capped.inferenceConfig, { maxTokens: 64 });
    const refuse = (body: Record<string, unknown>): string | undefined =>
      refusal(() =>
        anthropicToBedrock.request(
          req('anthropic', { model: MODEL, max_tokens: 5, ...body }),
          backend(),
        ),
      ).param;
    assert.equal(
      refuse({ messages: m, tools: [{ type: 'web_search_20250305', name: 'web_search' }] }),
      'tools[0]',
    );
    assert.equal(
      refuse({
        messages: [
          {
            role: 'user',
            content: [{ type: 'image', source: { type: 'url', url: 'https://x/a.png' } }],
          },
        ],
      }),
      'messages[0].content[0].source',
    );
    assert.equal(refuse({ messages: m, service_tier: 'auto' }), 'service_tier');
    assert.equal(
      refuse({
        messages: m,
        tools: [{ name: 'f', input_schema: {} }],
        tool_choice: { type: 'auto', disable_parallel_tool_use: true },
      }),
      'tool_choice.disable_parallel_tool_use',
    );
  });
});

const ANSWER = {
  output: {
    message: {
      role: 'assistant',
      content: [
        { reasoningContent: { reasoningText: { text: 'think', signature: 's' } } },
        { text: 'It is sunny.' },
        { toolUse: { toolUseId: 'tu_9', name: 'weather', input: { city: 'Oslo' } } },
      ],
    },
  },
  stopReason: 'tool_use',
  usage: { inputTokens: 10, outputTokens: 4, totalTokens: 14, cacheWriteInputTokens: 3 },
  metrics: { latencyMs: 12 },
};

describe('Converse answers → the caller format', () => {
  it('OpenAI: text, tool calls, reasoning, finish reason and usage', () => {
    const rt = openaiToBedrock.response(
      req('openai', { model: 'claude', messages: [] }),
      backend(),
      CTX,
    )!;
    rt.headers(
      200,
      new Map([
        ['content-type', 'application/json'],
        ['x-amzn-requestid', 'r1'],
      ]),
    );
    assert.deepEqual(JSON.parse(rt.json(Buffer.from(JSON.stringify(ANSWER))).toString()), {
      id: 'chatcmpl-r1',
      object: 'chat.completion',
      created: CTX.created,
      model: 'claude',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: 'It is sunny.',
            tool_calls: [
              {
                id: 'tu_9',
                type: 'function',
                function: { name: 'weather', arguments: '{"city":"Oslo"}' },
              },
            ],
            reasoning_content: 'think',
          },
          logprobs: null,
          finish_reason: 'tool_calls',
        },
      ],
      usage: {
        prompt_tokens: 13,
        completion_tokens: 4,
        total_tokens: 17,
        prompt_tokens_details: { cached_tokens: 0 },
      },
    });
  });

  it('Anthropic: blocks, stop reason and usage with cache counts', () => {
    const rt = anthropicToBedrock.response(
      req('anthropic', { model: 'claude', messages: [] }),
      backend(),
      CTX,
    )!;
    rt.headers(
      200,
      new Map([
        ['content-type', 'application/json'],
        ['x-amzn-requestid', 'r-1'],
      ]),
    );
    assert.deepEqual(JSON.parse(rt.json(Buffer.from(JSON.stringify(ANSWER))).toString()), {
      id: 'msg_bdrk_r1',
      type: 'message',
      role: 'assistant',
      model: 'claude',
      content: [
        { type: 'thinking', thinking: 'think', signature: 's' },
        { type: 'text', text: 'It is sunny.' },
        { type: 'tool_use', id: 'tu_9', name: 'weather', input: { city: 'Oslo' } },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: {
        input_tokens: 10,
        output_tokens: 4,
        cache_read_input_tokens: 0,
        cache_creation_input_tokens: 3,
      },
    });
  });

  it('errors in each caller format, with AWS error type as the OpenAI code', () => {
    const body = Buffer.from(JSON.stringify({ message: 'Too many requests, please wait.' }));
    const headers = new Map([
      ['content-type', 'application/json'],
      [
        'x-amzn-errortype',
        'ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/',
      ],
    ]);
    const o = openaiToBedrock.response(
      req('openai', { model: 'm', messages: [] }),
      backend(),
      CTX,
    )!;
    assert.equal(o.headers(429, headers).body, 'whole');
    assert.deepEqual(JSON.parse(o.error(429, body).toString()), {
      error: {
        message: 'Too many requests, please wait.',
        type: 'rate_limit_error',
        param: null,
        code: 'ThrottlingException',
      },
    });
    const a = anthropicToBedrock.response(
      req('anthropic', { model: 'm', messages: [] }),
      backend(),
      CTX,
    )!;
    a.headers(403, headers);
    assert.deepEqual(JSON.parse(a.error(403, Buffer.from('<html>denied</html>')).toString()), {
      type: 'error',
      error: { type: 'permission_error', message: 'The backend answered with status 403.' },
    });
  });
});

describe('ConverseStream → the caller stream', () => {
  it('OpenAI chunks, split anywhere, usage from metadata', () => {
    const r = req('openai', { model: 'claude', messages: [], stream: true }, { forcedUsage: true });
    const out = assertSplitSafe(() => openaiToBedrock.response(r, backend(), CTX)!, TEXT_STREAM);
    const events = sse(out);
    const deltas = events.map((e) => (e.choices as { delta?: unknown }[])[0]?.delta);
    assert.deepEqual(deltas.slice(0, 5), [
      { role: 'assistant', content: '' },
      { content: 'Grüße, ' },
      { content: '世界' },
      {
        tool_calls: [
          { index: 0, id: 'tu_1', type: 'function', function: { name: 'weather', arguments: '' } },
        ],
      },
      { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] },
    ]);
    const finish = events.at(-2)!.choices as { finish_reason: string }[];
    assert.equal(finish[0]!.finish_reason, 'tool_calls');
    assert.deepEqual(events.at(-1)!.usage, {
      prompt_tokens: 13,
      completion_tokens: 7,
      total_tokens: 20,
      prompt_tokens_details: { cached_tokens: 2 },
    });
    assert.ok(out.endsWith('data: [DONE]\n\n'));
  });

  it('Anthropic events, split anywhere, indices in order and usage in message_delta', () => {
    const r = req('anthropic', { model: 'claude', messages: [], stream: true });
    const out = assertSplitSafe(() => anthropicToBedrock.response(r, backend(), CTX)!, TEXT_STREAM);
    const names = [...out.matchAll(/^event: (.+)$/gm)].map((m) => m[1]);
    assert.deepEqual(names, [
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    const events = sse(out);
    assert.deepEqual(events[5], {
      type: 'content_block_start',
      index: 1,
      content_block: { type: 'tool_use', id: 'tu_1', name: 'weather', input: {} },
    });
    assert.deepEqual(events[9], {
      type: 'message_delta',
      delta: { stop_reason: 'tool_use', stop_sequence: null },
      usage: {
        input_tokens: 11,
        output_tokens: 7,
        cache_read_input_tokens: 2,
        cache_creation_input_tokens: 0,
      },
    });
  });

  it('an exception frame becomes an error event in the caller format', () => {
    const bytes = Buffer.concat([
      frame('messageStart', { role: 'assistant' }),
      frame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'Hi' } }),
      exceptionFrame('throttlingException', 'Slow down.'),
    ]);
    const o = sse(
      assertSplitSafe(
        () =>
          openaiToBedrock.response(req('openai', { model: 'm', messages: [] }), backend(), CTX)!,
        bytes,
      ),
    );
    assert.deepEqual(o.at(-1), {
      error: {
        message: 'Slow down.',
        type: 'rate_limit_error',
        param: null,
        code: 'throttlingException',
      },
    });
    const a = assertSplitSafe(
      () =>
        anthropicToBedrock.response(
          req('anthropic', { model: 'm', messages: [] }),
          backend(),
          CTX,
        )!,
      bytes,
    );
    assert.match(
      a,
      /event: error\ndata: {"type":"error","error":{"type":"rate_limit_error","message":"Slow down."}}/,
    );
  });

  it('a frame whose CRC fails, or a stream cut mid-frame, ends in an error, never in text', () => {
    const good = frame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'secret' } });
    const bad = Buffer.from(good);
    bad.writeUInt8(bad.readUInt8(bad.length - 10) ^ 0xff, bad.length - 10); // a payload byte: the message CRC no longer matches
    const o = through(
      () => openaiToBedrock.response(req('openai', { model: 'm', messages: [] }), backend(), CTX)!,
      Buffer.concat([frame('messageStart', { role: 'assistant' }), bad]),
      [],
    );
    assert.doesNotMatch(o, /secret|ecret/);
    assert.match(o, /"code":"bad_upstream_response"/);
    const prelude = Buffer.from(good);
    prelude.writeUInt8(prelude.readUInt8(9) ^ 0x01, 9); // the prelude CRC
    assert.throws(() => new ConverseStreamDecoder(1 << 20).push(prelude), SluiceError);
    const cut = through(
      () =>
        anthropicToBedrock.response(
          req('anthropic', { model: 'm', messages: [] }),
          backend(),
          CTX,
        )!,
      good.subarray(0, 20),
      [],
    );
    assert.match(cut, /event: error/);
  });

  it('refuses a frame longer than the bound before holding it', () => {
    const d = new ConverseStreamDecoder(64);
    const big = frame('contentBlockDelta', {
      contentBlockIndex: 0,
      delta: { text: 'x'.repeat(100) },
    });
    assert.throws(() => d.push(big.subarray(0, 12)), /malformed/);
  });

  it('decodes frames as soon as their last byte arrives', () => {
    const d = new ConverseStreamDecoder(1 << 20);
    const f = frame('messageStart', { role: 'assistant' });
    assert.deepEqual(d.push(f.subarray(0, f.length - 1)), []);
    const got: ConverseEvent[] = d.push(f.subarray(f.length - 1));
    assert.deepEqual(got, [
      { kind: 'event', type: 'messageStart', payload: { role: 'assistant' } },
    ]);
  });

  describe('Anthropic Messages → Claude on Bedrock through InvokeModel', () => {
    const invoke = backend({ aws: { region: 'us-east-1', anthropicInvoke: true } });
    const events = [
      {
        type: 'message_start',
        message: {
          id: 'm1',
          type: 'message',
          role: 'assistant',
          content: [],
          usage: { input_tokens: 5, output_tokens: 1 },
        },
      },
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Grüße 世界' } },
      { type: 'content_block_stop', index: 0 },
      { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 4 } },
      {
        type: 'message_stop',
        'amazon-bedrock-invocationMetrics': { inputTokenCount: 5, outputTokenCount: 4 },
      },
    ];
    const bytes = Buffer.concat(
      events.map((e) =>
        frame('chunk', { bytes: Buffer.from(JSON.stringify(e)).toString('base64') }),
      ),
    );

    it('sends the Messages body as written, with Bedrock’s anthropic_version, to /invoke', () => {
      const r = req(
        'anthropic',
        {
          model: 'claude',
          max_tokens: 9000,
          stream: true,
          system: [{ type: 'text', text: 's', cache_control: { type: 'ephemeral' } }],
          messages: [{ role: 'user', content: 'hi' }],
        },
        { outputTokenCap: 100 },
      );
      const up = anthropicToBedrock.request(r, invoke);
      assert.equal(up.path, `/model/claude/invoke-with-response-stream`);
      assert.deepEqual(JSON.parse(up.body!.toString()), {
        anthropic_version: 'bedrock-2023-05-31',
        max_tokens: 100,
        system: [{ type: 'text', text: 's', cache_control: { type: 'ephemeral' } }],
        messages: [{ role: 'user', content: 'hi' }],
      });
    });

    it('re-sends each chunk’s event as SSE, cut at every byte, without Bedrock’s metrics', () => {
      const r = req('anthropic', { model: 'claude', messages: [], stream: true });
      const out = assertSplitSafe(() => anthropicToBedrock.response(r, invoke, CTX)!, bytes);
      assert.deepEqual(
        [...out.matchAll(/^event: (.+)$/gm)].map((m) => m[1]),
        events.map((e) => e.type),
      );
      assert.match(out, /"text":"Grüße 世界"/);
      assert.doesNotMatch(out, /invocationMetrics/);
    });
  });
});
