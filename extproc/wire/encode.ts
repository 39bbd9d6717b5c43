/**
 * A hand-written encoder for every ProcessingResponse wire/messages.ts builds: the answers the
 * extproc sends on every message (a headers, body or trailers answer, CommonResponse,
 * HeaderMutation, BodyMutation, mode_override), and an immediate response (ImmediateResponse:
 * HttpStatus, HeaderMutation, body, GrpcStatus, details) with the response's dynamic_metadata
 * (google.protobuf.Struct, Value, ListValue). It writes the bytes protobufjs would into one Buffer
 * sized up front, optionally after room for gRPC's 5-byte message prefix (so the server frames
 * without a copy). A shape it does not know (none that wire/messages.ts builds: see supported())
 * goes to the protobufjs encoder it is given.
 *
 * Why: protobufjs builds a list of write operations and a fork per nested message before it
 * allocates the output; for a header mutation that was a fifth of what an answer cost. Immediate
 * responses are rare, but protobufjs and the parsed ext_proc protos are loaded on first use
 * (shared/proto.ts), so leaving them to protobufjs stalled the first refused request of every
 * process for ~30 ms; now the node:http2 transport answers without ever loading them.
 *
 * Field numbers: envoy/service/ext_proc/v3/external_processor.proto, envoy/config/core/v3/
 * base.proto (HeaderValueOption, HeaderValue), google/protobuf/wrappers.proto (BoolValue),
 * envoy/extensions/filters/http/ext_proc/v3/processing_mode.proto, envoy/type/v3/
 * http_status.proto, google/protobuf/struct.proto (in proto/envoy-api/envoy-api.binpb).
 * encode.test.ts checks the bytes against protobufjs's for every shape wire/messages.ts builds.
 *
 * A HeaderValue may carry its raw_value as a latin1 string, `raw_latin1` (one byte per
 * character), which this encoder writes as the bytes: wire/messages.ts's answers do, so no Buffer
 * is made per header value. protobufjs does not know it, so a message with one never goes there.
 *
 * Strings are written as UTF-8 by Buffer, which writes a lone surrogate as U+FFFD; protobufjs
 * writes a short string's lone surrogate as its own three bytes, which are not UTF-8 and which a
 * proto3 parser (Envoy's) refuses. That is the one place the bytes differ from protobufjs's.
 */

import {
  BODY_SEND_MODE,
  CONTINUE_AND_REPLACE,
  HEADER_SEND_MODE,
  MutationAnswer,
  type MessageKind,
} from './messages.js';
import type { Mutation } from './mutation.js';

type Obj = Record<string, unknown>;

const ANSWER_FIELDS: Record<string, number> = {
  request_headers: 1,
  response_headers: 2,
  request_body: 3,
  response_body: 4,
  request_trailers: 5,
  response_trailers: 6,
  immediate_response: 7,
};
/** ProcessingResponse.dynamic_metadata (a google.protobuf.Struct). */
const DYNAMIC_METADATA = 8;
const MODE_FIELDS: [string, number][] = [
  ['request_header_mode', 1],
  ['response_header_mode', 2],
  ['request_body_mode', 3],
  ['response_body_mode', 4],
  ['request_trailer_mode', 5],
  ['response_trailer_mode', 6],
];

const LEN = 2;
const VARINT = 0;
/** A double (Value.number_value), little-endian. */
const FIXED64 = 1;
const INT32_MAX = 0x7fff_ffff;
const UINT32_MAX = 0xffff_ffff;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** A length-delimited field of `len` bytes: tag, length, bytes. */
const lenField = (len: number): number => 1 + varintSize(len) + len;

class Out {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
  ) {
    this.pos = start;
  }

  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
  }

  tag(field: number, wireType: number): void {
    this.buf[this.pos++] = (field << 3) | wireType;
  }

  bytes(field: number, b: Buffer): void {
    this.tag(field, LEN);
    this.varint(b.length);
    this.pos += b.copy(this.buf, this.pos);
  }

  string(field: number, s: string, byteLength: number): void {
    this.tag(field, LEN);
    this.varint(byteLength);
    this.pos += this.buf.write(s, this.pos, byteLength, 'utf8');
  }
}

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null;
const present = (v: unknown): boolean => v !== undefined && v !== null;

