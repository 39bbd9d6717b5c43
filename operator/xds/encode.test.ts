import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildSnapshot, contentVersion, SnapshotCache } from './cache.js';
import { EncodeError } from './encode.js';
import { CLUSTER, LISTENER } from './type-urls.js';
import { EXT_PROC, HCM, resourcesFor, testEncoder } from './testing/fixtures.js';
import { decodeAny } from '../envoy-api/ads-client.js';

const encoder = testEncoder();
const METADATA = 'type.googleapis.com/envoy.config.core.v3.Metadata';

function refused(json: unknown, pattern: RegExp): void {
  assert.throws(
    () => encoder.encodeAny(json),
    (err: unknown) => {
      assert.ok(err instanceof EncodeError);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

describe('ResourceEncoder', () => {
  it('encodes nested Any, durations, Struct, wrappers and enums so the official protos read them back', () => {
    const listener = decodeAny(
      encoder.encodeAny({
        '@type': LISTENER,
        name: 'l',
        per_connection_buffer_limit_bytes: 1024,
        filter_chains: [
          {
            filters: [
              {
                name: 'hcm',
                typed_config: {
                  '@type': HCM,
                  stat_prefix: 'l',
                  http_filters: [
                    {
                      name: 'sluice.router',
                      typed_config: {
                        '@type': EXT_PROC,
                        grpc_service: {
                          envoy_grpc: { cluster_name: 'sluice-extproc' },
                          timeout: '0.250s',
                        },
                        processing_mode: {
                          request_header_mode: 'SEND',
                          request_body_mode: 'BUFFERED',
                        },
                        message_timeout: '2s',
                        allow_mode_override: true,
                      },
                    },
                  ],
                },
              },
            ],
          },
        ],
      }),
    ) as any;
    assert.equal(listener.per_connection_buffer_limit_bytes.value, 1024);
    // protobufjs renders a nested Any in its JSON form, decoded with the official definitions.
    const hcm = listener.filter_chains[0].filters[0].typed_config;
    assert.equal(hcm['@type'], HCM);
    const inner = hcm.http_filters[0].typed_config;
    assert.equal(inner['@type'], EXT_PROC);
    assert.equal(inner.grpc_service.envoy_grpc.cluster_name, 'sluice-extproc');
    assert.deepEqual(inner.grpc_service.timeout, { seconds: '0', nanos: 250_000_000 });
    assert.equal(inner.processing_mode.request_body_mode, 'BUFFERED');
    assert.deepEqual(inner.message_timeout, { seconds: '2', nanos: 0 });
    assert.equal(inner.allow_mode_override, true);

    const cluster = decodeAny(
      encoder.encodeAny({
        '@type': CLUSTER,
        name: 'c',
        transport_socket_matches: [
          { name: 'm', match: { n: 1.5, list: [true, null, 'x'], nested: { k: 'v' } } },
        ],
      }),
    ) as any;
    const fields = cluster.transport_socket_matches[0].match.fields;
    assert.equal(fields.n.numberValue, 1.5);
    assert.deepEqual(
      fields.list.listValue.values.map((v: { kind: string }) => v.kind),
      ['boolValue', 'nullValue', 'stringValue'],
    );
    assert.equal(fields.nested.structValue.fields.k.stringValue, 'v');
  });

  it('encodes a well-known type inside an Any through "value"', () => {
    const any = encoder.encodeAny({
      '@type': 'type.googleapis.com/google.protobuf.Duration',
      value: '-1.5s',
    });
    assert.deepEqual(decodeAny(any), { seconds: '-1', nanos: -500_000_000 });
  });

  it('produces the same bytes whatever the key order', () => {
    const a = encoder.encodeAny({
      '@type': METADATA,
      filter_metadata: { x: { a: 1, b: 2 }, y: {} },
    });
    const b = encoder.encodeAny({
      filter_metadata: { y: {}, x: { b: 2, a: 1 } },
      '@type': METADATA,
    });
    assert.deepEqual(a.value, b.value);
  });

  it('refuses unknown fields, naming the path and the likely intended field', () => {
    refused(
      { '@type': CLUSTER, name: 'c', conect_timeout: '1s' },
      /^\$\.conect_timeout: unknown field in envoy\.config\.cluster\.v3\.Cluster$/,
    );
    refused(
      { '@type': CLUSTER, name: 'c', connectTimeout: '1s' },
      /\$\.connectTimeout: .*did you mean "connect_timeout"/,
    );
    refused(
      {
        '@type': LISTENER,
        name: 'l',
        filter_chains: [
          { filters: [{ name: 'x', typed_config: { '@type': EXT_PROC, grpc_servce: {} } }] },
        ],
      },
      /^\$\.filter_chains\[0\]\.filters\[0\]\.typed_config\.grpc_servce: unknown field in envoy\.extensions\.filters\.http\.ext_proc\.v3\.ExternalProcessor$/,
    );
  });

  it('refuses types that proto/ does not declare, and Any values without "@type"', () => {
    refused(
      { '@type': 'type.googleapis.com/envoy.config.cluster.v3.Klaster', name: 'c' },
      /^\$: type .*Klaster is not declared in proto\//,
    );
    refused({ name: 'c' }, /^\$: "@type" must be a type URL/);
    refused(
      { '@type': CLUSTER, name: 'c', typed_extension_protocol_options: { x: { name: 'a' } } },
      /^\$\.typed_extension_protocol_options\.x: "@type" must be a type URL/,
    );
  });

  it('refuses wrong scalar types, enum names, durations and two members of one oneof', () => {
    refused({ '@type': CLUSTER, name: 7 }, /^\$\.name: expected a string, got number 7/);
    refused(
      { '@type': CLUSTER, name: 'c', connect_timeout: '1m' },
      /^\$\.connect_timeout: expected a duration/,
    );
    refused(
      { '@type': LISTENER, name: 'l', per_connection_buffer_limit_bytes: -1 },
      /per_connection_buffer_limit_bytes: expected a uint32/,
    );
    refused(
      { '@type': EXT_PROC, processing_mode: { request_body_mode: 'BUFFER' } },
      /^\$\.processing_mode\.request_body_mode: "BUFFER" is not a value of envoy\.extensions\.filters\.http\.ext_proc\.v3\.ProcessingMode\.BodySendMode/,
    );
    refused(
      {
        '@type': 'type.googleapis.com/envoy.service.ext_proc.v3.BodyMutation',
        body: 'YQ==',
        clear_body: true,
      },
      /^\$\.clear_body: "body" and "clear_body" are both set but belong to oneof mutation$/,
    );
    refused({ '@type': CLUSTER, name: 'c', '@type2': 1 }, /\$\.@type2: unknown field/);
  });
});

describe('snapshots', () => {
  it('names resources by name or cluster_name and checks each "@type"', () => {
    const snap = buildSnapshot(encoder, 'v1', resourcesFor({ clusters: { a: '1s' }, routes: {} }));
    assert.deepEqual([...snap.resources.get(CLUSTER)!.keys()], ['a']);
    assert.throws(
      () => buildSnapshot(encoder, 'v1', { [CLUSTER]: [{ '@type': LISTENER, name: 'x' }] }),
      /Cluster\[0\]: "@type" must be type\.googleapis\.com\/envoy\.config\.cluster\.v3\.Cluster/,
    );
    assert.throws(
      () =>
        buildSnapshot(encoder, 'v1', {
          [CLUSTER]: [
            { '@type': CLUSTER, name: 'x' },
            { '@type': CLUSTER, name: 'x' },
          ],
        }),
      /duplicate resource name "x"/,
    );
  });

  it('versions each type by content alone', () => {
    const cache = new SnapshotCache();
    cache.setSnapshot(
      '*',
      buildSnapshot(encoder, 'one', resourcesFor({ clusters: { a: '1s', b: '2s' }, routes: {} })),
    );
    const v1 = cache.snapshotFor('n')!.types.get(CLUSTER)!.version;
    cache.setSnapshot(
      '*',
      buildSnapshot(encoder, 'two', resourcesFor({ clusters: { b: '2s', a: '1s' }, routes: {} })),
    );
    assert.equal(cache.snapshotFor('n')!.types.get(CLUSTER)!.version, v1);
    cache.setSnapshot(
      '*',
      buildSnapshot(encoder, 'three', resourcesFor({ clusters: { a: '1s', b: '3s' }, routes: {} })),
    );
    assert.notEqual(cache.snapshotFor('n')!.types.get(CLUSTER)!.version, v1);
    assert.equal(contentVersion([], new Map()), contentVersion([], new Map()));
  });

  it('serves a node its own snapshot before the default and says which nodes a change affects', () => {
    const cache = new SnapshotCache();
    const seen: string[] = [];
    cache.onChange((n) => seen.push(n));
    const snap = buildSnapshot(encoder, 'x', {});
    cache.setSnapshot('*', snap);
    cache.setSnapshot('a', { ...snap, version: 'own' });
    assert.equal(cache.snapshotFor('a')!.version, 'own');
    assert.equal(cache.snapshotFor('b')!.version, 'x');
    assert.equal(cache.affects('*', 'a'), false);
    assert.equal(cache.affects('*', 'b'), true);
    cache.clearSnapshot('a');
    assert.equal(cache.snapshotFor('a')!.version, 'x');
    assert.deepEqual(seen, ['*', 'a', 'a']);
  });
});
