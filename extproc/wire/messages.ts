/**
 * The one module that builds ext_proc ProcessingResponse messages, as plain objects that are
 * ready for protobufjs's encoder (enums as numbers, bytes as Buffers; see wire/proto.ts), except
 * that header values in answers are latin1 strings (`raw_latin1`), which only encode.ts writes
 * (it writes every shape built here; immediate responses, one per refused request, keep Buffers
 * there, which protobufjs reads too). Rules
 * from ENVOY-EXTPROC.md: the answer's oneof matches the message; header values go in `raw_value`
 * only; mode overrides restate both body modes.
 */
import type { BodyMode, HeaderMode, Mutation, Outcome, Verdict } from './mutation.js';
import { REPLY_MARK } from './reply-mark.js';

export type MessageKind =
  | 'request_headers'
  | 'request_body'
  | 'request_trailers'
  | 'response_headers'
  | 'response_body'
  | 'response_trailers';

type WireHeaderOption = {
  header: { key: string; raw_value: Buffer } | { key: string; raw_latin1: string };
  append: { readonly value: boolean };
};
type WireHeaderMutation = { set_headers: WireHeaderOption[]; remove_headers: string[] };
/** CommonResponse.ResponseStatus (external_processor.proto). */
export const CONTINUE_AND_REPLACE = 1;

/** ProcessingMode.BodySendMode (processing_mode.proto); messages.test.ts checks the numbers. */
export const BODY_SEND_MODE: Readonly<Record<BodyMode, number>> = {
  NONE: 0,
  STREAMED: 1,
  BUFFERED: 2,
  BUFFERED_PARTIAL: 3,
};

/** ProcessingMode.HeaderSendMode (processing_mode.proto); DEFAULT (0) is never sent. */
export const HEADER_SEND_MODE: Readonly<Record<HeaderMode, number>> = { SEND: 1, SKIP: 2 };

type WireCommon = {
  status?: typeof CONTINUE_AND_REPLACE;
  header_mutation?: WireHeaderMutation;
  body_mutation?: { body: Buffer };
  clear_route_cache?: boolean;
};
export type WireResponse = Record<string, unknown>;

const EMPTY_ANSWERS: Record<MessageKind, WireResponse> = {
  request_headers: { request_headers: {} },
  request_body: { request_body: {} },
  request_trailers: { request_trailers: {} },
  response_headers: { response_headers: {} },
  response_body: { response_body: {} },
  response_trailers: { response_trailers: {} },
};

/**
 * A continue answer that carries a mutation, kept as the kind and the processor's Mutation:
 * encode.ts writes its bytes straight from them (encodeMutationAnswer), byte for byte what it
 * writes for answer()'s tree (encode.test.ts compares every shape).
 *
 * Why: the tree is a dozen small objects per answer (two per header set) that are read once by
 * the encoder and dropped, with every key checked on the way; for the plain path's four answers
 * that was ~2 KiB of the ~17 KiB Sluice allocated per request (bench section lean,
 * BENCH_ALLOC_PROFILE). The Mutation must not change once answered: the server encodes at once.
 */
export class MutationAnswer {
  constructor(
    readonly kind: MessageKind,
    readonly mutation: Mutation,
  ) {}

  /** The same answer as answer()'s tree (tests, and anything that reads answers as objects). */
  toWire(): WireResponse {
    return answer(this.kind, { kind: 'continue', mutation: this.mutation });
  }
}

/**
 * What the stream writes for `outcome`: answer()'s tree, except a continue with a mutation,
 * which is a MutationAnswer. Throws as answer() does for a mutation the kind cannot carry.
 */
export function reply(kind: MessageKind, outcome: Outcome): WireResponse | MutationAnswer {
  if (outcome.kind === 'respond') return immediate(outcome.verdict);
  const m = outcome.mutation;
  if (!m) return EMPTY_ANSWERS[kind];
  checkMutation(kind, m);
  return new MutationAnswer(kind, m);
}

