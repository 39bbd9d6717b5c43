import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

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
    if (parent === dir) throw new Error('proto/ not found above the extproc module');
    dir = parent;
  }
}

let cached: grpc.ServiceDefinition | undefined;

export function extProcService(): grpc.ServiceDefinition {
  if (cached) return cached;
  const def = protoLoader.loadSync(['envoy/service/ext_proc/v3/external_processor.proto'], {
    ...LOADER_OPTIONS,
    includeDirs: [protoRoot()],
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    envoy: { service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } } };
  };
  cached = pkg.envoy.service.ext_proc.v3.ExternalProcessor.service;
  return cached;
}
