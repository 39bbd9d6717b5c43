import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ExtprocConfig, WIRE } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { RequestStore } from './request-store.js';
import { MODEL_HEADER, RouterExchange } from './router.js';
import type { Outcome } from '../wire/mutation.js';
import {
  body,
  chatRequest,
  header,
  headers,
  jsonOf,
  verdictOf,
} from '../../test/support/messages.js';

const config = new RuntimeConfig(
  ExtprocConfig.parse({
    apiVersion: 'sluice.dev/extproc/v1',
    kind: 'ExtprocConfig',
    limits: { maxRequestBodyBytes: 2048 },
    backends: [
      { name: 'openai', cluster: 'c-openai', provider: 'openai' },
      { name: 'claude', cluster: 'c-claude', provider: 'anthropic' },
    ],
    routes: [
      {
        name: 'gpt',
        models: [{ exact: 'gpt-4o-mini' }, { prefix: 'gpt-' }],
        backends: [{ name: 'openai' }],
        created: 1700000000,
      },
      { name: 'claude', models: [{ exact: 'claude-sonnet-4' }], backends: [{ name: 'claude' }] },
    ],
  }),
  new Map(),
);

function exchange(cfg: RuntimeConfig | null = config) {
  const store = new RequestStore(() => 0);
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
  const telemetry = new Telemetry(new Registry(), logger);
  let n = 0;
  const ex = new RouterExchange({
    config: cfg ?? undefined,
    store,
    telemetry,
    now: () => 0,
    newId: () => `id-${++n}`,
  });
  return { ex, store, lines };
}

/** Runs a handler step the way the stream does: thrown errors become the handler's verdict. */
async function step(ex: RouterExchange, fn: () => Outcome | Promise<Outcome>): Promise<Outcome> {
  try {
    return await fn();
  } catch (err) {
    return ex.fail(err);
  }
}

