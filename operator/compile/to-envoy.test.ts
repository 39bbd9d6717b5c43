import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AIRoute, AIRouteSpec, Resources } from '../api/types.js';
import { ExtprocConfig, WIRE } from '../../extproc/config/contract.js';
import { compile } from './index.js';
import type { IR, IRGovernance, IRJwtProvider } from './ir.js';
import { toEnvoy } from './to-envoy.js';

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
  const config = compile(r).envoy.routes[0] as J;
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
    assert.deepEqual(entries(r).map(modelOf), [
      '=gpt-4o-mini',
      '=zeta',
      '^gpt-4o',
      '^gpt-',
      '*',
      '*',
    ]);
  });

  void it('closes a model whose rules are all conditional with a 404 of its own', () => {
    const r = bundle([
      route('r', {
        models: [{ prefix: 'gpt-' }],
        rules: [{ matches: [{ headers: [{ name: 'x-a', value: '1' }] }] }],
      }),
    ]);
    const e = entries(r);
    assert.deepEqual(e.map(modelOf), ['^gpt-', '^gpt-', '^gpt-', '*', '*']);
    // The caller's format: Anthropic's error object on the Anthropic path, OpenAI's elsewhere.
    assert.deepEqual(e[1]!['match']['prefix'], '/v1/messages');
    assert.equal(e[1]!['direct_response']['status'], 404);
    const anthropic = JSON.parse(e[1]!['direct_response']['body']['inline_string']);
    assert.equal(anthropic.type, 'error');
    assert.equal(anthropic.error.type, 'not_found_error');
    assert.equal(anthropic.error.code, 'no_matching_rule');
    assert.deepEqual(e[2]!['match']['prefix'], '/');
    const openai = JSON.parse(e[2]!['direct_response']['body']['inline_string']);
    assert.equal(openai.error.type, 'invalid_request_error');
    assert.equal(openai.error.code, 'no_matching_rule');
  });

  void it('stops after an unconditional rule: later rules cannot be reached for that model', () => {
    const r = bundle([route('r', { rules: [{}, { timeout: '1s' }] })]);
    assert.deepEqual(
      entries(r).map((e): unknown => e['name']),
      ['ns/r/rule/0/match/0/exact/r', 'sluice/no-model/anthropic', 'sluice/no-model'],
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
    const t = compile(r);
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
    const t = compile(
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
    const t = compile(r, { version: '42' });
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
    const single = compile(bundle([route('one', {})])).extproc;
    assert.equal(ExtprocConfig.safeParse(single).success, true);
  });

  void it('is deterministic: the same input gives the same JSON', () => {
    assert.equal(JSON.stringify(compile(r)), JSON.stringify(compile(r)));
  });
});

