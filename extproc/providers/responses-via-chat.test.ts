// The Responses API carried over the Chat Completions translators: requests as each backend
// reads them, answers and streams (cut at every byte) as the Responses API writes them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { openaiToAnthropic } from './openai-to-anthropic.js';
import { openaiToOpenai } from './openai-to-openai.js';
import { responsesToChat, responsesVia } from './responses-via-chat.js';
import type { ExchangeRequest, ResponseTranslator } from './translator.js';

const CTX = { created: 1_700_000_000, maxEventBytes: 1 << 20 };
const viaAnthropic = responsesVia(openaiToAnthropic);
const viaChat = responsesVia(openaiToOpenai);

function backend(provider: ResolvedBackend['provider'], over: Partial<ResolvedBackend> = {}) {
  return {
    name: 'b',
    cluster: 'c',
    provider,
    credential: 'k',
    pathPrefix: '/v1',
    ...over,
  } as ResolvedBackend;
}
const ANTHROPIC = backend('anthropic');
const VLLM = backend('openai-compatible');

function req(body: Record<string, unknown>, responseId = 'resp_abc123'): ExchangeRequest {
  return {
    api: 'openai',
    operation: 'responses',
    model: String(body.model),
    body,
    stream: body.stream === true,
    forcedUsage: false,
    responseId,
  };
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

function splitSafe(make: () => ResponseTranslator, stream: string): string {
  const whole = through(make, stream, []);
  const n = Buffer.byteLength(stream);
  for (let c = 1; c < n; c++) assert.equal(through(make, stream, [c]), whole, `cut at ${c}`);
  return whole;
}

function events(sse: string): { event: string; data: Record<string, unknown> }[] {
  return sse
    .split('\n\n')
    .filter((b) => b.trim() !== '')
    .map((b) => ({
      event: /^event: (.*)$/m.exec(b)![1]!,
      data: JSON.parse(/^data: (.*)$/m.exec(b)![1]!) as Record<string, unknown>,
    }));
}

const named = (type: string, data: Record<string, unknown>): string =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

describe('Responses → Chat Completions', () => {
  it('maps instructions, input, tools, tool_choice, limits and structured output', () => {
    const chat = responsesToChat({
      model: 'm',
      instructions: 'Be brief.',
      input: 'Hello',
      tools: [
        {
          type: 'function',
          name: 'get_weather',
          description: 'Weather',
          parameters: { type: 'object', properties: { city: { type: 'string' } } },
          strict: true,
        },
      ],
      tool_choice: { type: 'function', name: 'get_weather' },
      max_output_tokens: 300,
      temperature: 0.2,
      stream: true,
      store: true,
      metadata: { a: 'b' },
      text: { format: { type: 'json_schema', name: 'x', schema: { type: 'object' } } },
    });
    assert.deepEqual(chat, {
      model: 'm',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello' },
      ],
      max_completion_tokens: 300,
      temperature: 0.2,
      stream: true,
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Weather',
            parameters: { type: 'object', properties: { city: { type: 'string' } } },
            strict: true,
          },
        },
      ],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      response_format: {
        type: 'json_schema',
        json_schema: { name: 'x', schema: { type: 'object' } },
      },
    });
  });

  it('turns a conversation of items into messages, a turn of calls into one assistant message', () => {
    const chat = responsesToChat({
      model: 'm',
      input: [
        { role: 'user', content: [{ type: 'input_text', text: 'Weather in Paris and Rome?' }] },
        {
          id: 'msg_1',
          type: 'message',
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text: 'Checking.', annotations: [] }],
        },
        { type: 'function_call', call_id: 'c1', name: 'w', arguments: '{"city":"Paris"}' },
        { type: 'function_call', call_id: 'c2', name: 'w', arguments: '{"city":"Rome"}' },
        { type: 'function_call_output', call_id: 'c1', output: 'sunny' },
        { type: 'function_call_output', call_id: 'c2', output: 'rain' },
        { role: 'developer', content: 'Answer in French.' },
        {
          role: 'user',
          content: [{ type: 'input_image', image_url: 'https://x.test/a.png', detail: 'auto' }],
        },
      ],
    });
    assert.deepEqual(chat.messages, [
      { role: 'user', content: [{ type: 'text', text: 'Weather in Paris and Rome?' }] },
      {
        role: 'assistant',
        content: 'Checking.',
        tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'w', arguments: '{"city":"Paris"}' } },
          { id: 'c2', type: 'function', function: { name: 'w', arguments: '{"city":"Rome"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'sunny' },
      { role: 'tool', tool_call_id: 'c2', content: 'rain' },
      { role: 'developer', content: 'Answer in French.' },
      {
        role: 'user',
        content: [{ type: 'image_url', image_url: { url: 'https://x.test/a.png' } }],
      },
    ]);
  });

  it('refuses what a stateless backend cannot carry, naming the field', () => {
    const r = (body: Record<string, unknown>) =>
      refusal(() => responsesToChat({ model: 'm', ...body }));
    assert.equal(r({ input: 'x', tools: [{ type: 'web_search' }] }).param, 'tools[0].type');
    assert.equal(r({ input: [{ type: 'reasoning', summary: [] }] }).param, 'input[0].type');
    assert.equal(r({ input: [{ type: 'item_reference', id: 'x' }] }).param, 'input[0].type');
    assert.equal(r({ input: 'x', background: true }).param, 'background');
    assert.equal(r({ input: 'x', truncation: 'auto' }).param, 'truncation');
    assert.equal(r({ input: 'x', frobnicate: 1 }).param, 'frobnicate');
    assert.equal(r({ input: [] }).param, 'input');
    assert.equal(
      r({ instructions: 'only this', input: [{ role: 'system', content: 's' }] }).param,
      'input',
    );
    const e = r({ input: [{ role: 'user', content: [{ type: 'input_image', file_id: 'f' }] }] });
    assert.equal(e.status, 400);
    assert.equal(e.code, 'unsupported_field');
  });

  it('refuses previous_response_id the gateway did not resolve', () => {
    const e = refusal(() =>
      viaAnthropic.request(
        req({ model: 'm', input: 'x', previous_response_id: 'resp_1' }, ''),
        ANTHROPIC,
      ),
    );
    assert.equal(e.param, 'previous_response_id');
  });
});

