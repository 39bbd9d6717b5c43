// The ext_proc wire schema, taken from the official Envoy API protos shipped with
// @grpc/grpc-js-xds (not from the project's own proto/ declarations, so that talking to the
// server under test cross-checks wire compatibility). Newer fields missing from that snapshot
// come from proto/newer-fields.proto, merged at the byte level.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import type { ServiceDefinition } from '@grpc/grpc-js';

export type HeaderSendMode = 'DEFAULT' | 'SEND' | 'SKIP';
export type BodySendMode =
  'NONE' | 'STREAMED' | 'BUFFERED' | 'BUFFERED_PARTIAL' | 'FULL_DUPLEX_STREAMED' | 'GRPC';

/**
 * google.protobuf.Struct / Value. protobufjs resolves the well-known types from its bundled
 * definitions, whose field names are camelCase whatever keepCase says.
 */
export interface PbValue {
  nullValue?: 'NULL_VALUE' | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: PbStruct;
  listValue?: { values?: PbValue[] };
  kind?: string;
}
export interface PbStruct {
  fields?: Record<string, PbValue>;
}

export interface PbHeaderValue {
  key?: string;
  value?: string;
  raw_value?: Buffer;
}
export interface PbHeaderValueOption {
  header?: PbHeaderValue | null;
  append?: { value?: boolean } | null;
  append_action?: string | number;
  keep_empty_value?: boolean;
}
export interface PbHeaderMap {
  headers?: PbHeaderValue[];
}
export interface PbHeaderMutation {
  set_headers?: PbHeaderValueOption[];
  remove_headers?: string[];
}
export interface PbStreamedBodyResponse {
  body?: Buffer;
  end_of_stream?: boolean;
}
export interface PbBodyMutation {
  body?: Buffer;
  clear_body?: boolean;
  streamed_response?: PbStreamedBodyResponse | null;
  mutation?: 'body' | 'clear_body' | 'streamed_response';
}
export interface PbCommonResponse {
  status?: 'CONTINUE' | 'CONTINUE_AND_REPLACE' | number;
  header_mutation?: PbHeaderMutation | null;
  body_mutation?: PbBodyMutation | null;
  trailers?: PbHeaderMap | null;
  clear_route_cache?: boolean;
}
export interface PbHeadersOrBodyResponse {
  response?: PbCommonResponse | null;
}
export interface PbTrailersResponse {
  header_mutation?: PbHeaderMutation | null;
}
export interface PbImmediateResponse {
  status?: { code?: number | string } | null;
  headers?: PbHeaderMutation | null;
  body?: Buffer;
  grpc_status?: { status?: number } | null;
  details?: string;
}
export interface PbProcessingMode {
  request_header_mode?: HeaderSendMode | number;
  response_header_mode?: HeaderSendMode | number;
  request_body_mode?: BodySendMode | number;
  response_body_mode?: BodySendMode | number;
  request_trailer_mode?: HeaderSendMode | number;
  response_trailer_mode?: HeaderSendMode | number;
}
export type ResponseCase =
  | 'request_headers'
  | 'response_headers'
  | 'request_body'
  | 'response_body'
  | 'request_trailers'
  | 'response_trailers'
  | 'immediate_response';

export interface ProcessingResponse {
  request_headers?: PbHeadersOrBodyResponse | null;
  response_headers?: PbHeadersOrBodyResponse | null;
  request_body?: PbHeadersOrBodyResponse | null;
  response_body?: PbHeadersOrBodyResponse | null;
  request_trailers?: PbTrailersResponse | null;
  response_trailers?: PbTrailersResponse | null;
  immediate_response?: PbImmediateResponse | null;
  /** Set by the decoder: which oneof member is present. */
  response?: ResponseCase;
  dynamic_metadata?: PbStruct | null;
  mode_override?: PbProcessingMode | null;
  override_message_timeout?: { seconds?: string | number; nanos?: number } | null;
  /** Newer field (11); its content is opaque to the driver. */
  streamed_immediate_response?: Buffer;
}

