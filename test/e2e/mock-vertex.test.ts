// The official SDKs pointed straight at the cloud mocks' newer surfaces, so the mocks speak the
// real wire formats the gateway's translators are tested against:
// - @google/genai in Vertex AI mode (project, location, an OAuth token the mock's token endpoint
//   issued for a service-account assertion): generateContent, generateContentStream, embedContent
//   by `predict` (text-embedding-005) and by `embedContent` (a Gemini embedding model); in Gemini
//   API mode, embedContent by batchEmbedContents;
// - @anthropic-ai/vertex-sdk (Claude on Vertex AI): messages.create and messages.stream through
//   rawPredict / streamRawPredict;
// - @aws-sdk/client-bedrock-runtime InvokeModel on Titan and Cohere embedding models, each call
//   SigV4-verified by the mock.
// A missing or expired token is refused as Vertex refuses it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AnthropicVertex } from '@anthropic-ai/vertex-sdk';
import { BedrockRuntimeClient, InvokeModelCommand } from '@aws-sdk/client-bedrock-runtime';
import { GoogleGenAI } from '@google/genai';
import { startMockBedrock, type MockBedrock } from '../../operator/mock-provider/bedrock.js';
import {
  mockVector,
  startMockGemini,
  type MockGemini,
} from '../../operator/mock-provider/gemini.js';
import { serviceAccountFetch } from '../../extproc/providers/gcp-oauth.js';
import { testServiceAccount } from '../support/service-account.js';

const KEY = 'AIza-mock-vertex-key';
const PROJECT = 'sluice-mock';
const LOCATION = 'us-east5';
const SA = testServiceAccount('sdk@sluice-mock.iam.gserviceaccount.com');
const AWS = { accessKeyId: 'AKIDMOCKEMBED', secretAccessKey: 'mock/embed+secret' };

let mock: MockGemini;
let bedrock: MockBedrock;
let token: string;

/**
 * What google-auth-library's clients offer GoogleAuth: the headers for a request. The token was
 * minted the gateway's way (a jose-signed jwt-bearer assertion at the mock's token endpoint).
 */
function authClient(bearer: string): unknown {
  return {
    getRequestHeaders: () => Promise.resolve(new Headers({ authorization: `Bearer ${bearer}` })),
  };
}

function vertexGenai(bearer = token): GoogleGenAI {
  return new GoogleGenAI({
    vertexai: true,
    project: PROJECT,
    location: LOCATION,
    httpOptions: { baseUrl: mock.url },
    // The SDK's option type is google-auth-library's; the duck-typed client is all it calls.
    googleAuthOptions: { authClient: authClient(bearer) } as never,
  });
}

function claude(bearer = token): AnthropicVertex {
  return new AnthropicVertex({
    region: LOCATION,
    projectId: PROJECT,
    baseURL: `${mock.url}/v1`,
    authClient: authClient(bearer) as never,
    maxRetries: 0,
  });
}

before(async () => {
  mock = await startMockGemini({
    apiKey: KEY,
    vertex: SA.vertex(PROJECT, LOCATION),
  });
  bedrock = await startMockBedrock({ region: 'eu-central-1', credentials: AWS, h2c: true });
  token = (
    await serviceAccountFetch({
      clientEmail: SA.clientEmail,
      privateKey: SA.privateKeyPem,
      tokenUri: `${mock.url}/token`,
    })()
  ).token;
});
after(async () => {
  await mock.close();
  await bedrock.close();
});

describe('@google/genai in Vertex AI mode against the mock', () => {
  it('generateContent: the project path, the bearer token, text and usage', async () => {
    mock.take();
    const r = await vertexGenai().models.generateContent({
      model: 'gemini-2.5-flash',
      contents: 'Hello Vertex',
      config: { maxOutputTokens: 30 },
    });
    assert.equal(r.text, 'echo: Hello Vertex');
    assert.equal(r.usageMetadata?.promptTokenCount, 12);
    const [seen] = mock.take();
    assert.equal(
      seen!.path,
      // The SDK's Vertex default is v1beta1; the gateway sends v1. The mock serves both.
      `/v1beta1/projects/${PROJECT}/locations/${LOCATION}/publishers/google/models/gemini-2.5-flash:generateContent`,
    );
    assert.equal(seen!.headers.authorization, `Bearer ${token}`);
  });

  it('generateContentStream over SSE', async () => {
    mock.enqueue({
      content: 'streamed from vertex',
      chunkChars: 4,
      usage: { input: 2, output: 6 },
    });
    let text = '';
    let output: number | undefined;
    for await (const c of await vertexGenai().models.generateContentStream({
      model: 'gemini-2.5-pro',
      contents: 'go',
    })) {
      text += c.text ?? '';
      output = c.usageMetadata?.candidatesTokenCount ?? output;
    }
    assert.equal(text, 'streamed from vertex');
    assert.equal(output, 6);
  });

  it('embedContent: predict for text-embedding-005 (token counts), embedContent for a Gemini model', async () => {
    mock.take();
    const p = await vertexGenai().models.embedContent({
      model: 'text-embedding-005',
      contents: ['first text', 'second one here'],
      config: { outputDimensionality: 4, taskType: 'RETRIEVAL_QUERY' },
    });
    assert.deepEqual(
      p.embeddings?.map((e) => e.values),
      [mockVector('first text', 4), mockVector('second one here', 4)],
    );
    assert.deepEqual(
      p.embeddings?.map((e) => e.statistics?.tokenCount),
      [2, 3],
    );
    const e = await vertexGenai().models.embedContent({
      model: 'gemini-embedding-2-preview',
      contents: 'just one',
      config: { outputDimensionality: 5 },
    });
    assert.deepEqual(e.embeddings?.[0]?.values, mockVector('just one', 5));
    assert.equal(e.embeddings?.[0]?.statistics?.tokenCount, 2);
    const [predict, embed] = mock.take();
    assert.match(predict!.path, /publishers\/google\/models\/text-embedding-005:predict$/);
    assert.deepEqual(predict!.json?.['instances'], [
      { content: 'first text', task_type: 'RETRIEVAL_QUERY' },
      { content: 'second one here', task_type: 'RETRIEVAL_QUERY' },
    ]);
    assert.match(embed!.path, /models\/gemini-embedding-2-preview:embedContent$/);
    assert.deepEqual(embed!.json?.['embedContentConfig'], { outputDimensionality: 5 });
  });

  it('a missing or expired token is refused as Vertex refuses it', async () => {
    await assert.rejects(
      vertexGenai('ya29.not-issued-here').models.generateContent({
        model: 'gemini-2.5-flash',
        contents: 'x',
      }),
      (e: Error & { status?: number }) => e.status === 401 && /UNAUTHENTICATED/.test(e.message),
    );
  });
});