const keys = (...k: string[]): ReadonlySet<string> => new Set(k);
const COMMON_KEYS = keys('status', 'header_mutation', 'body_mutation', 'clear_route_cache');
const MUTATION_KEYS = keys('set_headers', 'remove_headers');
const OPTION_KEYS = keys('header', 'append', 'append_action', 'keep_empty_value');
const HEADER_KEYS = keys('key', 'value', 'raw_value', 'raw_latin1');
const BODY_MUTATION_KEYS = keys('body', 'clear_body');
const MODE_KEYS = keys(...MODE_FIELDS.map(([k]) => k));
const TRAILERS_KEYS = keys('header_mutation');
const ANSWER_KEYS = keys('response');
const APPEND_KEYS = keys('value');
const IMMEDIATE_KEYS = keys('status', 'headers', 'body', 'grpc_status', 'details');
const HTTP_STATUS_KEYS = keys('code');
const GRPC_STATUS_KEYS = keys('status');
// google.protobuf.Struct, Value and ListValue as protobufjs names their fields (its built-in
// definitions, camelCase whatever the loader's keepCase).
const STRUCT_KEYS = keys('fields');
const VALUE_KEYS = keys(
  'nullValue',
  'numberValue',
  'stringValue',
  'boolValue',
  'structValue',
  'listValue',
);
const LIST_KEYS = keys('values');
/**
 * How deep messages may nest below the ProcessingResponse: protobufjs's limit (protobuf's default
 * recursion limit, which Envoy's parser applies too). A Struct is one level, each Value in it
 * another, a ListValue another; deeper (or a cycle) is refused here, as protobufjs would.
 */
const MAX_DEPTH = 100;

function checkDepth(depth: number): void {
  if (depth > MAX_DEPTH) {
    throw new Error(`dynamic_metadata nests messages deeper than ${MAX_DEPTH} levels`);
  }
}

/** Every set key of `o` is one of `allowed`. */
function only(o: Obj, allowed: ReadonlySet<string>): boolean {
  for (const k in o) if (present(o[k]) && !allowed.has(k)) return false;
  return true;
}

function isStrings(v: unknown): boolean {
  if (v === undefined) return true;
  if (!Array.isArray(v)) return false;
  for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'string') return false;
  return true;
}

// Indexed loops below, not for-of: an array iterator per loop showed in the allocation profile
// (bench section lean, BENCH_ALLOC_PROFILE), several per answer.
const NONE: readonly never[] = [];
const list = <T>(v: unknown): readonly T[] => (v as T[] | undefined) ?? NONE;

function mutationOk(m: unknown): boolean {
  if (!isObj(m) || !only(m, MUTATION_KEYS) || !isStrings(m['remove_headers'])) return false;
  const set = m['set_headers'];
  if (set === undefined) return true;
  if (!Array.isArray(set)) return false;
  for (let i = 0; i < set.length; i++) {
    const o: unknown = set[i];
    if (!isObj(o) || !only(o, OPTION_KEYS)) return false;
    const h = o['header'];
    if (h !== undefined) {
      if (!isObj(h) || !only(h, HEADER_KEYS)) return false;
      if (present(h['key']) && typeof h['key'] !== 'string') return false;
      if (present(h['value']) && typeof h['value'] !== 'string') return false;
      if (present(h['raw_value']) && !Buffer.isBuffer(h['raw_value'])) return false;
      if (present(h['raw_latin1'])) {
        if (typeof h['raw_latin1'] !== 'string' || present(h['raw_value'])) return false;
      }
    }
    const a = o['append'];
    if (a !== undefined && (!isObj(a) || !only(a, APPEND_KEYS))) return false;
  }
  return true;
}

const isUint = (v: unknown, max: number): boolean =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

/** HttpStatus { code = 1 } or GrpcStatus { status = 1 }: one integer field, maybe absent. */
function oneNumberOk(v: unknown, allowed: ReadonlySet<string>, key: string, max: number): boolean {
  if (!isObj(v) || !only(v, allowed)) return false;
  return !present(v[key]) || isUint(v[key], max);
}

