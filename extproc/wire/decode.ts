/**
 * A hand-written decoder for the one message the extproc receives, ProcessingRequest, giving the
 * same plain objects as @grpc/proto-loader (keepCase, enums as names, oneof names, defaults
 * left out), except that a HeaderMap arrives undecoded (wire/headers.ts RawHeaderMap: its
 * `headers` list decodes on use, raw_value as a latin1 string `raw_latin1` instead of a Buffer).
 *
 * Why: a request's three header messages were a tenth of the extproc's CPU. protobufjs builds a
 * message instance per header and a Buffer view per value, then proto-loader copies the tree into
 * plain objects, and headerMap() decodes each Buffer again. Here the header fields are only
 * located; headerMap() reads the bytes of the headers the pipeline asks for.
 *
 * Field numbers are from envoy/service/ext_proc/v3/external_processor.proto and
 * envoy/config/core/v3/base.proto; decode.test.ts checks the result against proto-loader's.
 */
import { RawHeaderMap } from './headers.js';

/** ProcessingMode.BodySendMode, by number; a number this proto does not name comes out as its digits. */
const BODY_SEND_MODES = [
  'NONE',
  'STREAMED',
  'BUFFERED',
  'BUFFERED_PARTIAL',
  'FULL_DUPLEX_STREAMED',
] as const;

const REQUEST_CASES = [
  undefined,
  undefined,
  'request_headers',
  'response_headers',
  'request_body',
  'response_body',
  'request_trailers',
  'response_trailers',
] as const;

export type RequestCase = NonNullable<(typeof REQUEST_CASES)[number]>;

export interface DecodedHeaders {
  headers?: RawHeaderMap;
  end_of_stream?: boolean;
}
export interface DecodedBody {
  body?: Buffer;
  end_of_stream?: boolean;
}
export interface DecodedTrailers {
  trailers?: RawHeaderMap;
}
/** google.protobuf.Value as proto-loader gives it: camelCase, plus the oneof's name in `kind`. */
export interface DecodedValue {
  nullValue?: 'NULL_VALUE' | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: DecodedStruct;
  listValue?: { values?: DecodedValue[] };
  kind?: 'nullValue' | 'numberValue' | 'stringValue' | 'boolValue' | 'structValue' | 'listValue';
}
export interface DecodedStruct {
  fields?: Record<string, DecodedValue>;
}

export interface DecodedRequest {
  request?: RequestCase;
  request_headers?: DecodedHeaders;
  response_headers?: DecodedHeaders;
  request_body?: DecodedBody;
  response_body?: DecodedBody;
  request_trailers?: DecodedTrailers;
  response_trailers?: DecodedTrailers;
  /** Present (empty) when sent; its namespaces are not read by the extproc. */
  metadata_context?: object;
  attributes?: Record<string, DecodedStruct>;
  observability_mode?: boolean;
  protocol_config?: {
    request_body_mode?: string;
    response_body_mode?: string;
    send_body_without_waiting_for_header_response?: boolean;
  };
}

export class DecodeError extends Error {}

const VARINT = 0;
const FIXED64 = 1;
const LEN = 2;
const FIXED32 = 5;

