/**
 * The envoy-config tier: every resource of every golden case, of every checked-in golden file and
 * of `sluice render` is read field by field against the targeted Envoy release's API
 * (proto/envoy-api: unknown or misspelt fields, wrong kinds, oneof clashes and unknown Any types
 * fail), encoded and decoded, and checked against the release's protoc-gen-validate rules (what
 * Envoy NACKs); and the same against the project's own proto/ declarations, which the xDS server
 * encodes with.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type protobuf from 'protobufjs';
import { parse } from 'yaml';

import { envoyApiRoot, envoyRelease } from '../../operator/envoy-api/index.js';
import { validateEnvoy } from '../../operator/envoy-api/validate.js';
import { main as render } from '../../operator/render/main.js';
import { compile } from '../../operator/compile/index.js';
import type { EnvoyResources } from '../../operator/compile/index.js';
import type { IRGovernance } from '../../operator/compile/ir.js';
import { toEnvoy } from '../../operator/compile/to-envoy.js';
import { OUR_PROTO_DIR, listProtoFiles, loadRoot } from '../proto/compare.js';
import { ENVOY_TYPES, GOLDEN_DIR, envoyFile, listCases, loadCase } from '../golden/cases.js';
import { StrictJsonError, encodeStrict, strictFromJson } from './strict-json.js';

const REPO = new URL('../../', import.meta.url).pathname;

/** The message each kind of resource is. */
export const RESOURCE_TYPES: Record<keyof EnvoyResources, string> = {
  listeners: 'envoy.config.listener.v3.Listener',
  routes: 'envoy.config.route.v3.RouteConfiguration',
  clusters: 'envoy.config.cluster.v3.Cluster',
  endpoints: 'envoy.config.endpoint.v3.ClusterLoadAssignment',
};

let official: protobuf.Root;
let ours: protobuf.Root;

function check(root: protobuf.Root, resources: EnvoyResources, label: string): number {
  let n = 0;
  for (const kind of Object.keys(RESOURCE_TYPES) as (keyof EnvoyResources)[]) {
    for (const [i, resource] of resources[kind].entries()) {
      const name = (resource['name'] ?? resource['cluster_name']) as string;
      let bytes: Uint8Array;
      try {
        bytes = encodeStrict(root, RESOURCE_TYPES[kind], resource);
      } catch (err) {
        assert.fail(`${label}: ${kind}[${i}] (${name}): ${(err as Error).message}`);
      }
      // With the release's API, also its protoc-gen-validate rules: what Envoy would NACK.
      if (root === official) {
        const violations = validateEnvoy(root, RESOURCE_TYPES[kind], bytes);
        assert.deepEqual(violations, [], `${label}: ${kind}[${i}] (${name}) Envoy would refuse`);
      }
      n++;
    }
  }
  return n;
}