function immediateOk(r: Obj): boolean {
  if (!only(r, IMMEDIATE_KEYS)) return false;
  // HttpStatus.code is an enum (int32); a negative one (ten bytes in protobufjs) is no status.
  if (present(r['status']) && !oneNumberOk(r['status'], HTTP_STATUS_KEYS, 'code', INT32_MAX)) {
    return false;
  }
  if (present(r['headers']) && !mutationOk(r['headers'])) return false;
  if (present(r['body']) && !Buffer.isBuffer(r['body'])) return false;
  const grpc = r['grpc_status'];
  if (present(grpc) && !oneNumberOk(grpc, GRPC_STATUS_KEYS, 'status', UINT32_MAX)) return false;
  return !present(r['details']) || typeof r['details'] === 'string';
}

/** A plain object of fields (not an array or a Buffer, whose keys protobufjs would write too). */
const isRecord = (v: unknown): v is Obj => isObj(v) && !Array.isArray(v) && !Buffer.isBuffer(v);

/** A Struct `depth` messages below the ProcessingResponse. */
function structOk(s: unknown, depth: number): boolean {
  if (!isRecord(s) || !only(s, STRUCT_KEYS)) return false;
  checkDepth(depth);
  const fields = s['fields'];
  if (!present(fields)) return true;
  if (!isRecord(fields)) return false;
  const ks = Object.keys(fields);
  for (let i = 0; i < ks.length; i++) if (!valueOk(fields[ks[i]!], depth + 1)) return false;
  return true;
}

/**
 * A Value as wire/messages.ts builds them: one kind set, or several (protobufjs writes every one
 * that is set, so this does too), each of its proto type; the NullValue enum as its number.
 */
function valueOk(v: unknown, depth: number): boolean {
  if (!isRecord(v) || !only(v, VALUE_KEYS)) return false;
  checkDepth(depth);
  if (present(v['nullValue']) && v['nullValue'] !== 0) return false;
  if (present(v['numberValue']) && typeof v['numberValue'] !== 'number') return false;
  if (present(v['stringValue']) && typeof v['stringValue'] !== 'string') return false;
  if (present(v['boolValue']) && typeof v['boolValue'] !== 'boolean') return false;
  if (present(v['structValue']) && !structOk(v['structValue'], depth + 1)) return false;
  const l = v['listValue'];
  if (present(l)) {
    if (!isRecord(l) || !only(l, LIST_KEYS)) return false;
    checkDepth(depth + 1);
    const values = l['values'];
    if (present(values)) {
      if (!Array.isArray(values)) return false;
      for (let i = 0; i < values.length; i++) if (!valueOk(values[i], depth + 2)) return false;
    }
  }
  return true;
}

function commonOk(c: unknown): boolean {
  if (!isObj(c) || !only(c, COMMON_KEYS)) return false;
  if (present(c['header_mutation']) && !mutationOk(c['header_mutation'])) return false;
  const bm = c['body_mutation'];
  if (present(bm)) {
    if (!isObj(bm) || !only(bm, BODY_MUTATION_KEYS)) return false;
    if (present(bm['body']) && !Buffer.isBuffer(bm['body'])) return false;
  }
  return true;
}

/**
 * The shapes this encoder writes, checked to the last key (a field it does not know would be
 * dropped silently otherwise); false sends the message to protobufjs.
 */
function supported(msg: Obj): boolean {
  let answers = 0;
  for (const k in msg) {
    const v = msg[k];
    if (!present(v)) continue;
    if (k in ANSWER_FIELDS) {
      if (!isObj(v)) return false;
      answers++;
      if (k === 'immediate_response') {
        if (!immediateOk(v)) return false;
      } else if (k.endsWith('_trailers')) {
        if (!only(v, TRAILERS_KEYS)) return false;
        if (present(v['header_mutation']) && !mutationOk(v['header_mutation'])) return false;
      } else {
        if (!only(v, ANSWER_KEYS)) return false;
        if (present(v['response']) && !commonOk(v['response'])) return false;
      }
    } else if (k === 'mode_override') {
      if (!isObj(v) || !only(v, MODE_KEYS)) return false;
    } else if (k === 'dynamic_metadata') {
      if (!structOk(v, 1)) return false;
    } else return false;
  }
  return answers <= 1;
}

