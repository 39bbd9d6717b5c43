import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { envoyApiRoot } from './index.js';
import { envoyApiRules, validateEnvoy } from './validate.js';

const CLUSTER = 'envoy.config.cluster.v3.Cluster';
const ROUTE = 'envoy.config.route.v3.RouteConfiguration';
const LISTENER = 'envoy.config.listener.v3.Listener';
const HCM =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';

function bytes(typeName: string, obj: object): Uint8Array {
  const t = envoyApiRoot().lookupType(typeName);
  return t.encode(t.fromObject(obj)).finish();
}

function violations(typeName: string, obj: object): string[] {
  return validateEnvoy(envoyApiRoot(), typeName, bytes(typeName, obj));
}

const cluster = { name: 'c', connect_timeout: { seconds: 1 }, type: 'STATIC' };

function route(action: object, domains: string[] = ['*']): object {
  return {
    name: 'r',
    virtual_hosts: [{ name: 'v', domains, routes: [{ match: { prefix: '/' }, ...action }] }],
  };
}

describe("validateEnvoy: the release's protoc-gen-validate rules", () => {
  it('accepts valid config', () => {
    assert.deepEqual(violations(CLUSTER, cluster), []);
    assert.deepEqual(violations(ROUTE, route({ route: { cluster: 'c' } })), []);
  });

  it('a duration that must be positive (Cluster.connect_timeout gt 0s)', () => {
    assert.deepEqual(violations(CLUSTER, { ...cluster, connect_timeout: { seconds: 0 } }), [
      '$.connect_timeout: 0 ns is not > 0s',
    ]);
  });

  it('an empty string where one is required, in a oneof member that is set', () => {
    assert.deepEqual(violations(ROUTE, route({ route: { cluster: '' } })), [
      '$.virtual_hosts[0].routes[0].route.cluster: at least 1 characters',
    ]);
  });

  it('a required oneof left unset', () => {
    const v = violations(ROUTE, route({ route: {} }));
    assert.equal(v.length, 1);
    assert.match(v[0]!, /routes\[0\]\.route: one of cluster, cluster_header, .* is required/);
  });

  it('a header name Envoy refuses, a repeated field with too few items', () => {
    const header = { header: { key: 'x-bad\nname', value: 'v' } };
    assert.deepEqual(
      violations(ROUTE, {
        ...route({ route: { cluster: 'c' } }),
        request_headers_to_add: [header],
      }),
      ['$.request_headers_to_add[0].header.key: not a valid header name'],
    );
    assert.deepEqual(violations(ROUTE, route({ route: { cluster: 'c' } }, [])), [
      '$.virtual_hosts[0].domains: at least 1 items',
    ]);
  });

  it('an enum number the release does not define', () => {
    assert.deepEqual(violations(CLUSTER, { ...cluster, type: 99 }), [
      '$.type: 99 is not a value of envoy.config.cluster.v3.Cluster.DiscoveryType',
    ]);
  });

  it('a wrapped number out of range, only when the wrapper is set', () => {
    const cla = (weight?: number): object => ({
      cluster_name: 'c',
      endpoints: [
        {
          lb_endpoints: [weight === undefined ? {} : { load_balancing_weight: { value: weight } }],
        },
      ],
    });
    const type = 'envoy.config.endpoint.v3.ClusterLoadAssignment';
    assert.deepEqual(violations(type, cla()), []);
    assert.deepEqual(violations(type, cla(0)), [
      '$.endpoints[0].lb_endpoints[0].load_balancing_weight: 0 is not >= 1',
    ]);
  });

  it('inside an Any payload (a listener filter typed_config)', () => {
    const listener = {
      name: 'l',
      filter_chains: [
        {
          filters: [
            {
              name: 'hcm',
              typed_config: {
                type_url: HCM,
                value: bytes(HCM.slice(HCM.indexOf('/') + 1), { stat_prefix: '' }),
              },
            },
          ],
        },
      ],
    };
    const v = validateEnvoy(envoyApiRoot(), LISTENER, bytes(LISTENER, listener));
    assert.ok(
      v.includes(
        '$.filter_chains[0].filters[0].typed_config<envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager>.stat_prefix: at least 1 characters',
      ),
      v.join('\n'),
    );
  });

  it('reports a rule kind it cannot evaluate instead of skipping it', () => {
    const rules = {
      fields: { [`${CLUSTER}.name`]: { string: { email: true } } },
      required_oneofs: {},
    };
    assert.deepEqual(validateEnvoy(envoyApiRoot(), CLUSTER, bytes(CLUSTER, cluster), rules), [
      '$.name: string rule email not evaluated',
    ]);
  });

  it("PGV's reversed bounds mean outside the range", () => {
    const rules = {
      fields: { [`${CLUSTER}.per_connection_buffer_limit_bytes`]: { uint32: { gt: 10, lt: 5 } } },
      required_oneofs: {},
    };
    const check = (n: number): string[] =>
      validateEnvoy(
        envoyApiRoot(),
        CLUSTER,
        bytes(CLUSTER, { ...cluster, per_connection_buffer_limit_bytes: { value: n } }),
        rules,
      );
    assert.deepEqual(check(11), []);
    assert.deepEqual(check(4), []);
    assert.equal(check(7).length, 1);
  });

  it('has rules for the fields Sluice relies on', () => {
    const { fields } = envoyApiRules();
    assert.deepEqual(fields[`${CLUSTER}.connect_timeout`], { duration: { gt: '0s' } });
  });
});
