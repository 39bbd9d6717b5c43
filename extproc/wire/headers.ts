/** Envoy sends header values as bytes in `raw_value` (older Envoys in `value`). */
export interface WireHeader {
  key?: string;
  value?: string;
  raw_value?: Buffer | Uint8Array;
  /** raw_value as latin1 (one char per byte, lossless), as the extproc's own decoder gives it. */
  raw_latin1?: string;
}

/**
 * Lowercased names to latin1-decoded values (lossless for any bytes). Repeated headers are joined
 * with ", " as HTTP allows, except set-cookie which never matters here.
 */
export function headerMap(headers: readonly WireHeader[] | undefined): Map<string, string> {
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
