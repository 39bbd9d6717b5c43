// OpenAI embeddings to Bedrock (Titan, Cohere through InvokeModel) and Google (Gemini API
// batchEmbedContents, Vertex AI predict and embedContent): the bodies each model reads, the
// refusals (naming the field) for what it cannot take, the answers back as OpenAI's list (float
// or base64 float32, as the SDKs ask), token counts where the backend gives them, errors in
// OpenAI's format.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { readEmbeddingsRequest } from './embeddings.js';
import { translatorFor } from './index.js';
import { embeddingFamily, openaiToBedrockEmbeddings } from './openai-to-bedrock-embeddings.js';
import { openaiToGeminiEmbeddings } from './openai-to-gemini-embeddings.js';
import type { ExchangeRequest, Translator } from './translator.js';

const CTX = { created: 1, maxEventBytes: 1 << 20 };

function backend(over: Partial<ResolvedBackend>): ResolvedBackend {
  return {
    name: 'b',
    cluster: 'c',
    provider: 'aws-bedrock',
    credential: 'k',
    ...over,
  };
}
const BEDROCK = (model: string): ResolvedBackend =>
  backend({ provider: 'aws-bedrock', modelOverride: model, aws: { region: 'us-east-1' } });
const GEMINI = backend({ provider: 'gemini', modelOverride: 'gemini-embedding-001' });
const VERTEX = (model: string): ResolvedBackend =>
  backend({
    provider: 'gcp-vertex',
    credential: undefined,
    modelOverride: model,
    gcp: { project: 'p1', region: 'europe-west4' },
  });

function req(body: Record<string, unknown>): ExchangeRequest {
  return {
    api: 'openai',
    operation: 'embeddings',
    model: 'embed',
    body: { model: 'embed', ...body },
    stream: false,
    forcedUsage: false,
  };
}

function refused(fn: () => unknown, param: string, code = 'unsupported_field'): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SluiceError, String(e));
    assert.equal(e.code, code);
    if (code === 'unsupported_field') assert.equal(e.param, param);
    return true;
  });
}

function body(
  t: Translator,
  r: ExchangeRequest,
  b: ResolvedBackend,
): { path: string; json: unknown } {
  const up = t.request(r, b);
  return { path: up.path, json: JSON.parse(up.body!.toString('utf8')) };
}

function answer(
  t: Translator,
  r: ExchangeRequest,
  b: ResolvedBackend,
  status: number,
  payload: unknown,
  headers: [string, string][] = [],
): Record<string, unknown> {
  const rt = t.response(r, b, CTX)!;
  rt.headers(status, new Map([['content-type', 'application/json'], ...headers]));
  const raw = Buffer.from(JSON.stringify(payload));
  const out = status < 300 ? rt.json(raw) : rt.error(status, raw);
  return JSON.parse(out.toString('utf8')) as Record<string, unknown>;
}

describe('embeddings: the caller’s request', () => {
  it('strings and string arrays; token ids, empty input and unknown fields refused', () => {
    assert.deepEqual(readEmbeddingsRequest({ model: 'm', input: 'a' }).texts, ['a']);
    assert.deepEqual(readEmbeddingsRequest({ model: 'm', input: ['a', 'b'] }).texts, ['a', 'b']);
    refused(() => readEmbeddingsRequest({ input: [1, 2, 3] }), 'input');
    refused(() => readEmbeddingsRequest({ input: [[1], [2]] }), 'input');
    refused(() => readEmbeddingsRequest({ input: [] }), 'input');
    refused(() => readEmbeddingsRequest({ input: ['a', 1] }), 'input');
    refused(
      () => readEmbeddingsRequest({ input: 'a', encoding_format: 'int8' }),
      'encoding_format',
    );
    refused(() => readEmbeddingsRequest({ input: 'a', dimensions: 0 }), 'dimensions');
    refused(() => readEmbeddingsRequest({ input: 'a', input_type: 'poem' }), 'input_type');
    refused(() => readEmbeddingsRequest({ input: 'a', truncate: 'END' }), 'truncate');
  });

  it('the translators are found for both clouds; embeddings used to be refused there', () => {
    assert.equal(
      translatorFor('openai', 'embeddings', 'bedrock-converse'),
      openaiToBedrockEmbeddings,
    );
    assert.equal(translatorFor('openai', 'embeddings', 'gemini'), openaiToGeminiEmbeddings);
  });
});