/** Some object in `v` has a raw_latin1 (wire/messages.ts's header values in answers). */
function hasLatin1(v: unknown, depth: number): boolean {
  if (!isObj(v) || Buffer.isBuffer(v) || depth > 12) return false;
  if (present(v['raw_latin1'])) return true;
  for (const k in v) if (hasLatin1(v[k], depth + 1)) return true;
  return false;
}

// Sizes (bytes of a message's body, without its own tag and length).

function headerValueOptionSize(o: Obj): number {
  let n = 0;
  const h = o['header'];
  if (isObj(h)) n += lenField(headerValueSize(h));
  const a = o['append'];
  if (isObj(a)) n += lenField(present(a['value']) ? 2 : 0);
  if (present(o['append_action'])) n += 1 + varintSize(o['append_action'] as number);
  if (present(o['keep_empty_value'])) n += 2;
  return n;
}

function headerValueSize(h: Obj): number {
  let n = 0;
  if (present(h['key'])) n += lenField(Buffer.byteLength(h['key'] as string));
  if (present(h['value'])) n += lenField(Buffer.byteLength(h['value'] as string));
  if (present(h['raw_value'])) n += lenField((h['raw_value'] as Buffer).length);
  // One byte per character (latin1), as Buffer.from(s, 'latin1') would hold it.
  if (present(h['raw_latin1'])) n += lenField((h['raw_latin1'] as string).length);
  return n;
}

function headerMutationSize(m: Obj): number {
  let n = 0;
  const set = list<Obj>(m['set_headers']);
  for (let i = 0; i < set.length; i++) n += lenField(headerValueOptionSize(set[i]!));
  const remove = list<string>(m['remove_headers']);
  for (let i = 0; i < remove.length; i++) n += lenField(Buffer.byteLength(remove[i]!));
  return n;
}

function commonSize(c: Obj): number {
  let n = 0;
  if (present(c['status'])) n += 1 + varintSize(c['status'] as number);
  const hm = c['header_mutation'];
  if (isObj(hm)) n += lenField(headerMutationSize(hm));
  const bm = c['body_mutation'];
  if (isObj(bm)) n += lenField(bodyMutationSize(bm));
  if (present(c['clear_route_cache'])) n += 2;
  return n;
}

function bodyMutationSize(b: Obj): number {
  let n = 0;
  if (present(b['body'])) n += lenField((b['body'] as Buffer).length);
  if (present(b['clear_body'])) n += 2;
  return n;
}

/** HeadersResponse / BodyResponse { response = 1 }, TrailersResponse { header_mutation = 1 }. */
function answerSize(kind: string, a: Obj): number {
  if (kind === 'immediate_response') return immediateSize(a);
  const inner = kind.endsWith('_trailers') ? a['header_mutation'] : a['response'];
  if (!isObj(inner)) return 0;
  return lenField(kind.endsWith('_trailers') ? headerMutationSize(inner) : commonSize(inner));
}

/** HttpStatus { code = 1 } or GrpcStatus { status = 1 }: the message's body. */
const oneNumberSize = (v: unknown): number => (present(v) ? 1 + varintSize(v as number) : 0);

/**
 * ImmediateResponse { status = 1 (HttpStatus), headers = 2 (HeaderMutation), body = 3,
 * grpc_status = 4 (GrpcStatus), details = 5 }.
 */
function immediateSize(r: Obj): number {
  let n = 0;
  const status = r['status'];
  if (isObj(status)) n += lenField(oneNumberSize(status['code']));
  const headers = r['headers'];
  if (isObj(headers)) n += lenField(headerMutationSize(headers));
  if (present(r['body'])) n += lenField((r['body'] as Buffer).length);
  const grpc = r['grpc_status'];
  if (isObj(grpc)) n += lenField(oneNumberSize(grpc['status']));
  if (present(r['details'])) n += lenField(Buffer.byteLength(r['details'] as string));
  return n;
}

// google.protobuf.Struct { map<string, Value> fields = 1 }, each entry a message { key = 1,
// value = 2 }; Value { oneof kind: null_value = 1, number_value = 2 (double), string_value = 3,
// bool_value = 4, struct_value = 5, list_value = 6 }; ListValue { repeated Value values = 1 }.
// Entries in Object.keys order, as protobufjs writes a map. A Struct can nest without bound, so
// its sizes are computed once, into `lengths` in the order the writer needs them (every nested
// message's length before its contents), rather than again at every level as the writers above
// do for the shallow header messages.

