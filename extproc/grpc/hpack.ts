/**
 * HPACK (RFC 7541) for Sluice's own HTTP/2 server: a decoder for the request header blocks Envoy
 * sends, and an encoder for the server's few constant response blocks.
 *
 * Why our own: node:http2 makes every received header value that is not in the static table an
 * external string, which V8 allocates in the old generation; an Envoy request brings ~1.1 KiB of
 * them and they drive the full GCs behind our p99 (issue 16). This decoder keeps the strings of
 * each dynamic-table entry, so a header Envoy's encoder sends as an index (every repeated one)
 * hands back the very same string objects: no allocation. Literal strings become ordinary
 * one-byte heap strings (young generation).
 */
import { huffmanDecode, latin1 } from './hpack-huffman.js';

/** A malformed header block; the connection answers it with GOAWAY COMPRESSION_ERROR. */
export class HpackError extends Error {
  override name = 'HpackError';
}

/** The static table, RFC 7541 Appendix A; index 0 is unused. */
// prettier-ignore
const STATIC: ReadonlyArray<readonly [string, string]> = [
  ['', ''],
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'],
  [':path', '/index.html'], [':scheme', 'http'], [':scheme', 'https'], [':status', '200'],
  [':status', '204'], [':status', '206'], [':status', '304'], [':status', '400'],
  [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''],
  ['accept', ''], ['access-control-allow-origin', ''], ['age', ''], ['allow', ''],
  ['authorization', ''], ['cache-control', ''], ['content-disposition', ''],
  ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''],
  ['date', ''], ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''],
  ['if-match', ''], ['if-modified-since', ''], ['if-none-match', ''], ['if-range', ''],
  ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''], ['location', ''],
  ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''],
  ['via', ''], ['www-authenticate', ''],
];
const STATIC_COUNT = STATIC.length - 1; // 61
const STATIC_NAMES: readonly string[] = STATIC.map((f) => f[0]);
const STATIC_VALUES: readonly string[] = STATIC.map((f) => f[1]);

/** RFC 7541 §4.1: an entry's size is its name and value octets plus 32. */
const ENTRY_OVERHEAD = 32;
/** Integers above this are refused (RFC 7541 §5.1 leaves the limit to the implementation). */
const MAX_INT = 0x7fffffff;
/** Enough continuation octets for any value up to MAX_INT (31 bits / 7 per octet). */
const MAX_INT_CONTINUATIONS = 5;
const EMPTY = Buffer.alloc(0);
/** Longest encoded literal value (prefix included) HpackDecoder keeps per static name. */
const LITERAL_KEEP = 128;

export class HpackDecoder {
  /** The SETTINGS_HEADER_TABLE_SIZE we advertise: the most a size update may ask for. */
  private readonly maxTableSize: number;
  /** The table's current maximum size (RFC 7541 §4.2), changed by the peer's size updates. */
  private capacity: number;
  /** Sum of the entries' sizes. */
  private size = 0;
  /** The dynamic table, a ring of names and values: the newest entry is at slot (head - 1) &
   *  mask, the next older one before it. It doubles when full (an entry takes at least 32
   *  octets, so it stays within twice maxTableSize / 32 slots). */
  private names: string[];
  private values: string[];
  private mask: number;
  private head = 0;
  private count = 0;
  /** Read position in the block being decoded. */
  private pos = 0;
  /** The last literal-without-indexing value seen for each static-table name (by index): its
   *  encoded octets (the H bit and length prefix, then the string, at most LITERAL_KEEP) and its
   *  string. Why: nghttp2's encoder never adds :path (nor content-length, set-cookie, etag,
   *  if-modified-since, if-none-match, location, age) to the dynamic table
   *  (hd_deflate_should_indexing, nghttp2 lib/nghttp2_hd.c), so a client repeating one path, as
   *  a gRPC client does, would cost a new string per request. A repeat with the same octets gives
   *  the same string back. Never-indexed (sensitive) fields are not kept. Made on first use:
   *  ~8 KiB per decoder. */
  private literalOctets: Uint8Array | undefined;
  private readonly literalLengths = new Int32Array(STATIC_COUNT + 1);
  private readonly literalStrings: string[] = new Array<string>(STATIC_COUNT + 1).fill('');

  constructor(maxTableSize = 4096) {
    if (!Number.isInteger(maxTableSize) || maxTableSize < 0 || maxTableSize > MAX_INT) {
      throw new RangeError(`maxTableSize ${maxTableSize} is not an integer in 0..2^31-1`);
    }
    this.maxTableSize = maxTableSize;
    this.capacity = maxTableSize;
    // Filled with strings, not holes, so the arrays stay packed string arrays. 16 slots hold
    // a typical gRPC client's headers; room for HTTP/2's default 4096 octets is 128.
    this.names = new Array<string>(16).fill('');
    this.values = new Array<string>(16).fill('');
    this.mask = 15;
  }