describe('embeddings → Bedrock', () => {
  it('reads the model family from ids, inference profiles and ARNs', () => {
    assert.equal(embeddingFamily('amazon.titan-embed-text-v2:0'), 'titan-v2');
    assert.equal(embeddingFamily('amazon.titan-embed-text-v1'), 'titan-v1');
    assert.equal(embeddingFamily('amazon.titan-embed-g1-text-02'), 'titan-v1');
    assert.equal(embeddingFamily('cohere.embed-english-v3'), 'cohere-v3');
    assert.equal(embeddingFamily('us.cohere.embed-v4:0'), 'cohere-v4');
    assert.equal(
      embeddingFamily('arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-multilingual-v3'),
      'cohere-v3',
    );
    assert.equal(embeddingFamily('anthropic.claude-3-haiku'), undefined);
    assert.equal(embeddingFamily('xamazon.titan-embed-text-v2:0'), undefined);
  });

  it('Titan V2: one inputText, dimensions; the answer with its token count, as base64 float32', () => {
    const b = BEDROCK('amazon.titan-embed-text-v2:0');
    const r = req({ input: 'hello titan', dimensions: 256, encoding_format: 'base64' });
    const sent = body(openaiToBedrockEmbeddings, r, b);
    assert.equal(sent.path, '/model/amazon.titan-embed-text-v2%3A0/invoke');
    assert.deepEqual(sent.json, { inputText: 'hello titan', dimensions: 256 });
    const vec = [0.5, -0.25, 1e-3, 3.4028234663852886e38];
    const out = answer(openaiToBedrockEmbeddings, r, b, 200, {
      embedding: vec,
      inputTextTokenCount: 3,
    });
    const data = out.data as { embedding: string; index: number; object: string }[];
    const decoded = Buffer.from(data[0]!.embedding, 'base64');
    const f32 = Array.from({ length: decoded.length / 4 }, (_, i) => decoded.readFloatLE(i * 4));
    assert.deepEqual(
      f32,
      vec.map((v) => Math.fround(v)),
    );
    assert.deepEqual(out.usage, { prompt_tokens: 3, total_tokens: 3 });
    assert.equal(out.model, 'embed');
    assert.equal(out.object, 'list');
  });

  it('Titan refuses what it cannot take, naming the field', () => {
    const b = BEDROCK('amazon.titan-embed-text-v2:0');
    refused(() => openaiToBedrockEmbeddings.request(req({ input: ['a', 'b'] }), b), 'input');
    refused(
      () => openaiToBedrockEmbeddings.request(req({ input: 'a', dimensions: 300 }), b),
      'dimensions',
    );
    refused(
      () => openaiToBedrockEmbeddings.request(req({ input: 'a', input_type: 'search_query' }), b),
      'input_type',
    );
    refused(
      () =>
        openaiToBedrockEmbeddings.request(
          req({ input: 'a', dimensions: 256 }),
          BEDROCK('amazon.titan-embed-text-v1'),
        ),
      'dimensions',
    );
  });

  it('Cohere: texts, input_type (search_document by default), float by type; tokens from the header', () => {
    const b = BEDROCK('cohere.embed-english-v3');
    const r = req({ input: ['one', 'two'] });
    assert.deepEqual(body(openaiToBedrockEmbeddings, r, b).json, {
      texts: ['one', 'two'],
      input_type: 'search_document',
      embedding_types: ['float'],
    });
    assert.deepEqual(
      (
        body(openaiToBedrockEmbeddings, req({ input: 'q', input_type: 'search_query' }), b)
          .json as {
          input_type: string;
        }
      ).input_type,
      'search_query',
    );
    const out = answer(
      openaiToBedrockEmbeddings,
      r,
      b,
      200,
      { id: 'x', embeddings: { float: [[0.1], [0.2]] }, response_type: 'embeddings_by_type' },
      [['x-amzn-bedrock-input-token-count', '4']],
    );
    assert.deepEqual(
      (out.data as { embedding: number[]; index: number }[]).map((d) => [d.index, d.embedding]),
      [
        [0, [0.1]],
        [1, [0.2]],
      ],
    );
    assert.deepEqual(out.usage, { prompt_tokens: 4, total_tokens: 4 });
    // v4 makes sizes; v3 has one.
    assert.deepEqual(
      (
        body(
          openaiToBedrockEmbeddings,
          req({ input: 'a', dimensions: 512 }),
          BEDROCK('us.cohere.embed-v4:0'),
        ).json as { output_dimension: number }
      ).output_dimension,
      512,
    );
    refused(
      () => openaiToBedrockEmbeddings.request(req({ input: 'a', dimensions: 512 }), b),
      'dimensions',
    );
  });

  it('a model that is neither is refused (501), an answer that does not fit is a 502', () => {
    refused(
      () => openaiToBedrockEmbeddings.request(req({ input: 'a' }), BEDROCK('meta.llama3-8b')),
      '',
      'unsupported_backend',
    );
    const b = BEDROCK('cohere.embed-english-v3');
    assert.throws(
      () =>
        answer(openaiToBedrockEmbeddings, req({ input: ['a', 'b'] }), b, 200, {
          embeddings: { float: [[1]] },
        }),
      (e: unknown) => e instanceof SluiceError && e.code === 'bad_upstream_response',
    );
    assert.throws(
      () => answer(openaiToBedrockEmbeddings, req({ input: 'a' }), b, 200, { embeddings: [['x']] }),
      (e: unknown) => e instanceof SluiceError && e.code === 'bad_upstream_response',
    );
  });

  it('a Bedrock error as an OpenAI error, AWS’s error name as the code', () => {
    const out = answer(
      openaiToBedrockEmbeddings,
      req({ input: 'a' }),
      BEDROCK('amazon.titan-embed-text-v2:0'),
      400,
      { message: 'Malformed input request' },
      [
        [
          'x-amzn-errortype',
          'ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/',
        ],
      ],
    );
    assert.deepEqual(out, {
      error: {
        message: 'Malformed input request',
        type: 'invalid_request_error',
        param: null,
        code: 'ValidationException',
      },
    });
  });
});

