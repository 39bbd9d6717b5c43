/** Envoy sends header values as bytes in `raw_value` (older Envoys in `value`). */
export interface WireHeader {
  key?: string;
  value?: string;
  raw_value?: Buffer | Uint8Array;
  /** raw_value as latin1 (one char per byte, lossless), as the extproc's own decoder gives it. */
  raw_latin1?: string;
}

/** A config.core.v3.HeaderMap as a message holds it. */
export interface WireHeaderMap {
  headers?: readonly WireHeader[] | undefined;
}

/**
 * Lowercased names to latin1-decoded values (lossless for any bytes). Repeated headers are joined
 * with ", " as HTTP allows, except set-cookie which never matters here.
 *
 * A HeaderMap read by the extproc's own decoder (RawHeaderMap) gives a view that decodes only
 * the headers asked for; any other (tests, proto-loader's objects) a Map built from its list.
 */
export function headerMap(map: WireHeaderMap | undefined): ReadonlyMap<string, string> {
  if (map instanceof RawHeaderMap) return new RawHeaderView(map);
  return listMap(map?.headers);
}

function listMap(headers: readonly WireHeader[] | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!headers) return out;
  for (const h of headers) {
    if (!h.key) continue;
    const key = h.key.toLowerCase();
    const raw = h.raw_value;
    const value = h.raw_latin1
      ? h.raw_latin1
      : raw && raw.length > 0
        ? Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('latin1')
        : (h.value ?? '');
    const prev = out.get(key);
    out.set(key, prev === undefined ? value : `${prev}, ${value}`);
  }
  return out;
}

/**
 * Where the entries of one RawHeaderMap lie (key, value, raw_value: [start, end) each, -1
 * absent), for the map whose id is `indexed`: filled by its first lookup, then read by the next ones.
 *
 * Why: a lookup walked and decoded the protobuf framing of every entry (tags, lengths, the
 * nested HeaderValue), and a request's phases make ~20 lookups over ~16 headers: the header
 * walk was the extproc's largest own CPU item after the transport (bench chat-2k --cpu-prof).
 * One index shared by every map, not one per map: an index per map would be allocation per
 * message, and a phase's lookups come one after another on the same map (synchronous code), so
 * the shared one is nearly always the right one; another map's lookup refills it.
 */
const INDEX_ENTRIES = 256;
const INDEX = new Int32Array(INDEX_ENTRIES * 6);
/** The id of the map INDEX holds (a number, not the map: the index keeps no message alive). */
let indexed = 0;
let nextId = 0;
/** Entries in INDEX; -1: the indexed map has more than INDEX_ENTRIES (lookups walk it). */
let indexCount = 0;
/** Every key of the indexed map is ASCII. */
let indexAscii = true;

/**
 * A HeaderMap as wire/decode.ts reads it: the message's bytes and where the HeaderMap lies in
 * them (its entries checked by the decoder, nothing kept of them). Lookups walk the entries and
 * decode only the value asked for; `headers` decodes the whole list on first use (the shape the
 * decoder gave before: key, value, raw_latin1 as present).
 *
 * Why: the extproc reads a handful of a request's headers (path, method, content type and
 * length, its own x-sluice-* ones), but turning every key and value into strings, objects and a
 * Map was a tenth of what a request allocated (bench section lean, BENCH_ALLOC_PROFILE). A walk
 * over ~20 entries per lookup costs less than that allocation did.
 */
export class RawHeaderMap implements WireHeaderMap {
  private list: WireHeader[] | undefined;
  /** Further occurrences of the HeaderMap field ([start, end) pairs): protobuf merges them. */
  private more: number[] | undefined;
  // What read() found of the last HeaderValue: [start, end) of key, value, raw_value; -1 absent.
  private ks = -1;
  private ke = -1;
  private vs = -1;
  private ve = -1;
  private rs = -1;
  private re = -1;
  /** read()'s cursor. */
  private at = 0;
  /** Names this map to the shared INDEX. */
  private readonly id = ++nextId;

  constructor(
    readonly buf: Buffer,
    private readonly start: number,
    private readonly end: number,
  ) {}

