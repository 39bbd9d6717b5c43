// AWS Bedrock through `sluice run` from YAML: the openai and @anthropic-ai/sdk SDKs reach a
// Bedrock backend (the mock runtime, which verifies every SigV4 signature with AWS's own signer
// and writes its event stream in 7-byte pieces), plain, streaming and with tools, with masking and
// a budget on: placeholders never reach Bedrock and are restored in the translated stream; usage
// is charged from Bedrock's own counts (the `metadata` event); the budget's cap reaches Bedrock as
// inferenceConfig.maxTokens. Fallback from Bedrock to the Anthropic API and back, each attempt
// translated (and signed) for the backend it reached.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type Anthropic from '@anthropic-ai/sdk';
import type OpenAI from 'openai';
import { startMockBedrock, type MockBedrock } from '../../operator/mock-provider/bedrock.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import {
  FALLBACK_RETRY,
  KEYS,
  lastCost,
  policyDoc,
  routeDoc,
  routeLog,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  type YamlGateway,
  sdkClients,
  until,
} from './harness.js';

const CREDS = { accessKeyId: 'AKIDE2EBEDROCK', secretAccessKey: 'e2e/bedrock+secret' };
const CREDENTIALS_FILE = `[default]
aws_access_key_id = ${CREDS.accessKeyId}
aws_secret_access_key = ${CREDS.secretAccessKey}
`;
const MODEL_ID = 'anthropic.claude-3-haiku-20240307-v1:0';
const MICROS_PER_TOKEN = 1000;
const PRICE = { inputPerMTok: MICROS_PER_TOKEN, outputPerMTok: MICROS_PER_TOKEN };
const MAX_TOKENS = 40;

function bedrockBackend(priority = 0): unknown {
  return {
    name: 'bedrock',
    provider: 'aws-bedrock',
    endpoint: { service: { name: 'bedrock-mock', port: 80 } },
    credential: { secretRef: { name: 'aws' } },
    modelOverride: MODEL_ID,
    aws: { region: 'us-west-2', guardrail: { identifier: 'gr-e2e', version: '3' } },
    priority,
  };
}

function anthropicBackend(priority = 0): unknown {
  return {
    name: 'anthropic',
    provider: 'anthropic',
    endpoint: { service: { name: 'anthropic-mock', port: 80 } },
    credential: { secretRef: { name: 'anthropic' } },
    priority,
  };
}

function route(name: string, model: string, backends: unknown[] = [bedrockBackend()]): unknown {
  return routeDoc(name, backends, { model, retry: FALLBACK_RETRY });
}