  /**
   * Decodes one complete header block, bytes [start, end) of buf, calling field(name, value) for
   * each field in order. Returns the block's header list size (RFC 9113 §6.5.2: name + value
   * octets + 32 per field). The whole block is always decoded, so the dynamic table stays in step
   * with the peer's encoder; the caller applies its own list-size limit. Indexed fields give the
   * same string objects every time. Throws HpackError on anything malformed; an exception thrown
   * by field propagates (the table is then out of step: the connection must end).
   */
  decode(
    buf: Uint8Array,
    start: number,
    end: number,
    field: (name: string, value: string) => void,
  ): number {
    if (!(start >= 0 && start <= end && end <= buf.length)) {
      throw new RangeError(`bad range [${start}, ${end}) of ${buf.length} octets`);
    }
    this.pos = start;
    let listSize = 0;
    let fields = false;
    while (this.pos < end) {
      const first = buf[this.pos]!;
      let name: string;
      let value: string;
      if (first >= 0x80) {
        // Indexed Header Field (§6.1).
        const index = this.integer(buf, end, 0x7f);
        if (index === 0) throw new HpackError('indexed field with index 0');
        if (index <= STATIC_COUNT) {
          name = STATIC_NAMES[index]!;
          value = STATIC_VALUES[index]!;
        } else {
          const slot = this.slot(index);
          name = this.names[slot]!;
          value = this.values[slot]!;
        }
      } else if (first >= 0x20 && first < 0x40) {
        // Dynamic Table Size Update (§6.3), only before the block's first field (§4.2).
        if (fields) throw new HpackError('dynamic table size update after a header field');
        const size = this.integer(buf, end, 0x1f);
        if (size > this.maxTableSize) {
          throw new HpackError(`dynamic table size update to ${size} > ${this.maxTableSize}`);
        }
        this.capacity = size;
        this.evict(0);
        continue;
      } else {
        // Literal Header Field with Incremental Indexing (01, 6-bit index, §6.2.1), without
        // Indexing (0000, §6.2.2) or Never Indexed (0001, §6.2.3); index 0: a literal name.
        const indexing = first >= 0x40;
        const index = this.integer(buf, end, indexing ? 0x3f : 0x0f);
        if (index === 0) name = this.string(buf, end);
        else if (index <= STATIC_COUNT) name = STATIC_NAMES[index]!;
        else name = this.names[this.slot(index)]!;
        value =
          first < 0x10 && index !== 0 && index <= STATIC_COUNT
            ? this.keptString(buf, end, index)
            : this.string(buf, end);
        if (indexing) this.add(name, value);
      }
      fields = true;
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      field(name, value);
    }
    return listSize;
  }

  /** Number of entries in the dynamic table (for tests). */
  get tableLength(): number {
    return this.count;
  }

  /** The dynamic table's size in octets, RFC 7541 §4.1 (for tests). */
  get tableSize(): number {
    return this.size;
  }

  /** Dynamic-table entry i (0: the newest), for tests. */
  tableEntry(i: number): readonly [string, string] | undefined {
    if (!(i >= 0 && i < this.count)) return undefined;
    const slot = (this.head - 1 - i) & this.mask;
    return [this.names[slot]!, this.values[slot]!];
  }

  /** The ring slot of dynamic-table index (62 and up, §2.3.3). */
  private slot(index: number): number {
    const i = index - STATIC_COUNT - 1;
    if (i >= this.count) throw new HpackError(`index ${index} beyond the tables`);
    return (this.head - 1 - i) & this.mask;
  }

