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
