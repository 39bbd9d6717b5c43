import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExtprocConfig } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import type { Mutation, Outcome } from '../wire/mutation.js';
import { RequestStore, type RequestState } from './request-store.js';
import { UpstreamExchange } from './upstream.js';
import { body, clusterAttributes, headers } from '../../test/support/messages.js';

const config = new RuntimeConfig(
  ExtprocConfig.parse({
    apiVersion: 'sluice.dev/extproc/v1',
    kind: 'ExtprocConfig',
    backends: [
      { name: 'claude', cluster: 'c-claude', provider: 'anthropic', credential: { value: 'x' } },
      { name: 'openai', cluster: 'c-openai', provider: 'openai', credential: { value: 'x' } },
      { name: 'gemini', cluster: 'c-gemini', provider: 'gemini', credential: { value: 'x' } },
    ],
    routes: [{ name: 'r', models: [{ prefix: 'm' }], backends: [{ name: 'claude' }] }],
  }),
  new Map([
    ['claude', 'k1'],
    ['openai', 'k2'],
    ['gemini', 'k3'],
  ]),
);

function attempt(api: 'openai' | 'anthropic', cluster: string): UpstreamExchange {
  const b = { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 };
  const st: RequestState = {
    id: 'req-1',
    api,
    operation: api === 'openai' ? 'chat' : 'messages',
    model: 'm',
    routeName: 'r',
    body: b,
    rawBody: Buffer.from(JSON.stringify(b)),
    stream: false,
    forcedUsage: false,
    attempts: [],
    createdAt: 0,
  };
  const store = new RequestStore(() => 0);
  store.put(st);
  const ex = new UpstreamExchange({
    config,
    store,
    wallNow: () => Date.parse('2026-01-01T00:00:00Z'),
  });
  const o = ex.requestHeaders(
    headers({ ':method': 'POST', ':path': '/v1/x', 'x-sluice-request-id': 'req-1' }),
    clusterAttributes(cluster),
  ) as Outcome;
  assert.equal(o.kind, 'continue');
  return ex;
}

const mut = (o: Outcome): Mutation => (o as { mutation: Mutation }).mutation;
const get = (list: [string, string][] | undefined, k: string) => list?.find(([n]) => n === k)?.[1];

describe('upstream phase: rate-limit headers of a translated answer', () => {
  it('Anthropic backend → OpenAI caller: x-ratelimit-*, and a 429 keeps retry-after', () => {
    const ex = attempt('openai', 'c-claude');
    const m = mut(
      ex.responseHeaders(
        headers({
          ':status': '429',
          'content-type': 'application/json',
          'retry-after': '12',
          'anthropic-ratelimit-requests-remaining': '0',
          'anthropic-ratelimit-requests-reset': '2026-01-01T00:00:12Z',
        }),
      ),
    );
    assert.equal(get(m.setHeaders, 'x-ratelimit-remaining-requests'), '0');
    assert.equal(get(m.setHeaders, 'x-ratelimit-reset-requests'), '12s');
    assert.ok(m.removeHeaders?.includes('anthropic-ratelimit-requests-reset'));
    assert.ok(!m.removeHeaders?.includes('retry-after'));
    assert.equal(get(m.setHeaders, 'retry-after'), undefined);
  });

  it('OpenAI backend → Anthropic caller: anthropic-ratelimit-*', () => {
    const ex = attempt('anthropic', 'c-openai');
    const m = mut(
      ex.responseHeaders(
        headers({
          ':status': '200',
          'content-type': 'application/json',
          'x-ratelimit-limit-tokens': '30000',
          'x-ratelimit-reset-tokens': '1s',
        }),
      ),
    );
    assert.equal(get(m.setHeaders, 'anthropic-ratelimit-tokens-limit'), '30000');
    assert.equal(get(m.setHeaders, 'anthropic-ratelimit-tokens-reset'), '2026-01-01T00:00:01Z');
    assert.ok(m.removeHeaders?.includes('x-ratelimit-limit-tokens'));
  });

  it('a Gemini 429 that says when to retry only in its body gets retry-after', async () => {
    const ex = attempt('openai', 'c-gemini');
    ex.responseHeaders(headers({ ':status': '429', 'content-type': 'application/json' }));
    const o = await ex.responseBody(
      body({
        error: {
          code: 429,
          message: 'Resource has been exhausted',
          status: 'RESOURCE_EXHAUSTED',
          details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '20s' }],
        },
      }),
    );
    assert.equal(get(mut(o).setHeaders, 'retry-after'), '20');
  });
});