describe('router phase: request headers', () => {
  it('answers an unknown path with 404 in the OpenAI format', async () => {
    const { ex } = exchange();
    const v = verdictOf(
      await step(ex, () => ex.requestHeaders(headers({ ':method': 'POST', ':path': '/v1/nope' }))),
    );
    assert.equal(v.status, 404);
    assert.equal(header(v.headers, 'content-type'), 'application/json');
    assert.deepEqual(jsonOf(v), {
      error: {
        message: 'The gateway does not serve POST on this path.',
        type: 'invalid_request_error',
        param: null,
        code: 'unknown_path',
      },
    });
  });

  it('answers an unknown path in the Anthropic format when the caller is the Anthropic SDK', async () => {
    const { ex } = exchange();
    const req = headers({
      ':method': 'POST',
      ':path': '/v1/other',
      'anthropic-version': '2023-06-01',
    });
    const v = verdictOf(await step(ex, () => ex.requestHeaders(req)));
    assert.equal(v.status, 404);
    const b = jsonOf(v);
    assert.equal(b.type, 'error');
    assert.equal(b.error.type, 'not_found_error');
    assert.equal(b.error.code, 'unknown_path');
  });

  it('lists models from the routes, in both formats', async () => {
    const { ex } = exchange();
    const v = verdictOf(
      await step(ex, () =>
        ex.requestHeaders(headers({ ':method': 'GET', ':path': '/v1/models' }, true)),
      ),
    );
    assert.equal(v.status, 200);
    assert.deepEqual(jsonOf(v), {
      object: 'list',
      data: [
        { id: 'gpt-4o-mini', object: 'model', created: 1700000000, owned_by: 'sluice' },
        { id: 'claude-sonnet-4', object: 'model', created: 0, owned_by: 'sluice' },
      ],
    });
    const a = exchange().ex;
    const va = verdictOf(
      await step(a, () =>
        a.requestHeaders(
          headers(
            { ':method': 'GET', ':path': '/v1/models', 'anthropic-version': '2023-06-01' },
            true,
          ),
        ),
      ),
    );
    assert.equal(jsonOf(va).data[1].type, 'model');
    assert.equal(jsonOf(va).has_more, false);
  });

  it('retrieves one model, and 404s an unknown one', async () => {
    const { ex } = exchange();
    const v = verdictOf(
      await step(ex, () =>
        ex.requestHeaders(headers({ ':method': 'GET', ':path': '/v1/models/gpt-4o-mini' }, true)),
      ),
    );
    assert.equal(jsonOf(v).id, 'gpt-4o-mini');
    const b = exchange().ex;
    const nf = verdictOf(
      await step(b, () =>
        b.requestHeaders(headers({ ':method': 'GET', ':path': '/v1/models/nope' }, true)),
      ),
    );
    assert.equal(nf.status, 404);
    assert.equal(jsonOf(nf).error.code, 'model_not_found');
  });

  it('refuses wrong methods, missing bodies, non-JSON content and declared oversize bodies', async () => {
    const cases: [Record<string, string>, boolean, number, string][] = [
      [{ ':method': 'GET', ':path': '/v1/chat/completions' }, true, 405, 'method_not_allowed'],
      [{ ':method': 'POST', ':path': '/v1/chat/completions' }, true, 400, 'missing_body'],
      [
        { ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'text/plain' },
        false,
        415,
        'unsupported_media_type',
      ],
      [
        {
          ':method': 'POST',
          ':path': '/v1/chat/completions',
          'content-type': 'application/x-www-form-urlencoded',
        },
        false,
        415,
        'unsupported_media_type',
      ],
      [
        { ':method': 'POST', ':path': '/v1/chat/completions', 'content-length': '4096' },
        false,
        413,
        'request_too_large',
      ],
    ];
    for (const [h, eos, status, code] of cases) {
      const { ex } = exchange();
      const v = verdictOf(await step(ex, () => ex.requestHeaders(headers(h, eos))));
      assert.equal(v.status, status, code);
      assert.equal(jsonOf(v).error.code, code);
    }
  });

  it('accepts JSON content types with parameters and +json', async () => {
    for (const ct of [
      'application/json; charset=utf-8',
      'Application/JSON',
      'application/vnd.api+json',
    ]) {
      const { ex } = exchange();
      const o = await step(ex, () => ex.requestHeaders(chatRequest({ 'content-type': ct })));
      assert.equal(o.kind, 'continue', ct);
    }
  });

  it('answers 503 in the caller format before any config arrived', async () => {
    const { ex } = exchange(null);
    const v = verdictOf(await step(ex, () => ex.requestHeaders(chatRequest())));
    assert.equal(v.status, 503);
    assert.equal(jsonOf(v).error.code, 'config_unavailable');
  });

  it('gives each request its own id, replacing any the client sent', async () => {
    const { ex } = exchange();
    const o = await step(ex, () =>
      ex.requestHeaders(chatRequest({ 'x-sluice-request-id': 'forged' })),
    );
    assert.equal(o.kind, 'continue');
    assert.deepEqual(o.kind === 'continue' && o.mutation?.setHeaders, [
      ['x-sluice-request-id', 'id-1'],
    ]);
  });
});