/** `size(o)` as a nested message: its length goes into `lengths` ahead of its children's. */
function nested(lengths: number[], size: (o: Obj, l: number[]) => number, o: Obj): number {
  const at = lengths.push(0) - 1;
  const n = size(o, lengths);
  lengths[at] = n;
  return n;
}

function structSize(s: Obj, lengths: number[]): number {
  const fields = s['fields'];
  if (!isObj(fields)) return 0;
  let n = 0;
  const ks = Object.keys(fields);
  for (let i = 0; i < ks.length; i++) {
    const at = lengths.push(0) - 1;
    const value = nested(lengths, valueSize, fields[ks[i]!] as Obj);
    const entry = lenField(Buffer.byteLength(ks[i]!)) + lenField(value);
    lengths[at] = entry;
    n += lenField(entry);
  }
  return n;
}

function valueSize(v: Obj, lengths: number[]): number {
  let n = 0;
  if (present(v['nullValue'])) n += 1 + varintSize(v['nullValue'] as number);
  if (present(v['numberValue'])) n += 1 + 8;
  if (present(v['stringValue'])) n += lenField(Buffer.byteLength(v['stringValue'] as string));
  if (present(v['boolValue'])) n += 2;
  const s = v['structValue'];
  if (isObj(s)) n += lenField(nested(lengths, structSize, s));
  const l = v['listValue'];
  if (isObj(l)) n += lenField(nested(lengths, listSize, l));
  return n;
}

function listSize(l: Obj, lengths: number[]): number {
  let n = 0;
  const values = list<Obj>(l['values']);
  for (let i = 0; i < values.length; i++) n += lenField(nested(lengths, valueSize, values[i]!));
  return n;
}

function modeSize(m: Obj): number {
  let n = 0;
  for (let i = 0; i < MODE_FIELDS.length; i++) {
    const v = m[MODE_FIELDS[i]![0]];
    if (present(v)) n += 1 + varintSize(v as number);
  }
  return n;
}

// Writers, in field-number order as protobufjs writes.

function writeHeaderValueOption(out: Out, o: Obj): void {
  const h = o['header'];
  if (isObj(h)) {
    out.tag(1, LEN);
    out.varint(headerValueSize(h));
    if (present(h['key'])) {
      const k = h['key'] as string;
      out.string(1, k, Buffer.byteLength(k));
    }
    if (present(h['value'])) {
      const v = h['value'] as string;
      out.string(2, v, Buffer.byteLength(v));
    }
    if (present(h['raw_value'])) out.bytes(3, h['raw_value'] as Buffer);
    if (present(h['raw_latin1'])) {
      const r = h['raw_latin1'] as string;
      out.tag(3, LEN);
      out.varint(r.length);
      out.pos += out.buf.write(r, out.pos, r.length, 'latin1');
    }
  }
  const a = o['append'];
  if (isObj(a)) {
    out.tag(2, LEN);
    if (present(a['value'])) {
      out.varint(2);
      out.tag(1, VARINT);
      out.varint(a['value'] ? 1 : 0);
    } else out.varint(0);
  }
  if (present(o['append_action'])) {
    out.tag(3, VARINT);
    out.varint(o['append_action'] as number);
  }
  if (present(o['keep_empty_value'])) {
    out.tag(4, VARINT);
    out.varint(o['keep_empty_value'] ? 1 : 0);
  }
}

function writeHeaderMutation(out: Out, m: Obj): void {
  const set = list<Obj>(m['set_headers']);
  for (let i = 0; i < set.length; i++) {
    const o = set[i]!;
    out.tag(1, LEN);
    out.varint(headerValueOptionSize(o));
    writeHeaderValueOption(out, o);
  }
  const remove = list<string>(m['remove_headers']);
  for (let i = 0; i < remove.length; i++) {
    const r = remove[i]!;
    out.string(2, r, Buffer.byteLength(r));
  }
}

/** HttpStatus { code = 1 } or GrpcStatus { status = 1 } as field `field`. */
function writeOneNumber(out: Out, field: number, v: unknown): void {
  out.tag(field, LEN);
  out.varint(oneNumberSize(v));
  if (!present(v)) return;
  out.tag(1, VARINT);
  out.varint(v as number);
}

