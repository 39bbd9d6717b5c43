// The official Envoy API (vendored in @grpc/grpc-js-xds) for every message the emulator may be
// sent, so resources are judged by Envoy's own definitions, never by the project's proto/.
import type protobuf from 'protobufjs';
import { loadProtoRoot } from '../xds/encode.js';
import { OFFICIAL_INCLUDE_DIRS } from '../xds/testing/official-client.js';

const FILES = [
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/upstream_codec/v3/upstream_codec.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto',
  'envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto',
  'envoy/extensions/filters/http/header_mutation/v3/header_mutation.proto',
  'envoy/extensions/filters/http/jwt_authn/v3/config.proto',
];

let root: protobuf.Root | undefined;

export function envoyRoot(): protobuf.Root {
  root ??= loadProtoRoot(OFFICIAL_INCLUDE_DIRS, FILES);
  return root;
}

export type Json = Record<string, unknown>;

/**
 * Decodes an Any into the proto3 JSON shape (snake_case, enums by name, nested Anys expanded
 * with "@type"; an Any whose type is not loaded stays `{type_url, value}` and is refused later).
 */
export function decodeResource(any: { type_url: string; value: Uint8Array }): {
  type: protobuf.Type;
  json: Json;
} {
  const name = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
  const type = envoyRoot().lookupType(name);
  const json = type.toObject(type.decode(any.value), {
    longs: String,
    enums: String,
    bytes: String,
    json: true,
  });
  return { type, json };
}