void describe('toEnvoy: identity Envoy makes unforgeable', () => {
  const base: IR = compile(bundle([route('r', {})])).ir;
  const JWKS = '{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}';
  const remote = (
    uri: string,
    host: string,
    port: number,
    seconds: number,
  ): IRJwtProvider['jwks'] => ({
    kind: 'remote',
    uri,
    host,
    port,
    cacheDurationSeconds: seconds,
  });
  const providers: IRJwtProvider[] = [
    {
      name: 'a/inline',
      issuer: 'https://a.example',
      audiences: [],
      jwks: { kind: 'inline', json: JWKS },
    },
    {
      name: 'b/idp',
      issuer: 'https://idp.example',
      audiences: ['gateway', 'https://gw.example/'],
      jwks: remote('https://idp.example/keys', 'idp.example', 443, 300),
    },
    {
      name: 'c/idp-again',
      issuer: 'https://idp.example/other',
      audiences: [],
      jwks: remote('https://idp.example/other/keys', 'idp.example', 443, 60),
    },
    {
      name: 'd/port',
      issuer: 'https://idp.example:8443',
      audiences: [],
      jwks: remote('https://idp.example:8443/keys', 'idp.example', 8443, 1.5),
    },
  ];
  const governance = (g: Partial<IRGovernance>): IRGovernance => ({
    consumers: [],
    policies: [],
    jwtProviders: [],
    meshIdentity: false,
    ...g,
  });
  const hcmOf = (ir: IR): J =>
    (toEnvoy(ir).listeners[0] as J)['filter_chains'][0]['filters'][0]['typed_config'] as J;
  const filterNames = (ir: IR): string[] =>
    (hcmOf(ir)['http_filters'] as J[]).map((f) => f['name'] as string);

  void it('emits nothing new without issuers, mesh identity or a policy reading the payload', () => {
    const plain = JSON.stringify(toEnvoy(base));
    assert.equal(JSON.stringify(toEnvoy({ ...base, governance: governance({}) })), plain);
    const keysOnly = governance({ policies: [{ name: 'p', identity: { keys: {} } }] });
    assert.equal(JSON.stringify(toEnvoy({ ...base, governance: keysOnly })), plain);
    assert.deepEqual(filterNames(base), [WIRE.routerFilter, 'envoy.filters.http.router']);
    assert.equal(hcmOf(base)['forward_client_cert_details'], undefined);
  });

  void it('strips the payload header, then verifies JWTs, before the extproc', () => {
    const ir = { ...base, governance: governance({ jwtProviders: providers }) };
    assert.deepEqual(filterNames(ir), [
      'envoy.filters.http.header_mutation',
      'envoy.filters.http.jwt_authn',
      WIRE.routerFilter,
      'envoy.filters.http.router',
    ]);
    const [strip, jwt] = hcmOf(ir)['http_filters'] as J[];
    assert.deepEqual(strip!['typed_config'], {
      '@type':
        'type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation',
      mutations: { request_mutations: [{ remove: 'x-sluice-jwt-payload' }] },
    });
    const cfg = jwt!['typed_config'] as J;
    assert.equal(
      cfg['@type'],
      'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
    );
    assert.deepEqual(Object.keys(cfg['providers']), ['a/inline', 'b/idp', 'c/idp-again', 'd/port']);
    const common = {
      forward: false,
      from_headers: [{ name: 'authorization', value_prefix: 'Bearer ' }],
      forward_payload_header: WIRE.jwtPayloadHeader,
    };
    assert.deepEqual(cfg['providers']['a/inline'], {
      issuer: 'https://a.example',
      local_jwks: { inline_string: JWKS },
      ...common,
    });
    assert.deepEqual(cfg['providers']['b/idp'], {
      issuer: 'https://idp.example',
      audiences: ['gateway', 'https://gw.example/'],
      remote_jwks: {
        http_uri: {
          uri: 'https://idp.example/keys',
          cluster: 'jwks/idp.example:443',
          timeout: '5s',
        },
        cache_duration: '300s',
      },
      ...common,
    });
    assert.equal(cfg['providers']['d/port']['remote_jwks']['cache_duration'], '1.500s');
    assert.deepEqual(cfg['rules'], [
      {
        match: { prefix: '/' },
        requires: {
          requires_any: {
            requirements: [
              { provider_name: 'a/inline' },
              { provider_name: 'b/idp' },
              { provider_name: 'c/idp-again' },
              { provider_name: 'd/port' },
              { allow_missing_or_failed: {} },
            ],
          },
        },
      },
    ]);
  });

  void it('one TLS cluster per distinct JWKS host and port, sorted with the others', () => {
    const env = toEnvoy(
      { ...base, governance: governance({ jwtProviders: providers }) },
      { caFile: '/ca.pem', connectTimeoutMs: 2000 },
    );
    const names = env.clusters.map((c) => c['name'] as string);
    assert.deepEqual(names, [...names].sort());
    const jwks = env.clusters.filter((c) => (c['name'] as string).startsWith('jwks/')) as J[];
    assert.deepEqual(
      jwks.map((c): unknown => c['name']),
      ['jwks/idp.example:443', 'jwks/idp.example:8443'],
    );
    const c = jwks[1]!;
    assert.equal(c['type'], 'STRICT_DNS');
    assert.equal(c['connect_timeout'], '2s');
    assert.deepEqual(c['load_assignment']['endpoints'][0]['lb_endpoints'][0]['endpoint'], {
      address: { socket_address: { address: 'idp.example', port_value: 8443 } },
    });
    const tls = c['transport_socket']['typed_config'] as J;
    assert.equal(tls['sni'], 'idp.example');
    assert.deepEqual(tls['common_tls_context']['validation_context'], {
      trusted_ca: { filename: '/ca.pem' },
      match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: 'idp.example' } }],
    });
    // An external backend's TLS is the same shape, from the same helper.
    const rule = env.clusters.find((x) => x['name'] === 'route/ns/r/rule/0') as J;
    assert.deepEqual(
      rule['transport_socket_matches'][0]['transport_socket']['typed_config']['common_tls_context'],
      {
        validation_context: {
          trusted_ca: { filename: '/ca.pem' },
          match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: 'a.example' } }],
        },
      },
    );
  });

  void it('strips the payload header even without issuers when a policy reads it', () => {
    const g = governance({
      policies: [{ name: 'p', identity: { jwt: { header: WIRE.jwtPayloadHeader } } }],
    });
    const ir = { ...base, governance: g };
    assert.deepEqual(filterNames(ir), [
      'envoy.filters.http.header_mutation',
      WIRE.routerFilter,
      'envoy.filters.http.router',
    ]);
    assert.equal(toEnvoy(ir).clusters.length, toEnvoy(base).clusters.length);
  });

  void it('mesh identity sets XFCC from the client certificate URI SAN (SANITIZE_SET)', () => {
    const hcm = hcmOf({ ...base, governance: governance({ meshIdentity: true }) });
    assert.equal(hcm['forward_client_cert_details'], 'SANITIZE_SET');
    assert.deepEqual(hcm['set_current_client_cert_details'], { uri: true });
    assert.deepEqual(filterNames({ ...base, governance: governance({ meshIdentity: true }) }), [
      WIRE.routerFilter,
      'envoy.filters.http.router',
    ]);
  });

  void it('behind a mesh sidecar, mesh identity forwards the sidecar’s XFCC as it came', () => {
    const mesh = { ...base, governance: governance({ meshIdentity: true }) };
    const hcm = (toEnvoy(mesh, { clientCertTrust: 'sidecar' }).listeners[0] as J)[
      'filter_chains'
    ][0]['filters'][0]['typed_config'] as J;
    // On the sidecar's plaintext hop every other mode would remove the header.
    assert.equal(hcm['forward_client_cert_details'], 'ALWAYS_FORWARD_ONLY');
    assert.equal(hcm['set_current_client_cert_details'], undefined);
    assert.equal(
      JSON.stringify(toEnvoy(mesh, { clientCertTrust: 'listener' })),
      JSON.stringify(toEnvoy(mesh)),
      'listener is the default',
    );
  });

  void it('clientCertTrust changes nothing without mesh identity, and rejects unknown modes', () => {
    const g = governance({
      policies: [{ name: 'p', identity: { jwt: { header: WIRE.jwtPayloadHeader } } }],
    });
    const jwtOnly = { ...base, governance: g };
    assert.equal(
      JSON.stringify(toEnvoy(jwtOnly, { clientCertTrust: 'sidecar' })),
      JSON.stringify(toEnvoy(jwtOnly)),
    );
    assert.throws(
      () => toEnvoy(base, { clientCertTrust: 'mesh' as never }),
      /clientCertTrust must be one of listener, sidecar/,
    );
  });
});

