import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExtProcFilter, type LocalReply } from '../../operator/envoy-sim/ext-proc/index.js';
import {
  accessLines,
  CONFIG,
  chatHeaders,
  continued,
  get,
  ROUTER,
  sendRequest,
  startHarness,
  upstreamFilter,
  waitFor,
  type Harness,
} from './harness.js';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h.stop();
});

const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello' }] };

function reply(r: unknown): LocalReply {
  const x = r as LocalReply;
  assert.equal(x.kind, 'local-reply', `expected a local reply, got ${JSON.stringify(r)}`);
  assert.deepEqual(x.violations, []);
  return x;
}

describe('conformance: the request path through both filters', () => {
  it('routes on the model in the body and shapes the request for the chosen backend', async () => {
    const { routed, upstream } = await sendRequest(h, chatHeaders(), chat, 'sluice/backend/openai');
    const r = continued(routed);
    assert.deepEqual(r.violations, []);
    assert.equal(r.routeCacheCleared, true, 'Envoy re-matches the route after the body answer');
    assert.equal(get(r.headers, 'x-sluice-model'), 'gpt-4o-mini');
    assert.match(get(r.headers, 'x-sluice-request-id') ?? '', /^[0-9a-f-]{36}$/);
    assert.deepEqual(JSON.parse(r.body.toString()), chat, 'the router phase leaves the body alone');

    const u = continued(upstream);
    assert.deepEqual(u.violations, []);
    assert.equal(get(u.headers, 'authorization'), 'Bearer sk-backend-openai-0001');
    assert.equal(get(u.headers, ':path'), '/v1/chat/completions');
    assert.equal(get(u.headers, 'x-sluice-request-id'), undefined, 'internal headers never leave');
    assert.equal(get(u.headers, 'x-sluice-model'), undefined);
    assert.equal(get(u.headers, 'accept-encoding'), 'identity');
    assert.deepEqual(JSON.parse(u.body.toString()), chat);
  });

  it('replaces the body for a model override (CONTINUE_AND_REPLACE) and drops content-length', async () => {
    const body = JSON.stringify({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'x' }],
    });
    const { upstream } = await sendRequest(
      h,
      chatHeaders([['content-length', String(body.length)]]),
      body,
      'sluice/backend/vllm',
    );
    const u = continued(upstream);
    assert.deepEqual(u.violations, []);
    assert.equal(JSON.parse(u.body.toString()).model, 'meta-llama/Llama-3.1-8B-Instruct');
    assert.equal(get(u.headers, 'content-length'), undefined);
    assert.equal(
      get(u.headers, 'authorization'),
      undefined,
      "the client's key does not reach a keyless backend",
    );
  });

  it('builds Azure OpenAI requests on a retry to the fallback cluster, from the original body', async () => {
    const { routed } = await sendRequest(
      h,
      chatHeaders(),
      { ...chat, stream: true },
      'sluice/backend/openai',
    );
    const r = continued(routed);
    for (const cluster of ['sluice/backend/openai', 'sluice/backend/azure']) {
      const filter = new ExtProcFilter(h.client, upstreamFilter(cluster));
      const up = continued(await filter.runRequest(r.headers, [r.body]));
      filter.close();
      assert.deepEqual(up.violations, []);
      assert.deepEqual(JSON.parse(up.body.toString()).stream_options, { include_usage: true });
      if (cluster.endsWith('azure')) {
        assert.equal(
          get(up.headers, ':path'),
          '/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21',
        );
        assert.equal(get(up.headers, 'api-key'), 'azure-backend-key-0002');
      }
    }
  });

  it('serves the Anthropic Messages API natively', async () => {
    const body = {
      model: 'claude-sonnet-4-5',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'hi' }],
    };
    const { upstream } = await sendRequest(
      h,
      chatHeaders(
        [
          ['x-api-key', 'client-key'],
          ['anthropic-version', '2023-06-01'],
        ],
        '/v1/messages',
      ),
      body,
      'sluice/backend/anthropic',
    );
    const u = continued(upstream);
    assert.equal(get(u.headers, 'x-api-key'), 'sk-ant-backend-0003');
    assert.equal(get(u.headers, 'anthropic-version'), '2023-06-01');
  });

  it('takes a large body that arrives in many frames as one buffered message', async () => {
    const big = { ...chat, messages: [{ role: 'user', content: 'z'.repeat(900_000) }] };
    const { routed, upstream } = await sendRequest(
      h,
      chatHeaders(),
      big,
      'sluice/backend/openai',
      20,
    );
    assert.deepEqual(continued(routed).violations, []);
    assert.equal(continued(upstream).body.length, JSON.stringify(big).length);
  });

  it('passes non-UTF-8 header bytes through untouched', async () => {
    const { routed } = await sendRequest(
      h,
      chatHeaders([['x-custom', 'caf\xe9\xff']]),
      chat,
      'sluice/backend/openai',
    );
    assert.equal(get(continued(routed).headers, 'x-custom'), 'caf\xe9\xff');
  });

  it('answers GET /v1/models at the request headers', async () => {
    const f = new ExtProcFilter(h.client, ROUTER);
    const r = reply(
      await f.runRequest([
        [':method', 'GET'],
        [':path', '/v1/models'],
        [':scheme', 'http'],
        [':authority', 'g'],
      ]),
    );
    assert.equal(r.status, 200);
    assert.equal(get(r.headers, 'content-type'), 'application/json');
    assert.deepEqual(
      JSON.parse(r.body.toString()).data.map((m: { id: string }) => m.id),
      ['gpt-4o-mini', 'llama-3.1-8b'],
    );
  });
});