/** The rules of ENVOY-EXTPROC.md a Mutation can break in an answer of `kind`. */
function checkMutation(kind: MessageKind, m: Mutation): void {
  if (kind === 'request_trailers' || kind === 'response_trailers') return;
  const headers = kind === 'request_headers' || kind === 'response_headers';
  if (m.replace && !headers) {
    throw new Error('CONTINUE_AND_REPLACE is only valid in a headers answer');
  }
  if (m.body && headers && !m.replace) {
    throw new Error('a body in a headers answer needs CONTINUE_AND_REPLACE');
  }
  if (m.modeOverride && !headers) {
    throw new Error('mode_override is only honoured in a headers answer');
  }
}

export function answer(kind: MessageKind, outcome: Outcome): WireResponse {
  if (outcome.kind === 'respond') return immediate(outcome.verdict);
  const m = outcome.mutation;
  if (!m) return EMPTY_ANSWERS[kind];
  if (kind === 'request_trailers' || kind === 'response_trailers') {
    const hm = headerMutation(m);
    return { [kind]: hm ? { header_mutation: hm } : {} };
  }
  checkMutation(kind, m);
  const response: WireCommon = {};
  const hm = headerMutation(m);
  if (hm) response.header_mutation = hm;
  if (m.replace) response.status = CONTINUE_AND_REPLACE;
  if (m.body) response.body_mutation = { body: m.body };
  if (m.clearRouteCache) {
    // Envoy honours clear_route_cache only in an answer that carries a header mutation.
    response.header_mutation ??= { set_headers: [], remove_headers: [] };
    response.clear_route_cache = true;
  }
  const out: WireResponse = { [kind]: { response } };
  if (m.modeOverride) {
    const o = m.modeOverride;
    const mode: Record<string, number> = {
      request_body_mode: BODY_SEND_MODE[o.requestBody],
      response_body_mode: BODY_SEND_MODE[o.responseBody],
    };
    if (o.requestHeader) mode.request_header_mode = HEADER_SEND_MODE[o.requestHeader];
    if (o.responseHeader) mode.response_header_mode = HEADER_SEND_MODE[o.responseHeader];
    out.mode_override = mode;
  }
  return out;
}

/**
 * Every immediate response carries REPLY_MARK (WIRE.replyMetadata* in the contract) as dynamic
 * metadata: Envoy stores it before it sends the local reply, and the HCM's local_reply_config
 * then leaves the reply as we wrote it (operator/compile/to-envoy.ts, localReplyConfig).
 */
const MARK: WireResponse = {
  fields: {
    [REPLY_MARK.namespace]: {
      structValue: { fields: { [REPLY_MARK.key]: { stringValue: REPLY_MARK.value } } },
    },
  },
};

export function immediate(v: Verdict): WireResponse {
  return {
    immediate_response: {
      status: { code: v.status },
      headers: {
        set_headers: v.headers.map(([key, value]) => option(key, value)),
        remove_headers: [],
      },
      body: Buffer.from(v.body, 'utf8'),
      details: v.details,
    },
    dynamic_metadata: MARK,
  };
}

function headerMutation(m: Mutation): WireHeaderMutation | undefined {
  const set = m.setHeaders ?? [];
  const remove = m.removeHeaders ?? [];
  if (set.length === 0 && remove.length === 0) return undefined;
  const options: WireHeaderOption[] = [];
  for (let i = 0; i < set.length; i++) {
    const [key, value] = set[i]!;
    // raw_value as a latin1 string, written as bytes by encode.ts: no Buffer per header value.
    options.push({ header: { key, raw_latin1: value }, append: REPLACE });
  }
  return { set_headers: options, remove_headers: remove };
}

/** append false: a set header replaces the request's own. Shared: the encoders only read it. */
const REPLACE = Object.freeze({ value: false });

/** For immediate responses: raw_value as bytes (one Buffer per header, once per refusal). */
function option(key: string, value: string): WireHeaderOption {
  // latin1 is a lossless byte mapping: header bytes we read come back out unchanged.
  return { header: { key, raw_value: Buffer.from(value, 'latin1') }, append: REPLACE };
}