  /** Another occurrence of the HeaderMap field: its headers follow these. */
  merge(start: number, end: number): void {
    (this.more ??= []).push(start, end);
    this.list = undefined;
    if (indexed === this.id) indexed = 0;
  }

  private varint(): number {
    const buf = this.buf;
    let result = 0;
    let mul = 1;
    for (;;) {
      const b = buf[this.at++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
  }

  /**
   * Reads the next HeaderValue of [at, end) into the scratch fields; false at the end. The bytes
   * were checked by the decoder (lengths within the message, wire types known).
   */
  private read(end: number): boolean {
    while (this.at < end) {
      const tag = this.varint();
      const wt = tag & 7;
      if (wt === 0) {
        this.varint();
        continue;
      }
      if (wt === 1 || wt === 5) {
        this.at += wt === 1 ? 8 : 4;
        continue;
      }
      const len = this.varint();
      const fieldEnd = this.at + len;
      if (tag !== ((1 << 3) | 2)) {
        this.at = fieldEnd;
        continue;
      }
      this.ks = this.ke = this.vs = this.ve = this.rs = this.re = -1;
      while (this.at < fieldEnd) {
        const t = this.varint();
        const w = t & 7;
        if (w === 0) this.varint();
        else if (w === 1 || w === 5) this.at += w === 1 ? 8 : 4;
        else {
          const n = this.varint();
          const e = this.at + n;
          const f = t >>> 3;
          if (w === 2 && f === 1) {
            this.ks = this.at;
            this.ke = e;
          } else if (w === 2 && f === 2) {
            this.vs = this.at;
            this.ve = e;
          } else if (w === 2 && f === 3) {
            this.rs = this.at;
            this.re = e;
          }
          this.at = e;
        }
      }
      this.at = fieldEnd;
      return true;
    }
    return false;
  }

  /** How many occurrences of the HeaderMap field there were (usually one). */
  private get ranges(): number {
    return 1 + (this.more ? this.more.length / 2 : 0);
  }

  /** Puts read()'s cursor at the start of occurrence r; returns where it ends. */
  private enter(r: number): number {
    if (r === 0) {
      this.at = this.start;
      return this.end;
    }
    this.at = this.more![2 * r - 2]!;
    return this.more![2 * r - 1]!;
  }

  get headers(): WireHeader[] | undefined {
    if (this.list) return this.list;
    const list: WireHeader[] = [];
    for (let r = 0; r < this.ranges; r++) {
      const end = this.enter(r);
      while (this.read(end)) {
        const h: WireHeader = {};
        if (this.ks >= 0) h.key = this.buf.toString('utf8', this.ks, this.ke);
        if (this.vs >= 0) h.value = this.buf.toString('utf8', this.vs, this.ve);
        if (this.rs >= 0) h.raw_latin1 = this.buf.toString('latin1', this.rs, this.re);
        list.push(h);
      }
    }
    if (list.length === 0) return undefined;
    return (this.list = list);
  }

  /** As a plain object (JSON, test comparisons): what the decoder gave before. */
  toJSON(): WireHeaderMap {
    const headers = this.headers;
    return headers ? { headers } : {};
  }

  /**
   * Fills the shared index with this map's entries (see INDEX); false when they do not fit,
   * and then lookups walk the bytes.
   */
  private indexed(): boolean {
    if (indexed === this.id) return indexCount >= 0;
    indexed = this.id;
    indexCount = 0;
    indexAscii = true;
    const buf = this.buf;
    for (let r = 0; r < this.ranges; r++) {
      const end = this.enter(r);
      while (this.read(end)) {
        if (indexCount === INDEX_ENTRIES) {
          indexCount = -1;
          return false;
        }
        const at = indexCount++ * 6;
        INDEX[at] = this.ks;
        INDEX[at + 1] = this.ke;
        INDEX[at + 2] = this.vs;
        INDEX[at + 3] = this.ve;
        INDEX[at + 4] = this.rs;
        INDEX[at + 5] = this.re;
        for (let j = this.ks; j >= 0 && j < this.ke; j++) if (buf[j]! >= 0x80) indexAscii = false;
      }
    }
    return true;
  }

  /** Every key is ASCII: then a name matches a key byte for byte, ASCII letters lowercased. */
  asciiKeys(): boolean {
    if (this.indexed()) return indexAscii;
    const buf = this.buf;
    for (let r = 0; r < this.ranges; r++) {
      const end = this.enter(r);
      while (this.read(end)) {
        for (let j = this.ks; j >= 0 && j < this.ke; j++) if (buf[j]! >= 0x80) return false;
      }
    }
    return true;
  }

  /** The scratch header's lowercased key is `name` (an ASCII key). */
  private named(name: string): boolean {
    const n = name.length;
    if (this.ks < 0 || n === 0 || this.ke - this.ks !== n) return false;
    const buf = this.buf;
    for (let j = 0; j < n; j++) {
      let b = buf[this.ks + j]!;
      if (b >= 0x41 && b <= 0x5a) b += 0x20;
      if (b !== name.charCodeAt(j)) return false;
    }
    return true;
  }

  /** The scratch header's value as headerMap() reads it: raw_value when not empty, else value. */
  private value(): string {
    if (this.rs >= 0 && this.re > this.rs) return this.buf.toString('latin1', this.rs, this.re);
    return this.vs >= 0 ? this.buf.toString('utf8', this.vs, this.ve) : '';
  }

  /** headerMap()'s value for `name` (repeats joined with ", "), for ASCII keys. */
  lookup(name: string, presence: boolean): string | undefined {
    let out: string | undefined;
    if (this.indexed()) {
      for (let i = 0; i < indexCount; i++) {
        const at = i * 6;
        this.ks = INDEX[at]!;
        this.ke = INDEX[at + 1]!;
        if (!this.named(name)) continue;
        if (presence) return '';
        this.vs = INDEX[at + 2]!;
        this.ve = INDEX[at + 3]!;
        this.rs = INDEX[at + 4]!;
        this.re = INDEX[at + 5]!;
        const v = this.value();
        out = out === undefined ? v : `${out}, ${v}`;
      }
      return out;
    }
    for (let r = 0; r < this.ranges; r++) {
      const end = this.enter(r);
      while (this.read(end)) {
        if (!this.named(name)) continue;
        if (presence) return '';
        const v = this.value();
        out = out === undefined ? v : `${out}, ${v}`;
      }
    }
    return out;
  }
}

/**
 * headerMap() of a RawHeaderMap: get and has read the bytes of the headers asked for; anything
 * that walks every header (size, iteration) builds the Map once. Same answers as the Map.
 */
class RawHeaderView implements ReadonlyMap<string, string> {
  private all: Map<string, string> | undefined;
  /** undefined until the first lookup: a key outside ASCII sends every lookup to the Map. */
  private ascii: boolean | undefined;

  constructor(private readonly raw: RawHeaderMap) {}

  private map(): Map<string, string> {
    return (this.all ??= listMap(this.raw.headers));
  }

  private direct(): boolean {
    if (this.all) return false;
    // toLowerCase of a non-ASCII key may give an ASCII name (U+212A KELVIN SIGN is "k").
    this.ascii ??= this.raw.asciiKeys();
    return this.ascii;
  }

  get(name: string): string | undefined {
    return this.direct() ? this.raw.lookup(name, false) : this.map().get(name);
  }

  has(name: string): boolean {
    return this.direct() ? this.raw.lookup(name, true) !== undefined : this.map().has(name);
  }

  get size(): number {
    return this.map().size;
  }

  forEach(
    fn: (value: string, key: string, map: ReadonlyMap<string, string>) => void,
    self?: unknown,
  ): void {
    for (const [k, v] of this.map()) fn.call(self, v, k, this);
  }

  entries(): MapIterator<[string, string]> {
    return this.map().entries();
  }

  keys(): MapIterator<string> {
    return this.map().keys();
  }

  values(): MapIterator<string> {
    return this.map().values();
  }

  [Symbol.iterator](): MapIterator<[string, string]> {
    return this.map()[Symbol.iterator]();
  }
}