/** A cursor over one message's bytes; nested messages get a reader over their own range. */
class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    public end: number,
  ) {
    this.pos = start;
  }

  get more(): boolean {
    return this.pos < this.end;
  }

  /** Up to 53 bits exactly; protobuf varints here are tags, lengths, enums and booleans. */
  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new DecodeError('truncated varint');
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    throw new DecodeError('varint longer than 10 bytes');
  }

  /**
   * Reads a length-delimited field's length: returns where its bytes end, the cursor at their
   * start. (No [start, end] pair: a tuple per field was a tenth of what a request allocated.)
   */
  fieldEnd(): number {
    const len = this.varint();
    const end = this.pos + len;
    if (end > this.end) throw new DecodeError('length beyond the end of the message');
    return end;
  }

  /** Skips a length-delimited field. */
  skipField(): void {
    this.pos = this.fieldEnd();
  }

  /**
   * Narrows this reader to the next length-delimited field (a nested message) instead of making
   * a reader for it; returns what leave() restores. Every nested message is read so (nested()):
   * a Reader per nested message was ~0.5 KiB per request (bench section lean, chat-2k).
   */
  enter(): number {
    const end = this.fieldEnd();
    const outer = this.end;
    this.end = end;
    return outer;
  }

  leave(outer: number): void {
    this.pos = this.end;
    this.end = outer;
  }

  string(): string {
    const end = this.fieldEnd();
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end;
    return s;
  }

  /** A view, not a copy: bodies stay in the buffer the server decoded them into. */
  bytes(): Buffer {
    const end = this.fieldEnd();
    const b = this.buf.subarray(this.pos, end);
    this.pos = end;
    return b;
  }

  double(): number {
    if (this.pos + 8 > this.end) throw new DecodeError('truncated double');
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case VARINT:
        this.varint();
        return;
      case FIXED64:
        this.pos += 8;
        break;
      case LEN:
        this.skipField();
        return;
      case FIXED32:
        this.pos += 4;
        break;
      default:
        // Groups (3, 4) are proto2-only; nothing in ext_proc uses them.
        throw new DecodeError(`unsupported wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new DecodeError('truncated field');
  }
}

/** `read` over the nested message the reader is at, the reader then past it. */
function nested<T>(r: Reader, read: (r: Reader) => T): T {
  const outer = r.enter();
  const v = read(r);
  r.leave(outer);
  return v;
}

export function decodeProcessingRequest(buf: Buffer): DecodedRequest {
  const r = new Reader(buf, 0, buf.length);
  const msg: DecodedRequest = {};
  while (r.more) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field >= 2 && field <= 7 && wt === LEN) {
      // A oneof: the last member on the wire wins, as in every protobuf implementation.
      if (msg.request !== undefined) delete msg[msg.request];
      const kind = REQUEST_CASES[field]!;
      msg.request = kind;
      if (field <= 3) msg[kind as 'request_headers'] = nested(r, headers);
      else if (field <= 5) msg[kind as 'request_body'] = nested(r, body);
      else msg[kind as 'request_trailers'] = nested(r, trailers);
    } else if (field === 8 && wt === LEN) {
      r.skipField();
      msg.metadata_context = {};
    } else if (field === 9 && wt === LEN) {
      const outer = r.enter();
      mapEntry(r, (msg.attributes ??= {}));
      r.leave(outer);
    } else if (field === 10 && wt === VARINT) {
      msg.observability_mode = r.varint() !== 0;
    } else if (field === 11 && wt === LEN) {
      msg.protocol_config = nested(r, protocolConfig);
    } else {
      r.skip(wt);
    }
  }
  return msg;
}

function headers(r: Reader): DecodedHeaders {
  const out: DecodedHeaders = {};
  while (r.more) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LEN)) {
      const outer = r.enter();
      out.headers = headerMap(r, out.headers);
      r.leave(outer);
    } else if (tag === ((3 << 3) | VARINT)) out.end_of_stream = r.varint() !== 0;
    else r.skip(tag & 7); // 2: deprecated attributes, never sent by current Envoys
  }
  return out;
}

function body(r: Reader): DecodedBody {
  const out: DecodedBody = {};
  while (r.more) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LEN)) out.body = r.bytes();
    else if (tag === ((2 << 3) | VARINT)) out.end_of_stream = r.varint() !== 0;
    else r.skip(tag & 7);
  }
  return out;
}

function trailers(r: Reader): DecodedTrailers {
  const out: DecodedTrailers = {};
  while (r.more) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LEN)) {
      const outer = r.enter();
      out.trailers = headerMap(r, out.trailers);
      r.leave(outer);
    } else r.skip(tag & 7);
  }
  return out;
}

/**
 * config.core.v3.HeaderMap, left undecoded (wire/headers.ts reads what is asked for): its
 * entries are checked here, so a malformed one fails the message as before. A second occurrence
 * merges (its headers append), as protobuf does.
 */
function headerMap(r: Reader, into: RawHeaderMap | undefined): RawHeaderMap {
  const start = r.pos;
  while (r.more) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LEN)) {
      const outer = r.enter();
      while (r.more) r.skip(r.varint() & 7);
      r.leave(outer);
    } else r.skip(tag & 7);
  }
  if (!into) return new RawHeaderMap(r.buf, start, r.end);
  into.merge(start, r.end);
  return into;
}

const bodySendMode = (n: number): string => BODY_SEND_MODES[n] ?? String(n);

function protocolConfig(r: Reader): NonNullable<DecodedRequest['protocol_config']> {
  const out: NonNullable<DecodedRequest['protocol_config']> = {};
  while (r.more) {
    const tag = r.varint();
    if (tag === ((1 << 3) | VARINT)) out.request_body_mode = bodySendMode(r.varint());
    else if (tag === ((2 << 3) | VARINT)) out.response_body_mode = bodySendMode(r.varint());
    else if (tag === ((3 << 3) | VARINT)) {
      out.send_body_without_waiting_for_header_response = r.varint() !== 0;
    } else r.skip(tag & 7);
  }
  return out;
}

/** One entry of map<string, google.protobuf.Struct> (key 1, value 2), put into `into`. */
function mapEntry(r: Reader, into: Record<string, DecodedStruct>): void {
  let key = '';
  let value: DecodedStruct = {};
  while (r.more) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LEN)) key = r.string();
    else if (tag === ((2 << 3) | LEN)) value = nested(r, struct);
    else r.skip(tag & 7);
  }
  into[key] = value;
}

/** google.protobuf.Struct: fields 1 = map<string, Value>. */
function struct(r: Reader): DecodedStruct {
  const out: DecodedStruct = {};
  while (r.more) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LEN)) {
      const outer = r.enter();
      let key = '';
      let value: DecodedValue = {};
      while (r.more) {
        const t = r.varint();
        if (t === ((1 << 3) | LEN)) key = r.string();
        else if (t === ((2 << 3) | LEN)) value = nested(r, structValue);
        else r.skip(t & 7);
      }
      r.leave(outer);
      (out.fields ??= {})[key] = value;
    } else r.skip(tag & 7);
  }
  return out;
}

/** google.protobuf.Value: a oneof of null 1, number 2, string 3, bool 4, struct 5, list 6. */
function structValue(r: Reader): DecodedValue {
  let v: DecodedValue = {};
  while (r.more) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === 1 && wt === VARINT) {
      const n = r.varint();
      v = { nullValue: n === 0 ? 'NULL_VALUE' : n, kind: 'nullValue' };
    } else if (field === 2 && wt === FIXED64) v = { numberValue: r.double(), kind: 'numberValue' };
    else if (field === 3 && wt === LEN) v = { stringValue: r.string(), kind: 'stringValue' };
    else if (field === 4 && wt === VARINT) v = { boolValue: r.varint() !== 0, kind: 'boolValue' };
    else if (field === 5 && wt === LEN) v = { structValue: nested(r, struct), kind: 'structValue' };
    else if (field === 6 && wt === LEN) {
      const outer = r.enter();
      const list: { values?: DecodedValue[] } = {};
      while (r.more) {
        const t = r.varint();
        if (t === ((1 << 3) | LEN)) (list.values ??= []).push(nested(r, structValue));
        else r.skip(t & 7);
      }
      r.leave(outer);
      v = { listValue: list, kind: 'listValue' };
    } else r.skip(wt);
  }
  return v;
}