function writeImmediate(out: Out, r: Obj): void {
  const status = r['status'];
  if (isObj(status)) writeOneNumber(out, 1, status['code']);
  const headers = r['headers'];
  if (isObj(headers)) {
    out.tag(2, LEN);
    out.varint(headerMutationSize(headers));
    writeHeaderMutation(out, headers);
  }
  if (present(r['body'])) out.bytes(3, r['body'] as Buffer);
  const grpc = r['grpc_status'];
  if (isObj(grpc)) writeOneNumber(out, 4, grpc['status']);
  if (present(r['details'])) {
    const d = r['details'] as string;
    out.string(5, d, Buffer.byteLength(d));
  }
}

/** The lengths structSize left, read in the order they were pushed. */
class Lengths {
  private at = 0;
  constructor(private readonly list: readonly number[]) {}
  next(): number {
    return this.list[this.at++]!;
  }
}

function writeStruct(out: Out, s: Obj, lengths: Lengths): void {
  const fields = s['fields'];
  if (!isObj(fields)) return;
  const ks = Object.keys(fields);
  for (let i = 0; i < ks.length; i++) {
    const k = ks[i]!;
    out.tag(1, LEN);
    out.varint(lengths.next());
    out.string(1, k, Buffer.byteLength(k));
    out.tag(2, LEN);
    out.varint(lengths.next());
    writeValue(out, fields[k] as Obj, lengths);
  }
}

function writeValue(out: Out, v: Obj, lengths: Lengths): void {
  if (present(v['nullValue'])) {
    out.tag(1, VARINT);
    out.varint(v['nullValue'] as number);
  }
  if (present(v['numberValue'])) {
    out.tag(2, FIXED64);
    out.pos = out.buf.writeDoubleLE(v['numberValue'] as number, out.pos);
  }
  if (present(v['stringValue'])) {
    const s = v['stringValue'] as string;
    out.string(3, s, Buffer.byteLength(s));
  }
  if (present(v['boolValue'])) {
    out.tag(4, VARINT);
    out.varint(v['boolValue'] ? 1 : 0);
  }
  const s = v['structValue'];
  if (isObj(s)) {
    out.tag(5, LEN);
    out.varint(lengths.next());
    writeStruct(out, s, lengths);
  }
  const l = v['listValue'];
  if (isObj(l)) {
    out.tag(6, LEN);
    out.varint(lengths.next());
    const values = list<Obj>(l['values']);
    for (let i = 0; i < values.length; i++) {
      out.tag(1, LEN);
      out.varint(lengths.next());
      writeValue(out, values[i]!, lengths);
    }
  }
}

function writeCommon(out: Out, c: Obj): void {
  if (present(c['status'])) {
    out.tag(1, VARINT);
    out.varint(c['status'] as number);
  }
  const hm = c['header_mutation'];
  if (isObj(hm)) {
    out.tag(2, LEN);
    out.varint(headerMutationSize(hm));
    writeHeaderMutation(out, hm);
  }
  const bm = c['body_mutation'];
  if (isObj(bm)) {
    out.tag(3, LEN);
    out.varint(bodyMutationSize(bm));
    if (present(bm['body'])) out.bytes(1, bm['body'] as Buffer);
    if (present(bm['clear_body'])) {
      out.tag(2, VARINT);
      out.varint(bm['clear_body'] ? 1 : 0);
    }
  }
  if (present(c['clear_route_cache'])) {
    out.tag(5, VARINT);
    out.varint(c['clear_route_cache'] ? 1 : 0);
  }
}

/**
 * Encodes a ProcessingResponse as built by wire/messages.ts, after `prefix` bytes left for the
 * caller (0, or 5 for gRPC's message prefix). `fallback` encodes what this encoder does not
 * write (protobufjs).
 */
