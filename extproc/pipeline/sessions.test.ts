import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { ExtprocConfig, WIRE } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { gatewayKeeps, ownersOf } from './sessions.js';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { randomBytes } from 'node:crypto';
import { Telemetry } from '../telemetry/telemetry.js';
import { Sessions } from '../sessions/sessions.js';
import { MemorySessionStore } from '../sessions/store.js';
import { body, header, headers, jsonOf, verdictOf } from '../../test/support/messages.js';
import { planTurn, saveTurn } from '../sessions/responses.js';
import { DEFAULT_SESSIONS } from '../sessions/schema.js';
import { UpstreamExchange } from './upstream.js';
import { RequestStore } from './request-store.js';
import { RouterExchange } from './router.js';
import type { Outcome } from '../wire/mutation.js';

const sha = (k: string) => createHash('sha256').update(k).digest('hex');
const ALICE = 'sk-sluice-alice-sessions';

const cfg = new RuntimeConfig(
  ExtprocConfig.parse({
    apiVersion: 'sluice.dev/extproc/v1',
    kind: 'ExtprocConfig',
    backends: [
      { name: 'openai', cluster: 'c-openai', provider: 'openai' },
      { name: 'azure', cluster: 'c-azure', provider: 'azure-openai', azure: { apiVersion: 'v1' } },
      { name: 'claude', cluster: 'c-claude', provider: 'anthropic' },
      { name: 'local', cluster: 'c-local', provider: 'openai-compatible' },
    ],
    consumers: [{ name: 'alice', keyHashes: [sha(ALICE)] }],
    policies: [
      { name: 'keys', identity: { required: true, keys: {} } },
      { name: 'keys-too', identity: { required: false, keys: {} } },
    ],
    routes: [
      {
        name: 'gpt',
        models: [{ exact: 'gpt' }],
        backends: [{ name: 'openai' }, { name: 'azure' }],
        governance: 'keys',
      },
      {
        name: 'claude',
        models: [{ exact: 'claude' }],
        backends: [{ name: 'claude' }],
        governance: 'keys-too',
      },
      {
        name: 'mixed',
        models: [{ exact: 'mixed' }],
        backends: [{ name: 'openai' }, { name: 'local' }],
      },
    ],
  }),
  new Map(),
);

describe('sessions in the request path', () => {
  it('keeps state at the gateway when some backend of the route keeps none', () => {
    const route = (n: string) => cfg.routes.find((r) => r.name === n)!;
    assert.equal(gatewayKeeps(cfg, route('gpt')), false);
    assert.equal(gatewayKeeps(cfg, route('claude')), true);
    assert.equal(gatewayKeeps(cfg, route('mixed')), true);
  });

  it('finds the caller under every governance policy, once', () => {
    const owners = ownersOf(cfg, new Map([['authorization', `Bearer ${ALICE}`]]), Date.now());
    assert.deepEqual(owners, [{ method: 'key', consumer: 'alice' }]);
  });

  it('is 401 for a key no policy accepts, and no one for a caller without a credential', () => {
    assert.throws(
      () => ownersOf(cfg, new Map([['authorization', 'Bearer sk-sluice-nope']]), Date.now()),
      (e: unknown) => e instanceof SluiceError && e.status === 401,
    );
    // The required policy refuses, the optional one lets an anonymous caller in: 401 as well,
    // since nothing identified the caller and a credential is what it lacks.
    assert.throws(
      () => ownersOf(cfg, new Map(), Date.now()),
      (e: unknown) => e instanceof SluiceError && e.status === 401,
    );
  });
});

describe('stored resources in the router phase', () => {
  const sessions = new Sessions({
    store: new MemorySessionStore({ maxBytes: 1 << 20, now: () => 0 }),
    key: randomBytes(32),
    wallNow: () => 0,
  });
  function exchange() {
    return new RouterExchange({
      config: cfg,
      store: new RequestStore(() => 0),
      telemetry: new Telemetry(new Registry(), pino({ level: 'silent' })),
      now: () => 0,
      newId: () => 'id',
      sessions,
    });
  }
  async function answer(
    method: string,
    path: string,
    json?: object,
  ): Promise<{ status: number; body: any }> {
    const ex = exchange();
    const h = { ':method': method, ':path': path, authorization: `Bearer ${ALICE}` };
    let out: Outcome;
    try {
      out = await ex.requestHeaders(
        headers(json ? { ...h, 'content-type': 'application/json' } : h, json === undefined),
      );
      if (json && out.kind === 'continue') out = await ex.requestBody(body(json));
    } catch (err) {
      out = ex.fail(err);
    }
    const v = verdictOf(out);
    return { status: v.status, body: jsonOf(v) };
  }

  it('answers from the store, in OpenAI format, with the methods each path takes', async () => {
    const missing = await answer('GET', '/v1/responses/resp_nope');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'response_not_found');
    assert.equal((await answer('PUT', '/v1/responses/resp_nope')).status, 405);
    assert.equal((await answer('DELETE', '/v1/responses/resp_nope/input_items')).status, 405);
    const created = await answer('POST', '/v1/conversations', { metadata: { a: 'b' } });
    assert.equal(created.status, 200);
    assert.match(created.body.id, /^conv_/);
    const got = await answer('GET', `/v1/conversations/${created.body.id}?x=1`);
    assert.deepEqual(got.body.metadata, { a: 'b' });
    const items = await answer('GET', `/v1/conversations/${created.body.id}/items?limit=0`);
    assert.equal(items.status, 400);
    assert.equal(items.body.error.param, 'limit');
    assert.equal((await answer('GET', `/v1/conversations/${created.body.id}/items/x`)).status, 404);
    const bad = await answer('POST', '/v1/conversations', { metadata: 'no' });
    assert.equal(bad.status, 400);
  });
});