describe('router phase: request body', () => {
  async function send(b: string | Buffer | object, path = '/v1/chat/completions') {
    const x = exchange();
    await step(x.ex, () => x.ex.requestHeaders(chatRequest({ ':path': path })));
    return { ...x, outcome: await step(x.ex, () => x.ex.requestBody(body(b))) };
  }

  it('sets the model header with clear_route_cache and stores the request', async () => {
    const { outcome, store } = await send({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(outcome.kind, 'continue');
    const m = outcome.kind === 'continue' ? outcome.mutation : undefined;
    assert.deepEqual(m?.setHeaders, [[MODEL_HEADER, 'gpt-4o-mini']]);
    assert.equal(m?.clearRouteCache, true);
    const st = store.get('id-1');
    assert.equal(st?.routeName, 'gpt');
    assert.equal(st?.stream, false);
    assert.equal(st?.forcedUsage, false);
  });

  it("removes a client's own backend pin: only a provider-kept response is pinned", async () => {
    const x = exchange();
    await step(x.ex, () =>
      x.ex.requestHeaders(
        chatRequest({ ':path': '/v1/chat/completions', [WIRE.backendHeader]: 'claude' }),
      ),
    );
    const o = await step(x.ex, () =>
      x.ex.requestBody(body({ model: 'gpt-4o-mini', messages: [] })),
    );
    const m = o.kind === 'continue' ? o.mutation : undefined;
    assert.deepEqual(m?.removeHeaders, [WIRE.backendHeader]);
    assert.equal(m?.clearRouteCache, true);
  });

  it('routes by prefix and marks forced usage for streams that did not ask for it', async () => {
    const { store } = await send({ model: 'gpt-5-nano', stream: true, messages: [] });
    assert.equal(store.get('id-1')?.routeName, 'gpt');
    assert.equal(store.get('id-1')?.forcedUsage, true);
    const asked = await send({
      model: 'gpt-5-nano',
      stream: true,
      stream_options: { include_usage: true },
      messages: [],
    });
    assert.equal(asked.store.get('id-1')?.forcedUsage, false);
  });

  const bad: [string, string | Buffer, number, string][] = [
    ['malformed JSON', '{"model": "gpt-4o-mini", "messages": [', 400, 'invalid_json'],
    ['a JSON array', '[1,2]', 400, 'invalid_request'],
    ['a JSON string', '"hello"', 400, 'invalid_request'],
    ['no model', '{"messages": []}', 400, 'missing_model'],
    ['an empty model', '{"model": ""}', 400, 'missing_model'],
    ['a non-string model', '{"model": 42}', 400, 'missing_model'],
    ['an unknown model', '{"model": "llama-9"}', 404, 'model_not_found'],
    [
      'non-UTF-8 bytes',
      Buffer.from([0x7b, 0x22, 0x6d, 0xff, 0xfe, 0x22, 0x7d]),
      400,
      'invalid_encoding',
    ],
    [
      'a body over the limit',
      JSON.stringify({ model: 'gpt-4o-mini', pad: 'x'.repeat(4096) }),
      413,
      'request_too_large',
    ],
    // What body-scan.ts leaves to JSON.parse and the duplicate-key check: the same refusals.
    ['a duplicate key', '{"model": "gpt-4o-mini", "model": "llama-9"}', 400, 'duplicate_key'],
    [
      'a duplicate key written with an escape',
      '{"model": "a", "mod\\u0065l": "b"}',
      400,
      'duplicate_key',
    ],
    [
      'a duplicate nested key',
      '{"model": "gpt-4o-mini", "m": [{"a": 1, "a": 2}]}',
      400,
      'duplicate_key',
    ],
    [
      'a raw control character in a string',
      '{"model": "gpt-4o-mini", "c": "a\u0001b"}',
      400,
      'invalid_json',
    ],
    ['a trailing comma', '{"model": "gpt-4o-mini",}', 400, 'invalid_json'],
    ['a leading zero', '{"model": "gpt-4o-mini", "n": 01}', 400, 'invalid_json'],
    ['a bad escape', '{"model": "gpt-4o-mini", "c": "\\x41"}', 400, 'invalid_json'],
    ['trailing bytes', '{"model": "gpt-4o-mini"} x', 400, 'invalid_json'],
    [
      'a template on a route without templates',
      '{"model": "gpt-4o-mini", "sluice_template": {}}',
      400,
      'invalid_request',
    ],
  ];
  for (const [what, b, status, code] of bad) {
    it(`answers ${what} with ${status} ${code}`, async () => {
      const { outcome, store } = await send(b);
      const v = verdictOf(outcome);
      assert.equal(v.status, status);
      const parsed = jsonOf(v);
      assert.equal(parsed.error.code, code);
      assert.equal(
        parsed.error.type,
        status === 404 ? 'invalid_request_error' : 'invalid_request_error',
      );
      assert.equal(header(v.headers, 'x-sluice-error-code'), code);
      assert.equal(store.size, 0);
    });
  }

  it('reads the routing fields as JSON.parse does, whether or not the body is scanned', async () => {
    const wide: Record<string, unknown> = {};
    for (let i = 0; i < 40; i++) wide[`k${i}`] = i;
    let deep: unknown = 'leaf';
    for (let i = 0; i < 100; i++) deep = [deep];
    const bodies: [string, string][] = [
      // An escape in the model's value; scanned.
      ['escaped value', '{"model": "gpt\\u002d4o-mini", "stream": true, "messages": []}'],
      // Wider and deeper than the scan takes: JSON.parse decides.
      ['wide', JSON.stringify({ model: 'gpt-4o-mini', stream: true, ...wide })],
      ['deep', JSON.stringify({ model: 'gpt-4o-mini', stream: true, deep })],
      ['escaped key', '{"mod\\u0065l": "gpt-4o-mini", "stream": true}'],
    ];
    for (const [what, text] of bodies) {
      const { outcome, store } = await send(text);
      assert.equal(outcome.kind, 'continue', what);
      const st = store.get('id-1');
      assert.equal(st?.model, 'gpt-4o-mini', what);
      assert.equal(st?.stream, true, what);
      assert.equal(st?.forcedUsage, true, what);
      assert.deepEqual(st?.body, JSON.parse(text), what);
    }
  });

  it('never echoes body content in a JSON error', async () => {
    const { outcome } = await send('{"model": "gpt-4o-mini", "secret": "alice@example.com" ');
    assert.doesNotMatch(verdictOf(outcome).body, /alice/);
  });

  it('answers Anthropic-format errors on /v1/messages', async () => {
    const { outcome } = await send('{"model": "nope", "max_tokens": 5}', '/v1/messages');
    const v = verdictOf(outcome);
    assert.equal(v.status, 404);
    assert.deepEqual(jsonOf(v), {
      type: 'error',
      error: {
        type: 'not_found_error',
        message: 'The model "nope" does not exist or is not served by this gateway.',
        code: 'model_not_found',
      },
    });
  });

  it('joins a body that arrives in several messages when streamed', async () => {
    const x = exchange();
    x.ex.protocol({ request_body_mode: 'STREAMED' });
    await step(x.ex, () => x.ex.requestHeaders(chatRequest()));
    const text = JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'héllo' }],
    });
    const buf = Buffer.from(text);
    const cut = text.indexOf('é') + 1; // in the middle of the two-byte character
    assert.equal(
      (await step(x.ex, () => x.ex.requestBody(body(buf.subarray(0, cut), false)))).kind,
      'continue',
    );
    const o = await step(x.ex, () => x.ex.requestBody(body(buf.subarray(cut), true)));
    assert.equal(o.kind === 'continue' && o.mutation?.clearRouteCache, true);
    assert.equal(
      (x.store.get('id-1')?.body.messages as { content: string }[])[0]!.content,
      'héllo',
    );
  });
});

