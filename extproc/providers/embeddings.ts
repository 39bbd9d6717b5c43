/**
 * OpenAI `/v1/embeddings` on the way to a backend with another embeddings API (Bedrock Titan and
 * Cohere, the Gemini API, Vertex AI): reading the caller's request, writing the OpenAI
 * answer (`float` arrays, or base64 of little-endian float32 as the OpenAI SDKs ask by default).
 *
 * Request fields: `model`, `input` (a string or an array of strings; token-id arrays are refused,
 * no backend here takes them), `encoding_format`, `dimensions`, `user` (bookkeeping), and
 * `input_type` — not OpenAI's, Cohere's: what the text is for (`search_document`, the default,
 * `search_query`, `classification`, `clustering`), which Cohere models require and Google's read
 * as their task type. Anything else is refused with a 400 naming it.
 */
import { SluiceError } from '../errors.js';
import { num, unsupportedField, type Json } from './common.js';

export type InputType = 'search_document' | 'search_query' | 'classification' | 'clustering';
const INPUT_TYPES: ReadonlySet<string> = new Set([
  'search_document',
  'search_query',
  'classification',
  'clustering',
]);

const HANDLED = new Set(['model', 'input', 'encoding_format', 'dimensions', 'user', 'input_type']);

export interface EmbeddingsRequest {
  texts: string[];
  encoding: 'float' | 'base64';
  dimensions: number | undefined;
  inputType: InputType | undefined;
}

export function readEmbeddingsRequest(body: Readonly<Json>): EmbeddingsRequest {
  for (const [k, v] of Object.entries(body)) {
    if (HANDLED.has(k) || v === undefined) continue;
    throw unsupportedField(k, 'this backend has no equivalent of this field.');
  }
  const input = body.input;
  let texts: string[];
  if (typeof input === 'string') texts = [input];
  else if (Array.isArray(input) && input.length > 0 && input.every((t) => typeof t === 'string'))
    texts = input;
  else if (Array.isArray(input) && input.length > 0 && input.every((t) => typeof t !== 'string'))
    throw unsupportedField('input', 'this backend takes text, not token ids.');
  else throw unsupportedField('input', 'must be a string or a non-empty array of strings.');
  const enc = body.encoding_format;
  if (enc !== undefined && enc !== null && enc !== 'float' && enc !== 'base64')
    throw unsupportedField('encoding_format', "must be 'float' or 'base64'.");
  const dims = body.dimensions;
  let dimensions: number | undefined;
  if (dims !== undefined && dims !== null) {
    if (typeof dims !== 'number' || !Number.isInteger(dims) || dims < 1)
      throw unsupportedField('dimensions', 'must be a positive whole number.');
    dimensions = dims;
  }
  const it = body.input_type;
  if (it !== undefined && it !== null && (typeof it !== 'string' || !INPUT_TYPES.has(it)))
    throw unsupportedField(
      'input_type',
      'must be search_document, search_query, classification or clustering.',
    );
  return {
    texts,
    encoding: enc === 'base64' ? 'base64' : 'float',
    dimensions,
    inputType: (it ?? undefined) as InputType | undefined,
  };
}

/** Google's task type for an input type. */
export const GOOGLE_TASK_TYPE: Readonly<Record<InputType, string>> = {
  search_document: 'RETRIEVAL_DOCUMENT',
  search_query: 'RETRIEVAL_QUERY',
  classification: 'CLASSIFICATION',
  clustering: 'CLUSTERING',
};

/** A vector as a backend sent it: an array of finite numbers, else the answer is unreadable. */
export function vector(v: unknown): number[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x)))
    throw unreadable();
  return v as number[];
}

export function unreadable(): SluiceError {
  return new SluiceError(
    'bad_upstream_response',
    'The backend sent an embeddings answer this gateway cannot read.',
  );
}

function base64(values: readonly number[]): string {
  const b = Buffer.allocUnsafe(values.length * 4);
  for (let i = 0; i < values.length; i++) b.writeFloatLE(values[i]!, i * 4);
  return b.toString('base64');
}

/**
 * The OpenAI answer: one embedding per input, in order. `promptTokens` is what the backend
 * counted; without a count the answer carries no usage, and the gateway estimates the prompt
 * (marked estimated in its records) rather than passing an estimate off as the backend's count.
 */
export function openaiEmbeddingList(
  vectors: readonly (readonly number[])[],
  model: string,
  encoding: 'float' | 'base64',
  promptTokens: number | undefined,
): Buffer {
  const out: Json = {
    object: 'list',
    data: vectors.map((v, index) => ({
      object: 'embedding',
      index,
      embedding: encoding === 'base64' ? base64(v) : v,
    })),
    model,
  };
  if (promptTokens !== undefined)
    out.usage = { prompt_tokens: promptTokens, total_tokens: promptTokens };
  return Buffer.from(JSON.stringify(out), 'utf8');
}

/** A whole number of tokens a backend reported, from a JSON field or a header. */
export function tokenCount(v: unknown): number | undefined {
  const n = typeof v === 'string' && /^\d{1,12}$/.test(v) ? Number(v) : num(v);
  return n !== undefined && Number.isInteger(n) && n >= 0 ? n : undefined;
}