export interface PbHttpHeaders {
  headers?: PbHeaderMap | null;
  end_of_stream?: boolean;
}
export interface PbHttpBody {
  body?: Buffer;
  end_of_stream?: boolean;
}
export interface PbHttpTrailers {
  trailers?: PbHeaderMap | null;
}
export interface PbProtocolConfiguration {
  request_body_mode?: BodySendMode | number;
  response_body_mode?: BodySendMode | number;
  send_body_without_waiting_for_header_response?: boolean;
}
export type RequestCase =
  | 'request_headers'
  | 'response_headers'
  | 'request_body'
  | 'response_body'
  | 'request_trailers'
  | 'response_trailers';

export interface ProcessingRequest {
  request_headers?: PbHttpHeaders | null;
  response_headers?: PbHttpHeaders | null;
  request_body?: PbHttpBody | null;
  response_body?: PbHttpBody | null;
  request_trailers?: PbHttpTrailers | null;
  response_trailers?: PbHttpTrailers | null;
  request?: RequestCase;
  metadata_context?: { filter_metadata?: Record<string, PbStruct> } | null;
  attributes?: Record<string, PbStruct>;
  observability_mode?: boolean;
  protocol_config?: PbProtocolConfiguration | null;
}

export const PROCESS_METHOD = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
};

export interface ExtProcCodec {
  encodeRequest: (msg: ProcessingRequest) => Buffer;
  decodeRequest: (buf: Buffer) => ProcessingRequest;
  encodeResponse: (msg: ProcessingResponse) => Buffer;
  decodeResponse: (buf: Buffer) => ProcessingResponse;
  /** grpc-js service definition for servers (tests, emulators) built on the same codec. */
  service: ServiceDefinition;
  /** envoy.type.v3.StatusCode decodes as an enum name ("Forbidden"); this gives the number. */
  httpStatus: (code: string | number | undefined) => number;
}

type Msg = protoLoader.MessageTypeDefinition<object, object>;

function messageType(pkg: protoLoader.PackageDefinition, name: string): Msg {
  const def = pkg[name] as Msg | undefined;
  if (def?.format !== 'Protocol Buffer 3 DescriptorProto') {
    throw new Error(`ext_proc schema: message ${name} not found`);
  }
  return def;
}

function officialIncludeDirs(): string[] {
  const require = createRequire(import.meta.url);
  // The package has no "exports" map, so its entry point locates the vendored deps/ tree.
  const main = require.resolve('@grpc/grpc-js-xds');
  let root = dirname(main);
  while (!root.endsWith(join('@grpc', 'grpc-js-xds'))) {
    const up = dirname(root);
    if (up === root) throw new Error('cannot locate @grpc/grpc-js-xds');
    root = up;
  }
  const deps = join(root, 'deps');
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
}

const BODY_MODES: readonly BodySendMode[] = [
  'NONE',
  'STREAMED',
  'BUFFERED',
  'BUFFERED_PARTIAL',
  'FULL_DUPLEX_STREAMED',
  'GRPC',
];

/** Enum values the official snapshot does not know decode as numbers; name them. */
export function bodyModeName(v: BodySendMode | number | undefined): BodySendMode {
  if (v === undefined) return 'NONE';
  if (typeof v === 'string') return v;
  return BODY_MODES[v] ?? 'NONE';
}

const HEADER_MODES: readonly HeaderSendMode[] = ['DEFAULT', 'SEND', 'SKIP'];
export function headerModeName(v: HeaderSendMode | number | undefined): HeaderSendMode {
  if (v === undefined) return 'DEFAULT';
  if (typeof v === 'string') return v;
  return HEADER_MODES[v] ?? 'DEFAULT';
}

interface ResponseView {
  request_body?: { response?: { body_mutation?: { streamed_response?: PbStreamedBodyResponse } } };
  response_body?: { response?: { body_mutation?: { streamed_response?: PbStreamedBodyResponse } } };
  mode_override?: PbProcessingMode;
  streamed_immediate_response?: Buffer;
}

