import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ResolvedBackend } from '../config/runtime.js';
import { azurePath, responsesResourcePath, versionedPath } from './paths.js';

function backend(over: Partial<ResolvedBackend>): ResolvedBackend {
  return { name: 'b', cluster: 'c', provider: 'openai', credential: undefined, ...over };
}

void describe('the backend owns its path', () => {
  void it('joins the API path to a URL path that names the version, as an SDK base URL', () => {
    assert.equal(
      versionedPath(backend({ pathPrefix: '/v1' }), '/chat/completions'),
      '/v1/chat/completions',
    );
    assert.equal(
      versionedPath(backend({ pathPrefix: '/openai/v1' }), '/messages'),
      '/openai/v1/messages',
    );
    assert.equal(
      versionedPath(backend({ pathPrefix: '/api/v1beta' }), '/models'),
      '/api/v1beta/models',
    );
  });
  void it('adds /v1 below a URL path without a version, or none', () => {
    assert.equal(versionedPath(backend({}), '/chat/completions'), '/v1/chat/completions');
    assert.equal(
      versionedPath(backend({ pathPrefix: '/ollama' }), '/embeddings'),
      '/ollama/v1/embeddings',
    );
    // A segment that merely starts with v is not a version.
    assert.equal(
      versionedPath(backend({ pathPrefix: '/vllm' }), '/completions'),
      '/vllm/v1/completions',
    );
  });
  void it('builds Azure deployment paths with the API version', () => {
    const b = backend({
      provider: 'azure-openai',
      pathPrefix: '/gw',
      azure: { apiVersion: '2024-10-21' },
    });
    assert.equal(
      azurePath(b, 'gpt 4o', '/chat/completions'),
      '/gw/openai/deployments/gpt%204o/chat/completions?api-version=2024-10-21',
    );
  });
  void it('reaches a stored response where its provider keeps it, the query kept', () => {
    assert.equal(
      responsesResourcePath(backend({ pathPrefix: '/v1' }), '/responses/resp_1', ''),
      '/v1/responses/resp_1',
    );
    assert.equal(
      responsesResourcePath(backend({}), '/responses/resp_1/input_items', 'limit=5&order=asc'),
      '/v1/responses/resp_1/input_items?limit=5&order=asc',
    );
    const azure = backend({
      provider: 'azure-openai',
      pathPrefix: '/gw/',
      azure: { apiVersion: '2025-04-01-preview' },
    });
    assert.equal(
      responsesResourcePath(azure, '/responses/resp_1/input_items', 'limit=2'),
      '/gw/openai/responses/resp_1/input_items?api-version=2025-04-01-preview&limit=2',
    );
  });
});