describe('Responses on an Anthropic backend', () => {
  it('sends Messages to /v1/messages', () => {
    const up = viaAnthropic.request(
      req({
        model: 'claude',
        instructions: 'Be brief.',
        input: 'Hi',
        max_output_tokens: 50,
        tool_choice: 'required',
        tools: [{ type: 'function', name: 'f' }],
      }),
      ANTHROPIC,
    );
    assert.equal(up.path, '/v1/messages');
    const body = JSON.parse(up.body!.toString('utf8')) as Record<string, unknown>;
    assert.deepEqual(body.system, [{ type: 'text', text: 'Be brief.' }]);
    assert.deepEqual(body.messages, [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }]);
    assert.equal(body.max_tokens, 50);
    assert.deepEqual(body.tool_choice, { type: 'any' });
  });

  it('answers a Response object with the gateway id, output items and usage', () => {
    const r = req({ model: 'claude', input: 'Hi', store: true, previous_response_id: 'resp_prev' });
    const rt = viaAnthropic.response(r, ANTHROPIC, CTX)!;
    assert.equal(rt.headers(200, new Map([['content-type', 'application/json']])).body, 'whole');
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
                { type: 'text', text: 'Hello!' },
                { type: 'tool_use', id: 'toolu_1', name: 'f', input: { a: 1 } },
              ],
              stop_reason: 'tool_use',
              usage: { input_tokens: 10, output_tokens: 5 },
            }),
          ),
        )
        .toString('utf8'),
    ) as Record<string, unknown>;
    assert.equal(out.id, 'resp_abc123');
    assert.equal(out.object, 'response');
    assert.equal(out.status, 'completed');
    assert.equal(out.model, 'claude-x');
    assert.equal(out.previous_response_id, 'resp_prev');
    assert.equal(out.store, true);
    assert.deepEqual(out.output, [
      {
        id: 'msg_abc12300',
        type: 'message',
        role: 'assistant',
        status: 'completed',
        content: [{ type: 'output_text', text: 'Hello!', annotations: [], logprobs: [] }],
      },
      {
        id: 'fc_abc12301',
        type: 'function_call',
        status: 'completed',
        arguments: '{"a":1}',
        call_id: 'toolu_1',
        name: 'f',
      },
    ]);
    assert.deepEqual(out.usage, {
      input_tokens: 10,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 5,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 15,
    });
  });

  it('says incomplete when the output limit cut the answer', () => {
    const rt = viaAnthropic.response(req({ model: 'c', input: 'Hi' }), ANTHROPIC, CTX)!;
    rt.headers(200, new Map([['content-type', 'application/json']]));
    const out = JSON.parse(
      rt
        .json(
          Buffer.from(
            JSON.stringify({
              id: 'm',
              model: 'c',
              content: [{ type: 'text', text: 'Once upon' }],
              stop_reason: 'max_tokens',
              usage: { input_tokens: 1, output_tokens: 2 },
            }),
          ),
        )
        .toString(),
    ) as Record<string, unknown>;
    assert.equal(out.status, 'incomplete');
    assert.deepEqual(out.incomplete_details, { reason: 'max_output_tokens' });
  });

  it('passes errors as OpenAI error objects', () => {
    const rt = viaAnthropic.response(req({ model: 'c', input: 'Hi' }), ANTHROPIC, CTX)!;
    rt.headers(400, new Map([['content-type', 'application/json']]));
    const e = JSON.parse(
      rt
        .error(
          400,
          Buffer.from(
            JSON.stringify({
              type: 'error',
              error: { type: 'invalid_request_error', message: 'bad' },
            }),
          ),
        )
        .toString(),
    ) as { error: { message: string } };
    assert.equal(e.error.message, 'bad');
  });

  it('streams Responses events, whatever the cuts', () => {
    const stream =
      named('message_start', {
        message: { id: 'msg_1', model: 'claude-x', usage: { input_tokens: 12, output_tokens: 1 } },
      }) +
      named('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }) +
      named('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Bon' } }) +
      named('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'jour é' } }) +
      named('content_block_stop', { index: 0 }) +
      named('content_block_start', {
        index: 1,
        content_block: { type: 'tool_use', id: 'toolu_9', name: 'f', input: {} },
      }) +
      named('content_block_delta', {
        index: 1,
        delta: { type: 'input_json_delta', partial_json: '{"a":' },
      }) +
      named('content_block_delta', {
        index: 1,
        delta: { type: 'input_json_delta', partial_json: '2}' },
      }) +
      named('content_block_stop', { index: 1 }) +
      named('message_delta', { delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 7 } }) +
      named('message_stop', {});
    const r = req({ model: 'claude', input: 'Hi', stream: true });
    const out = splitSafe(() => viaAnthropic.response(r, ANTHROPIC, CTX)!, stream);
    const ev = events(out);
    assert.deepEqual(
      ev.map((e) => e.event),
      [
        'response.created',
        'response.in_progress',
        'response.output_item.added',
        'response.content_part.added',
        'response.output_text.delta',
        'response.output_text.delta',
        'response.output_text.done',
        'response.content_part.done',
        'response.output_item.done',
        'response.output_item.added',
        'response.function_call_arguments.delta',
        'response.function_call_arguments.delta',
        'response.function_call_arguments.done',
        'response.output_item.done',
        'response.completed',
      ],
    );
    ev.forEach((e, i) => {
      assert.equal(e.data.type, e.event);
      assert.equal(e.data.sequence_number, i);
    });
    assert.equal((ev[6]!.data as { text: string }).text, 'Bonjour é');
    assert.equal((ev[12]!.data as { arguments: string }).arguments, '{"a":2}');
    const final = ev.at(-1)!.data.response as Record<string, unknown>;
    assert.equal(final.id, 'resp_abc123');
    assert.equal(final.status, 'completed');
    assert.deepEqual(final.usage, {
      input_tokens: 12,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 7,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 19,
    });
    const output = final.output as Record<string, unknown>[];
    assert.equal(output.length, 2);
    assert.deepEqual((output[0]!.content as unknown[])[0], {
      type: 'output_text',
      text: 'Bonjour é',
      annotations: [],
      logprobs: [],
    });
    assert.equal(output[1]!.call_id, 'toolu_9');
    assert.equal(output[1]!.arguments, '{"a":2}');
  });

  it('ends a stream cut short, and reports a backend error as response.failed', () => {
    const start = named('message_start', {
      message: { id: 'm', model: 'c', usage: { input_tokens: 1 } },
    });
    const cut = through(
      () => viaAnthropic.response(req({ model: 'c', input: 'x', stream: true }), ANTHROPIC, CTX)!,
      start +
        named('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }) +
        named('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hal' } }),
      [],
    );
    assert.equal(events(cut).at(-1)!.event, 'response.completed');
    const failed = through(
      () => viaAnthropic.response(req({ model: 'c', input: 'x', stream: true }), ANTHROPIC, CTX)!,
      start + named('error', { error: { type: 'overloaded_error', message: 'Overloaded' } }),
      [],
    );
    const last = events(failed).at(-1)!;
    assert.equal(last.event, 'response.failed');
    assert.deepEqual((last.data.response as { error: unknown }).error, {
      code: 'server_error',
      message: 'Overloaded',
    });
  });
});