void describe('toEnvoy: Envoy’s own replies and timeouts', () => {
  const hcm = (r: Resources): J => {
    const l = compile(r).envoy.listeners[0] as J;
    return l['filter_chains'][0]['filters'][0]['typed_config'] as J;
  };

  void it('shapes local replies per API; the extproc’s own (marked) come first, untouched', () => {
    const mappers = hcm(bundle([route('r', {})]))['local_reply_config']['mappers'] as J[];
    const first = mappers[0]!;
    assert.deepEqual(first['filter']['metadata_filter']['matcher']['filter'], 'sluice');
    assert.equal(first['filter']['metadata_filter']['match_if_key_not_found'], false);
    assert.equal(first['body_format_override'], undefined, 'left as the extproc wrote it');
    const codes = (api: 'anthropic' | 'openai') =>
      mappers
        .slice(1)
        .filter((m) => (m['filter']['and_filter'] !== undefined) === (api === 'anthropic'))
        .map((m) => m['headers_to_add'][0]['header']['value'] as string);
    const all = [
      'upstream_unavailable',
      'upstream_timeout',
      'model_not_found',
      'extproc_unavailable',
      'request_too_large',
    ];
    assert.deepEqual(codes('anthropic'), all);
    assert.deepEqual(codes('openai'), all);
    // Every Anthropic mapper precedes every OpenAI one (first match wins).
    const lastAnthropic = mappers.findLastIndex((m) => m['filter']['and_filter'] !== undefined);
    const firstOpenai = mappers.findIndex(
      (m, i) => i > 0 && m['filter']['and_filter'] === undefined,
    );
    assert.ok(lastAnthropic < firstOpenai);
    const anthropic = mappers[1]!;
    assert.equal(
      anthropic['filter']['and_filter']['filters'][0]['header_filter']['header']['string_match'][
        'prefix'
      ],
      '/v1/messages',
    );
    assert.equal(anthropic['body_format_override']['json_format']['type'], 'error');
  });

  void it('both ext_proc filters receive the extproc’s mark; code_details is not requested', () => {
    const r = compile(bundle([route('r', {})])).envoy;
    const router = hcm(bundle([route('r', {})]))['http_filters'].find(
      (f: J) => f['name'] === WIRE.routerFilter,
    )['typed_config'];
    assert.deepEqual(router['metadata_options'], { receiving_namespaces: { untyped: ['sluice'] } });
    assert.equal(router['response_attributes'], undefined);
    const cluster = r.clusters.find((c) => String(c['name']).startsWith('route/')) as J;
    const up =
      cluster['typed_extension_protocol_options'][
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions'
      ]['http_filters'][0]['typed_config'];
    assert.deepEqual(up['metadata_options'], { receiving_namespaces: { untyped: ['sluice'] } });
  });

  void it('a rule’s timeout is the route’s idle timeout; the whole-response timeout is off', () => {
    const e = entries(bundle([route('r', { timeout: '45s' })]))[0]!;
    assert.equal(e['route']['timeout'], '0s');
    assert.equal(e['route']['idle_timeout'], '45s');
  });
});