export function encodeProcessingResponse(
  msg: object,
  prefix: number,
  fallback: (msg: object) => Buffer,
): Buffer {
  if (msg instanceof MutationAnswer) return encodeMutationAnswer(msg.kind, msg.mutation, prefix);
  const m = msg as Obj;
  if (!supported(m)) {
    // protobufjs knows no raw_latin1: it would drop the value without a word.
    if (hasLatin1(m, 0))
      throw new Error('a raw_latin1 header value in a shape encode.ts does not write');
    const b = fallback(msg);
    if (prefix === 0) return b;
    const out = Buffer.allocUnsafe(prefix + b.length);
    b.copy(out, prefix);
    return out;
  }
  let kind: string | undefined;
  let size = 0;
  for (const k in ANSWER_FIELDS) {
    const a = m[k];
    if (isObj(a)) {
      kind = k;
      size += lenField(answerSize(k, a));
    }
  }
  const meta = m['dynamic_metadata'];
  // The Struct's nested lengths: an array only when there is one (not on every continue answer).
  let metaLengths: number[] | undefined;
  let metaSize = 0;
  if (isObj(meta)) {
    metaLengths = [];
    metaSize = structSize(meta, metaLengths);
    size += lenField(metaSize);
  }
  const mode = m['mode_override'];
  if (isObj(mode)) size += lenField(modeSize(mode));
  const out = new Out(Buffer.allocUnsafe(prefix + size), prefix);
  // Fields in number order, as protobufjs writes: the answer (1-7), dynamic_metadata (8),
  // mode_override (9).
  if (kind !== undefined) {
    const a = m[kind] as Obj;
    out.tag(ANSWER_FIELDS[kind]!, LEN);
    out.varint(answerSize(kind, a));
    const trailers = kind.endsWith('_trailers');
    const inner = trailers ? a['header_mutation'] : a['response'];
    if (kind === 'immediate_response') writeImmediate(out, a);
    else if (isObj(inner)) {
      out.tag(1, LEN);
      if (trailers) {
        out.varint(headerMutationSize(inner));
        writeHeaderMutation(out, inner);
      } else {
        out.varint(commonSize(inner));
        writeCommon(out, inner);
      }
    }
  }
  if (isObj(meta) && metaLengths) {
    out.tag(DYNAMIC_METADATA, LEN);
    out.varint(metaSize);
    writeStruct(out, meta, new Lengths(metaLengths));
  }
  if (isObj(mode)) {
    out.tag(9, LEN);
    out.varint(modeSize(mode));
    for (let i = 0; i < MODE_FIELDS.length; i++) {
      const [k, field] = MODE_FIELDS[i]!;
      if (!present(mode[k])) continue;
      out.tag(field, VARINT);
      out.varint(mode[k] as number);
    }
  }
  if (out.pos !== out.buf.length) {
    throw new Error(`ProcessingResponse encoder: wrote ${out.pos} of ${out.buf.length} bytes`);
  }
  return out.buf;
}

// A MutationAnswer (wire/messages.ts), written from the Mutation itself: the bytes
// encodeProcessingResponse writes for answer()'s tree of the same mutation (encode.test.ts), with
// no tree and no shape checks (a Mutation has only the fields read here). Each set header is a
// HeaderValueOption { header { key = 1, raw_value = 3 (latin1 bytes) }, append { value = false } }.

/** HeaderValueOption.append, BoolValue { value = false }: field 1 written as 0, as protobufjs does. */
const APPEND_FALSE_SIZE = lenField(2);

function setHeaderSize(key: string, value: string): number {
  return lenField(lenField(Buffer.byteLength(key)) + lenField(value.length)) + APPEND_FALSE_SIZE;
}

/** The HeaderMutation's body; -1 when answer() would send none (nothing set or removed). */
function mutationHeadersSize(m: Mutation): number {
  const set = m.setHeaders ?? NONE;
  const remove = m.removeHeaders ?? NONE;
  if (set.length === 0 && remove.length === 0) return -1;
  let n = 0;
  for (let i = 0; i < set.length; i++) n += lenField(setHeaderSize(set[i]![0], set[i]![1]));
  for (let i = 0; i < remove.length; i++) n += lenField(Buffer.byteLength(remove[i]!));
  return n;
}