describe('conformance: bad input gets a clear error in the caller format', () => {
  const cases: [string, [string, string][], string | Buffer | undefined, number, string][] = [
    ['an unknown path', chatHeaders([], '/v1/unknown'), '{}', 404, 'unknown_path'],
    ['malformed JSON', chatHeaders(), '{"model": "gpt-4o-mini",', 400, 'invalid_json'],
    [
      'a wrong content type',
      chatHeaders([['content-type', 'text/plain']]).filter(
        ([k, v]) => k !== 'content-type' || v === 'text/plain',
      ),
      'hi',
      415,
      'unsupported_media_type',
    ],
    ['an unknown model', chatHeaders(), '{"model": "nope"}', 404, 'model_not_found'],
    [
      'non-UTF-8 body bytes',
      chatHeaders(),
      Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]),
      400,
      'invalid_encoding',
    ],
    [
      'a body over the limit',
      chatHeaders(),
      JSON.stringify({ model: 'gpt-4o-mini', pad: 'x'.repeat(1_100_000) }),
      413,
      'request_too_large',
    ],
    [
      'a POST without a body (headers end the stream)',
      chatHeaders(),
      undefined,
      400,
      'missing_body',
    ],
    ['an empty body (empty DATA frame with END_STREAM)', chatHeaders(), '', 400, 'invalid_json'],
  ];
  for (const [what, headers, body, status, code] of cases) {
    it(`${what} → ${status} ${code}`, async () => {
      const f = new ExtProcFilter(h.client, { ...ROUTER, bufferLimitBytes: 4 * 1024 * 1024 });
      const chunks = body === undefined ? [] : [Buffer.isBuffer(body) ? body : Buffer.from(body)];
      const r = reply(await f.runRequest(headers, chunks));
      assert.equal(r.status, status);
      assert.equal(get(r.headers, 'content-type'), 'application/json');
      const parsed = JSON.parse(r.body.toString());
      assert.equal(parsed.error.code, code);
      assert.equal(typeof parsed.error.message, 'string');
      assert.equal(r.details, `sluice_${code}`);
    });
  }

  it('answers Anthropic callers with Anthropic error objects', async () => {
    const f = new ExtProcFilter(h.client, ROUTER);
    const r = reply(
      await f.runRequest(chatHeaders([], '/v1/messages'), [Buffer.from('{"model": 5}')]),
    );
    assert.equal(r.status, 400);
    const b = JSON.parse(r.body.toString());
    assert.equal(b.type, 'error');
    assert.equal(b.error.type, 'invalid_request_error');
    assert.equal(b.error.code, 'missing_model');
  });

  it('fails closed in the upstream filter without the router state', async () => {
    // What the filter answers, as a data plane that sends upstream local replies gets it (every
    // supported release, 1.37+; 1.36 and older ignore it and hold the attempt).
    const f = new ExtProcFilter(h.client, {
      ...upstreamFilter('sluice/backend/openai'),
    });
    const r = reply(await f.runRequest(chatHeaders([['x-sluice-request-id', 'made-up']]), []));
    assert.equal(r.status, 500);
    assert.equal(JSON.parse(r.body.toString()).error.code, 'gateway_error');
  });

  it('logs each refused request once, with its code', async () => {
    const before = accessLines(h).length;
    const f = new ExtProcFilter(h.client, ROUTER);
    reply(await f.runRequest(chatHeaders(), [Buffer.from('{"model": "unknown-model"}')]));
    await waitFor(() => accessLines(h).length === before + 1);
    const line = accessLines(h).at(-1)!;
    assert.equal(line.error_code, 'model_not_found');
    assert.equal(line.outcome, 'rejected');
  });
});

