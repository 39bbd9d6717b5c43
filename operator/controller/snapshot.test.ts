import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AIPolicy, AIRoute, Resources } from '../api/types.js';
import { compile } from '../compile/index.js';
import { testEncoder } from '../xds/testing/fixtures.js';
import { decodeAny } from '../envoy-api/ads-client.js';
import { CLUSTER, ENDPOINT, EXTPROC_CONFIG, LISTENER, ROUTE } from '../xds/type-urls.js';
import { canonicalJson, desiredState, footprints } from './snapshot.js';

function route(name: string, backend: AIRoute['spec']['backends'][number]): AIRoute {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'ns', generation: 1 },
    spec: { models: [{ exact: name }], backends: [backend] },
  };
}

const policy: AIPolicy = {
  apiVersion: 'sluice.dev/v1alpha1',
  kind: 'AIPolicy',
  metadata: { name: 'p', namespace: 'ns', generation: 1 },
  spec: { targetRefs: [{ name: 'ext' }], mode: 'shadow' },
};

function resources(key: string, ip = '10.0.0.1'): Resources {
  return {
    routes: [
      route('ext', {
        name: 'openai',
        provider: 'openai',
        endpoint: { url: 'https://api.openai.com/v1' },
        credential: { secretRef: { name: 'keys' } },
      }),
      route('local', {
        name: 'vllm',
        provider: 'openai-compatible',
        endpoint: { service: { name: 'vllm', port: 80 } },
      }),
      route('broken', {
        name: 'x',
        provider: 'openai',
        endpoint: { url: 'https://api.openai.com/v1' },
        credential: { secretRef: { name: 'absent' } },
      }),
    ],
    policies: [policy],
    secrets: [{ metadata: { name: 'keys', namespace: 'ns' }, data: { apiKey: key } }],
    endpoints: [
      { namespace: 'ns', service: 'vllm', port: 80, addresses: [{ ip, port: 8000, ready: true }] },
    ],
  };
}

void describe('desiredState', () => {
  const encoder = testEncoder();

  it('serves every Envoy type and the extproc config, versioned by content', () => {
    const a = desiredState(compile(resources('k1')), encoder);
    const b = desiredState(compile(resources('k1')), encoder);
    assert.equal(a.version, b.version);
    assert.equal(a.extproc.version, b.extproc.version);
    assert.deepEqual(
      [...a.snapshot.resources.keys()].sort(),
      [CLUSTER, ENDPOINT, EXTPROC_CONFIG, LISTENER, ROUTE].sort(),
    );
    const any = a.snapshot.resources.get(EXTPROC_CONFIG)!.get('extproc')!;
    const served = decodeAny(any);
    assert.equal(served.version, a.extproc.version);
    assert.equal(JSON.parse(served.json as string).version, a.extproc.version);
  });

  it('changes the extproc version, and only it, when a credential rotates', () => {
    const a = desiredState(compile(resources('k1')), encoder);
    const b = desiredState(compile(resources('k2')), encoder);
    assert.notEqual(a.extproc.version, b.extproc.version);
    assert.notEqual(a.version, b.version);
    const clusters = (d: typeof a) =>
      [...d.snapshot.resources.get(CLUSTER)!.values()].map((x) =>
        Buffer.from(x.value).toString('hex'),
      );
    assert.deepEqual(clusters(a), clusters(b));
  });

  it('changes the endpoint assignment when an EndpointSlice moves', () => {
    const a = desiredState(compile(resources('k1', '10.0.0.1')), encoder);
    const b = desiredState(compile(resources('k1', '10.0.0.2')), encoder);
    const cla = (d: typeof a) =>
      decodeAny(d.snapshot.resources.get(ENDPOINT)!.get('route/ns/local/rule/0')!);
    assert.match(JSON.stringify(cla(a)), /10\.0\.0\.1/);
    assert.match(JSON.stringify(cla(b)), /10\.0\.0\.2/);
  });

  it('maps accepted objects to the resources that carry them', () => {
    const fp = footprints(compile(resources('k1')));
    assert.deepEqual(fp.get('AIRoute/ns/ext'), {
      envoy: [
        { typeUrl: CLUSTER, name: 'route/ns/ext/rule/0' },
        { typeUrl: LISTENER, name: 'sluice' },
        { typeUrl: ROUTE, name: 'sluice' },
      ],
      extproc: [{ typeUrl: EXTPROC_CONFIG, name: 'extproc' }],
    });
    assert.deepEqual(fp.get('AIRoute/ns/local')?.envoy.slice(0, 2), [
      { typeUrl: CLUSTER, name: 'route/ns/local/rule/0' },
      { typeUrl: ENDPOINT, name: 'route/ns/local/rule/0' },
    ]);
    assert.equal(fp.get('AIRoute/ns/broken'), undefined);
    assert.deepEqual(fp.get('AIPolicy/ns/p'), {
      envoy: [],
      extproc: [{ typeUrl: EXTPROC_CONFIG, name: 'extproc' }],
    });
  });

  it('marks a policy whose every target is withdrawn as applying to nothing', () => {
    const r = resources('k1');
    const onBroken: AIPolicy = {
      ...policy,
      metadata: { ...policy.metadata, name: 'q' },
      spec: { targetRefs: [{ name: 'broken' }], mode: 'shadow' },
    };
    const fp = footprints(compile({ ...r, policies: [...r.policies, onBroken] }));
    assert.equal(fp.get('AIPolicy/ns/p')?.idle, undefined);
    assert.match(fp.get('AIPolicy/ns/q')?.idle ?? '', /Every AIRoute it targets \(ns\/broken\)/);
  });
});

void describe('canonicalJson', () => {
  it('sorts keys at every level and keeps array order', () => {
    assert.equal(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] }), '{"a":[{"c":2,"d":1}],"b":1}');
  });
});
