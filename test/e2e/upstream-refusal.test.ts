// A backend no translator carries the caller's request to (today: OpenAI embeddings, completions
// and Responses to Anthropic and to Claude on Vertex). The SDK must get a clear
// error in its own format at once — under Envoy's real semantics, where an upstream ext_proc
// filter's own immediate response is ignored (up to Envoy 1.35) and would leave the request
// hanging until the route timeout. A route none of whose backends can take the request is refused
// before routing; an attempt Envoy sends to such a backend ends the request through the router
// filter, and Envoy does not retry a local reply, so a fallback on the same route is not tried.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import {
  KEYS,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  until,
  type YamlGateway,
  failure,
  sdkClients,
} from './harness.js';

type Provider = 'openai' | 'anthropic';

function backend(name: string, provider: Provider, service: string, priority = 0): unknown {
  return {
    name,
    provider,
    endpoint: { service: { name: service, port: 80 } },
    credential: { secretRef: { name: provider } },
    priority,
  };
}

function route(name: string, model: string, backends: unknown[]): unknown {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'e2e' },
    // Retries on everything a failed attempt can be; the SDKs give up long before the timeout, so
    // a request left hanging fails the test instead of passing late.
    spec: {
      models: [{ exact: model }],
      backends,
      timeout: '60s',
      retry: { attempts: 2, retryOn: ['5xx', 'reset', 'connect-failure'] },
    },
  };
}

describe('e2e: a backend that cannot take the caller’s API', () => {
  let g: YamlGateway;
  let openaiMock: MockProvider;
  let anthropicMock: MockProvider;
  let openai: OpenAI;
  let anthropic: Anthropic;

  before(async () => {
    openaiMock = await startMockProvider({ name: 'openai-mock', auth: { bearer: KEYS.primary } });
    anthropicMock = await startMockProvider({
      name: 'anthropic-mock',
      auth: { anthropicKey: KEYS.anthropic },
    });
    g = await startYamlGateway([
      route('claude', 'claude-only', [backend('anthropic', 'anthropic', 'anthropic-mock')]),
      // Anthropic first, OpenAI as the fallback.
      route('mixed', 'mixed-model', [
        backend('anthropic', 'anthropic', 'anthropic-mock'),
        backend('openai', 'openai', 'openai-mock', 1),
      ]),
      ...serviceDocs('openai-mock', openaiMock.port),
      ...serviceDocs('anthropic-mock', anthropicMock.port),
      secretDoc('openai', KEYS.primary),
      secretDoc('anthropic', KEYS.anthropic),
    ]);
    ({ openai, anthropic } = sdkClients(g.gateway.url));
  });
  after(async () => {
    await g?.close();
    await openaiMock?.close();
    await anthropicMock?.close();
  });

  it('no backend of the route can take it: 501 unsupported_backend, in the OpenAI format', async () => {
    const e = await failure(openai.embeddings.create({ model: 'claude-only', input: 'x' }));
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.equal(e.status, 501);
    const body = e.error as { code?: unknown; message?: unknown; type?: unknown };
    assert.equal(body.code, 'unsupported_backend');
    assert.equal(body.type, 'server_error');
    assert.equal(
      body.message,
      'This gateway cannot send OpenAI embeddings requests to an anthropic backend.',
    );
    assert.equal(e.headers?.get('x-sluice-error-code'), 'unsupported_backend');
    assert.deepEqual(anthropicMock.take(), [], 'nothing left the gateway');
  });

  // Every provider now carries Anthropic Messages (issue 15 added Bedrock, Gemini and Vertex), so
  // no route refuses an Anthropic caller before routing any more; the OpenAI case above stands.

  it('the chosen backend cannot take it: the request ends at once, not retried elsewhere', async () => {
    const e = await failure(openai.embeddings.create({ model: 'mixed-model', input: 'x' }));
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.equal(e.status, 501);
    assert.equal((e.error as { code?: unknown }).code, 'unsupported_backend');
    // Neither the refused backend nor the fallback saw the request: a local reply is final.
    assert.deepEqual(anthropicMock.take(), []);
    assert.deepEqual(openaiMock.take(), []);
    const id = e.headers?.get('x-sluice-request-id');
    assert.ok(id);
    const line = await until(() => g.accessLog.find((l) => l['request_id'] === id));
    assert.equal(line['error_code'], 'unsupported_backend');
    assert.equal(line['status'], 501);
  });

  it('a caller the chosen backend can take is served by it', async () => {
    const msg = await anthropic.messages.create({
      model: 'mixed-model',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hello there' }],
    });
    assert.equal(msg.type, 'message');
    const sent = anthropicMock.take();
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.headers['x-api-key'], KEYS.anthropic);
    assert.deepEqual(openaiMock.take(), []);
  });
});
