// The official AWS SDK (@aws-sdk/client-bedrock-runtime) pointed straight at the mock Bedrock
// runtime: Converse and ConverseStream (the binary event stream, frames cut into small writes)
// parse, tools included; a request signed with the wrong secret or not at all is refused with a
// 403 the SDK reads as AWS's own error.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:http2';
import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
  InvokeModelCommand,
  InvokeModelWithResponseStreamCommand,
} from '@aws-sdk/client-bedrock-runtime';
import { startMockBedrock, type MockBedrock } from '../../operator/mock-provider/bedrock.js';

const CREDS = {
  accessKeyId: 'AKIDMOCKBEDROCK',
  secretAccessKey: 'mock/secret+key',
  sessionToken: 'mock-session-token',
};
const MODEL = 'anthropic.claude-3-5-sonnet-20240620-v1:0';

let mock: MockBedrock;

function client(credentials = CREDS): BedrockRuntimeClient {
  return new BedrockRuntimeClient({
    region: 'eu-central-1',
    endpoint: mock.url,
    credentials,
    maxAttempts: 1,
  });
}

before(async () => {
  mock = await startMockBedrock({
    region: 'eu-central-1',
    credentials: CREDS,
    frameSplit: 5,
    h2c: true,
  });
});
after(async () => {
  await mock.close();
});

