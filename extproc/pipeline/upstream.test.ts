import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExtprocConfig } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import type { Mutation, Outcome } from '../wire/mutation.js';
import { RequestStore, type RequestState } from './request-store.js';
import { UpstreamExchange } from './upstream.js';
import { clusterAttributes, headers, jsonOf, verdictOf } from '../../test/support/messages.js';

const config = new RuntimeConfig(
  ExtprocConfig.parse({
    apiVersion: 'sluice.dev/extproc/v1',
    kind: 'ExtprocConfig',
    backends: [
      { name: 'openai', cluster: 'c-openai', provider: 'openai', credential: { value: 'x' } },
      {
        name: 'vllm',
        cluster: 'c-vllm',
        provider: 'openai-compatible',
        modelOverride: 'meta/llama',
        pathPrefix: '/serve',
      },
      {
        name: 'azure',
        cluster: 'c-azure',
        provider: 'azure-openai',
        credential: { value: 'x' },
        azure: { deployment: 'prod gpt', apiVersion: '2024-10-21' },
      },
      {
        name: 'claude',
        cluster: 'c-claude',
        provider: 'anthropic',
        credential: { value: 'x' },
        modelOverride: 'claude-x-1',
      },
      {
        name: 'vertex',
        cluster: 'c-vertex',
        provider: 'gcp-vertex',
        gcp: { project: 'p', region: 'us-east5', publisher: 'anthropic' },
      },
    ],
    routes: [{ name: 'r', models: [{ prefix: 'gpt' }], backends: [{ name: 'openai' }] }],
  }),
  new Map([
    ['openai', 'sk-openai-secret'],
    ['azure', 'azure-secret'],
    ['claude', 'sk-ant-secret'],
  ]),
);

function state(over: Partial<RequestState> = {}): RequestState {
  const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true };
  return {
    id: 'req-1',
    api: 'openai',
    operation: 'chat',
    model: 'gpt-4o-mini',
    routeName: 'r',
    body,
    rawBody: Buffer.from(JSON.stringify(body)),
    stream: true,
    forcedUsage: false,
    attempts: [],
    createdAt: 0,
    ...over,
  };
}

function run(
  cluster: string | undefined,
  st: RequestState | undefined,
  extra: Record<string, string> = {},
) {
  const store = new RequestStore(() => 0);
  if (st) store.put(st);
  const ex = new UpstreamExchange({ config, store });
  const h = headers({
    ':method': 'POST',
    ':path': '/v1/chat/completions',
    'x-sluice-request-id': 'req-1',
    'x-sluice-model': 'gpt-4o-mini',
    authorization: 'Bearer client-virtual-key',
    'content-type': 'application/json',
    ...extra,
  });
  let o: Outcome;
  try {
    // Synchronous for every backend here (only a SigV4 backend's answer waits for its signature).
    o = ex.requestHeaders(
      h,
      cluster === undefined ? undefined : clusterAttributes(cluster),
    ) as Outcome;
  } catch (err) {
    o = ex.fail(err);
  }
  return { o, store };
}

function mutation(o: Outcome): Mutation {
  assert.equal(o.kind, 'continue');
  return (o as { mutation: Mutation }).mutation;
}

const get = (m: Mutation, k: string) => m.setHeaders?.find(([n]) => n === k)?.[1];

