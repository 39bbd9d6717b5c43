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

/** Fields of one header in RawHeaderMap.spans: start and end offsets in `buf`, -1 when absent. */
const KEY = 0;
const VALUE = 2;
const RAW = 4;
/** Numbers per header in RawHeaderMap.spans. */
export const SPAN = 6;

/**
 * A HeaderMap as wire/decode.ts reads it: the message's bytes and where each header's key, value
 * and raw_value lie, nothing decoded yet. `headers` decodes the list on first use (the shape the
 * decoder gave before: key, value, raw_latin1 as present).
 *
 * Why: the extproc reads a handful of a request's headers (path, method, content type and
 * length, its own x-sluice-* ones), but turning every key and value into strings, objects and a
 * Map was a tenth of what a request allocated (bench section lean, BENCH_ALLOC_PROFILE).
 */
export class RawHeaderMap implements WireHeaderMap {
  private list: WireHeader[] | undefined;

  constructor(
    readonly buf: Buffer,
    /** SPAN numbers per header, in wire order: key, value, raw_value as [start, end) pairs. */
    readonly spans: number[],
  ) {}

  get count(): number {
    return this.spans.length / SPAN;
  }

  get headers(): WireHeader[] | undefined {
    if (this.spans.length === 0) return undefined;
    if (this.list) return this.list;
    const list: WireHeader[] = [];
    for (let i = 0; i < this.spans.length; i += SPAN) {
      const h: WireHeader = {};
      const k = this.spans[i + KEY]!;
      if (k >= 0) h.key = this.buf.toString('utf8', k, this.spans[i + KEY + 1]);
      const v = this.spans[i + VALUE]!;
      if (v >= 0) h.value = this.buf.toString('utf8', v, this.spans[i + VALUE + 1]);
      const r = this.spans[i + RAW]!;
      if (r >= 0) h.raw_latin1 = this.buf.toString('latin1', r, this.spans[i + RAW + 1]);
      list.push(h);
    }
    return (this.list = list);
  }

  /** As a plain object (JSON, test comparisons): what the decoder gave before. */
  toJSON(): WireHeaderMap {
    const headers = this.headers;
    return headers ? { headers } : {};
  }

  /** Every key is ASCII: then a name matches a key byte for byte, ASCII letters lowercased. */
  asciiKeys(): boolean {
    const { buf, spans } = this;
    for (let i = 0; i < spans.length; i += SPAN) {
      const end = spans[i + KEY + 1]!;
      for (let j = spans[i + KEY]!; j < end; j++) if (buf[j]! >= 0x80) return false;
    }
    return true;
  }

  /** The index in `spans` of the next header at or after `from` whose lowercased key is `name`. */
  find(name: string, from: number): number {
    const { buf, spans } = this;
    const n = name.length;
    for (let i = from; i < spans.length; i += SPAN) {
      const start = spans[i + KEY]!;
      if (start < 0 || spans[i + KEY + 1]! - start !== n || n === 0) continue;
      let j = 0;
      for (; j < n; j++) {
        let b = buf[start + j]!;
        if (b >= 0x41 && b <= 0x5a) b += 0x20;
        if (b !== name.charCodeAt(j)) break;
      }
      if (j === n) return i;
    }
    return -1;
  }

  /** The value headerMap() gives the header at `i`: raw_value when not empty, else value. */
  valueAt(i: number): string {
    const { buf, spans } = this;
    const r = spans[i + RAW]!;
    if (r >= 0 && spans[i + RAW + 1]! > r) return buf.toString('latin1', r, spans[i + RAW + 1]);
    const v = spans[i + VALUE]!;
    return v >= 0 ? buf.toString('utf8', v, spans[i + VALUE + 1]) : '';
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
    if (!this.direct()) return this.map().get(name);
    const raw = this.raw;
    let i = raw.find(name, 0);
    if (i < 0) return undefined;
    let value = raw.valueAt(i);
    while ((i = raw.find(name, i + SPAN)) >= 0) value = `${value}, ${raw.valueAt(i)}`;
    return value;
  }

  has(name: string): boolean {
    return this.direct() ? this.raw.find(name, 0) >= 0 : this.map().has(name);
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
