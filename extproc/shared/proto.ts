/**
 * Loading the repository's protos (proto/): one place that finds the folder, one set of
 * proto-loader options, one loader for a gRPC service, and the ADS service every xDS party
 * uses (the operator serves it, the extproc subscribes to its config over it).
 *
 * grpc-js, proto-loader and protobufjs are loaded on the first call that needs them, not with
 * this module: the extproc's default transport (node:http2) imports this module's neighbours,
 * and the three cost ~5 MiB of V8 heap (their code, source strings and closures), which every
 * full collection marks (issue 16). They are CommonJS, so require() loads them synchronously
 * behind the synchronous functions below; an ESM import() of the same package elsewhere gets
 * the same instance from the same module cache.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import type protobuf from 'protobufjs';

const requireCjs = createRequire(import.meta.url);

/** grpc-js, loaded on first use (see above). */
export function grpcJs(): typeof grpc {
  return requireCjs('@grpc/grpc-js') as typeof grpc;
}

function protobufJs(): typeof protobuf {
  return requireCjs('protobufjs') as typeof protobuf;
}

/** Throws now if protobufjs could not be loaded later (resolves the package without loading it). */
export function protobufAvailable(): void {
  requireCjs.resolve('protobufjs');
}

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
  const loader = requireCjs('@grpc/proto-loader') as typeof protoLoader;
  const def = loader.loadSync([file], { ...LOADER_OPTIONS, includeDirs: [protoRoot()] });
  let node: unknown = grpcJs().loadPackageDefinition(def);
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
  const root = new (protobufJs().Root)();
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
