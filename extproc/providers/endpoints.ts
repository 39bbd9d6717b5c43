/** What the gateway serves, by request path. The path decides the caller's API format. */
export type ApiFormat = 'openai' | 'anthropic';
export type Operation = 'chat' | 'completions' | 'embeddings' | 'responses' | 'messages';

export type Endpoint =
  | { kind: 'model-call'; api: ApiFormat; operation: Operation; path: string }
  | { kind: 'models-list'; api: ApiFormat }
  | { kind: 'model-get'; api: ApiFormat; model: string };

const CALLS: Record<string, { api: ApiFormat; operation: Operation }> = {
  '/v1/chat/completions': { api: 'openai', operation: 'chat' },
  '/v1/completions': { api: 'openai', operation: 'completions' },
  '/v1/embeddings': { api: 'openai', operation: 'embeddings' },
  '/v1/responses': { api: 'openai', operation: 'responses' },
  '/v1/messages': { api: 'anthropic', operation: 'messages' },
};

export function stripQuery(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}

/** Returns undefined for paths the gateway does not serve. Trailing slashes are tolerated. */
export function resolveEndpoint(
  rawPath: string,
  headers: ReadonlyMap<string, string>,
): Endpoint | undefined {
  let path = stripQuery(rawPath);
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  const call = CALLS[path];
  if (call) return { kind: 'model-call', ...call, path };
  if (path === '/v1/models') return { kind: 'models-list', api: guessApi(headers) };
  if (path.startsWith('/v1/models/')) {
    const model = safeDecode(path.slice('/v1/models/'.length));
    if (model !== undefined && model.length > 0)
      return { kind: 'model-get', api: guessApi(headers), model };
  }
  return undefined;
}

/**
 * For paths that do not name the API (models, unknown paths) the Anthropic SDK is recognisable
 * by the headers it always sends.
 */
export function guessApi(headers: ReadonlyMap<string, string>): ApiFormat {
  return headers.has('anthropic-version') || headers.has('x-api-key') ? 'anthropic' : 'openai';
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** The OpenTelemetry GenAI operation name for metrics and logs. */
export function otelOperation(op: Operation): string {
  switch (op) {
    case 'chat':
    case 'messages':
      return 'chat';
    case 'completions':
      return 'text_completion';
    case 'embeddings':
      return 'embeddings';
    case 'responses':
      return 'chat';
  }
}
