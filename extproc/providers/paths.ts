/**
 * Where an API call goes on a backend: the backend owns its whole path. The operator passes the
 * endpoint URL's path through unchanged (`pathPrefix` in the contract); this is the one place that
 * joins it with the API's own path.
 *
 * The URL's path is read as the SDKs read a base URL: `https://api.openai.com/v1` and
 * `https://api.anthropic.com/v1` already name the API version, so the call's path follows it;
 * a URL without a version segment (`https://host`, `https://host/ollama`) gets the API's default
 * `/v1` first. Azure OpenAI has no version segment in the path: deployments and `api-version`.
 */
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';

const VERSIONED = /\/v\d+(?:beta\d*|alpha\d*)?$/;

/** `call`: the path below the API version, e.g. `/chat/completions` or `/messages`. */
export function versionedPath(backend: ResolvedBackend, call: string): string {
  const base = (backend.pathPrefix ?? '').replace(/\/+$/, '');
  return VERSIONED.test(base) ? `${base}${call}` : `${base}/v1${call}`;
}

/** Azure OpenAI: `/openai/deployments/{deployment}{call}?api-version=…` below the URL's path. */
export function azurePath(backend: ResolvedBackend, deployment: string, call: string): string {
  const base = (backend.pathPrefix ?? '').replace(/\/+$/, '');
  const version = encodeURIComponent(backend.azure?.apiVersion ?? '');
  return `${base}/openai/deployments/${encodeURIComponent(deployment)}${call}?api-version=${version}`;
}

/**
 * A stored response at the backend that keeps it (keepsResponsesState): `call` is
 * `/responses/{id}` or `/responses/{id}/input_items`, `query` the caller's query string as sent
 * (without `?`). OpenAI: below the API version, as every call. Azure OpenAI: responses are not
 * per deployment, `/openai/responses/{id}?api-version=…`, the caller's query after it.
 */
export function responsesResourcePath(
  backend: ResolvedBackend,
  call: string,
  query: string,
): string {
  if (backend.provider === 'azure-openai') {
    const base = (backend.pathPrefix ?? '').replace(/\/+$/, '');
    const version = encodeURIComponent(backend.azure?.apiVersion ?? '');
    return `${base}/openai${call}?api-version=${version}${query === '' ? '' : `&${query}`}`;
  }
  const path = versionedPath(backend, call);
  return query === '' ? path : `${path}?${query}`;
}

/** The Gemini API's version segment when the endpoint URL names none. */
const GEMINI_VERSION = 'v1beta';

/** The Gemini API: `/v1beta/models/{model}:{method}` (the URL's own version segment when it has one). */
export function geminiModelPath(backend: ResolvedBackend, model: string, method: string): string {
  const base = (backend.pathPrefix ?? '').replace(/\/+$/, '');
  const prefix = VERSIONED.test(base) ? base : `${base}/${GEMINI_VERSION}`;
  return `${prefix}/models/${encodeURIComponent(model)}:${method}`;
}

/**
 * Vertex AI: a publisher model's method, `/v1/projects/{project}/locations/{region}/publishers/
 * {publisher}/models/{model}:{method}` (the URL's own version segment when it has one).
 */
export function vertexModelPath(
  backend: ResolvedBackend,
  publisher: 'google' | 'anthropic',
  model: string,
  method: string,
): string {
  const gcp = backend.gcp;
  if (!gcp)
    throw new SluiceError('gateway_error', 'The gateway has no project for this Vertex backend.');
  const base = (backend.pathPrefix ?? '').replace(/\/+$/, '');
  const prefix = VERSIONED.test(base) ? base : `${base}/v1`;
  const p = encodeURIComponent(gcp.project);
  const l = encodeURIComponent(gcp.region);
  return `${prefix}/projects/${p}/locations/${l}/publishers/${publisher}/models/${encodeURIComponent(model)}:${method}`;
}