describe('router phase: access log', () => {
  it('writes one line per request without bodies or credentials', async () => {
    const x = exchange();
    await step(x.ex, () =>
      x.ex.requestHeaders(chatRequest({ authorization: 'Bearer sk-live-abcdef' })),
    );
    await step(x.ex, () =>
      x.ex.requestBody(
        body({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: 'my email is bob@example.com' }],
        }),
      ),
    );
    x.ex.responseHeaders(headers({ ':status': '200', 'content-type': 'application/json' }));
    await x.ex.responseBody(
      body({
        id: 'x',
        model: 'gpt-4o-mini-2024',
        usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
      }),
    );
    x.ex.finish('aborted');
    assert.equal(x.lines.length, 1);
    const line = JSON.parse(x.lines[0]!);
    assert.equal(line.event, 'request');
    assert.equal(line.route, 'gpt');
    assert.equal(line.response_model, 'gpt-4o-mini-2024');
    assert.equal(line.outcome, 'complete');
    assert.deepEqual(line.tokens, {
      input: 7,
      output: 3,
      cached_input: 0,
      reasoning: 0,
      total: 10,
      estimated: false,
    });
    assert.doesNotMatch(x.lines[0]!, /bob@example|sk-live/);
    assert.equal(x.store.size, 0, 'the request state is dropped when the request ends');
  });

  it('answers a plain JSON answer at once and a compressed one once decoded, both recorded', async () => {
    const answer = {
      id: 'x',
      model: 'gpt-4o-mini-2024',
      usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
    };
    for (const encoding of [undefined, 'gzip']) {
      const x = exchange();
      await step(x.ex, () => x.ex.requestHeaders(chatRequest({})));
      await step(x.ex, () =>
        x.ex.requestBody(
          body({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
        ),
      );
      x.ex.responseHeaders(
        headers({
          ':status': '200',
          'content-type': 'application/json',
          ...(encoding && { 'content-encoding': encoding }),
        }),
      );
      const raw = Buffer.from(JSON.stringify(answer));
      const o = x.ex.responseBody(body(encoding ? gzipSync(raw) : raw));
      // No promise (and no microtask) for a body that needs nothing awaited; the request is
      // recorded before its last answer goes out either way.
      assert.equal(o instanceof Promise, encoding !== undefined, String(encoding));
      const outcome = await o;
      assert.equal(x.lines.length, 1, String(encoding));
      assert.equal(JSON.parse(x.lines[0]!).tokens.total, 10);
      const sent = outcome.kind === 'continue' ? outcome.mutation?.body : undefined;
      // Decoded, the answer goes on as plain bytes; a plain one goes on untouched.
      assert.deepEqual(sent && JSON.parse(sent.toString()), encoding ? answer : undefined);
    }
  });

  it('records a rejected request with its error code', async () => {
    const x = exchange();
    const o = await step(x.ex, () =>
      x.ex.requestHeaders(headers({ ':method': 'POST', ':path': '/v2/x' })),
    );
    assert.equal(o.kind, 'respond');
    x.ex.finish('complete');
    const line = JSON.parse(x.lines[0]!);
    assert.equal(line.outcome, 'rejected');
    assert.equal(line.error_code, 'unknown_path');
    assert.equal(line.status, 404);
  });
});

