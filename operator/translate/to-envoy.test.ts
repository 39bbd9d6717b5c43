import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AIRoute, AIRouteSpec, Resources } from '../api/types.js';
import { ExtprocConfig } from '../../extproc/config/contract.js';
import { translate } from './index.js';

type J = Record<string, any>;

function route(name: string, spec: Partial<AIRouteSpec>): AIRoute {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'ns' },
    spec: {
      models: [{ exact: name }],
      backends: [
        { name: 'a', provider: 'openai-compatible', endpoint: { url: 'https://a.example' } },
      ],
      ...spec,
    },
  };
}

function bundle(routes: AIRoute[], extra: Partial<Resources> = {}): Resources {
  return { routes, policies: [], secrets: [], endpoints: [], ...extra };
}

function entries(r: Resources): J[] {
  const config = translate(r).envoy.routes[0] as J;
  return config['virtual_hosts'][0]['routes'] as J[];
}

function modelOf(e: J): string {
  const m = (e['match']['headers'] ?? [])[0]?.['string_match'];
  return m ? (m['exact'] !== undefined ? `=${m['exact']}` : `^${m['prefix']}`) : '*';
}

void describe('toEnvoy: route order matches the extproc', () => {
  void it('exact models first, then prefixes longest first, then the catch-all', () => {
    const r = bundle([
      route('short', { models: [{ prefix: 'gpt-' }] }),
      route('long', { models: [{ prefix: 'gpt-4o' }, { exact: 'zeta' }] }),
      route('exact', { models: [{ exact: 'gpt-4o-mini' }] }),
    ]);
    assert.deepEqual(entries(r).map(modelOf), ['=gpt-4o-mini', '=zeta', '^gpt-4o', '^gpt-', '*']);
  });

  void it('closes a model whose rules are all conditional with a 404 of its own', () => {
    const r = bundle([
      route('r', {
        models: [{ prefix: 'gpt-' }],
        rules: [{ matches: [{ headers: [{ name: 'x-a', value: '1' }] }] }],
      }),
    ]);
    const e = entries(r);
    assert.deepEqual(e.map(modelOf), ['^gpt-', '^gpt-', '*']);
    assert.equal(e[1]!['direct_response']['status'], 404);
    assert.match(e[1]!['direct_response']['body']['inline_string'], /no_matching_rule/);
  });

  void it('stops after an unconditional rule: later rules cannot be reached for that model', () => {
    const r = bundle([route('r', { rules: [{}, { timeout: '1s' }] })]);
    assert.deepEqual(
      entries(r).map((e): unknown => e['name']),
      ['ns/r/rule/0/match/0/exact/r', 'sluice/no-model'],
    );
  });
});

void describe('toEnvoy: clusters', () => {
  const backends: AIRouteSpec['backends'] = [
    {
      name: 'p0a',
      provider: 'openai-compatible',
      endpoint: { url: 'https://a.example' },
      weight: 3,
      priority: 2,
    },
    {
      name: 'p0b',
      provider: 'openai-compatible',
      endpoint: { url: 'https://b.example:8443/x' },
      weight: 1,
      priority: 2,
    },
    {
      name: 'fb',
      provider: 'openai-compatible',
      endpoint: { service: { name: 'svc', port: 80 } },
      priority: 5,
    },
    {
      name: 'off',
      provider: 'openai-compatible',
      endpoint: { url: 'https://off.example' },
      weight: 0,
    },
  ];
  const r = bundle([route('r', { backends })], {
    endpoints: [
      {
        namespace: 'ns',
        service: 'svc',
        port: 80,
        addresses: [{ ip: '10.0.0.1', port: 8000, ready: true }],
      },
    ],
  });

  void it('one cluster per rule: a locality per backend, weights kept, priorities made dense', () => {
    const t = translate(r);
    const c = t.envoy.clusters.find((x) => x['name'] === 'route/ns/r/rule/0') as J;
    assert.equal(c['type'], 'STRICT_DNS');
    const loc = c['load_assignment']['endpoints'] as J[];
    assert.deepEqual(
      loc.map((l): unknown[] => [
        l['locality']['region'],
        l['load_balancing_weight'],
        l['priority'] ?? 0,
      ]),
      [
        ['ns/r/p0a', 3, 0],
        ['ns/r/p0b', 1, 0],
        ['ns/r/fb', 1, 1],
      ],
    );
    const fb = loc[2]!['lb_endpoints'][0];
    assert.equal(fb['endpoint']['address']['socket_address']['address'], '10.0.0.1');
    assert.deepEqual(fb['metadata']['filter_metadata'], { sluice: { backend: 'ns/r/fb' } });
    const b = loc[1]!['lb_endpoints'][0];
    assert.equal(b['endpoint']['hostname'], 'b.example:8443');
    assert.deepEqual(
      (c['transport_socket_matches'] as J[]).map((m): unknown[] => [
        m['name'],
        m['transport_socket']['typed_config']['sni'],
      ]),
      [
        ['ns/r/p0a', 'a.example'],
        ['ns/r/p0b', 'b.example'],
      ],
    );
  });

  void it('retries walk down the priorities only when there is more than one', () => {
    const policy = (x: Resources): J | undefined =>
      (entries(x)[0]!['route']['retry_policy'] as J)['retry_priority'] as J | undefined;
    assert.equal(policy(r)?.['typed_config']['update_frequency'], 1);
    assert.equal(policy(bundle([route('single', {})])), undefined);
  });

  void it('an all in-cluster rule is an EDS cluster with its assignment served separately', () => {
    const t = translate(
      bundle([route('r', { backends: [backends[2]!] })], {
        endpoints: [{ namespace: 'ns', service: 'svc', port: 80, addresses: [] }],
      }),
    );
    const c = t.envoy.clusters.find((x) => x['name'] === 'route/ns/r/rule/0') as J;
    assert.equal(c['type'], 'EDS');
    assert.equal(c['load_assignment'], undefined);
    assert.deepEqual(t.envoy.endpoints, [
      {
        cluster_name: 'route/ns/r/rule/0',
        endpoints: [
          { locality: { region: 'ns/r/fb' }, lb_endpoints: [], load_balancing_weight: 1 },
        ],
      },
    ]);
  });

  void it('the extproc document names every backend once and lists weight-0 ones for the route', () => {
    const t = translate(r, { version: '42' });
    const doc = t.extproc;
    assert.equal(doc.version, '42');
    assert.deepEqual(
      doc.backends.map((b) => [b.name, b.cluster, b.pathPrefix]),
      [
        ['ns/r/fb', 'route/ns/r/rule/0', undefined],
        ['ns/r/off', 'route/ns/r/rule/0', undefined],
        ['ns/r/p0a', 'route/ns/r/rule/0', undefined],
        ['ns/r/p0b', 'route/ns/r/rule/0', '/x'],
      ],
    );
    assert.deepEqual(doc.routes[0]!.backends, [
      { name: 'ns/r/off', weight: 0, priority: 0 },
      { name: 'ns/r/p0a', weight: 3, priority: 2 },
      { name: 'ns/r/p0b', weight: 1, priority: 2 },
      { name: 'ns/r/fb', weight: 1, priority: 5 },
    ]);
    const single = translate(bundle([route('one', {})])).extproc;
    assert.equal(ExtprocConfig.safeParse(single).success, true);
  });

  void it('is deterministic: the same input gives the same JSON', () => {
    assert.equal(JSON.stringify(translate(r)), JSON.stringify(translate(r)));
  });
});
