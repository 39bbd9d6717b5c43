// The targeted Envoy release's API (proto/envoy-api) for every message the emulator may be sent,
// so resources are judged by Envoy's own definitions, never by the project's proto/.
import type protobuf from 'protobufjs';
import { envoyApiRoot } from '../envoy-api/index.js';

export function envoyRoot(): protobuf.Root {
  return envoyApiRoot();
}

export type Json = Record<string, unknown>;

/**
 * Decodes an Any into the proto3 JSON shape (snake_case, enums by name, nested Anys expanded
 * with "@type"; an Any whose type is not in the API stays `{type_url, value}` and is refused
 * later).
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