describe('errors', () => {
  it('hides the message of anything that is not a SluiceError', () => {
    const { ex } = exchange();
    const v = verdictOf(ex.fail(new TypeError('secret internal detail at /srv/app.js:12')));
    assert.equal(v.status, 500);
    assert.doesNotMatch(v.body, /secret|srv/);
    assert.equal(jsonOf(v).error.type, 'server_error');
  });

  it('carries extra headers such as allow', () => {
    const { ex } = exchange();
    const v = verdictOf(
      ex.fail(new SluiceError('method_not_allowed', 'Use POST.', { headers: { allow: 'POST' } })),
    );
    assert.equal(header(v.headers, 'allow'), 'POST');
  });
});

describe('router phase: backends that cannot take the request', () => {
  const mixed = new RuntimeConfig(
    ExtprocConfig.parse({
      apiVersion: 'sluice.dev/extproc/v1',
      kind: 'ExtprocConfig',
      backends: [
        { name: 'openai', cluster: 'c-openai', provider: 'openai' },
        { name: 'claude', cluster: 'c-claude', provider: 'anthropic' },
        // Claude on Vertex: Anthropic's API, no embeddings either.
        {
          name: 'claude-vertex',
          cluster: 'c-claude-vertex',
          provider: 'gcp-vertex',
          gcp: { project: 'p', region: 'us-east5', publisher: 'anthropic' },
        },
      ],
      routes: [
        {
          name: 'mixed',
          models: [{ exact: 'm' }],
          backends: [{ name: 'claude' }, { name: 'openai', priority: 1 }],
        },
        {
          name: 'none',
          models: [{ exact: 'n' }],
          backends: [{ name: 'claude' }, { name: 'claude-vertex' }],
        },
      ],
    }),
    new Map(),
  );

  async function send(
    x: ReturnType<typeof exchange>,
    model: string,
    path = '/v1/chat/completions',
  ) {
    await step(x.ex, () => x.ex.requestHeaders(chatRequest({ ':path': path })));
    return step(x.ex, () => x.ex.requestBody(body({ model, messages: [] })));
  }

  it('refuses before routing when no backend of the route can take the caller’s request', async () => {
    const x = exchange(config);
    const v = verdictOf(await send(x, 'claude-sonnet-4', '/v1/embeddings'));
    assert.equal(v.status, 501);
    assert.equal(jsonOf(v).error.code, 'unsupported_backend');
    assert.equal(
      jsonOf(v).error.message,
      'This gateway cannot send OpenAI embeddings requests to an anthropic backend.',
    );
    assert.equal(x.store.size, 0, 'nothing is routed');
    const y = exchange(mixed);
    const w = verdictOf(await send(y, 'n', '/v1/embeddings'));
    assert.match(jsonOf(w).error.message, /to anthropic or gcp-vertex backends\.$/);
    // Chat completions translate to Anthropic Messages: the route serves them.
    assert.equal((await send(exchange(config), 'claude-sonnet-4')).kind, 'continue');
  });

  it('asks for identity before it says anything about the route’s providers', async () => {
    const key = 'sk-sluice-router-test';
    const guarded = new RuntimeConfig(
      ExtprocConfig.parse({
        apiVersion: 'sluice.dev/extproc/v1',
        kind: 'ExtprocConfig',
        backends: [{ name: 'claude', cluster: 'c-claude', provider: 'anthropic' }],
        routes: [
          {
            name: 'claude',
            models: [{ exact: 'claude-sonnet-4' }],
            backends: [{ name: 'claude' }],
            governance: 'keys',
          },
        ],
        consumers: [{ name: 'ann', keyHashes: [createHash('sha256').update(key).digest('hex')] }],
        policies: [{ name: 'keys', identity: { keys: {} } }],
      }),
      new Map(),
    );
    const anonymous = exchange(guarded);
    const v = verdictOf(await send(anonymous, 'claude-sonnet-4'));
    assert.equal(v.status, 401);
    assert.doesNotMatch(v.body, /anthropic/);
    // The refusal's log line still names the policy that refused it.
    anonymous.ex.finish('complete');
    const line = JSON.parse(anonymous.lines.at(-1)!) as Record<string, unknown>;
    assert.equal(line.governance_policy, 'keys');
    assert.equal(line.error_code, 'unauthenticated');
    const known = exchange(guarded);
    await step(known.ex, () =>
      known.ex.requestHeaders(
        chatRequest({ ':path': '/v1/embeddings', authorization: `Bearer ${key}` }),
      ),
    );
    const w = verdictOf(
      await step(known.ex, () =>
        known.ex.requestBody(body({ model: 'claude-sonnet-4', input: 'x' })),
      ),
    );
    assert.equal(w.status, 501);
  });

  it('lets a route through when one of its backends can take it', async () => {
    const x = exchange(mixed);
    assert.equal((await send(x, 'm')).kind, 'continue');
    const a = exchange(mixed);
    assert.equal((await send(a, 'm', '/v1/messages')).kind, 'continue');
  });

  it('an upstream-chain reply (the refused attempt, Envoy 1.37+) passes the response phase as is', async () => {
    // The upstream phase's immediate response reaches the router filter's response phase: it is
    // the caller's error already, and the request counts as answered (nothing charged).
    const x = exchange(mixed);
    await send(x, 'm', '/v1/messages');
    const o = x.ex.responseHeaders(
      headers({ ':status': '501', 'x-sluice-error-code': 'unsupported_backend' }),
    );
    assert.equal(o.kind, 'continue');
    x.ex.finish('complete');
    const line = JSON.parse(x.lines[0]!);
    assert.equal(line.status, 501);
  });
});