describe('Responses on a Chat Completions server', () => {
  it('sends Chat Completions with usage asked in streams', () => {
    const up = viaChat.request(
      req({ model: 'llama', input: 'Hi', stream: true, store: true }),
      VLLM,
    );
    assert.equal(up.path, '/v1/chat/completions');
    assert.deepEqual(JSON.parse(up.body!.toString('utf8')), {
      model: 'llama',
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it('streams chat chunks as Responses events, whatever the cuts', () => {
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
      `data: ${JSON.stringify({ id: 'c', model: 'llama', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const stream =
      chunk({ role: 'assistant', content: '' }) +
      chunk({ content: 'Hi' }) +
      chunk({ content: ' there' }) +
      chunk({}, 'length') +
      `data: ${JSON.stringify({ id: 'c', model: 'llama', choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } })}\n\n` +
      'data: [DONE]\n\n';
    const out = splitSafe(
      () => viaChat.response(req({ model: 'llama', input: 'x', stream: true }), VLLM, CTX)!,
      stream,
    );
    const ev = events(out);
    const last = ev.at(-1)!;
    assert.equal(last.event, 'response.incomplete');
    const r = last.data.response as Record<string, unknown>;
    assert.deepEqual(r.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal((r.usage as { total_tokens: number }).total_tokens, 5);
    assert.equal(
      ev
        .filter((e) => e.event === 'response.output_text.delta')
        .map((e) => e.data.delta)
        .join(''),
      'Hi there',
    );
  });
});

describe('Responses on Bedrock and Gemini backends', () => {
  const bedrock = {
    name: 'b',
    cluster: 'c',
    provider: 'aws-bedrock',
    aws: { region: 'us-east-1' },
  } as ResolvedBackend;
  const gemini = {
    name: 'g',
    cluster: 'c',
    provider: 'gemini',
    credential: 'AIza',
  } as ResolvedBackend;

  it('sends Converse and generateContent bodies from a Responses conversation', async () => {
    const { openaiToBedrock } = await import('./openai-to-bedrock.js');
    const { openaiToGemini } = await import('./openai-to-gemini.js');
    const r = req({
      model: 'm',
      instructions: 'Be brief.',
      input: [
        { role: 'user', content: 'Weather?' },
        { type: 'function_call', call_id: 'c1', name: 'w', arguments: '{"city":"Oslo"}' },
        { type: 'function_call_output', call_id: 'c1', output: 'snow' },
      ],
      tools: [{ type: 'function', name: 'w', parameters: { type: 'object', properties: {} } }],
      max_output_tokens: 64,
    });
    const converse = JSON.parse(
      responsesVia(openaiToBedrock).request(r, bedrock).body!.toString('utf8'),
    ) as Record<string, unknown>;
    assert.deepEqual(converse.system, [{ text: 'Be brief.' }]);
    assert.deepEqual(
      (converse.messages as { role: string; content: Record<string, unknown>[] }[]).map((m) => [
        m.role,
        Object.keys(m.content[0]!)[0],
      ]),
      [
        ['user', 'text'],
        ['assistant', 'toolUse'],
        ['user', 'toolResult'],
      ],
    );
    assert.deepEqual(converse.inferenceConfig, { maxTokens: 64 });
    const g = JSON.parse(
      responsesVia(openaiToGemini).request(r, gemini).body!.toString('utf8'),
    ) as Record<string, unknown>;
    assert.ok(g.systemInstruction);
    assert.equal((g.contents as unknown[]).length, 3);
    assert.equal((g.generationConfig as { maxOutputTokens: number }).maxOutputTokens, 64);
  });

  it('answers a Response from a Gemini answer', async () => {
    const { openaiToGemini } = await import('./openai-to-gemini.js');
    const rt = responsesVia(openaiToGemini).response(
      req({ model: 'm', input: 'Hi' }),
      gemini,
      CTX,
    )!;
    rt.headers(200, new Map([['content-type', 'application/json']]));
    const out = JSON.parse(
      rt
        .json(
          Buffer.from(
            JSON.stringify({
              candidates: [
                { content: { role: 'model', parts: [{ text: 'Hallo' }] }, finishReason: 'STOP' },
              ],
              usageMetadata: { promptTokenCount: 3, candidatesTokenCount: 1, totalTokenCount: 4 },
              modelVersion: 'gemini-x',
            }),
          ),
        )
        .toString(),
    ) as {
      id: string;
      status: string;
      output: { content: { text: string }[] }[];
      usage: { total_tokens: number };
    };
    assert.equal(out.id, 'resp_abc123');
    assert.equal(out.status, 'completed');
    assert.equal(out.output[0]!.content[0]!.text, 'Hallo');
    assert.equal(out.usage.total_tokens, 4);
  });
});