describe('e2e: AWS Bedrock backends through sluice run', () => {
  let g: YamlGateway;
  let mock: MockBedrock;
  let anthropicMock: MockProvider;
  let openai: OpenAI;
  let anthropic: Anthropic;

  before(async () => {
    mock = await startMockBedrock({ region: 'us-west-2', credentials: CREDS, frameSplit: 7 });
    anthropicMock = await startMockProvider({
      name: 'anthropic-mock',
      auth: { anthropicKey: KEYS.anthropic },
    });
    g = await startYamlGateway([
      route('bedrock', 'claude-bedrock'),
      // Fallback between Bedrock and another API, both ways.
      route('bedrock-first', 'bedrock-first', [bedrockBackend(), anthropicBackend(1)]),
      route('anthropic-first', 'anthropic-first', [anthropicBackend(), bedrockBackend(1)]),
      // Claude through InvokeModel for Anthropic callers.
      route('claude-invoke', 'claude-invoke', [
        {
          name: 'bedrock',
          provider: 'aws-bedrock',
          endpoint: { service: { name: 'bedrock-mock', port: 80 } },
          credential: { secretRef: { name: 'aws' } },
          modelOverride: MODEL_ID,
          aws: { region: 'us-west-2', anthropicInvoke: true },
        },
      ]),
      policyDoc('pii', ['bedrock', 'claude-invoke'], {
        masking: { detectors: ['EMAIL'], actions: { EMAIL: 'mask' }, reversible: true },
      }),
      policyDoc('spend', ['bedrock'], {
        pricing: { models: { 'claude-*': PRICE } },
        limits: { rules: [{ name: 'daily', per: ['route'], spendPerDayUsd: 100 }] },
      }),
      ...serviceDocs('bedrock-mock', mock.port),
      ...serviceDocs('anthropic-mock', anthropicMock.port),
      secretDoc('aws', CREDENTIALS_FILE),
      secretDoc('anthropic', KEYS.anthropic),
    ]);
    ({ openai, anthropic } = sdkClients(g.gateway.url));
  });
  beforeEach(() => {
    mock.take();
    anthropicMock.take();
  });
  after(async () => {
    await g?.close();
    await mock?.close();
    await anthropicMock?.close();
  });

  /** The cost the access log charged for the latest request of the route. */
  const cost = (count: number): Promise<number> => lastCost(g, 'bedrock', count);

  it('openai SDK → Bedrock: a plain answer, signed, masked, usage charged from Bedrock', async () => {
    const before = routeLog(g, 'bedrock').length;
    mock.enqueue({ usage: { input: 21, output: 9 } });
    const r = await openai.chat.completions.create({
      model: 'claude-bedrock',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'mail jane.doe@example.com today' },
      ],
      max_tokens: MAX_TOKENS,
    });
    assert.equal(r.choices[0]!.message.content, 'echo: mail jane.doe@example.com today');
    assert.equal(r.choices[0]!.finish_reason, 'stop');
    assert.deepEqual({ p: r.usage?.prompt_tokens, c: r.usage?.completion_tokens }, { p: 21, c: 9 });
    const [seen] = mock.take();
    assert.ok(seen?.signed, 'the mock verified the SigV4 signature');
    assert.equal(seen.model, MODEL_ID);
    assert.equal(seen.stream, false);
    assert.doesNotMatch(seen.body.toString(), /jane\.doe@example\.com/);
    assert.match(JSON.stringify(seen.json?.['messages']), /\[EMAIL_1\]/);
    assert.deepEqual(seen.json?.['system'], [{ text: 'be brief' }]);
    // The backend's guardrail, from the AIRoute, reaches every Converse call.
    assert.deepEqual(seen.json?.['guardrailConfig'], {
      guardrailIdentifier: 'gr-e2e',
      guardrailVersion: '3',
    });
    assert.ok(
      ((seen.json?.['inferenceConfig'] as { maxTokens: number }).maxTokens ?? Infinity) <=
        MAX_TOKENS,
    );
    assert.ok(Math.abs((await cost(before + 1)) - 30 * 0.001) < 1e-9);
  });

  it('openai SDK → Bedrock streaming: the event stream as chunks, placeholders restored, usage', async () => {
    const before = routeLog(g, 'bedrock').length;
    mock.enqueue({ chunkChars: 3, usage: { input: 11, output: 13 } });
    const stream = await openai.chat.completions.create({
      model: 'claude-bedrock',
      messages: [{ role: 'user', content: 'mail jane.doe@example.com today' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: unknown;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      if (c.usage) usage = { p: c.usage.prompt_tokens, c: c.usage.completion_tokens };
    }
    assert.equal(text, 'echo: mail jane.doe@example.com today');
    assert.deepEqual(usage, { p: 11, c: 13 });
    const [seen] = mock.take();
    assert.equal(seen?.stream, true);
    assert.ok(seen.signed);
    assert.doesNotMatch(seen.body.toString(), /jane\.doe/);
    assert.ok(Math.abs((await cost(before + 1)) - 24 * 0.001) < 1e-9);
  });

  it('openai SDK → Bedrock with tools, plain and streaming', async () => {
    const tools: OpenAI.ChatCompletionTool[] = [
      {
        type: 'function',
        function: {
          name: 'weather',
          parameters: { type: 'object', properties: { city: { type: 'string' } } },
        },
      },
    ];
    const call = { id: 'tooluse_e2e', name: 'weather', arguments: { city: 'Oslo' } };
    mock.enqueue({ toolCall: call });
    const r = await openai.chat.completions.create({
      model: 'claude-bedrock',
      messages: [{ role: 'user', content: 'weather?' }],
      tools,
    });
    assert.equal(r.choices[0]!.finish_reason, 'tool_calls');
    assert.deepEqual(r.choices[0]!.message.tool_calls, [
      {
        id: 'tooluse_e2e',
        type: 'function',
        function: { name: 'weather', arguments: '{"city":"Oslo"}' },
      },
    ]);
    const [seen] = mock.take();
    assert.deepEqual((seen?.json?.['toolConfig'] as { tools: unknown[] }).tools, [
      {
        toolSpec: {
          name: 'weather',
          inputSchema: { json: { type: 'object', properties: { city: { type: 'string' } } } },
        },
      },
    ]);
    mock.enqueue({ toolCall: call });
    const s = await openai.chat.completions.create({
      model: 'claude-bedrock',
      messages: [{ role: 'user', content: 'weather?' }],
      tools,
      stream: true,
    });
    let args = '';
    let finish: string | null | undefined;
    for await (const c of s) {
      args += c.choices[0]?.delta.tool_calls?.[0]?.function?.arguments ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    assert.deepEqual(JSON.parse(args), { city: 'Oslo' });
    assert.equal(finish, 'tool_calls');
  });

  it('anthropic SDK → Bedrock: plain, streaming and a tool call, in Messages form', async () => {
    mock.enqueue({ usage: { input: 5, output: 2 } });
    const m = await anthropic.messages.create({
      model: 'claude-bedrock',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hello bedrock' }],
    });
    assert.equal(m.type, 'message');
    assert.deepEqual(m.content, [{ type: 'text', text: 'echo: hello bedrock' }]);
    assert.equal(m.stop_reason, 'end_turn');
    assert.equal(m.usage.input_tokens, 5);
    assert.equal(m.usage.output_tokens, 2);

    mock.enqueue({ chunkChars: 2, usage: { input: 6, output: 4 } });
    const stream = anthropic.messages.stream({
      model: 'claude-bedrock',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'mail jane.doe@example.com' }],
    });
    const final = await stream.finalMessage();
    assert.deepEqual(final.content, [{ type: 'text', text: 'echo: mail jane.doe@example.com' }]);
    assert.equal(final.usage.output_tokens, 4);
    assert.equal(final.usage.input_tokens, 6);

    mock.enqueue({ toolCall: { id: 'tooluse_a', name: 'weather', arguments: { city: 'Rome' } } });
    const t = await anthropic.messages
      .stream({
        model: 'claude-bedrock',
        max_tokens: 100,
        tools: [{ name: 'weather', input_schema: { type: 'object' } }],
        messages: [{ role: 'user', content: 'weather?' }],
      })
      .finalMessage();
    assert.equal(t.stop_reason, 'tool_use');
    assert.deepEqual(t.content, [
      { type: 'tool_use', id: 'tooluse_a', name: 'weather', input: { city: 'Rome' } },
    ]);
    const sent = mock.take();
    assert.equal(sent.length, 3);
    assert.ok(sent.every((r) => r.signed));
    assert.doesNotMatch(sent[1]!.body.toString(), /jane\.doe/);
  });

  it('a Bedrock error reaches each SDK in its own format', async () => {
    mock.enqueue({ status: 400 });
    await assert.rejects(
      openai.chat.completions.create({
        model: 'claude-bedrock',
        messages: [{ role: 'user', content: 'x' }],
      }),
      (e: { status?: number; code?: string }) =>
        e.status === 400 && e.code === 'ValidationException',
    );
    mock.enqueue({ status: 400 });
    await assert.rejects(
      anthropic.messages.create({
        model: 'claude-bedrock',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'x' }],
      }),
      (e: { status?: number; error?: { error?: { type?: string } } }) =>
        e.status === 400 && e.error?.error?.type === 'invalid_request_error',
    );
  });
  it('fallback: Bedrock answers 500, the Anthropic fallback streams to the OpenAI caller', async () => {
    mock.enqueue({ status: 500 });
    anthropicMock.enqueue({ content: 'from anthropic', usage: { input: 4, output: 2 } });
    const r = await openai.chat.completions
      .create({
        model: 'bedrock-first',
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
      })
      .withResponse();
    let text = '';
    for await (const c of r.data) text += c.choices[0]?.delta.content ?? '';
    assert.equal(text, 'from anthropic');
    assert.equal(mock.take().length, 1);
    assert.equal(anthropicMock.take().length, 1);
    const id = r.response.headers.get('x-sluice-request-id');
    const line = await until(() => g.accessLog.find((l) => l['request_id'] === id));
    assert.equal(line['attempts'], 2);
    assert.equal(line['provider'], 'anthropic');
  });

  it('fallback: Anthropic answers 429, Bedrock (signed for this attempt) serves the caller', async () => {
    anthropicMock.enqueue({ status: 429 });
    mock.enqueue({ content: 'from bedrock', usage: { input: 3, output: 2 } });
    const r = await anthropic.messages
      .create({
        model: 'anthropic-first',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'hi' }],
      })
      .withResponse();
    assert.deepEqual(r.data.content, [{ type: 'text', text: 'from bedrock' }]);
    assert.equal(r.data.usage.output_tokens, 2);
    assert.equal(anthropicMock.take().length, 1);
    const [seen] = mock.take();
    assert.ok(seen?.signed);
    const id = r.response.headers.get('x-sluice-request-id');
    const line = await until(() => g.accessLog.find((l) => l['request_id'] === id));
    assert.equal(line['attempts'], 2);
    assert.equal(line['provider'], 'aws-bedrock');
  });
  it('anthropic SDK → Claude on Bedrock through InvokeModel: the Messages body as written, streamed', async () => {
    mock.enqueue({ usage: { input: 8, output: 3 } });
    const m = await anthropic.messages.create({
      model: 'claude-invoke',
      max_tokens: 100,
      system: [{ type: 'text', text: 'be brief', cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: 'hello claude' }],
    });
    assert.deepEqual(m.content, [{ type: 'text', text: 'echo: hello claude' }]);
    assert.equal(m.usage.output_tokens, 3);
    mock.enqueue({ chunkChars: 3, usage: { input: 8, output: 6 } });
    const final = await anthropic.messages
      .stream({
        model: 'claude-invoke',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'mail jane.doe@example.com' }],
      })
      .finalMessage();
    assert.deepEqual(final.content, [{ type: 'text', text: 'echo: mail jane.doe@example.com' }]);
    assert.equal(final.usage.output_tokens, 6);
    const [plain, streamed] = mock.take();
    assert.ok(plain?.signed && streamed?.signed);
    assert.equal(plain.path, `/model/${encodeURIComponent(MODEL_ID)}/invoke`);
    assert.equal(
      streamed.path,
      `/model/${encodeURIComponent(MODEL_ID)}/invoke-with-response-stream`,
    );
    assert.equal(plain.json?.['anthropic_version'], 'bedrock-2023-05-31');
    assert.ok(!('model' in plain.json) && !('stream' in streamed.json!));
    // Native Anthropic fields go as written (Converse would turn cache_control into a cachePoint).
    assert.deepEqual(plain.json?.['system'], [
      { type: 'text', text: 'be brief', cache_control: { type: 'ephemeral' } },
    ]);
    assert.doesNotMatch(streamed.body.toString(), /jane\.doe/);
  });
});