  /** Adds an entry (§4.4): evicts until it fits; one larger than the table empties it. */
  private add(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.capacity) {
      this.evict(this.capacity + 1);
      return;
    }
    this.evict(size);
    if (this.count === this.names.length) this.grow();
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.head = (this.head + 1) & this.mask;
    this.count++;
    this.size += size;
  }

  /** Doubles the full ring, its entries moved to slots 0.. oldest first. */
  private grow(): void {
    const slots = this.names.length;
    const names = new Array<string>(2 * slots).fill('');
    const values = new Array<string>(2 * slots).fill('');
    for (let i = 0; i < slots; i++) {
      names[i] = this.names[(this.head + i) & this.mask]!;
      values[i] = this.values[(this.head + i) & this.mask]!;
    }
    this.names = names;
    this.values = values;
    this.mask = 2 * slots - 1;
    this.head = slots;
  }

  /** Evicts the oldest entries until `room` more octets fit within the capacity (or none is left). */
  private evict(room: number): void {
    while (this.count > 0 && this.size + room > this.capacity) {
      const slot = (this.head - this.count) & this.mask;
      this.size -= this.names[slot]!.length + this.values[slot]!.length + ENTRY_OVERHEAD;
      // Dropped so the table does not keep the strings alive.
      this.names[slot] = '';
      this.values[slot] = '';
      this.count--;
    }
  }

  /** An integer with an N-bit prefix (§5.1), mask = 2^N - 1, at pos. */
  private integer(buf: Uint8Array, end: number, mask: number): number {
    let p = this.pos;
    if (p >= end) throw new HpackError('header block truncated');
    let value = buf[p++]! & mask;
    if (value === mask) {
      let scale = 1;
      for (let k = 0; ; k++) {
        if (p >= end) throw new HpackError('header block truncated in an integer');
        if (k === MAX_INT_CONTINUATIONS) throw new HpackError('integer too long');
        const b = buf[p++]!;
        value += (b & 0x7f) * scale;
        if (value > MAX_INT) throw new HpackError('integer overflow');
        if (b < 0x80) break;
        scale *= 128;
      }
    }
    this.pos = p;
    return value;
  }

  /** A string literal like string(), the same string as last time for the static name `index`
   *  if its octets are the same as last time. */
  private keptString(buf: Uint8Array, end: number, index: number): string {
    const from = this.pos;
    const length = this.integer(buf, end, 0x7f);
    if (length > end - this.pos) throw new HpackError('header block truncated in a string');
    const n = this.pos + length - from;
    this.pos = from;
    if (n > LITERAL_KEEP) return this.string(buf, end);
    const kept = (this.literalOctets ??= new Uint8Array((STATIC_COUNT + 1) * LITERAL_KEEP));
    const base = index * LITERAL_KEEP;
    if (this.literalLengths[index] === n) {
      let i = 0;
      while (i < n && kept[base + i] === buf[from + i]) i++;
      if (i === n) {
        this.pos = from + n;
        return this.literalStrings[index]!;
      }
    }
    const str = this.string(buf, end);
    for (let i = 0; i < n; i++) kept[base + i] = buf[from + i]!;
    this.literalLengths[index] = n;
    this.literalStrings[index] = str;
    return str;
  }

  /** A string literal (§5.2) at pos, plain or Huffman-coded, as a latin1 string. */
  private string(buf: Uint8Array, end: number): string {
    const huffman = this.pos < end && buf[this.pos]! >= 0x80;
    const length = this.integer(buf, end, 0x7f);
    const s = this.pos;
    if (length > end - s) throw new HpackError('header block truncated in a string');
    this.pos = s + length;
    if (!huffman) return latin1(buf, s, s + length);
    const str = huffmanDecode(buf, s, s + length);
    if (str === null) throw new HpackError('invalid Huffman-coded string');
    return str;
  }
}

const STATIC_NAME_INDEX = new Map<string, number>();
for (let i = STATIC_COUNT; i >= 1; i--) STATIC_NAME_INDEX.set(STATIC_NAMES[i]!, i);

/**
 * A header block of literal fields "without indexing" (§6.2.2: no dynamic-table state, so any
 * block can be encoded once and reused for every stream), static-table name indices where one
 * exists, no Huffman. Names must be lowercase (RFC 9113 §8.2.1); names and values must be latin1
 * (each char one octet). Used to pre-encode the server's constant blocks.
 */
export function encodeHeaderBlock(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  // Sized first, then written: it also builds trailers for non-OK statuses per call.
  let size = 0;
  for (const [name, value] of fields) {
    if (name === '') throw new TypeError('empty header name');
    if (/[A-Z]/.test(name)) {
      throw new TypeError(`header name ${JSON.stringify(name)} is not lowercase`);
    }
    const index = STATIC_NAME_INDEX.get(name);
    size += index === undefined ? 1 + stringSize(name) : integerSize(4, index);
    size += stringSize(value);
  }
  if (size === 0) return EMPTY;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const [name, value] of fields) {
    const index = STATIC_NAME_INDEX.get(name);
    if (index === undefined) {
      out[at++] = 0;
      at = writeString(out, at, name);
    } else {
      at = writeInteger(out, at, 4, index);
    }
    at = writeString(out, at, value);
  }
  return out;
}

/** Octets of an integer with an N-bit prefix (§5.1). */
function integerSize(bits: number, value: number): number {
  const max = (1 << bits) - 1;
  if (value < max) return 1;
  let n = 2;
  for (value -= max; value >= 0x80; value = Math.floor(value / 128)) n++;
  return n;
}

/** An integer with an N-bit prefix (the prefix's other bits zero) at out[at]; returns the end. */
function writeInteger(out: Buffer, at: number, bits: number, value: number): number {
  const max = (1 << bits) - 1;
  if (value < max) {
    out[at++] = value;
    return at;
  }
  out[at++] = max;
  for (value -= max; value >= 0x80; value = Math.floor(value / 128)) {
    out[at++] = (value & 0x7f) | 0x80;
  }
  out[at++] = value;
  return at;
}

function stringSize(s: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0xff) throw new TypeError('header name or value is not latin1');
  }
  return integerSize(7, s.length) + s.length;
}

/** A plain (not Huffman-coded) string literal at out[at]; returns the end. */
function writeString(out: Buffer, at: number, s: string): number {
  at = writeInteger(out, at, 7, s.length);
  for (let i = 0; i < s.length; i++) out[at++] = s.charCodeAt(i);
  return at;
}
