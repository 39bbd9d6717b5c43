// Declarations in proto/ that are newer than the Envoy API shipped in @grpc/grpc-js-xds (its
// deps/envoy-api predates them), so the comparison cannot check them against that copy. Each
// shape was read by hand from the upstream Envoy API (api/envoy/... in envoyproxy/envoy, 2025
// and later). When the shipped API catches up, the comparison reports the entry and it must be
// deleted here, which hands the declaration back to the real check.
import type { AheadEntry } from './compare.js';

const SVC = 'envoy.service.ext_proc.v3';
const FILTER = 'envoy.extensions.filters.http.ext_proc.v3';

export const AHEAD_OF_SHIPPED: readonly AheadEntry[] = [
  // envoy/extensions/filters/http/ext_proc/v3/processing_mode.proto
  { name: `${FILTER}.ProcessingMode.BodySendMode.FULL_DUPLEX_STREAMED`, shape: '= 4' },

  // envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto
  {
    name: `${FILTER}.ExternalProcessor.send_body_without_waiting_for_header_response`,
    shape: 'bool = 21',
  },
  { name: `${FILTER}.ExternalProcessor.status_on_error`, shape: 'envoy.type.v3.HttpStatus = 24' },
  {
    name: `${FILTER}.ExtProcOverrides.failure_mode_allow`,
    shape: 'google.protobuf.BoolValue = 8',
  },

  // envoy/service/ext_proc/v3/external_processor.proto
  { name: `${SVC}.ProtocolConfiguration`, shape: 'message' },
  {
    name: `${SVC}.ProtocolConfiguration.request_body_mode`,
    shape: `${FILTER}.ProcessingMode.BodySendMode = 1`,
  },
  {
    name: `${SVC}.ProtocolConfiguration.response_body_mode`,
    shape: `${FILTER}.ProcessingMode.BodySendMode = 2`,
  },
  {
    name: `${SVC}.ProtocolConfiguration.send_body_without_waiting_for_header_response`,
    shape: 'bool = 3',
  },
  { name: `${SVC}.ProcessingRequest.protocol_config`, shape: `${SVC}.ProtocolConfiguration = 11` },
  {
    name: `${SVC}.ProcessingResponse.streamed_immediate_response`,
    shape: `${SVC}.StreamedImmediateResponse = 11 in oneof response`,
  },
  { name: `${SVC}.StreamedBodyResponse`, shape: 'message' },
  { name: `${SVC}.StreamedBodyResponse.body`, shape: 'bytes = 1' },
  { name: `${SVC}.StreamedBodyResponse.end_of_stream`, shape: 'bool = 2' },
  { name: `${SVC}.StreamedImmediateResponse`, shape: 'message' },
  {
    name: `${SVC}.StreamedImmediateResponse.headers_response`,
    shape: `${SVC}.HttpHeaders = 1 in oneof response`,
  },
  {
    name: `${SVC}.StreamedImmediateResponse.body_response`,
    shape: `${SVC}.StreamedBodyResponse = 2 in oneof response`,
  },
  {
    name: `${SVC}.StreamedImmediateResponse.trailers_response`,
    shape: 'envoy.config.core.v3.HeaderMap = 3 in oneof response',
  },
  {
    name: `${SVC}.BodyMutation.streamed_response`,
    shape: `${SVC}.StreamedBodyResponse = 3 in oneof mutation`,
  },
];
