import { isAlnum, isAlpha, isDigit, isEscapedLetter } from './chars.js';
import type { Detector, Finding, TextView } from './types.js';

const MAX_LOCAL = 64;
const MAX_DOMAIN = 253;

function isLocalChar(c: number): boolean {
  // RFC 5322 atext minus the characters that in prose almost always delimit rather than belong
  // to an address (quotes, slashes, braces, '|', '`', '?', '^', '=', '~', '#', '$', '&', '*').
  return isAlnum(c) || c === 46 || c === 95 || c === 37 || c === 43 || c === 45 || c === 39;
}

function isDomainChar(c: number): boolean {
  return isAlnum(c) || c === 46 || c === 45;
}

/** Validates `text[start, end)` as a DNS name with at least two labels and an alphabetic TLD. */
function validDomain(text: string, start: number, end: number): boolean {
  let labels = 0;
  let labelStart = start;
  for (let i = start; i <= end; i++) {
    if (i < end && text.charCodeAt(i) !== 46) continue;
    const len = i - labelStart;
    if (len === 0 || len > 63) return false;
    if (text.charCodeAt(labelStart) === 45 || text.charCodeAt(i - 1) === 45) return false;
    labels++;
    if (i === end) {
      // TLD: letters only, or an IDNA "xn--" label.
      if (len < 2) return false;
      if (text.startsWith('xn--', labelStart)) return true;
      for (let k = labelStart; k < i; k++) if (!isAlpha(text.charCodeAt(k))) return false;
    }
    labelStart = i + 1;
  }
  return labels >= 2;
}

/**
 * True when the '@' belongs to the userinfo of a URL (`scheme://user:pass@host`): walking back
 * through the same whitespace-free token reaches "://" before any other '/'.
 */
function inUrlUserinfo(text: string, at: number): boolean {
  for (let i = at - 1; i >= 2 && i > at - 512; i--) {
    const c = text.charCodeAt(i);
    if (c === 32 || c === 10 || c === 9 || c === 13 || c === 34 || c === 39 || c === 60)
      return false;
    if (c === 47) return text.charCodeAt(i - 1) === 47 && text.charCodeAt(i - 2) === 58;
  }
  return false;
}

export function scanEmails(text: string, type = 'EMAIL'): Finding[] {
  const out: Finding[] = [];
  let at = text.indexOf('@');
  let consumed = 0;
  while (at !== -1) {
    let start = at;
    while (start > consumed && at - start < MAX_LOCAL && isLocalChar(text.charCodeAt(start - 1)))
      start--;
    // Dots and quotes cannot start a local part; in prose they are surrounding punctuation.
    while (start < at && (text.charCodeAt(start) === 46 || text.charCodeAt(start) === 39)) start++;
    // `\nmaria@…` in text escaped once more: the `n` belongs to the escape, not the address.
    if (start < at && isEscapedLetter(text, start)) start++;
    let end = at + 1;
    while (end < text.length && end - at <= MAX_DOMAIN && isDomainChar(text.charCodeAt(end))) end++;
    // A sentence-final '.' or '-' is punctuation, not part of the domain.
    while (end > at + 1 && (text.charCodeAt(end - 1) === 46 || text.charCodeAt(end - 1) === 45))
      end--;
    if (
      start < at &&
      text.charCodeAt(at - 1) !== 46 &&
      validDomain(text, at + 1, end) &&
      !isDigit(text.charCodeAt(end)) &&
      text.charCodeAt(end) !== 64 &&
      !inUrlUserinfo(text, at)
    ) {
      out.push({ type, start, end });
      consumed = end;
    }
    at = text.indexOf('@', Math.max(at + 1, consumed));
  }
  return out;
}

export function emailDetector(): Detector {
  return { type: 'EMAIL', scan: (view: TextView) => scanEmails(view.text) };
}
