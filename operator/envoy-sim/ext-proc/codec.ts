// The ext_proc wire schema, taken from the targeted Envoy release's API (proto/envoy-api, via
// operator/envoy-api), not from the project's own proto/ declarations, so that talking to the
// server under test cross-checks wire compatibility.
import type { ServiceDefinition } from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { envoyApiRoot } from '../../envoy-api/index.js';

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
  | 'immediate_response'
  | 'streamed_immediate_response';

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
  /** Field 11 (1.37+); the driver treats it as a protocol violation in every mode it runs. */
  streamed_immediate_response?: Record<string, unknown> | null;
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

// As @grpc/proto-loader would give them: enums and 64-bit numbers as strings, bytes as Buffers,
// no defaults, the set oneof member named.
const TO_OBJECT: protobuf.IConversionOptions = {
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

const BODY_MODES: readonly BodySendMode[] = [
  'NONE',
  'STREAMED',
  'BUFFERED',
  'BUFFERED_PARTIAL',
  'FULL_DUPLEX_STREAMED',
  'GRPC',
];

/** Enum values unknown to the targeted release decode as numbers; name them. */
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

function loadCodec(): ExtProcCodec {
  const root = envoyApiRoot();
  const req = root.lookupType('envoy.service.ext_proc.v3.ProcessingRequest');
  const res = root.lookupType('envoy.service.ext_proc.v3.ProcessingResponse');
  const encode = (type: protobuf.Type, msg: object): Buffer =>
    Buffer.from(type.encode(type.fromObject(msg)).finish());
  const encodeRequest = (msg: ProcessingRequest): Buffer => encode(req, msg);
  // toObject's result is untyped; its shape is the interface's by the conversion options.
  const decodeRequest = (buf: Buffer): ProcessingRequest =>
    req.toObject(req.decode(buf), TO_OBJECT);
  const encodeResponse = (msg: ProcessingResponse): Buffer => encode(res, msg);
  const decodeResponse = (buf: Buffer): ProcessingResponse =>
    res.toObject(res.decode(buf), TO_OBJECT);
  const statusByName = new Map<string, number>(
    Object.entries(root.lookupEnum('envoy.type.v3.StatusCode').values),
  );
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

/** The codec, loaded once per process. */
export function extProcCodec(): ExtProcCodec {
  cached ??= loadCodec();
  return cached;
}
