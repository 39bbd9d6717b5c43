/**
 * Loading the repository's protos (proto/): one place that finds the folder, one set of
 * proto-loader options, one loader for a gRPC service, and the ADS service every xDS party
 * uses (the operator serves it, the extproc subscribes to its config over it).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/**
 * Options shared by everything that loads our protos: keep field names as declared, bytes as
 * Buffers, enums as names, oneofs reported by name (`request: 'request_headers'`).
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
};

/** The repository's proto/ folder, found upward from this module (works from source and dist/). */
export function protoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, 'envoy'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('proto/ not found above the shared module');
    dir = parent;
  }
}

const services = new Map<string, grpc.ServiceClientConstructor>();

/**
 * A service's client class as proto-loader builds it from `file` (under proto/), with
 * LOADER_OPTIONS; its `.service` is the definition a server adds. Loaded once per service.
 */
export function grpcService(file: string, fullName: string): grpc.ServiceClientConstructor {
  const key = `${file}#${fullName}`;
  const known = services.get(key);
  if (known) return known;
  const def = protoLoader.loadSync([file], { ...LOADER_OPTIONS, includeDirs: [protoRoot()] });
  let node: unknown = grpc.loadPackageDefinition(def);
  for (const part of fullName.split('.')) {
    node = typeof node === 'object' || typeof node === 'function' ? (node as never)[part] : node;
  }
  if (typeof node !== 'function') throw new Error(`${file}: no service ${fullName}`);
  const ctor = node as grpc.ServiceClientConstructor;
  services.set(key, ctor);
  return ctor;
}

/** A message type of `file` (under proto/), for protobufjs's own encoder and decoder. */
export function protoType(file: string, fullName: string): protobuf.Type {
  const root = new protobuf.Root();
  const dir = protoRoot();
  root.resolvePath = (_origin, target) => join(dir, target);
  root.loadSync(file, { keepCase: true });
  return root.lookupType(fullName);
}

export const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';

/** The ADS client class (State of the World); `.service` is what the operator's server adds. */
export function adsService(): grpc.ServiceClientConstructor {
  return grpcService('envoy/service/discovery/v3/ads.proto', ADS_SERVICE);
}
