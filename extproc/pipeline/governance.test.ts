import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ExtprocConfig } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { headers, header, jsonOf, verdictOf } from '../../test/support/messages.js';
import { RequestStore } from './request-store.js';
import { RouterExchange } from './router.js';
import { admitCaller } from './governance.js';
import type { Outcome } from '../wire/mutation.js';

const sha = (k: string) => createHash('sha256').update(k).digest('hex');
const ALICE = 'sk-sluice-alice-key';
const BOB = 'sk-sluice-bob-key';
const CAROL = 'sk-sluice-carol-key';
const OLD = 'sk-sluice-old-key';

function runtime(over: { identityRequired?: boolean; mode?: 'enforce' | 'shadow' } = {}) {
  return new RuntimeConfig(
    ExtprocConfig.parse({
      apiVersion: 'sluice.dev/extproc/v1',
      kind: 'ExtprocConfig',
      backends: [
        { name: 'openai', cluster: 'c-openai', provider: 'openai' },
        { name: 'claude', cluster: 'c-claude', provider: 'anthropic' },
        { name: 'local', cluster: 'c-local', provider: 'openai-compatible' },
      ],
      consumers: [
        { name: 'alice', team: 'red', keyHashes: [sha(ALICE)] },
        { name: 'bob', team: 'blue', keyHashes: [sha(BOB)] },
        { name: 'carol', team: 'blue', keyHashes: [sha(CAROL)] },
        { name: 'old', keyHashes: [sha(OLD)], expiresAt: '2020-01-01T00:00:00Z' },
      ],
      policies: [
        {
          name: 'gov',
          mode: over.mode ?? 'enforce',
          identity: { required: over.identityRequired ?? true, keys: {} },
          access: {
            rules: [
              {
                name: 'no-claude-for-bob',
                effect: 'deny',
                consumers: ['bob'],
                models: ['claude-*'],
              },
              {
                name: 'no-opus-for-blue',
                effect: 'deny',
                models: ['claude-opus'],
                teams: ['blue'],
              },
            ],
          },
        },
      ],
      routes: [
        {
          name: 'gpt',
          models: [{ exact: 'gpt-4o-mini' }],
          backends: [{ name: 'openai' }],
          governance: 'gov',
        },
        {
          name: 'claude',
          models: [{ exact: 'claude-sonnet' }, { exact: 'claude-opus' }],
          backends: [{ name: 'claude' }],
          governance: 'gov',
        },
        { name: 'public', models: [{ exact: 'llama-local' }], backends: [{ name: 'local' }] },
      ],
    }),
    new Map(),
  );
}

function list(cfg: RuntimeConfig, extra: Record<string, string>, path = '/v1/models') {
  const lines: string[] = [];
  const telemetry = new Telemetry(
    new Registry(),
    pino({ level: 'info' }, { write: (s: string) => lines.push(s) }),
  );
  const ex = new RouterExchange({
    config: cfg,
    store: new RequestStore(() => 0),
    telemetry,
    now: () => 0,
    newId: () => 'id-1',
    wallNow: () => Date.parse('2026-03-31T12:00:00Z'),
  });
  let out: Outcome;
  try {
    // The model list is answered at once (only stored responses are looked up, asynchronously).
    out = ex.requestHeaders(
      headers({ ':method': 'GET', ':path': path, ...extra }, true),
    ) as Outcome;
  } catch (err) {
    out = ex.fail(err);
  }
  ex.finish('complete');
  const v = verdictOf(out);
  const access = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    status: v.status,
    body: jsonOf(v),
    verdict: v,
    log: access.find((l) => l.event === 'request'),
  };
}

const ids = (b: { data: { id: string }[] }) => b.data.map((m) => m.id);
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