void describe('toEnvoy: session affinity', () => {
  void it('a route with sessionAffinity: ring hash clusters and a hash of the affinity header; others unchanged', () => {
    const r = bundle([
      route('sticky', {
        sessionAffinity: { header: 'x-conversation' },
        rules: [{ matches: [{ headers: [{ name: 'x-tier', value: 'gold' }] }] }, {}],
      }),
      route('plain', {}),
    ]);
    const out = compile(r);
    const clusters = out.envoy.clusters as J[];
    const sticky = clusters.filter((c) => String(c['name']).includes('/sticky/'));
    assert.equal(sticky.length, 2, 'one cluster per rule');
    for (const c of sticky) assert.equal(c['lb_policy'], 'RING_HASH');
    const plain = clusters.find((c) => String(c['name']).includes('/plain/'))!;
    assert.equal(plain['lb_policy'], undefined);
    const e = entries(r);
    const hashed = e.filter((x) => x['route']?.['hash_policy'] !== undefined);
    assert.equal(hashed.length, 2);
    for (const x of hashed) {
      assert.match(String(x['name']), /^ns\/sticky\//);
      assert.deepEqual(x['route']['hash_policy'], [
        { header: { header_name: WIRE.affinityHeader } },
      ]);
    }
    const doc = ExtprocConfig.parse(out.extproc);
    assert.deepEqual(doc.routes.find((x) => x.name === 'ns/sticky')?.affinity, {
      sessionHeader: 'x-conversation',
    });
    assert.equal(doc.routes.find((x) => x.name === 'ns/plain')?.affinity, undefined);
  });
});

void describe('toEnvoy: a backend that keeps Responses state has a cluster of its own', () => {
  const credential = { secretRef: { name: 's', key: 'k' } };
  const r = bundle(
    [
      route('r', {
        backends: [
          { name: 'oa', provider: 'openai', endpoint: { url: 'https://a.example/v1' }, credential },
          { name: 'ob', provider: 'openai', endpoint: { url: 'https://b.example/v1' }, credential },
          {
            name: 'an',
            provider: 'anthropic',
            endpoint: { url: 'https://api.anthropic.com' },
            credential,
          },
        ],
      }),
    ],
    { secrets: [{ metadata: { name: 's', namespace: 'ns' }, data: { k: 'sk-1' } }] },
  );

  void it('one pinned cluster per OpenAI backend, none for a stateless one', () => {
    const env = compile(r).envoy;
    const pinned = env.clusters.filter((c) => (c['name'] as string).startsWith('backend/')) as J[];
    assert.deepEqual(
      pinned.map((c): unknown => c['name']),
      ['backend/ns/r/oa', 'backend/ns/r/ob'],
    );
    const loc = pinned[0]!['load_assignment']['endpoints'] as J[];
    assert.equal(loc.length, 1);
    assert.equal(loc[0]!['locality']['region'], 'ns/r/oa');
  });

  void it('routes on x-sluice-backend before any model, without retries', () => {
    const es = entries(r);
    assert.deepEqual(
      es
        .slice(0, 2)
        .map((e): unknown[] => [e['match']['headers'][0]['name'], e['route']['cluster']]),
      [
        [WIRE.backendHeader, 'backend/ns/r/oa'],
        [WIRE.backendHeader, 'backend/ns/r/ob'],
      ],
    );
    assert.equal(es[0]!['match']['headers'][0]['string_match']['exact'], 'ns/r/oa');
    assert.equal(es[0]!['route']['retry_policy'], undefined);
    assert.equal(modelOf(es[2]!), '=r');
  });
});