describe('mock Bedrock and the official AWS SDK', () => {
  it('Converse: text, stop reason and usage; the signature verified', async () => {
    mock.take();
    const out = await client().send(
      new ConverseCommand({
        modelId: MODEL,
        system: [{ text: 'Be brief.' }],
        messages: [{ role: 'user', content: [{ text: 'Hello there' }] }],
        inferenceConfig: { maxTokens: 100 },
      }),
    );
    assert.equal(out.output?.message?.content?.[0]?.text, 'echo: Hello there');
    assert.equal(out.stopReason, 'end_turn');
    assert.deepEqual(out.usage, { inputTokens: 12, outputTokens: 3, totalTokens: 15 });
    const [req] = mock.take();
    assert.equal(req!.model, MODEL);
    assert.equal(req!.signed, true);
    assert.equal(req!.path, `/model/${encodeURIComponent(MODEL)}/converse`);
  });

  it('Converse with a tool call', async () => {
    mock.enqueue({ toolCall: { id: 'tooluse_1', name: 'weather', arguments: { city: 'Oslo' } } });
    const out = await client().send(
      new ConverseCommand({
        modelId: MODEL,
        messages: [{ role: 'user', content: [{ text: 'Weather?' }] }],
        toolConfig: {
          tools: [{ toolSpec: { name: 'weather', inputSchema: { json: { type: 'object' } } } }],
        },
      }),
    );
    assert.equal(out.stopReason, 'tool_use');
    assert.deepEqual(out.output?.message?.content?.[0]?.toolUse, {
      toolUseId: 'tooluse_1',
      name: 'weather',
      input: { city: 'Oslo' },
    });
  });

  it('ConverseStream: every event type decodes from frames cut into 5-byte writes', async () => {
    mock.enqueue({
      content: 'Grüße aus Oslo',
      toolCall: { name: 'weather', arguments: { city: 'Oslo' } },
    });
    const out = await client().send(
      new ConverseStreamCommand({
        modelId: MODEL,
        messages: [{ role: 'user', content: [{ text: 'Hi' }] }],
      }),
    );
    const kinds: string[] = [];
    let text = '';
    let input = '';
    let usage: unknown;
    let stop: string | undefined;
    for await (const e of out.stream!) {
      kinds.push(Object.keys(e).filter((k) => k !== '$unknown')[0]!);
      if (e.contentBlockDelta?.delta?.text) text += e.contentBlockDelta.delta.text;
      if (e.contentBlockDelta?.delta?.toolUse?.input)
        input += e.contentBlockDelta.delta.toolUse.input;
      if (e.messageStop) stop = e.messageStop.stopReason;
      if (e.metadata) usage = e.metadata.usage;
    }
    assert.equal(text, 'Grüße aus Oslo');
    assert.deepEqual(JSON.parse(input), { city: 'Oslo' });
    assert.equal(stop, 'tool_use');
    assert.deepEqual(usage, { inputTokens: 12, outputTokens: 3, totalTokens: 15 });
    assert.deepEqual(
      [...new Set(kinds)],
      [
        'messageStart',
        'contentBlockDelta',
        'contentBlockStop',
        'contentBlockStart',
        'messageStop',
        'metadata',
      ],
    );
  });

  it('ConverseStream: an exception frame reaches the SDK as the named exception', async () => {
    mock.enqueue({
      content: 'one two',
      exception: { type: 'throttlingException', message: 'Slow down.' },
    });
    const out = await client().send(
      new ConverseStreamCommand({
        modelId: MODEL,
        messages: [{ role: 'user', content: [{ text: 'Hi' }] }],
      }),
    );
    await assert.rejects(
      (async () => {
        for await (const _ of out.stream!) void _;
      })(),
      (e: Error) => e.name === 'ThrottlingException' && e.message === 'Slow down.',
    );
  });

  it('refuses a bad signature (wrong secret) and an unsigned request with 403 in AWS’s shape', async () => {
    mock.take();
    await assert.rejects(
      client({ ...CREDS, secretAccessKey: 'not-the-secret' }).send(
        new ConverseCommand({
          modelId: MODEL,
          messages: [{ role: 'user', content: [{ text: 'x' }] }],
        }),
      ),
      (e: Error & { $metadata?: { httpStatusCode?: number } }) =>
        e.name === 'InvalidSignatureException' &&
        e.$metadata?.httpStatusCode === 403 &&
        /signature we calculated does not match/.test(e.message),
    );
    // An unsigned request, over HTTP/2 as the SDK speaks to the mock.
    const session = connect(mock.url);
    const { status, errorType, body } = await new Promise<{
      status: number;
      errorType: string;
      body: string;
    }>((resolve, reject) => {
      const r = session.request({
        ':method': 'POST',
        ':path': `/model/${encodeURIComponent(MODEL)}/converse`,
        'content-type': 'application/json',
      });
      let status = 0;
      let errorType = '';
      let body = '';
      r.on('response', (h) => {
        status = Number(h[':status']);
        errorType = String(h['x-amzn-errortype']);
      });
      r.on('data', (c: Buffer) => (body += c.toString()));
      r.on('end', () => resolve({ status, errorType, body }));
      r.on('error', reject);
      r.end(JSON.stringify({ messages: [{ role: 'user', content: [{ text: 'x' }] }] }));
    });
    session.close();
    assert.equal(status, 403);
    assert.match(errorType, /^MissingAuthenticationTokenException:/);
    assert.deepEqual(JSON.parse(body), { message: 'Missing Authentication Token' });
    assert.deepEqual(
      mock.take().map((r) => r.signed),
      [false, false],
    );
  });
  it('InvokeModel and InvokeModelWithResponseStream: Claude’s Messages body and events', async () => {
    const body = JSON.stringify({
      anthropic_version: 'bedrock-2023-05-31',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'Hello Claude' }],
    });
    const out = await client().send(
      new InvokeModelCommand({ modelId: MODEL, contentType: 'application/json', body }),
    );
    const msg = JSON.parse(Buffer.from(out.body).toString('utf8')) as {
      content: { text: string }[];
    };
    assert.equal(msg.content[0]!.text, 'echo: Hello Claude');
    const s = await client().send(
      new InvokeModelWithResponseStreamCommand({
        modelId: MODEL,
        contentType: 'application/json',
        body,
      }),
    );
    const types: string[] = [];
    let text = '';
    for await (const e of s.body!) {
      const ev = JSON.parse(Buffer.from(e.chunk!.bytes!).toString('utf8')) as {
        type: string;
        delta?: { text?: string };
      };
      types.push(ev.type);
      text += ev.delta?.text ?? '';
    }
    assert.equal(text, 'echo: Hello Claude');
    assert.equal(types[0], 'message_start');
    assert.equal(types.at(-1), 'message_stop');
  });
});
