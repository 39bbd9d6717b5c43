/**
 * Replaces string values inside a JSON text without re-serializing it, so every other byte of a
 * provider's event (spacing, key order, escapes, numbers) reaches the client unchanged.
 */

export interface StringEdit {
  /** The key the value sits under; undefined for array elements. */
  key: string | undefined;
  from: string;
  to: string;
}

function skipString(s: string, i: number): number {
  // i is at the opening quote; returns the index of the closing one (or -1).
  for (let k = i + 1; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c === 92 /* \ */) k++;
    else if (c === 34 /* " */) return k;
  }
  return -1;
}

/** The edited text, or undefined when some edit found no matching value (callers re-serialize). */
export function spliceJsonStrings(json: string, edits: readonly StringEdit[]): string | undefined {
  if (edits.length === 0) return json;
  const pending = [...edits];
  const out: string[] = [];
  let copied = 0;
  let lastKey: string | undefined;
  let i = 0;
  while (i < json.length && pending.length > 0) {
    if (json.charCodeAt(i) !== 34) {
      i++;
      continue;
    }
    const end = skipString(json, i);
    if (end < 0) return undefined;
    let j = end + 1;
    while (
      j < json.length &&
      (json[j] === ' ' || json[j] === '\n' || json[j] === '\r' || json[j] === '\t')
    )
      j++;
    const literal = json.slice(i, end + 1);
    if (json[j] === ':') {
      lastKey = JSON.parse(literal) as string;
    } else {
      const candidates = pending.filter((e) => e.key === undefined || e.key === lastKey);
      if (candidates.length > 0) {
        const value = JSON.parse(literal) as string;
        const k = pending.findIndex(
          (e) => (e.key === undefined || e.key === lastKey) && e.from === value,
        );
        if (k >= 0) {
          out.push(json.slice(copied, i), JSON.stringify(pending[k]!.to));
          copied = end + 1;
          pending.splice(k, 1);
        }
      }
    }
    i = end + 1;
  }
  if (pending.length > 0) return undefined;
  out.push(json.slice(copied));
  return out.join('');
}