void describe(`envoy-config: emitted resources against Envoy ${envoyRelease()}'s API`, () => {
  before(() => {
    official = envoyApiRoot();
    ours = loadRoot(listProtoFiles(OUR_PROTO_DIR), [OUR_PROTO_DIR]);
  });

  for (const name of listCases()) {
    void it(`${name}: every resource decodes strictly, official and ours`, async () => {
      const { resources } = await loadCase(name);
      const { envoy } = compile(resources);
      const a = check(official, envoy, 'official');
      const b = check(ours, envoy, 'proto/');
      assert.equal(a, b);
      assert.ok(a >= 3, 'a listener, a route configuration and the extproc cluster at least');
    });
  }

  for (const name of listCases()) {
    void it(`${name}: the checked-in golden Envoy resources decode strictly`, () => {
      const envoy = Object.fromEntries(
        ENVOY_TYPES.map((type) => [
          type,
          parse(readFileSync(join(GOLDEN_DIR, envoyFile(name, type)), 'utf8')) as unknown,
        ]),
      ) as unknown as EnvoyResources;
      assert.ok(check(official, envoy, 'official') >= 3);
    });
  }

  void it('sluice render of the quickstart: every Envoy resource decodes strictly', async () => {
    let out = '';
    const code = await render(['-f', join(REPO, 'examples/quickstart'), '--only', 'envoy'], {
      out: (s) => (out += s),
      err: () => undefined,
    });
    assert.equal(code, 0);
    const { envoy } = parse(out) as { envoy: EnvoyResources };
    assert.ok(check(official, envoy, 'official') >= 3);
    assert.equal(check(official, envoy, 'official'), check(ours, envoy, 'proto/'));
  });

  // Governance is not translated from AIPolicies in every golden case yet, so the identity
  // filters are checked on an IR given its governance here, as the compilation will build it.
  const governance: IRGovernance = {
    consumers: [],
    policies: [],
    meshIdentity: true,
    jwtProviders: [
      {
        name: 'apps/inline',
        issuer: 'https://issuer.example',
        audiences: ['sluice'],
        jwks: { kind: 'inline', json: '{"keys":[]}' },
      },
      {
        name: 'apps/remote',
        issuer: 'https://idp.example',
        audiences: [],
        jwks: {
          kind: 'remote',
          uri: 'https://idp.example/.well-known/jwks.json',
          host: 'idp.example',
          port: 443,
          cacheDurationSeconds: 600,
        },
      },
    ],
  };

  async function withGovernance(
    name: string,
    clientCertTrust: 'listener' | 'sidecar' = 'listener',
  ): Promise<EnvoyResources> {
    const { resources } = await loadCase(name);
    const { ir } = compile(resources);
    return toEnvoy({ ...ir, governance }, { clientCertTrust });
  }

  void it('JWT issuers and mesh identity: every resource decodes strictly, official and ours', async () => {
    const envoy = await withGovernance('mixed-fallback');
    const hcm = JSON.stringify(envoy.listeners[0]);
    assert.match(hcm, /jwt_authn\.v3\.JwtAuthentication/);
    assert.match(hcm, /header_mutation\.v3\.HeaderMutation/);
    assert.ok(envoy.clusters.some((c) => c['transport_socket'] !== undefined));
    assert.equal(check(official, envoy, 'official'), check(ours, envoy, 'proto/'));
  });

  void it('mesh identity behind a sidecar: the listener decodes strictly, official and ours', async () => {
    const envoy = await withGovernance('mixed-fallback', 'sidecar');
    assert.match(JSON.stringify(envoy.listeners[0]), /"ALWAYS_FORWARD_ONLY"/);
    assert.equal(check(official, envoy, 'official'), check(ours, envoy, 'proto/'));
  });

  void it('the two definitions produce the same bytes, with and without governance', async () => {
    const { resources } = await loadCase('mixed-fallback');
    for (const envoy of [
      compile(resources).envoy,
      await withGovernance('mixed-fallback'),
      await withGovernance('mixed-fallback', 'sidecar'),
    ]) {
      for (const kind of Object.keys(RESOURCE_TYPES) as (keyof EnvoyResources)[]) {
        for (const r of envoy[kind]) {
          const mine = Buffer.from(encodeStrict(ours, RESOURCE_TYPES[kind], r));
          const theirs = Buffer.from(encodeStrict(official, RESOURCE_TYPES[kind], r));
          assert.deepEqual(mine, theirs, `${kind} ${String(r['name'] ?? r['cluster_name'])}`);
        }
      }
    }
  });
});

