// OpenAI embeddings through `sluice run` from YAML to the clouds' embedding models, with masking
// and a budget on: Bedrock Titan Text Embeddings V2 and Cohere Embed (InvokeModel, SigV4-signed),
// the Gemini API (batchEmbedContents, API key) and Vertex AI (predict for text-embedding-005,
// embedContent for a Gemini embedding model; an OAuth token from the service-account key). The
// official openai SDK asks for base64 by default and decodes it: its vectors must be the model's.
// Masked text is what the model embeds (the email never reaches a provider); usage is the
// provider's count where it gives one, and estimated (and said so) where it does not; a field the
// model cannot take, and a provider's error, reach the SDK as OpenAI errors.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type OpenAI from 'openai';
import {
  mockEmbedding,
  startMockBedrock,
  type MockBedrock,
} from '../../operator/mock-provider/bedrock.js';
import {
  mockVector,
  startMockGemini,
  type MockGemini,
} from '../../operator/mock-provider/gemini.js';
import { testServiceAccount } from '../support/service-account.js';
import {
  failure,
  policyDoc,
  routeDoc,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  type YamlGateway,
  sdkClients,
  until,
} from './harness.js';

const AWS = { accessKeyId: 'AKIDE2EEMBED', secretAccessKey: 'e2e/embed+secret' };
const AWS_FILE = `[default]\naws_access_key_id = ${AWS.accessKeyId}\naws_secret_access_key = ${AWS.secretAccessKey}\n`;
const GEMINI_KEY = 'AIza-e2e-embeddings';
const SA = testServiceAccount('embed@sluice-e2e.iam.gserviceaccount.com');
const PRICE = { inputPerMTok: 1000, outputPerMTok: 1000 };
const EMAIL = 'jane.doe@example.com';

function backend(name: string, over: Record<string, unknown>): unknown {
  return { name, ...over };
}

function route(name: string, b: unknown): unknown {
  return routeDoc(name, [b]);
}

const ROUTES = ['titan', 'cohere', 'gemini-embed', 'vertex-predict', 'vertex-gemini'];

