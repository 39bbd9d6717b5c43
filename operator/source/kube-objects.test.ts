import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compile } from '../compile/index.js';
import {
  decodeSecretData,
  references,
  serviceEndpoints,
  toPolicy,
  toRoute,
  toSlice,
} from './kube-objects.js';
import { routeObject } from './testing/fake-apiserver.js';

void describe('conversions', () => {
  it('decodes Secret data', () => {
    assert.deepEqual(
      decodeSecretData({ data: { apiKey: Buffer.from('sk-1').toString('base64') } }),
      {
        apiKey: 'sk-1',
      },
    );
  });

  it('hands compilation a policy whose spec it cannot compile as stored, so its routes are refused', () => {
    // The apiserver stores this (CEL does not compile RE2); the operator must not drop it, or
    // the route would be served with no key check and no masking.
    const stored = {
      metadata: { name: 'p', namespace: 'ns', generation: 4 },
      spec: {
        targetRefs: [{ name: 'chat' }],
        consumers: { required: true, keys: {} },
        masking: { customPatterns: [{ type: 'ZIP', pattern: '(?<=zip )\\d{5}' }] },
      },
    };
    const policy = toPolicy(stored)!;
    assert.deepEqual(policy.spec, stored.spec);
    const chat = toRoute({
      metadata: { name: 'chat', namespace: 'ns' },
      spec: {
        models: [{ exact: 'm' }],
        backends: [
          {
            name: 'b',
            provider: 'openai-compatible',
            endpoint: { url: 'https://llm.example.com' },
          },
        ],
      },
    })!;
    const t = compile({ routes: [chat], policies: [policy], secrets: [], endpoints: [] });
    assert.deepEqual(
      t.extproc.routes.map((r) => [r.name, r.refuse, r.governance, r.policy]),
      [['ns/chat', 'policy_invalid', undefined, undefined]],
    );
    const status = t.statuses.find((s) => s.kind === 'AIPolicy')!.conditions[0]!;
    assert.deepEqual([status.reason, status.observedGeneration], ['InvalidPolicy', 4]);
  });

  it('keeps what compilation reads of a route, frozen, without the last-applied copy', () => {
    const r = toRoute({
      metadata: {
        name: 'r',
        namespace: 'ns',
        generation: 3,
        resourceVersion: '9',
        creationTimestamp: new Date('2025-01-02T03:04:05Z'),
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}', keep: 'me' },
        managedFields: [{}],
      },
      spec: { models: [], backends: [] },
      status: { observedGeneration: 2 },
    })!;
    assert.equal(r.metadata.creationTimestamp, '2025-01-02T03:04:05.000Z');
    assert.deepEqual(r.metadata.annotations, { keep: 'me' });
    assert.equal(r.status?.observedGeneration, 2);
    assert.ok(Object.isFrozen(r.spec));
  });

  it('maps a Service port to the slice port of the same name', () => {
    const svc = {
      namespace: 'ns',
      name: 'vllm',
      ports: [
        { name: 'http', port: 80 },
        { name: 'metrics', port: 9090 },
      ],
    };
    const s1 = toSlice({
      metadata: { name: 'a', namespace: 'ns', labels: { 'kubernetes.io/service-name': 'vllm' } },
      addressType: 'IPv4',
      ports: [
        { name: 'metrics', port: 9100 },
        { name: 'http', port: 8000 },
      ],
      endpoints: [
        { addresses: ['10.0.0.1'], conditions: { ready: true }, zone: 'z1' },
        { addresses: ['10.0.0.2'], conditions: { ready: false } },
        { addresses: ['10.0.0.3'] },
      ],
    })!;
    const fqdn = toSlice({
      metadata: { name: 'b', namespace: 'ns', labels: { 'kubernetes.io/service-name': 'vllm' } },
      addressType: 'FQDN',
    });
    assert.equal(fqdn, undefined);
    assert.deepEqual(serviceEndpoints({ namespace: 'ns', service: 'vllm', port: 80 }, svc, [s1]), {
      namespace: 'ns',
      service: 'vllm',
      port: 80,
      addresses: [
        { ip: '10.0.0.1', port: 8000, ready: true, zone: 'z1' },
        { ip: '10.0.0.2', port: 8000, ready: false },
        { ip: '10.0.0.3', port: 8000, ready: true },
      ],
    });
    // The Service is there but not the port: said apart from a missing Service.
    assert.deepEqual(serviceEndpoints({ namespace: 'ns', service: 'vllm', port: 81 }, svc, [s1]), {
      namespace: 'ns',
      service: 'vllm',
      port: 81,
      addresses: [],
      portNotFound: { ports: [80, 9090] },
    });
    assert.equal(
      serviceEndpoints({ namespace: 'ns', service: 'vllm', port: 80 }, undefined, []),
      undefined,
    );
  });

  it('pairs a one-port Service with a one-port slice whatever the names', () => {
    const svc = { namespace: 'ns', name: 's', ports: [{ name: '', port: 80 }] };
    const s = toSlice({
      metadata: { name: 'a', namespace: 'ns', labels: { 'kubernetes.io/service-name': 's' } },
      ports: [{ name: 'web', port: 8080 }],
      endpoints: [{ addresses: ['10.0.0.1'] }],
    })!;
    assert.deepEqual(
      serviceEndpoints({ namespace: 'ns', service: 's', port: 80 }, svc, [s])?.addresses,
      [{ ip: '10.0.0.1', port: 8080, ready: true }],
    );
  });
});

void describe('references', () => {
  it('collects Secrets and Service ports per namespace', () => {
    const refs = references([
      toRoute(routeObject('a', 'r1', 's1'))!,
      toRoute(routeObject('b', 'r2', undefined, 'svc'))!,
    ]);
    assert.deepEqual([...refs.secrets], ['a/s1']);
    assert.deepEqual([...refs.services.keys()], ['b/svc:80']);
    assert.deepEqual([...refs.serviceNames], ['b/svc']);
  });
});