void describe('envoy-config: the strict reader refuses', () => {
  before(() => {
    official ??= envoyApiRoot();
    ours ??= loadRoot(listProtoFiles(OUR_PROTO_DIR), [OUR_PROTO_DIR]);
  });
  const CLUSTER = 'envoy.config.cluster.v3.Cluster';
  const ROUTE = 'envoy.config.route.v3.RouteConfiguration';

  function refuses(type: string, json: unknown, path: string, detail: RegExp): void {
    assert.throws(
      () => strictFromJson(official, type, json),
      (err: unknown) => {
        assert.ok(err instanceof StrictJsonError, String(err));
        assert.equal(err.path, path);
        assert.match(err.message, detail);
        return true;
      },
    );
  }

  void it('a misspelt field', () => {
    refuses(CLUSTER, { name: 'c', conect_timeout: '1s' }, '$.conect_timeout', /unknown field/);
  });

  void it('a camelCase name (Envoy config is snake_case here)', () => {
    refuses(CLUSTER, { name: 'c', connectTimeout: '1s' }, '$.connectTimeout', /unknown field/);
  });

  void it('a misspelt field inside an Any payload, by its type URL', () => {
    const cluster = {
      name: 'c',
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          explicit_http_config: { http2_protocol_option: {} },
        },
      },
    };
    refuses(
      CLUSTER,
      cluster,
      '$.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]<envoy.extensions.upstreams.http.v3.HttpProtocolOptions>.explicit_http_config.http2_protocol_option',
      /unknown field/,
    );
  });

  void it('an Any of an unknown type', () => {
    const route = {
      name: 'r',
      virtual_hosts: [
        {
          name: 'v',
          domains: ['*'],
          routes: [
            {
              match: { prefix: '/' },
              route: {
                cluster: 'c',
                retry_policy: {
                  retry_priority: {
                    name: 'p',
                    typed_config: { '@type': 'type.googleapis.com/envoy.Nope' },
                  },
                },
              },
            },
          ],
        },
      ],
    };
    refuses(
      ROUTE,
      route,
      '$.virtual_hosts[0].routes[0].route.retry_policy.retry_priority.typed_config["@type"]',
      /unknown message type envoy\.Nope/,
    );
  });

  void it('two members of one oneof', () => {
    const route = {
      name: 'r',
      virtual_hosts: [
        {
          name: 'v',
          routes: [
            { match: { prefix: '/' }, route: { cluster: 'c' }, direct_response: { status: 404 } },
          ],
        },
      ],
    };
    refuses(
      ROUTE,
      route,
      '$.virtual_hosts[0].routes[0].direct_response',
      /oneof action already has route/,
    );
  });

  void it('an unknown enum name, a bad duration, a negative uint32, a scalar for a message', () => {
    refuses(
      CLUSTER,
      { type: 'STRICT_DNZ' },
      '$.type',
      /not a value of envoy\.config\.cluster\.v3\.Cluster\.DiscoveryType/,
    );
    refuses(CLUSTER, { connect_timeout: '10' }, '$.connect_timeout', /duration/);
    refuses(
      'envoy.config.endpoint.v3.ClusterLoadAssignment',
      { endpoints: [{ priority: -1 }] },
      '$.endpoints[0].priority',
      /integer in range/,
    );
    refuses(CLUSTER, { load_assignment: 'x' }, '$.load_assignment', /expected an object/);
  });

  void it("and the check refuses what decodes but breaks the release's validation rules", () => {
    const cluster = { name: 'c', connect_timeout: '0s' };
    assert.ok(encodeStrict(official, CLUSTER, cluster), 'decodes strictly');
    const resources: EnvoyResources = {
      listeners: [],
      routes: [],
      clusters: [cluster],
      endpoints: [],
    };
    assert.throws(
      () => check(official, resources, 'official'),
      /clusters\[0\] \(c\) Envoy would refuse[\s\S]*connect_timeout: 0 ns is not > 0s/,
    );
    assert.equal(check(ours, resources, 'proto/'), 1, 'proto/ holds no validation rules');
  });

  void it('but accepts what Envoy YAML accepts: Struct, wrappers, maps, durations', () => {
    const obj = strictFromJson(official, CLUSTER, {
      name: 'c',
      connect_timeout: '0.250s',
      transport_socket_matches: [{ name: 'm', match: { a: 'b', n: 1, l: [true, null] } }],
      load_assignment: { endpoints: [{ load_balancing_weight: 3 }] },
    });
    assert.deepEqual(obj['connect_timeout'], { seconds: 0, nanos: 250_000_000 });
  });
});
