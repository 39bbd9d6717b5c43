/**
 * A hand-written encoder for the answers the extproc sends on every message (ProcessingResponse
 * with a headers, body or trailers answer, CommonResponse, HeaderMutation, BodyMutation,
 * mode_override), writing the bytes protobufjs would into one Buffer sized up front, optionally
 * after room for gRPC's 5-byte message prefix (so the server frames without a copy). Anything
 * else (an immediate response with its dynamic metadata: once per refused request) goes to the
 * protobufjs encoder it is given.
 *
 * Why: protobufjs builds a list of write operations and a fork per nested message before it
 * allocates the output; for a header mutation that was a fifth of what an answer cost.
 *
 * Field numbers: envoy/service/ext_proc/v3/external_processor.proto, envoy/config/core/v3/
 * base.proto (HeaderValueOption, HeaderValue), google/protobuf/wrappers.proto (BoolValue),
 * envoy/extensions/filters/http/ext_proc/v3/processing_mode.proto. encode.test.ts checks the
 * bytes against protobufjs's for every shape wire/messages.ts builds.
 *
 * A HeaderValue may carry its raw_value as a latin1 string, `raw_latin1` (one byte per
 * character), which this encoder writes as the bytes: wire/messages.ts's answers do, so no Buffer
 * is made per header value. protobufjs does not know it, so a message with one never goes there.
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
};
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
      if (k.endsWith('_trailers')) {
        if (!only(v, TRAILERS_KEYS)) return false;
        if (present(v['header_mutation']) && !mutationOk(v['header_mutation'])) return false;
      } else {
        if (!only(v, ANSWER_KEYS)) return false;
        if (present(v['response']) && !commonOk(v['response'])) return false;
      }
    } else if (k === 'mode_override') {
      if (!isObj(v) || !only(v, MODE_KEYS)) return false;
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
  const inner = kind.endsWith('_trailers') ? a['header_mutation'] : a['response'];
  if (!isObj(inner)) return 0;
  return lenField(kind.endsWith('_trailers') ? headerMutationSize(inner) : commonSize(inner));
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
  const mode = m['mode_override'];
  if (isObj(mode)) size += lenField(modeSize(mode));
  const out = new Out(Buffer.allocUnsafe(prefix + size), prefix);
  if (kind !== undefined) {
    const a = m[kind] as Obj;
    out.tag(ANSWER_FIELDS[kind]!, LEN);
    out.varint(answerSize(kind, a));
    const trailers = kind.endsWith('_trailers');
    const inner = trailers ? a['header_mutation'] : a['response'];
    if (isObj(inner)) {
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
