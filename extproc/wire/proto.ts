/**
 * The ExternalProcessor service: proto-loader's reference definition, and the one the extproc
 * serves with its own codec in the two hot directions. (Finding and loading proto/ is
 * shared/proto.ts.)
 */
import type * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { grpcService, protobufAvailable, protoRoot, protoType } from '../shared/proto.js';
import { decodeProcessingRequest } from './decode.js';
import { encodeProcessingResponse } from './encode.js';

const EXT_PROC_PROTO = 'envoy/service/ext_proc/v3/external_processor.proto';

let reference: grpc.ServiceDefinition | undefined;

/**
 * proto-loader's service definition, unchanged: its (de)serializers are the reference the
 * extproc's own codec is tested against.
 */
export function referenceService(): grpc.ServiceDefinition {
  reference ??= grpcService(EXT_PROC_PROTO, 'envoy.service.ext_proc.v3.ExternalProcessor').service;
  return reference;
}

/**
 * Encodes a ProcessingResponse built by wire/messages.ts. Those objects are wire-ready (enums as
 * numbers, bytes as Buffers), so protobufjs's generated encoder takes them as they are, without
 * proto-loader's fromObject copy of the whole tree first.
 *
 * On either transport this is only encode.ts's fallback, for a shape it does not write, which
 * wire/messages.ts never builds (encode.test.ts); so protobufjs and the parsed ext_proc protos
 * (~1.3 MiB of V8 heap that every full collection marks, issue 16) are loaded on the first
 * message that needs them (~30 ms, once), which on node:http2 should be never. What could make
 * that load fail is checked here, at start: the proto folder and the package.
 */
export function responseEncoder(): (msg: object) => Buffer {
  protoRoot();
  protobufAvailable();
  let type: protobuf.Type | undefined;
  return (msg) => {
    type ??= protoType(EXT_PROC_PROTO, 'envoy.service.ext_proc.v3.ProcessingResponse');
    return type.encode(msg).finish() as Buffer;
  };
}

/** encode.ts's encoder, protobufjs's for the shapes it leaves (none that messages.ts builds). */
function fastEncoder(): (msg: object) => Buffer {
  const reference = responseEncoder();
  return (msg) => encodeProcessingResponse(msg, 0, reference);
}

let cached: grpc.ServiceDefinition | undefined;

/**
 * The ExternalProcessor service as the extproc serves it: proto-loader's definition with the
 * server's two hot directions replaced by the hand-written request decoder (decode.ts) and
 * response encoder (encode.ts). Clients of this definition (tests) keep proto-loader's.
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
      responseSerialize: fastEncoder(),
    },
  };
  return cached;
}
