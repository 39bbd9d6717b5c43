import { charBefore, isAlnum, isAlpha, isDigit, isHex, isWord } from './chars.js';
import type { Detector, Finding, TextView } from './types.js';

// A dotted quad right after these words is a version, not an address ("version 1.0.0.1").
const VERSION_WORDS = new Set(['v', 'version', 'ver', 'release', 'build', 'firmware', 'rev']);

function precededByVersionWord(text: string, start: number): boolean {
  let i = start - 1;
  while (i >= 0 && text.charCodeAt(i) === 32) i--;
  const end = i + 1;
  while (i >= 0 && isAlpha(text.charCodeAt(i))) i--;
  if (end - i - 1 > 8 || end === i + 1) return false;
  return VERSION_WORDS.has(text.slice(i + 1, end).toLowerCase());
}

/** Returns the end of an IPv4 address starting at `start`, or -1. */
export function matchIpv4(text: string, start: number): number {
  let i = start;
  for (let octet = 0; octet < 4; octet++) {
    if (octet > 0) {
      if (text.charCodeAt(i) !== 46) return -1;
      i++;
    }
    const s = i;
    let v = 0;
    while (isDigit(text.charCodeAt(i)) && i - s < 4) v = v * 10 + text.charCodeAt(i++) - 48;
    const len = i - s;
    // Leading zeros ("01") are octal in some parsers and otherwise a sign of a version/date.
    if (len === 0 || len > 3 || v > 255 || (len > 1 && text.charCodeAt(s) === 48)) return -1;
  }
  const after = text.charCodeAt(i);
  if (isWord(after)) return -1;
  // "1.2.3.4.5" and "1.2.3.4-rc1" are version strings.
  if ((after === 46 || after === 45) && isAlnum(text.charCodeAt(i + 1))) return -1;
  return i;
}

function hexGroup(text: string, s: number, e: number): boolean {
  if (e - s < 1 || e - s > 4) return false;
  for (let i = s; i < e; i++) if (!isHex(text.charCodeAt(i))) return false;
  return true;
}

/** Validates `text[s, e)` as an IPv6 address (RFC 4291 text forms, optional IPv4 tail). */
export function validIpv6(text: string, s: number, e: number): boolean {
  const t = text.slice(s, e);
  const dbl = t.indexOf('::');
  if (dbl !== -1 && t.indexOf('::', dbl + 1) !== -1) return false;
  const parts = dbl === -1 ? [t] : [t.slice(0, dbl), t.slice(dbl + 2)];
  let groups = 0;
  let hexDigits = 0;
  for (let p = 0; p < parts.length; p++) {
    const part = parts[p]!;
    if (part.length === 0) continue;
    const fields = part.split(':');
    for (let f = 0; f < fields.length; f++) {
      const field = fields[f]!;
      const last = p === parts.length - 1 && f === fields.length - 1;
      if (last && field.includes('.')) {
        if (matchIpv4(field, 0) !== field.length) return false;
        groups += 2;
        hexDigits += 4;
        continue;
      }
      if (!hexGroup(field, 0, field.length)) return false;
      groups++;
      hexDigits += field.length;
    }
  }
  if (dbl === -1) return groups === 8;
  if (groups > 7) return false;
  // Compressed forms need some substance: "::1" yes, but "1::2" (a Python slice) or "a::" no.
  return t === '::1' || hexDigits >= 3;
}

/**
 * `2001:db8:0:0:8a2e:370:7334:8080` — a full eight-group address with a port after it and no
 * brackets: the end of the address, or -1. Only the uncompressed form is unambiguous; with `::`
 * the last group could be either.
 */
function withoutPort(text: string, s: number, e: number): number {
  const colon = text.lastIndexOf(':', e - 1);
  if (colon <= s || e - colon - 1 < 1 || e - colon - 1 > 5) return -1;
  let port = 0;
  for (let i = colon + 1; i < e; i++) {
    const c = text.charCodeAt(i);
    if (!isDigit(c)) return -1;
    port = port * 10 + c - 48;
  }
  if (port > 65535 || text.slice(s, colon).includes('::')) return -1;
  return validIpv6(text, s, colon) ? colon : -1;
}

function isV6Char(c: number): boolean {
  return isHex(c) || c === 58 || c === 46;
}

export function scanIpv4(view: TextView, type: string, out: Finding[]): void {
  const text = view.text;
  const runs = view.digitRuns();
  let consumed = 0;
  for (let r = 0; r < runs.length; r += 2) {
    const s = runs[r]!;
    if (s < consumed || runs[r + 1]! - s > 3 || text.charCodeAt(runs[r + 1]!) !== 46) continue;
    const before = charBefore(text, s);
    if (isWord(before) || before === 46 || before === 45) continue;
    const end = matchIpv4(text, s);
    if (end === -1 || precededByVersionWord(text, s)) continue;
    out.push({ type, start: s, end });
    consumed = end;
  }
}

export function scanIpv6(view: TextView, type: string, out: Finding[]): void {
  const text = view.text;
  let colon = text.indexOf(':');
  let consumed = 0;
  while (colon !== -1) {
    let s = colon;
    while (s > consumed && isV6Char(text.charCodeAt(s - 1))) s--;
    let e = colon + 1;
    while (e < text.length && isV6Char(text.charCodeAt(e))) e++;
    const next = e;
    // Trailing sentence punctuation and a leading label colon ("addr:fe80::1") are not part of it.
    while (e > s && text.charCodeAt(e - 1) === 46) e--;
    if (text.charCodeAt(e - 1) === 58 && text.charCodeAt(e - 2) !== 58) e--;
    while (s < e && text.charCodeAt(s) === 46) s++;
    if (text.charCodeAt(s) === 58 && text.charCodeAt(s + 1) !== 58) s++;
    if (e - s >= 3 && !isWord(charBefore(text, s)) && !isWord(text.charCodeAt(e))) {
      if (validIpv6(text, s, e)) out.push({ type, start: s, end: e });
      else {
        const a = withoutPort(text, s, e);
        if (a !== -1) out.push({ type, start: s, end: a });
      }
    }
    consumed = next;
    colon = text.indexOf(':', next);
  }
}

export function ipAddressDetector(): Detector {
  return {
    type: 'IP_ADDRESS',
    scan(view: TextView): Finding[] {
      const out: Finding[] = [];
      scanIpv4(view, 'IP_ADDRESS', out);
      scanIpv6(view, 'IP_ADDRESS', out);
      // IPv4 tails of IPv6 addresses ("::ffff:192.0.2.1") are found twice; the set's overlap
      // resolution keeps the longer one.
      return out;
    },
  };
}
