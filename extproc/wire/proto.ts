import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { decodeProcessingRequest } from './decode.js';

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

const EXT_PROC_PROTO = 'envoy/service/ext_proc/v3/external_processor.proto';

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

let reference: grpc.ServiceDefinition | undefined;

/**
 * proto-loader's service definition, unchanged: its (de)serializers are the reference the
 * extproc's own codec is tested against.
 */
export function referenceService(): grpc.ServiceDefinition {
  if (reference) return reference;
  const def = protoLoader.loadSync([EXT_PROC_PROTO], {
    ...LOADER_OPTIONS,
    includeDirs: [protoRoot()],
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    envoy: { service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } } };
  };
  reference = pkg.envoy.service.ext_proc.v3.ExternalProcessor.service;
  return reference;
}

/**
 * Encodes a ProcessingResponse built by wire/messages.ts. Those objects are wire-ready (enums as
 * numbers, bytes as Buffers), so protobufjs's generated encoder takes them as they are, without
 * proto-loader's fromObject copy of the whole tree first.
 */
export function responseEncoder(): (msg: object) => Buffer {
  const root = new protobuf.Root();
  const dir = protoRoot();
  root.resolvePath = (_origin, target) => join(dir, target);
  root.loadSync(EXT_PROC_PROTO, { keepCase: true });
  const type = root.lookupType('envoy.service.ext_proc.v3.ProcessingResponse');
  return (msg) => type.encode(msg).finish() as Buffer;
}

let cached: grpc.ServiceDefinition | undefined;

/**
 * The ExternalProcessor service as the extproc serves it: proto-loader's definition with the
 * server's two hot directions replaced by the hand-written request decoder (decode.ts) and the
 * direct response encoder. Clients of this definition (tests) keep proto-loader's.
 */
export function extProcService(): grpc.ServiceDefinition {
  if (cached) return cached;
  const ref = referenceService();
  const process = ref['Process'];
  if (!process) throw new Error(`${EXT_PROC_PROTO}: no Process method`);
  cached = {
    Process: {
      ...process,
      requestDeserialize: decodeProcessingRequest,
      responseSerialize: responseEncoder(),
    },
  };
  return cached;
}