describe('a response its provider keeps, asked for through the gateway', () => {
  const BOB = 'sk-sluice-bob-sessions';
  const config = (routes: object[], access?: object) =>
    new RuntimeConfig(
      ExtprocConfig.parse({
        apiVersion: 'sluice.dev/extproc/v1',
        kind: 'ExtprocConfig',
        backends: [
          {
            name: 'ns/gpt/openai',
            cluster: 'c1',
            provider: 'openai',
            credential: { value: 'sk-a' },
          },
          {
            name: 'ns/gpt/spare',
            cluster: 'c1',
            provider: 'openai',
            credential: { value: 'sk-b' },
          },
          { name: 'ns/gpt/claude', cluster: 'c1', provider: 'anthropic' },
        ],
        consumers: [
          { name: 'alice', keyHashes: [sha(ALICE)] },
          { name: 'bob', keyHashes: [sha(BOB)] },
        ],
        policies: [{ name: 'keys', identity: { required: true, keys: {} }, ...access }],
        routes,
      }),
      new Map([
        ['ns/gpt/openai', 'sk-a'],
        ['ns/gpt/spare', 'sk-b'],
      ]),
    );
  const gpt = {
    name: 'ns/gpt',
    models: [{ exact: 'gpt' }],
    backends: [{ name: 'ns/gpt/openai' }, { name: 'ns/gpt/spare' }],
    governance: 'keys',
  };
  const alice = { method: 'key', consumer: 'alice' };

  async function world(cfg = config([gpt])) {
    const sessions = new Sessions({
      store: new MemorySessionStore({ maxBytes: 1 << 20, now: () => 0 }),
      key: randomBytes(32),
      wallNow: () => 0,
    });
    const plan = await planTurn({
      sessions,
      policy: DEFAULT_SESSIONS,
      body: { model: 'gpt', input: 'hi' },
      owner: alice,
      route: 'ns/gpt',
      gatewayKeeps: false,
    });
    const at = { route: 'ns/gpt', backend: 'ns/gpt/spare', model: 'gpt' };
    await saveTurn(sessions, DEFAULT_SESSIONS, plan, at, { id: 'resp_kept', object: 'response' });
    const store = new RequestStore(() => 0);
    let n = 0;
    const exchange = (c = cfg) =>
      new RouterExchange({
        config: c,
        store,
        telemetry: new Telemetry(new Registry(), pino({ level: 'silent' })),
        now: () => 0,
        newId: () => `id-${++n}`,
        sessions,
      });
    return { sessions, store, exchange };
  }

  async function ask(ex: RouterExchange, method: string, path: string, key?: string) {
    const h: Record<string, string> = { ':method': method, ':path': path };
    if (key) h.authorization = `Bearer ${key}`;
    try {
      return await ex.requestHeaders(headers(h, true));
    } catch (err) {
      return ex.fail(err);
    }
  }

  const pinned = (o: Outcome) => {
    assert.equal(o.kind, 'continue');
    return o.kind === 'continue' ? o.mutation : undefined;
  };

  it('sends its owner on to the backend that answered it, query intact, charging nothing', async () => {
    const { store, exchange } = await world();
    const m = pinned(
      await ask(exchange(), 'GET', '/v1/responses/resp_kept/input_items?limit=2&order=asc', ALICE),
    );
    assert.deepEqual(m?.setHeaders, [
      ['x-sluice-request-id', 'id-1'],
      [WIRE.backendHeader, 'ns/gpt/spare'],
    ]);
    assert.equal(m?.clearRouteCache, true);
    const st = store.get('id-1')!;
    assert.deepEqual(st.resource, {
      backend: 'ns/gpt/spare',
      call: '/responses/resp_kept/input_items',
      query: 'limit=2&order=asc',
    });
    assert.equal(st.governance, undefined);

    // The upstream phase: path and that backend's credential, the caller's key stripped.
    const up = new UpstreamExchange({ config: config([gpt]), store });
    const o = await up.requestHeaders(
      headers(
        {
          ':method': 'GET',
          ':path': '/x',
          'x-sluice-request-id': 'id-1',
          authorization: `Bearer ${ALICE}`,
          [WIRE.backendHeader]: 'ns/gpt/spare',
        },
        true,
      ),
      backendAttributes('ns/gpt/spare'),
    );
    const um = pinned(o);
    assert.equal(
      header(um?.setHeaders, ':path'),
      '/v1/responses/resp_kept/input_items?limit=2&order=asc',
    );
    assert.equal(header(um?.setHeaders, 'authorization'), 'Bearer sk-b');
    assert.ok(um?.removeHeaders?.includes(WIRE.backendHeader));
    assert.equal(um?.body, undefined);
    assert.deepEqual(
      st.attempts.map((a) => a.backend),
      ['ns/gpt/spare'],
    );
  });

  it('pins a turn continuing it to that backend, and a client cannot pin its own', async () => {
    const { store, exchange } = await world();
    const ex = exchange();
    await ex.requestHeaders(
      headers({
        ':method': 'POST',
        ':path': '/v1/responses',
        'content-type': 'application/json',
        authorization: `Bearer ${ALICE}`,
        [WIRE.backendHeader]: 'ns/gpt/openai',
      }),
    );
    const o = await ex.requestBody(
      body({ model: 'gpt', previous_response_id: 'resp_kept', input: 'more' }),
    );
    const m = pinned(o);
    assert.equal(header(m?.setHeaders, WIRE.backendHeader), 'ns/gpt/spare');
    assert.ok(!(m?.removeHeaders ?? []).includes(WIRE.backendHeader));
    assert.equal(store.get('id-1')?.resource, undefined);
    // A new response: a client's own pin is removed, none is set.
    const fresh = exchange();
    await fresh.requestHeaders(
      headers({
        ':method': 'POST',
        ':path': '/v1/responses',
        'content-type': 'application/json',
        authorization: `Bearer ${ALICE}`,
        [WIRE.backendHeader]: 'ns/gpt/openai',
      }),
    );
    const f = pinned(await fresh.requestBody(body({ model: 'gpt', input: 'new' })));
    assert.equal(header(f?.setHeaders, WIRE.backendHeader), undefined);
    assert.ok(f?.removeHeaders?.includes(WIRE.backendHeader));
  });

  it('never sends it to another backend: the upstream phase refuses, unsent', async () => {
    const { store, exchange } = await world();
    pinned(await ask(exchange(), 'GET', '/v1/responses/resp_kept', ALICE));
    const up = new UpstreamExchange({ config: config([gpt]), store });
    let out: Outcome;
    try {
      out = await up.requestHeaders(
        headers({ ':method': 'GET', ':path': '/x', 'x-sluice-request-id': 'id-1' }, true),
        backendAttributes('ns/gpt/openai'),
      );
    } catch (err) {
      out = up.fail(err);
    }
    const v = verdictOf(out);
    assert.equal(v.status, 409);
    assert.equal(jsonOf(v).error.code, 'response_unreachable');
  });

  it('is 404 for another identity and for none, and nothing goes on', async () => {
    const { store, exchange } = await world();
    for (const key of [BOB, undefined]) {
      const v = verdictOf(await ask(exchange(), 'GET', '/v1/responses/resp_kept', key));
      assert.ok(v.status === 404 || v.status === 401, String(v.status));
      if (key) assert.equal(jsonOf(v).error.code, 'response_not_found');
    }
    assert.equal(store.size, 0);
  });

  it('is 409 response_unreachable when its route or backend is gone from the config', async () => {
    const { exchange } = await world();
    const elsewhere = { ...gpt, name: 'ns/other' };
    const dropped = { ...gpt, backends: [{ name: 'ns/gpt/openai' }] };
    for (const c of [config([elsewhere]), config([dropped])]) {
      const v = verdictOf(await ask(exchange(c), 'DELETE', '/v1/responses/resp_kept', ALICE));
      assert.equal(v.status, 409);
      assert.equal(jsonOf(v).error.code, 'response_unreachable');
      assert.equal(jsonOf(v).error.type, 'invalid_request_error');
    }
  });

  it("is 403 when the route's access rules no longer let the owner in", async () => {
    const { exchange } = await world();
    const c = config([gpt], {
      access: {
        rules: [
          { name: 'gpt-not-for-alice', effect: 'deny', consumers: ['alice'], models: ['gpt'] },
        ],
      },
    });
    const v = verdictOf(await ask(exchange(c), 'GET', '/v1/responses/resp_kept', ALICE));
    assert.equal(v.status, 403);
  });

  it('forgets the owner marker once the provider confirms a DELETE, not before', async () => {
    const { sessions, exchange } = await world();
    const del = async (status: number) => {
      const ex = exchange();
      pinned(await ask(ex, 'DELETE', '/v1/responses/resp_kept', ALICE));
      ex.responseHeaders(headers({ ':status': String(status) }));
      await ex.responseBody(body({ id: 'resp_kept', deleted: status === 200 }));
    };
    await del(500);
    assert.ok(await sessions.read(alice, 'response', 'resp_kept'));
    await del(200);
    assert.equal(await sessions.read(alice, 'response', 'resp_kept'), undefined);
    const v = verdictOf(await ask(exchange(), 'GET', '/v1/responses/resp_kept', ALICE));
    assert.equal(v.status, 404);
  });
});

function backendAttributes(backend: string) {
  return {
    'envoy.filters.http.ext_proc': {
      fields: { [WIRE.backendAttribute]: { stringValue: backend } },
    },
  };
}