describe('/v1/models under governance', () => {
  it('answers 401 in the OpenAI format without a valid identity, naming no model', () => {
    for (const extra of [{}, bearer('sk-sluice-unknown'), bearer(OLD)]) {
      const r = list(runtime(), extra);
      assert.equal(r.status, 401);
      assert.equal(r.body.error.type, 'authentication_error');
      assert.equal(r.body.error.code, 'unauthenticated');
      assert.doesNotMatch(JSON.stringify(r.body), /gpt|claude|llama/);
    }
  });

  it('answers 401 in the Anthropic format to the Anthropic SDK', () => {
    const r = list(runtime(), { 'anthropic-version': '2023-06-01' });
    assert.equal(r.status, 401);
    assert.equal(r.body.type, 'error');
    assert.equal(r.body.error.type, 'authentication_error');
  });

  it('lists only the models the caller may use; deny rules hide them', () => {
    const alice = list(runtime(), bearer(ALICE));
    assert.equal(alice.status, 200);
    assert.deepEqual(ids(alice.body), [
      'gpt-4o-mini',
      'claude-sonnet',
      'claude-opus',
      'llama-local',
    ]);
    const bob = list(runtime(), { 'x-api-key': BOB });
    assert.deepEqual(ids(bob.body), ['gpt-4o-mini', 'llama-local']);
    // The answer is the caller's own view: nothing says that other consumers see more.
    assert.doesNotMatch(JSON.stringify(bob.body), /alice|claude|red|rule/);
    assert.equal(bob.log?.consumer, 'bob');
    assert.equal(bob.log?.team, 'blue');
    const carol = list(runtime(), bearer(CAROL));
    assert.deepEqual(ids(carol.body), ['gpt-4o-mini', 'claude-sonnet', 'llama-local']);
  });

  it('answers a hidden model like an unknown one, and a visible one normally', () => {
    const hidden = list(runtime(), bearer(BOB), '/v1/models/claude-sonnet');
    assert.equal(hidden.status, 404);
    assert.equal(hidden.body.error.code, 'model_not_found');
    const unknown = list(runtime(), bearer(BOB), '/v1/models/no-such-model');
    assert.deepEqual(hidden.body.error.type, unknown.body.error.type);
    const seen = list(runtime(), bearer(ALICE), '/v1/models/claude-sonnet');
    assert.equal(seen.status, 200);
    assert.equal(seen.body.id, 'claude-sonnet');
    const anonymous = list(runtime(), {}, '/v1/models/llama-local');
    assert.equal(anonymous.status, 401, 'without identity nothing is answered, not even 404');
  });

  it('leaves the list unchanged when no route requires identity', () => {
    const cfg = runtime({ identityRequired: false });
    const anon = list(cfg, {});
    assert.equal(anon.status, 200);
    assert.deepEqual(ids(anon.body), [
      'gpt-4o-mini',
      'claude-sonnet',
      'claude-opus',
      'llama-local',
    ]);
    assert.equal(anon.log?.consumer, undefined);
    // An identified caller still sees its own view, and a key that is not valid is refused, as
    // it would be on any other endpoint.
    assert.deepEqual(ids(list(cfg, bearer(BOB)).body), ['gpt-4o-mini', 'llama-local']);
    assert.equal(list(cfg, bearer('sk-sluice-unknown')).status, 401);
  });

  it('only reports in shadow mode: every model stays listed', () => {
    const r = list(runtime({ mode: 'shadow' }), {});
    assert.equal(r.status, 200);
    assert.equal(ids(r.body).length, 4);
  });

  it('keeps the method check ahead of identity', () => {
    const lines: string[] = [];
    const ex = new RouterExchange({
      config: runtime(),
      store: new RequestStore(() => 0),
      telemetry: new Telemetry(new Registry(), pino({}, { write: (s: string) => lines.push(s) })),
      now: () => 0,
      newId: () => 'id',
    });
    let out: Outcome;
    try {
      out = ex.requestHeaders(
        headers({ ':method': 'DELETE', ':path': '/v1/models' }, true),
      ) as Outcome;
    } catch (err) {
      out = ex.fail(err);
    }
    const v = verdictOf(out);
    assert.equal(v.status, 405);
    assert.equal(header(v.headers, 'allow'), 'GET');
  });
});

describe('identity headers to strip', () => {
  // The header names are listed once per compiled policy: each policy strips its own, whatever
  // the request before it carried.
  const cfg = new RuntimeConfig(
    ExtprocConfig.parse({
      apiVersion: 'sluice.dev/extproc/v1',
      kind: 'ExtprocConfig',
      backends: [{ name: 'openai', cluster: 'c-openai', provider: 'openai' }],
      consumers: [{ name: 'alice', team: 'red', keyHashes: [sha(ALICE)] }],
      policies: [
        { name: 'default-headers', identity: { required: false, keys: {} } },
        { name: 'own-header', identity: { required: false, keys: { headers: ['x-team-key'] } } },
      ],
      routes: [
        {
          name: 'a',
          models: [{ exact: 'm-a' }],
          backends: [{ name: 'openai' }],
          governance: 'default-headers',
        },
        {
          name: 'b',
          models: [{ exact: 'm-b' }],
          backends: [{ name: 'openai' }],
          governance: 'own-header',
        },
      ],
    }),
    new Map(),
  );
  const strip = (route: string, h: Record<string, string>): string[] =>
    admitCaller({
      compiled: cfg.governanceFor(route)!,
      consumers: cfg.consumers,
      headers: new Map(Object.entries(h)),
      operation: 'chat',
      body: {},
      model: route === 'a' ? 'm-a' : 'm-b',
      route,
      budget: undefined,
      wallNow: 0,
    }).strip;

  it('strips the headers each policy reads that the request carries, and only those', () => {
    for (let round = 0; round < 2; round++) {
      assert.deepEqual(strip('a', { authorization: `Bearer ${ALICE}`, 'x-team-key': ALICE }), [
        'authorization',
      ]);
      assert.deepEqual(strip('a', { 'x-api-key': ALICE, authorization: `Bearer ${ALICE}` }), [
        'authorization',
        'x-api-key',
      ]);
      assert.deepEqual(strip('a', {}), []);
      assert.deepEqual(strip('b', { authorization: `Bearer ${ALICE}`, 'x-team-key': ALICE }), [
        'x-team-key',
      ]);
      assert.deepEqual(strip('b', { 'x-api-key': ALICE }), []);
    }
  });
});