describe('@google/genai in Gemini API mode: embeddings', () => {
  it('embedContent goes as batchEmbedContents, no token counts', async () => {
    mock.take();
    const ai = new GoogleGenAI({ apiKey: KEY, httpOptions: { baseUrl: mock.url } });
    const r = await ai.models.embedContent({
      model: 'gemini-embedding-001',
      contents: ['alpha', 'beta'],
      config: { outputDimensionality: 3 },
    });
    assert.deepEqual(
      r.embeddings?.map((e) => e.values),
      [mockVector('alpha', 3), mockVector('beta', 3)],
    );
    const [seen] = mock.take();
    assert.match(seen!.path, /\/models\/gemini-embedding-001:batchEmbedContents$/);
  });
});

describe('@anthropic-ai/vertex-sdk (Claude on Vertex AI) against the mock', () => {
  it('messages.create through rawPredict', async () => {
    mock.take();
    mock.enqueue({ usage: { input: 9, output: 3 } });
    const m = await claude().messages.create({
      model: 'claude-sonnet-4@20250514',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'hello claude' }],
    });
    assert.deepEqual(m.content, [{ type: 'text', text: 'echo: hello claude' }]);
    assert.deepEqual([m.usage.input_tokens, m.usage.output_tokens], [9, 3]);
    const [seen] = mock.take();
    assert.equal(
      seen!.path,
      `/v1/projects/${PROJECT}/locations/${LOCATION}/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict`,
    );
    // The 1.x SDK puts its Messages API version (the anthropic-version it would send) in the
    // body; the gateway sends the documented vertex-2023-10-16. The mock takes either.
    assert.match(String(seen!.json?.['anthropic_version']), /^\d{4}-\d{2}-\d{2}$/);
    assert.equal('model' in (seen!.json ?? {}), false);
  });

  it('messages.stream through streamRawPredict: Anthropic events unchanged', async () => {
    mock.enqueue({ chunkChars: 3, usage: { input: 4, output: 7 } });
    const final = await claude()
      .messages.stream({
        model: 'claude-haiku-4-5@20251001',
        max_tokens: 64,
        messages: [{ role: 'user', content: 'stream please' }],
      })
      .finalMessage();
    assert.deepEqual(final.content, [{ type: 'text', text: 'echo: stream please' }]);
    assert.equal(final.usage.output_tokens, 7);
    const [seen] = mock.take();
    assert.match(seen!.path, /:streamRawPredict$/);
  });

  it('an expired or foreign token is refused', async () => {
    await assert.rejects(
      claude('ya29.forged').messages.create({
        model: 'claude-sonnet-4@20250514',
        max_tokens: 8,
        messages: [{ role: 'user', content: 'x' }],
      }),
      (e: Error & { status?: number }) => e.status === 401,
    );
  });
});

describe('@aws-sdk/client-bedrock-runtime InvokeModel on embedding models', () => {
  const client = (): BedrockRuntimeClient =>
    new BedrockRuntimeClient({
      region: 'eu-central-1',
      endpoint: bedrock.url,
      credentials: AWS,
      maxAttempts: 1,
    });

  it('Titan Text Embeddings V2 and Cohere Embed, signed and answered in their shapes', async () => {
    bedrock.take();
    const titan = await client().send(
      new InvokeModelCommand({
        modelId: 'amazon.titan-embed-text-v2:0',
        contentType: 'application/json',
        accept: 'application/json',
        body: JSON.stringify({ inputText: 'embed me', dimensions: 256 }),
      }),
    );
    const t = JSON.parse(Buffer.from(titan.body).toString('utf8')) as {
      embedding: number[];
      inputTextTokenCount: number;
    };
    assert.equal(t.inputTextTokenCount, 2);
    assert.equal(t.embedding.length, 16);
    const cohere = await client().send(
      new InvokeModelCommand({
        modelId: 'cohere.embed-english-v3',
        contentType: 'application/json',
        body: JSON.stringify({
          texts: ['one', 'two words'],
          input_type: 'search_query',
          embedding_types: ['float'],
        }),
      }),
    );
    const c = JSON.parse(Buffer.from(cohere.body).toString('utf8')) as {
      embeddings: { float: number[][] };
      response_type: string;
    };
    assert.equal(c.response_type, 'embeddings_by_type');
    assert.equal(c.embeddings.float.length, 2);
    assert.ok(bedrock.take().every((r) => r.signed));
  });
});
