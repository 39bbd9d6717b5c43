/**
 * OpenAI embeddings callers to embedding models on AWS Bedrock, through InvokeModel
 * (POST /model/{modelId}/invoke, SigV4-signed like every Bedrock call). The model id says which
 * body the model reads:
 * - Amazon Titan Text Embeddings (`amazon.titan-embed-text-v2…`, v1, `g1-text`): one text per
 *   call as `inputText`; `dimensions` (v2: 256, 512 or 1024). The answer's `embedding` and
 *   `inputTextTokenCount`.
 * - Cohere Embed (`cohere.embed-english-v3`, `…multilingual-v3`, `cohere.embed-v4…`): `texts`,
 *   `input_type` (required by Cohere: the caller's, else `search_document`),
 *   `embedding_types: ["float"]`, `output_dimension` (v4). The answer's `embeddings.float`; the
 *   token count from Bedrock's `x-amzn-bedrock-input-token-count` header.
 * A regional inference profile (`us.cohere.embed-v4:0`) or an ARN naming one of these is read the
 * same. Any other model is refused (501) rather than sent a body it cannot read.
 */
import { SluiceError } from '../errors.js';
import { bedrockError } from './bedrock-converse.js';
import { backendJson, isObject, openaiErrorObject, unsupportedField, type Json } from './common.js';
import {
  openaiEmbeddingList,
  readEmbeddingsRequest,
  tokenCount,
  unreadable,
  vector,
  type EmbeddingsRequest,
} from './embeddings.js';
import type { ResponseStart, ResponseTranslator, Translator } from './translator.js';

type Family = 'titan-v1' | 'titan-v2' | 'cohere-v3' | 'cohere-v4';

/** After the start, a region prefix (`us.`) or an ARN's `/`. */
const AT = '(?:^|[./])';
const FAMILIES: readonly [RegExp, Family][] = [
  [new RegExp(`${AT}amazon\\.titan-embed-text-v2`), 'titan-v2'],
  [new RegExp(`${AT}amazon\\.titan-embed-(?:text-v1|g1-text)`), 'titan-v1'],
  [new RegExp(`${AT}cohere\\.embed-v4`), 'cohere-v4'],
  [new RegExp(`${AT}cohere\\.embed-(?:english|multilingual)-v3`), 'cohere-v3'],
];

export function embeddingFamily(modelId: string): Family | undefined {
  return FAMILIES.find(([re]) => re.test(modelId))?.[1];
}

const TITAN_V2_DIMENSIONS = new Set([256, 512, 1024]);
const COHERE_V4_DIMENSIONS = new Set([256, 512, 1024, 1536]);

function titanBody(r: EmbeddingsRequest, family: 'titan-v1' | 'titan-v2'): Json {
  if (r.texts.length !== 1)
    throw unsupportedField('input', 'Titan models embed one text per request: send one input.');
  if (r.inputType !== undefined)
    throw unsupportedField('input_type', 'Titan models take no input type.');
  const body: Json = { inputText: r.texts[0] };
  if (r.dimensions !== undefined) {
    if (family !== 'titan-v2' || !TITAN_V2_DIMENSIONS.has(r.dimensions))
      throw unsupportedField(
        'dimensions',
        family === 'titan-v2'
          ? 'Titan Text Embeddings V2 makes 256, 512 or 1024 dimensions.'
          : 'this Titan model has one size.',
      );
    body.dimensions = r.dimensions;
  }
  return body;
}

function cohereBody(r: EmbeddingsRequest, family: 'cohere-v3' | 'cohere-v4'): Json {
  const body: Json = {
    texts: r.texts,
    input_type: r.inputType ?? 'search_document',
    embedding_types: ['float'],
  };
  if (r.dimensions !== undefined) {
    if (family !== 'cohere-v4' || !COHERE_V4_DIMENSIONS.has(r.dimensions))
      throw unsupportedField(
        'dimensions',
        family === 'cohere-v4'
          ? 'Cohere Embed v4 makes 256, 512, 1024 or 1536 dimensions.'
          : 'Cohere Embed v3 models have one size.',
      );
    body.output_dimension = r.dimensions;
  }
  return body;
}

function modelFamily(model: string): Family {
  const family = embeddingFamily(model);
  if (!family)
    throw new SluiceError(
      'unsupported_backend',
      'This gateway sends OpenAI embeddings requests to Bedrock Titan (amazon.titan-embed-text-*) and Cohere (cohere.embed-*) models only.',
    );
  return family;
}

export const openaiToBedrockEmbeddings: Translator = {
  from: 'openai',
  to: 'bedrock-converse',
  operations: ['embeddings'],
  request(req, backend) {
    const model = backend.modelOverride ?? req.model;
    const family = modelFamily(model);
    const r = readEmbeddingsRequest(req.body);
    const body = family.startsWith('titan')
      ? titanBody(r, family as 'titan-v1' | 'titan-v2')
      : cohereBody(r, family as 'cohere-v3' | 'cohere-v4');
    const base = (backend.pathPrefix ?? '').replace(/\/+$/, '');
    return {
      path: `${base}/model/${encodeURIComponent(model)}/invoke`,
      headers: [
        ['content-type', 'application/json'],
        ['accept', 'application/json'],
      ],
      body: Buffer.from(JSON.stringify(body), 'utf8'),
    };
  },
  response(req, backend) {
    const model = backend.modelOverride ?? req.model;
    return new BedrockEmbeddingsResponse(
      embeddingFamily(model) ?? 'titan-v2',
      req.model,
      readEmbeddingsRequest(req.body),
    );
  },
};

class BedrockEmbeddingsResponse implements ResponseTranslator {
  private errorType: string | undefined;
  private headerTokens: number | undefined;

  constructor(
    private readonly family: Family,
    private readonly model: string,
    private readonly request: EmbeddingsRequest,
  ) {}

  headers(status: number, headers: ReadonlyMap<string, string>): ResponseStart {
    this.errorType = headers.get('x-amzn-errortype');
    this.headerTokens = tokenCount(headers.get('x-amzn-bedrock-input-token-count'));
    return {
      body: 'whole',
      setHeaders: [['content-type', 'application/json']],
      removeHeaders: ['x-amzn-errortype'],
    };
  }

  json(body: Buffer): Buffer {
    const v = backendJson(body);
    let vectors: number[][];
    let tokens = this.headerTokens;
    if (this.family === 'titan-v1' || this.family === 'titan-v2') {
      const byType = isObject(v.embeddingsByType) ? v.embeddingsByType.float : undefined;
      vectors = [vector(byType ?? v.embedding)];
      tokens = tokenCount(v.inputTextTokenCount) ?? tokens;
    } else {
      const e = isObject(v.embeddings) ? v.embeddings.float : v.embeddings;
      if (!Array.isArray(e)) throw unreadable();
      vectors = e.map(vector);
    }
    if (vectors.length !== this.request.texts.length) throw unreadable();
    return openaiEmbeddingList(vectors, this.model, this.request.encoding, tokens);
  }

  error(status: number, body: Buffer): Buffer {
    const e = bedrockError(status, this.errorType, body);
    return Buffer.from(
      JSON.stringify(openaiErrorObject(status, e.message, e.type ?? null)),
      'utf8',
    );
  }

  /** InvokeModel answers whole; never asked for. */
  stream(chunk: Buffer): Buffer {
    return chunk;
  }
}
