import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { ExtprocConfig } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { gatewayKeeps, ownersOf } from './sessions.js';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { randomBytes } from 'node:crypto';
import { Telemetry } from '../telemetry/telemetry.js';
import { Sessions } from '../sessions/sessions.js';
import { MemorySessionStore } from '../sessions/store.js';
import { body, headers, jsonOf, verdictOf } from '../../test/support/messages.js';
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
