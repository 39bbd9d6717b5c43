import { isDigit, isLower, isUpper } from './chars.js';

/**
 * Luhn check over the digits of `text[start, end)`, skipping any non-digit separators so that
 * formatted card numbers are validated in place without building a digit string.
 */
export function luhnValid(text: string, start = 0, end = text.length): boolean {
  let sum = 0;
  let double = false;
  let count = 0;
  for (let i = end - 1; i >= start; i--) {
    const c = text.charCodeAt(i);
    if (!isDigit(c)) continue;
    let d = c - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
    count++;
  }
  return count > 0 && sum % 10 === 0;
}

function ibanValue(c: number): number {
  if (isDigit(c)) return c - 48;
  if (isUpper(c)) return c - 55;
  if (isLower(c)) return c - 87;
  return -1;
}

/**
 * ISO 13616 mod-97 check of the alphanumerics in `text[start, end)`: the first four characters
 * move to the end, letters become 10..35, and the number must be 1 mod 97. Computed
 * incrementally so arbitrarily long IBANs never need big integers.
 */
export function ibanMod97(text: string, start = 0, end = text.length): boolean {
  let remainder = 0;
  let seen = 0;
  const head: number[] = [];
  for (let i = start; i < end; i++) {
    const v = ibanValue(text.charCodeAt(i));
    if (v < 0) continue;
    if (seen < 4) {
      head.push(v);
      seen++;
      continue;
    }
    remainder = v > 9 ? (remainder * 100 + v) % 97 : (remainder * 10 + v) % 97;
    seen++;
  }
  if (seen < 5) return false;
  for (const v of head) remainder = v > 9 ? (remainder * 100 + v) % 97 : (remainder * 10 + v) % 97;
  return remainder === 1;
}