describe('e2e: OpenAI embeddings to Bedrock, the Gemini API and Vertex AI', () => {
  let g: YamlGateway;
  let bedrock: MockBedrock;
  let google: MockGemini;
  let openai: OpenAI;

  before(async () => {
    bedrock = await startMockBedrock({ region: 'us-east-1', credentials: AWS });
    google = await startMockGemini({
      apiKey: GEMINI_KEY,
      vertex: SA.vertex('sluice-e2e', 'europe-west4'),
    });
    const aws = (model: string): Record<string, unknown> => ({
      provider: 'aws-bedrock',
      endpoint: { service: { name: 'bedrock-mock', port: 80 } },
      credential: { secretRef: { name: 'aws' } },
      modelOverride: model,
      aws: { region: 'us-east-1' },
    });
    const vertex = (model: string): Record<string, unknown> => ({
      provider: 'gcp-vertex',
      endpoint: { service: { name: 'google-mock', port: 80 } },
      credential: { secretRef: { name: 'vertex-sa' } },
      modelOverride: model,
      gcp: { project: 'sluice-e2e', region: 'europe-west4' },
    });
    g = await startYamlGateway([
      route('titan', backend('titan', aws('amazon.titan-embed-text-v2:0'))),
      route('cohere', backend('cohere', aws('cohere.embed-multilingual-v3'))),
      route(
        'gemini-embed',
        backend('gemini', {
          provider: 'gemini',
          endpoint: { service: { name: 'google-mock', port: 80 } },
          credential: { secretRef: { name: 'gemini' } },
          modelOverride: 'gemini-embedding-001',
        }),
      ),
      route('vertex-predict', backend('vertex', vertex('text-embedding-005'))),
      route('vertex-gemini', backend('vertex', vertex('gemini-embedding-2'))),
      policyDoc('embeddings-policy', ROUTES, {
        masking: { detectors: ['EMAIL'], actions: { EMAIL: 'mask' }, reversible: true },
        pricing: { models: { '*': PRICE } },
        limits: { rules: [{ name: 'daily', per: ['route'], spendPerDayUsd: 100 }] },
      }),
      ...serviceDocs('bedrock-mock', bedrock.port),
      ...serviceDocs('google-mock', google.port),
      secretDoc('aws', AWS_FILE),
      secretDoc('gemini', GEMINI_KEY),
      secretDoc('vertex-sa', SA.keyFile(`${google.url}/token`)),
    ]);
    ({ openai } = sdkClients(g.gateway.url));
  });
  beforeEach(() => {
    bedrock.take();
    google.take();
  });
  after(async () => {
    await g?.close();
    await bedrock?.close();
    await google?.close();
  });

  async function logged(route: string, id: string | null): Promise<Record<string, unknown>> {
    return until(() =>
      g.accessLog.find((l) => l['route'] === `e2e/${route}` && l['request_id'] === id),
    );
  }

  /** The SDK's vectors are float32 (decoded from base64): compare at that precision. */
  const f32 = (v: number[]): number[] => v.map((x) => Math.fround(x));

  it('Titan V2: the masked text embedded, base64 decoded by the SDK, usage from Titan', async () => {
    bedrock.enqueue({ usage: { input: 6, output: 0 } });
    const r = await openai.embeddings
      .create({ model: 'titan', input: `mail ${EMAIL}`, dimensions: 256 })
      .withResponse();
    const [seen] = bedrock.take();
    assert.ok(seen?.signed);
    assert.equal(seen.path, '/model/amazon.titan-embed-text-v2%3A0/invoke');
    assert.deepEqual(seen.json, { inputText: 'mail [EMAIL_1]', dimensions: 256 });
    assert.deepEqual(r.data.data[0]!.embedding, f32(mockEmbedding('mail [EMAIL_1]', 16)));
    assert.deepEqual(r.data.usage, { prompt_tokens: 6, total_tokens: 6 });
    const line = await logged('titan', r.response.headers.get('x-sluice-request-id'));
    assert.deepEqual((line['tokens'] as { input: number; estimated: boolean }).input, 6);
    assert.ok(Math.abs(Number(line['cost_usd']) - 6 * 0.001) < 1e-9);
  });

  it('Cohere: many inputs at once, floats when asked, tokens from Bedrock’s header', async () => {
    bedrock.enqueue({ usage: { input: 2, output: 0 } });
    const r = await openai.embeddings.create({
      model: 'cohere',
      input: ['first', `second ${EMAIL}`],
      encoding_format: 'float',
      input_type: 'search_query',
    } as OpenAI.EmbeddingCreateParams);
    assert.deepEqual(
      r.data.map((d) => d.embedding),
      [mockEmbedding('first', 8), mockEmbedding('second [EMAIL_1]', 8)],
    );
    assert.deepEqual(r.usage, { prompt_tokens: 4, total_tokens: 4 });
    const [seen] = bedrock.take();
    assert.deepEqual(seen?.json, {
      texts: ['first', 'second [EMAIL_1]'],
      input_type: 'search_query',
      embedding_types: ['float'],
    });
  });

  it('Gemini API: batchEmbedContents with the key; no count from Google, so estimated', async () => {
    const r = await openai.embeddings
      .create({ model: 'gemini-embed', input: ['alpha', `beta ${EMAIL}`], dimensions: 6 })
      .withResponse();
    assert.deepEqual(
      r.data.data.map((d) => d.embedding),
      [f32(mockVector('alpha', 6)), f32(mockVector('beta [EMAIL_1]', 6))],
    );
    const [seen] = google.take();
    assert.equal(seen?.headers['x-goog-api-key'], GEMINI_KEY);
    assert.match(seen.path, /^\/v1beta\/models\/gemini-embedding-001:batchEmbedContents$/);
    assert.doesNotMatch(seen.body.toString(), /jane\.doe/);
    const line = await logged('gemini-embed', r.response.headers.get('x-sluice-request-id'));
    const tokens = line['tokens'] as { input: number; estimated: boolean };
    assert.equal(tokens.estimated, true);
    assert.ok(tokens.input > 0);
  });

  it('Vertex AI: predict for text-embedding-005 and embedContent for a Gemini model, with counts', async () => {
    const p = await openai.embeddings.create({
      model: 'vertex-predict',
      input: ['one two', `three ${EMAIL}`],
      encoding_format: 'float',
    });
    assert.deepEqual(
      p.data.map((d) => d.embedding),
      [mockVector('one two'), mockVector('three [EMAIL_1]')],
    );
    assert.deepEqual(p.usage, { prompt_tokens: 4, total_tokens: 4 });
    const e = await openai.embeddings.create({ model: 'vertex-gemini', input: 'just this' });
    assert.deepEqual(e.data[0]!.embedding, f32(mockVector('just this')));
    assert.deepEqual(e.usage, { prompt_tokens: 2, total_tokens: 2 });
    const [predict, embed] = google.take();
    assert.match(
      predict!.path,
      /^\/v1\/projects\/sluice-e2e\/locations\/europe-west4\/publishers\/google\/models\/text-embedding-005:predict$/,
    );
    assert.match(embed!.path, /models\/gemini-embedding-2:embedContent$/);
    for (const x of [predict!, embed!])
      assert.match(String(x.headers.authorization), /^Bearer ya29\.mock-\d+$/);
  });

  it('what a model cannot take, and a provider’s refusal, reach the SDK as OpenAI errors', async () => {
    const many = (await failure(
      openai.embeddings.create({ model: 'titan', input: ['a', 'b'] }),
    )) as { status?: number; code?: string; param?: string };
    assert.deepEqual([many.status, many.code, many.param], [400, 'unsupported_field', 'input']);
    const tokens = (await failure(
      openai.embeddings.create({ model: 'gemini-embed', input: [1, 2, 3] }),
    )) as { status?: number; param?: string };
    assert.deepEqual([tokens.status, tokens.param], [400, 'input']);
    assert.equal(bedrock.take().length + google.take().length, 0);
    // Retried twice by default (rate-limited), so three refusals.
    bedrock.enqueue({ status: 429 }, { status: 429 }, { status: 429 });
    const throttled = (await failure(
      openai.embeddings.create({ model: 'cohere', input: 'x' }),
    )) as { status?: number; code?: string };
    assert.deepEqual([throttled.status, throttled.code], [429, 'ThrottlingException']);
  });
});
