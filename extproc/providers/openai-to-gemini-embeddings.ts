/**
 * OpenAI embeddings callers to Google's embedding models.
 *
 * - Gemini API: POST /v1beta/models/{model}:batchEmbedContents, one request per input
 *   (`content.parts[].text`, `taskType`, `outputDimensionality`) → `embeddings[].values`.
 * - Vertex AI, Gemini embedding models other than gemini-embedding-001 (the rule @google/genai
 *   follows): POST …/publishers/google/models/{model}:embedContent, one input per call
 *   (`content`, `embedContentConfig`) → `embedding.values`, `usageMetadata.promptTokenCount`.
 * - Vertex AI, every other text embedding model (text-embedding-005, text-multilingual-…,
 *   gemini-embedding-001): POST …:predict with `instances[].content` (and `task_type`),
 *   `parameters.outputDimensionality` → `predictions[].embeddings.values`, each with its
 *   `statistics.token_count`.
 *
 * `dimensions` → outputDimensionality; `input_type` → the task type. Usage is what Google counted;
 * the Gemini API counts nothing for embeddings, so those answers carry no usage and the gateway
 * estimates the prompt (providers/embeddings.ts).
 */
import type { ResolvedBackend } from '../config/runtime.js';
import { backendJson, isObject, openaiErrorObject, unsupportedField, type Json } from './common.js';
import {
  GOOGLE_TASK_TYPE,
  openaiEmbeddingList,
  readEmbeddingsRequest,
  tokenCount,
  unreadable,
  vector,
  type EmbeddingsRequest,
} from './embeddings.js';
import { googleError } from './gemini-generate.js';
import { geminiModelPath, vertexModelPath } from './paths.js';
import type { ResponseStart, ResponseTranslator, Translator } from './translator.js';

type Method = 'batchEmbedContents' | 'embedContent' | 'predict';

/** Vertex AI's embedContent serves the Gemini embedding models, except gemini-embedding-001. */
export function vertexEmbedContentModel(model: string): boolean {
  return (model.includes('gemini') && model !== 'gemini-embedding-001') || model.includes('maas');
}

function methodFor(backend: ResolvedBackend, model: string): Method {
  if (backend.provider !== 'gcp-vertex') return 'batchEmbedContents';
  return vertexEmbedContentModel(model) ? 'embedContent' : 'predict';
}

function requestBody(method: Method, model: string, r: EmbeddingsRequest): Json {
  const taskType = r.inputType === undefined ? undefined : GOOGLE_TASK_TYPE[r.inputType];
  switch (method) {
    case 'batchEmbedContents':
      return {
        requests: r.texts.map((text) => ({
          model: `models/${model}`,
          content: { parts: [{ text }] },
          ...(taskType !== undefined ? { taskType } : {}),
          ...(r.dimensions !== undefined ? { outputDimensionality: r.dimensions } : {}),
        })),
      };
    case 'embedContent': {
      if (r.texts.length !== 1)
        throw unsupportedField('input', 'this Vertex AI model embeds one text per request.');
      const config: Json = {};
      if (taskType !== undefined) config.taskType = taskType;
      if (r.dimensions !== undefined) config.outputDimensionality = r.dimensions;
      return {
        content: { role: 'user', parts: [{ text: r.texts[0] }] },
        ...(Object.keys(config).length > 0 ? { embedContentConfig: config } : {}),
      };
    }
    case 'predict':
      return {
        instances: r.texts.map((content) => ({
          content,
          ...(taskType !== undefined ? { task_type: taskType } : {}),
        })),
        ...(r.dimensions !== undefined
          ? { parameters: { outputDimensionality: r.dimensions } }
          : {}),
      };
  }
}

export const openaiToGeminiEmbeddings: Translator = {
  from: 'openai',
  to: 'gemini',
  operations: ['embeddings'],
  request(req, backend) {
    const model = backend.modelOverride ?? req.model;
    const method = methodFor(backend, model);
    const body = requestBody(method, model, readEmbeddingsRequest(req.body));
    return {
      path:
        backend.provider === 'gcp-vertex'
          ? vertexModelPath(backend, 'google', model, method)
          : geminiModelPath(backend, model, method),
      headers: [['content-type', 'application/json']],
      body: Buffer.from(JSON.stringify(body), 'utf8'),
    };
  },
  response(req, backend) {
    const model = backend.modelOverride ?? req.model;
    return new GoogleEmbeddingsResponse(
      methodFor(backend, model),
      req.model,
      readEmbeddingsRequest(req.body),
    );
  },
};

class GoogleEmbeddingsResponse implements ResponseTranslator {
  constructor(
    private readonly method: Method,
    private readonly model: string,
    private readonly request: EmbeddingsRequest,
  ) {}

  headers(): ResponseStart {
    return { body: 'whole', setHeaders: [['content-type', 'application/json']], removeHeaders: [] };
  }

  json(body: Buffer): Buffer {
    const v = backendJson(body);
    let vectors: number[][];
    let tokens: number | undefined;
    switch (this.method) {
      case 'batchEmbedContents': {
        if (!Array.isArray(v.embeddings)) throw unreadable();
        vectors = v.embeddings.map((e: unknown) => vector(isObject(e) ? e.values : undefined));
        tokens = isObject(v.usageMetadata)
          ? tokenCount(v.usageMetadata.promptTokenCount)
          : undefined;
        break;
      }
      case 'embedContent':
        vectors = [vector(isObject(v.embedding) ? v.embedding.values : undefined)];
        tokens = isObject(v.usageMetadata)
          ? tokenCount(v.usageMetadata.promptTokenCount)
          : undefined;
        break;
      case 'predict': {
        if (!Array.isArray(v.predictions)) throw unreadable();
        let sum = 0;
        let counted = true;
        vectors = v.predictions.map((p: unknown) => {
          const e = isObject(p) && isObject(p.embeddings) ? p.embeddings : {};
          const n = isObject(e.statistics) ? tokenCount(e.statistics.token_count) : undefined;
          if (n === undefined) counted = false;
          else sum += n;
          return vector(e.values);
        });
        tokens = counted ? sum : undefined;
        break;
      }
    }
    if (vectors.length !== this.request.texts.length) throw unreadable();
    return openaiEmbeddingList(vectors, this.model, this.request.encoding, tokens);
  }

  error(status: number, body: Buffer): Buffer {
    const e = googleError(status, body);
    return Buffer.from(
      JSON.stringify(openaiErrorObject(status, e.message, e.type ?? null)),
      'utf8',
    );
  }

  /** Embeddings answer whole; never asked for. */
  stream(chunk: Buffer): Buffer {
    return chunk;
  }
}
