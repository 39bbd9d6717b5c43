import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExtprocConfig, type ExtprocConfigInput } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import {
  cacheKey,
  canonicalJson,
  KeyTooDeepError,
  routeConfigDigest,
  type KeyInput,
} from './key.js';

const base: KeyInput = {
  route: 'chat',
  config: 'c1',
  model: 'gpt-4o',
  api: 'openai',
  operation: 'chat',
  path: '/v1/chat/completions',
  scope: { kind: 'consumer', id: 'alice' },
  body: {
    model: 'gpt-4o',
    temperature: 0,
    messages: [{ role: 'user', content: 'Hello [EMAIL_1]' }],
  },
};

describe('cache key', () => {
  it('canonical JSON sorts keys at every depth and writes numbers one way', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: null } }),
      '{"a":{"c":null,"d":[2,{"y":2,"z":1}]},"b":1}',
    );
    assert.equal(
      canonicalJson(JSON.parse('{"t":1.0,"u":1e2,"v":-0,"w":0.50}')),
      '{"t":1,"u":100,"v":0,"w":0.5}',
    );
    assert.equal(canonicalJson('a"\n'), JSON.stringify('a"\n'));
  });

  it('the same request written differently has one key', () => {
    const reordered: KeyInput = {
      ...base,
      body: JSON.parse(
        '{"messages":[{"content":"Hello [EMAIL_1]","role":"user"}],"temperature":0.0,"model":"gpt-4o"}',
      ) as Record<string, unknown>,
    };
    assert.equal(cacheKey(reordered), cacheKey(base));
    assert.match(cacheKey(base), /^[0-9a-f]{64}$/);
  });

  it('how the answer is delivered does not change the key', () => {
    const streamed = {
      ...base,
      body: { ...base.body, stream: true, stream_options: { include_usage: true } },
    };
    assert.equal(cacheKey(streamed), cacheKey(base));
  });

  it('everything that changes the answer changes the key', () => {
    const k = cacheKey(base);
    const variants: Partial<KeyInput>[] = [
      { route: 'other' },
      { config: 'c2' },
      { model: 'gpt-4o-mini' },
      { api: 'anthropic' },
      { operation: 'completions' },
      { path: '/v1/completions' },
      { scope: { kind: 'consumer', id: 'bob' } },
      { scope: { kind: 'team', id: 'alice' } },
      { scope: { kind: 'route', id: '' } },
    ];
    const bodies: Record<string, unknown>[] = [
      { temperature: 0.2 },
      { top_p: 0.5 },
      { max_tokens: 10 },
      { n: 2 },
      { seed: 1 },
      { stop: ['x'] },
      { tools: [{ type: 'function', function: { name: 'f' } }] },
      { tool_choice: 'none' },
      { response_format: { type: 'json_object' } },
      { system: 'be brief' },
      { messages: [{ role: 'user', content: 'Hello [EMAIL_2]' }] },
      { unknown_field: true },
    ];
    for (const v of variants) assert.notEqual(cacheKey({ ...base, ...v }), k, JSON.stringify(v));
    for (const b of bodies)
      assert.notEqual(cacheKey({ ...base, body: { ...base.body, ...b } }), k, JSON.stringify(b));
  });

  it('parts cannot run into each other', () => {
    assert.notEqual(
      cacheKey({ ...base, route: 'a', config: 'bc' }),
      cacheKey({ ...base, route: 'ab', config: 'c' }),
    );
  });

  it('refuses a body nested past the bound instead of recursing', () => {
    let deep: unknown = 'x';
    for (let i = 0; i < 200; i++) deep = [deep];
    assert.throws(() => cacheKey({ ...base, body: { messages: deep } }), KeyTooDeepError);
  });
});

function config(over: Partial<ExtprocConfigInput> = {}, policy?: Record<string, unknown>) {
  const input: ExtprocConfigInput = {
    apiVersion: 'sluice.dev/extproc/v1',
    kind: 'ExtprocConfig',
    backends: [{ name: 'b', cluster: 'b', provider: 'openai', credential: { value: 'sk-1' } }],
    routes: [
      {
        name: 'chat',
        models: [{ exact: 'gpt-4o' }],
        backends: [{ name: 'b' }],
        policy: { name: 'p', cache: { ttlSeconds: 60, ...policy } },
      },
      { name: 'other', models: [{ exact: 'x' }], backends: [{ name: 'b' }] },
    ],
    ...over,
  };
  const parsed = ExtprocConfig.parse(input);
  return new RuntimeConfig(parsed, new Map([['b', 'sk-1']]));
}

describe('route config digest', () => {
  it('is stable for one config and equal across replicas given the same config', () => {
    assert.equal(routeConfigDigest(config(), 'chat'), routeConfigDigest(config(), 'chat'));
  });

  it('changes with the route policy, not with another route or a credential', () => {
    const d = routeConfigDigest(config(), 'chat');
    assert.notEqual(routeConfigDigest(config({}, { ttlSeconds: 61 }), 'chat'), d);
    const renamedOther = config({
      routes: [
        {
          name: 'chat',
          models: [{ exact: 'gpt-4o' }],
          backends: [{ name: 'b' }],
          policy: { name: 'p', cache: { ttlSeconds: 60 } },
        },
        { name: 'other', models: [{ exact: 'y' }], backends: [{ name: 'b' }] },
      ],
    });
    assert.equal(routeConfigDigest(renamedOther, 'chat'), d);
    const rotated = config({
      backends: [{ name: 'b', cluster: 'b', provider: 'openai', credential: { value: 'sk-2' } }],
    });
    assert.equal(routeConfigDigest(rotated, 'chat'), d);
  });
});