describe('embeddings → Google', () => {
  it('Gemini API: batchEmbedContents, one request per input; no counts, so no usage', () => {
    const r = req({ input: ['a', 'b'], dimensions: 8, input_type: 'search_query' });
    const sent = body(openaiToGeminiEmbeddings, r, GEMINI);
    assert.equal(sent.path, '/v1beta/models/gemini-embedding-001:batchEmbedContents');
    assert.deepEqual(sent.json, {
      requests: ['a', 'b'].map((text) => ({
        model: 'models/gemini-embedding-001',
        content: { parts: [{ text }] },
        taskType: 'RETRIEVAL_QUERY',
        outputDimensionality: 8,
      })),
    });
    const out = answer(openaiToGeminiEmbeddings, r, GEMINI, 200, {
      embeddings: [{ values: [1, 2] }, { values: [3, 4] }],
    });
    assert.equal(out.usage, undefined);
    assert.deepEqual(
      (out.data as { embedding: number[] }[]).map((d) => d.embedding),
      [
        [1, 2],
        [3, 4],
      ],
    );
  });

  it('Vertex AI predict: instances, parameters; usage summed from each statistics.token_count', () => {
    const b = VERTEX('text-embedding-005');
    const r = req({ input: ['x', 'yy'], dimensions: 256 });
    const sent = body(openaiToGeminiEmbeddings, r, b);
    assert.equal(
      sent.path,
      '/v1/projects/p1/locations/europe-west4/publishers/google/models/text-embedding-005:predict',
    );
    assert.deepEqual(sent.json, {
      instances: [{ content: 'x' }, { content: 'yy' }],
      parameters: { outputDimensionality: 256 },
    });
    const out = answer(openaiToGeminiEmbeddings, r, b, 200, {
      predictions: [
        { embeddings: { values: [0.1], statistics: { token_count: 2, truncated: false } } },
        { embeddings: { values: [0.2], statistics: { token_count: 5, truncated: false } } },
      ],
    });
    assert.deepEqual(out.usage, { prompt_tokens: 7, total_tokens: 7 });
  });

  it('Vertex AI embedContent for Gemini embedding models: one input, its usageMetadata', () => {
    const b = VERTEX('gemini-embedding-2');
    const r = req({ input: 'only one', input_type: 'clustering' });
    const sent = body(openaiToGeminiEmbeddings, r, b);
    assert.match(sent.path, /models\/gemini-embedding-2:embedContent$/);
    assert.deepEqual(sent.json, {
      content: { role: 'user', parts: [{ text: 'only one' }] },
      embedContentConfig: { taskType: 'CLUSTERING' },
    });
    const out = answer(openaiToGeminiEmbeddings, r, b, 200, {
      embedding: { values: [0.5] },
      usageMetadata: { promptTokenCount: 2 },
    });
    assert.deepEqual(out.usage, { prompt_tokens: 2, total_tokens: 2 });
    refused(() => openaiToGeminiEmbeddings.request(req({ input: ['a', 'b'] }), b), 'input');
    // gemini-embedding-001 on Vertex is a predict model.
    assert.match(
      body(openaiToGeminiEmbeddings, r, VERTEX('gemini-embedding-001')).path,
      /:predict$/,
    );
  });

  it('Google’s error as an OpenAI error', () => {
    const out = answer(openaiToGeminiEmbeddings, req({ input: 'a' }), GEMINI, 400, {
      error: { code: 400, message: 'API key not valid.', status: 'INVALID_ARGUMENT' },
    });
    assert.deepEqual(out, {
      error: {
        message: 'API key not valid.',
        type: 'invalid_request_error',
        param: null,
        code: 'INVALID_ARGUMENT',
      },
    });
  });
});