function loadCodec(): ExtProcCodec {
  const official = protoLoader.loadSync('envoy/service/ext_proc/v3/external_processor.proto', {
    ...LOADER_OPTIONS,
    includeDirs: officialIncludeDirs(),
  });
  const newer = protoLoader.loadSync(
    fileURLToPath(new URL('./proto/newer-fields.proto', import.meta.url)),
    LOADER_OPTIONS,
  );
  const req = messageType(official, 'envoy.service.ext_proc.v3.ProcessingRequest');
  const res = messageType(official, 'envoy.service.ext_proc.v3.ProcessingResponse');
  const reqView = messageType(newer, 'sluice.driver.newer.ProcessingRequest');
  const resView = messageType(newer, 'sluice.driver.newer.ProcessingResponse');

  const encodeRequest = (msg: ProcessingRequest): Buffer => {
    const base = req.serialize(msg);
    if (!msg.protocol_config) return base;
    return Buffer.concat([base, reqView.serialize({ protocol_config: msg.protocol_config })]);
  };
  const decodeRequest = (buf: Buffer): ProcessingRequest => {
    const msg = req.deserialize(buf) as ProcessingRequest;
    const view = reqView.deserialize(buf) as { protocol_config?: PbProtocolConfiguration };
    if (view.protocol_config) msg.protocol_config = view.protocol_config;
    return msg;
  };
  const encodeResponse = (msg: ProcessingResponse): Buffer => {
    const base = res.serialize(msg);
    const view: ResponseView = {};
    let needView = false;
    for (const dir of ['request_body', 'response_body'] as const) {
      const sr = msg[dir]?.response?.body_mutation?.streamed_response;
      if (sr) {
        view[dir] = { response: { body_mutation: { streamed_response: sr } } };
        needView = true;
      }
    }
    if (msg.mode_override) {
      // The official enum drops FULL_DUPLEX_STREAMED; the view restates the whole mode.
      view.mode_override = msg.mode_override;
      needView = true;
    }
    if (msg.streamed_immediate_response) {
      view.streamed_immediate_response = msg.streamed_immediate_response;
      needView = true;
    }
    return needView ? Buffer.concat([base, resView.serialize(view)]) : base;
  };
  const decodeResponse = (buf: Buffer): ProcessingResponse => {
    const msg = res.deserialize(buf) as ProcessingResponse;
    const body = msg.request_body ?? msg.response_body;
    // Only pay for the second decode when the official schema saw something it could not name.
    const suspicious =
      msg.response === undefined ||
      (body?.response?.body_mutation && !body.response.body_mutation.mutation);
    if (suspicious) {
      const view = resView.deserialize(buf) as ResponseView;
      if (view.streamed_immediate_response) {
        msg.streamed_immediate_response = view.streamed_immediate_response;
      }
      const sr = (view.request_body ?? view.response_body)?.response?.body_mutation
        ?.streamed_response;
      const bm = body?.response?.body_mutation;
      if (sr && bm) {
        bm.streamed_response = sr;
        bm.mutation = 'streamed_response';
      }
    }
    return msg;
  };
  const statusEnum = official['envoy.type.v3.StatusCode'] as
    { type: { value?: { name: string; number: number }[] } } | undefined;
  const statusByName = new Map<string, number>();
  for (const v of statusEnum?.type.value ?? []) statusByName.set(v.name, v.number);
  const httpStatus = (code: string | number | undefined): number =>
    typeof code === 'number' ? code : code === undefined ? 0 : (statusByName.get(code) ?? 0);
  const service: ServiceDefinition = {
    Process: {
      path: PROCESS_METHOD,
      requestStream: true,
      responseStream: true,
      requestSerialize: encodeRequest,
      requestDeserialize: decodeRequest,
      responseSerialize: encodeResponse,
      responseDeserialize: decodeResponse,
      originalName: 'process',
    },
  };
  return { encodeRequest, decodeRequest, encodeResponse, decodeResponse, service, httpStatus };
}

let cached: ExtProcCodec | undefined;

/** The codec, loaded once per process (loading the Envoy protos takes ~100 ms). */
export function extProcCodec(): ExtProcCodec {
  cached ??= loadCodec();
  return cached;
}