describe('conformance: trailers', () => {
  it('routes a BUFFERED request whose body is followed by trailers', async () => {
    const f = new ExtProcFilter(h.client, ROUTER);
    const r = continued(
      await f.runRequest(
        chatHeaders(),
        [Buffer.from(JSON.stringify(chat))],
        [['x-checksum', 'abc']],
      ),
    );
    assert.deepEqual(r.violations, []);
    assert.equal(get(r.headers, 'x-sluice-model'), 'gpt-4o-mini');
    assert.equal(r.routeCacheCleared, true);
    const resp = Buffer.from(
      JSON.stringify({
        id: 'x',
        object: 'chat.completion',
        model: 'gpt-4o-mini',
        choices: [],
        usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
      }),
    );
    const before = accessLines(h).length;
    continued(
      await f.runResponse(
        [
          [':status', '200'],
          ['content-type', 'application/json'],
        ],
        [resp],
        [['x-trailer', '1']],
      ),
    );
    await waitFor(() => accessLines(h).length > before);
    assert.equal(accessLines(h).at(-1)!.tokens.output, 4);
  });
});

describe('conformance: one cluster, several backends', () => {
  const shared = CONFIG.replace(
    /cluster: sluice\/backend\/(openai|azure)/g,
    'cluster: route/default/gpt/rule/0',
  );
  let s: Harness;
  before(async () => {
    s = await startHarness(shared);
  });
  after(async () => {
    await s.stop();
  });

  it('identifies the backend by the endpoint metadata attribute, per attempt', async () => {
    // The router filter only: an attempt without the attribute would be refused and end the request.
    const router = new ExtProcFilter(s.client, ROUTER);
    const r = continued(
      await router.runRequest(chatHeaders(), [Buffer.from(JSON.stringify(chat))]),
    );
    for (const [backend, header, value] of [
      ['openai', 'authorization', 'Bearer sk-backend-openai-0001'],
      ['azure', 'api-key', 'azure-backend-key-0002'],
    ] as const) {
      const f = new ExtProcFilter(s.client, upstreamFilter('route/default/gpt/rule/0', backend));
      const up = continued(
        await f.runRequest(r.headers, [r.body], undefined, { dataWithHeaders: true }),
      );
      f.close();
      assert.equal(get(up.headers, header), value);
    }
    router.close();
  });

  it('refuses, closed, an attempt on a shared cluster without the backend attribute', async () => {
    const router = new ExtProcFilter(s.client, ROUTER);
    const routed = continued(
      await router.runRequest(chatHeaders(), [Buffer.from(JSON.stringify(chat))]),
    );
    const up = new ExtProcFilter(s.client, {
      ...upstreamFilter('route/default/gpt/rule/0'),
    });
    // Every supported Envoy (1.37+) sends this reply downstream, unretried.
    const r = reply(await up.runRequest(routed.headers, [routed.body]));
    assert.equal(r.status, 500);
    assert.equal(JSON.parse(r.body.toString()).error.code, 'gateway_error');
    router.close();
  });
});