describe('upstream phase', () => {
  it('injects the OpenAI credential and strips the client key and internal headers', () => {
    const m = mutation(run('c-openai', state()).o);
    assert.equal(get(m, 'authorization'), 'Bearer sk-openai-secret');
    assert.equal(get(m, ':path'), '/v1/chat/completions');
    assert.equal(get(m, 'accept-encoding'), 'identity');
    assert.deepEqual(m.removeHeaders?.sort(), [
      'authorization',
      'x-sluice-model',
      'x-sluice-request-id',
    ]);
    assert.equal(m.body, undefined, 'an unchanged body is not replaced');
    assert.equal(m.replace, undefined);
  });

  it('overrides the model and path prefix with CONTINUE_AND_REPLACE, and sends no credential it does not have', () => {
    const st = state();
    const m = mutation(run('c-vllm', st).o);
    assert.equal(m.replace, true);
    assert.deepEqual(JSON.parse(m.body!.toString()), { ...st.body, model: 'meta/llama' });
    assert.equal(get(m, ':path'), '/serve/v1/chat/completions');
    assert.equal(get(m, 'authorization'), undefined);
    assert.ok(
      m.removeHeaders?.includes('authorization'),
      'the client key never reaches the backend',
    );
    assert.deepEqual(st.attempts, [{ backend: 'vllm', provider: 'openai-compatible' }]);
  });

  it('adds stream_options.include_usage when the gateway forced it, keeping other options', () => {
    const st = state({ forcedUsage: true });
    st.body.stream_options = { foo: 1 };
    const m = mutation(run('c-openai', st).o);
    assert.deepEqual(JSON.parse(m.body!.toString()).stream_options, {
      foo: 1,
      include_usage: true,
    });
    assert.deepEqual(st.body.stream_options, { foo: 1 }, 'the stored request is not modified');
  });

  it('builds the Azure deployment path, api-version and api-key', () => {
    const m = mutation(run('c-azure', state({ operation: 'embeddings' })).o);
    assert.equal(
      get(m, ':path'),
      '/openai/deployments/prod%20gpt/embeddings?api-version=2024-10-21',
    );
    assert.equal(get(m, 'api-key'), 'azure-secret');
    assert.equal(get(m, 'authorization'), undefined);
  });

  it('uses x-api-key and anthropic-version for Anthropic and keeps a client anthropic-version', () => {
    const st = state({ api: 'anthropic', operation: 'messages', model: 'claude-sonnet' });
    const m = mutation(run('c-claude', st, { 'x-api-key': 'client-key' }).o);
    assert.equal(get(m, 'x-api-key'), 'sk-ant-secret');
    assert.equal(get(m, 'anthropic-version'), '2023-06-01');
    assert.equal(get(m, ':path'), '/v1/messages');
    assert.equal(JSON.parse(m.body!.toString()).model, 'claude-x-1');
    const kept = mutation(
      run('c-claude', state({ api: 'anthropic', operation: 'messages' }), {
        'anthropic-version': '2024-01-01',
      }).o,
    );
    assert.equal(get(kept, 'anthropic-version'), undefined);
  });

  it('fails closed without the router state, and on an unknown cluster', () => {
    for (const [cluster, st] of [
      ['c-openai', undefined],
      ['nope', state()],
      [undefined, state()],
    ] as const) {
      const v = verdictOf(run(cluster, st).o);
      assert.equal(v.status, 500);
      assert.equal(jsonOf(v).error.code, 'gateway_error');
    }
  });

  it('refuses a schema pair it cannot translate, in the caller format', () => {
    // Every provider now carries chat; embeddings reach no translator of Claude on Vertex.
    const v = verdictOf(run('c-vertex', state({ operation: 'embeddings' })).o);
    assert.equal(v.status, 501);
    assert.equal(jsonOf(v).error.code, 'unsupported_backend');
    const a = verdictOf(run('c-openai', state({ api: 'anthropic', operation: 'messages' })).o);
    assert.equal(jsonOf(a).type, 'error');
  });
});

describe('upstream phase: refused attempts', () => {
  function attempt(ex: UpstreamExchange, cluster: string): Outcome {
    const h = headers({
      ':method': 'POST',
      ':path': '/v1/chat/completions',
      'x-sluice-request-id': 'req-1',
      'content-type': 'application/json',
    });
    try {
      return ex.requestHeaders(h, clusterAttributes(cluster)) as Outcome;
    } catch (err) {
      return ex.fail(err);
    }
  }

  it('refuses the attempt in the caller’s format, with the request id; nothing is counted', () => {
    // Every supported Envoy (1.37+) sends this immediate response downstream, unretried.
    const store = new RequestStore(() => 0);
    const st = state({ operation: 'embeddings' });
    store.put(st);
    const v = verdictOf(attempt(new UpstreamExchange({ config, store }), 'c-vertex'));
    assert.equal(jsonOf(v).error.code, 'unsupported_backend');
    assert.match(jsonOf(v).error.message, /embeddings requests to a gcp-vertex backend/);
    assert.deepEqual(
      v.headers.find(([k]) => k === 'x-sluice-request-id'),
      ['x-sluice-request-id', 'req-1'],
    );
    assert.deepEqual(st.attempts, []);
  });

  it('without the router state the attempt is refused', () => {
    const store = new RequestStore(() => 0);
    const v = verdictOf(attempt(new UpstreamExchange({ config, store }), 'c-openai'));
    assert.equal(jsonOf(v).error.code, 'gateway_error');
    assert.equal(store.size, 0);
  });
});