function writeMutationHeaders(out: Out, m: Mutation): void {
  const set = m.setHeaders ?? NONE;
  for (let i = 0; i < set.length; i++) {
    const [key, value] = set[i]!;
    const keyBytes = Buffer.byteLength(key);
    out.tag(1, LEN);
    out.varint(setHeaderSize(key, value));
    out.tag(1, LEN);
    out.varint(lenField(keyBytes) + lenField(value.length));
    out.string(1, key, keyBytes);
    out.tag(3, LEN);
    out.varint(value.length);
    out.pos += out.buf.write(value, out.pos, value.length, 'latin1');
    out.tag(2, LEN);
    out.varint(2);
    out.tag(1, VARINT);
    out.varint(0);
  }
  const remove = m.removeHeaders ?? NONE;
  for (let i = 0; i < remove.length; i++) {
    const r = remove[i]!;
    out.string(2, r, Buffer.byteLength(r));
  }
}

/** A field of mode_override (ProcessingMode): tag and value; a header mode left out is absent. */
const modeFieldSize = (v: number | undefined): number => (v === undefined ? 0 : 1 + varintSize(v));

function writeModeField(out: Out, field: number, v: number | undefined): void {
  if (v === undefined) return;
  out.tag(field, VARINT);
  out.varint(v);
}

export function encodeMutationAnswer(kind: MessageKind, m: Mutation, prefix: number): Buffer {
  const trailers = kind === 'request_trailers' || kind === 'response_trailers';
  const hm = mutationHeadersSize(m);
  // As answer(): clear_route_cache goes with a header mutation, an empty one if need be.
  const clear = !trailers && m.clearRouteCache === true;
  const withHeaders = hm >= 0 || clear;
  const hmBody = hm >= 0 ? hm : 0;
  // TrailersResponse { header_mutation = 1 }; HeadersResponse / BodyResponse { response = 1 }
  // holding CommonResponse { status = 1, header_mutation = 2, body_mutation = 3, clear = 5 }.
  let common = 0;
  if (!trailers) {
    if (m.replace) common += 1 + varintSize(CONTINUE_AND_REPLACE);
    if (withHeaders) common += lenField(hmBody);
    if (m.body) common += lenField(lenField(m.body.length));
    if (clear) common += 2;
  }
  const inner = trailers ? (hm >= 0 ? lenField(hmBody) : 0) : lenField(common);
  // mode_override (ProcessingMode = 9): header modes 1, 2 when set; body modes 3, 4 always.
  const o = trailers ? undefined : m.modeOverride;
  const reqHeader = o?.requestHeader && HEADER_SEND_MODE[o.requestHeader];
  const resHeader = o?.responseHeader && HEADER_SEND_MODE[o.responseHeader];
  const reqBody = o && BODY_SEND_MODE[o.requestBody];
  const resBody = o && BODY_SEND_MODE[o.responseBody];
  const modeBody =
    modeFieldSize(reqHeader) +
    modeFieldSize(resHeader) +
    modeFieldSize(reqBody) +
    modeFieldSize(resBody);
  const size = lenField(inner) + (o ? lenField(modeBody) : 0);
  const out = new Out(Buffer.allocUnsafe(prefix + size), prefix);
  out.tag(ANSWER_FIELDS[kind]!, LEN);
  out.varint(inner);
  if (trailers) {
    if (hm >= 0) {
      out.tag(1, LEN);
      out.varint(hmBody);
      writeMutationHeaders(out, m);
    }
  } else {
    out.tag(1, LEN);
    out.varint(common);
    if (m.replace) {
      out.tag(1, VARINT);
      out.varint(CONTINUE_AND_REPLACE);
    }
    if (withHeaders) {
      out.tag(2, LEN);
      out.varint(hmBody);
      if (hm >= 0) writeMutationHeaders(out, m);
    }
    if (m.body) {
      out.tag(3, LEN);
      out.varint(lenField(m.body.length));
      out.bytes(1, m.body);
    }
    if (clear) {
      out.tag(5, VARINT);
      out.varint(1);
    }
  }
  if (o) {
    out.tag(9, LEN);
    out.varint(modeBody);
    writeModeField(out, 1, reqHeader);
    writeModeField(out, 2, resHeader);
    writeModeField(out, 3, reqBody);
    writeModeField(out, 4, resBody);
  }
  if (out.pos !== out.buf.length) {
    throw new Error(`ProcessingResponse encoder: wrote ${out.pos} of ${out.buf.length} bytes`);
  }
  return out.buf;
}
