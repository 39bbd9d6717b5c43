// Character-class helpers on UTF-16 code units. Detectors work on char codes rather than
// substrings so that scanning allocates nothing until a candidate is found.

export function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

export function isUpper(c: number): boolean {
  return c >= 65 && c <= 90;
}

export function isLower(c: number): boolean {
  return c >= 97 && c <= 122;
}

export function isAlpha(c: number): boolean {
  return isUpper(c) || isLower(c);
}

export function isAlnum(c: number): boolean {
  return isDigit(c) || isUpper(c) || isLower(c);
}

/** ASCII word character (`\w`). NaN (out of range) is not. */
export function isWord(c: number): boolean {
  return isAlnum(c) || c === 95;
}

export function isHex(c: number): boolean {
  return isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

export function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11;
}

/** Characters of base64url (JWT parts, many API keys). */
export function isBase64Url(c: number): boolean {
  return isAlnum(c) || c === 45 || c === 95;
}

/**
 * True when one of `words` (lower case) appears as a whole word in the `window` characters
 * before `pos`. Used to require context for formats that are ambiguous on their own.
 */
export function hasContextBefore(
  text: string,
  pos: number,
  window: number,
  words: readonly string[],
): boolean {
  const from = Math.max(0, pos - window);
  const before = text.slice(from, pos).toLowerCase();
  for (const w of words) {
    let i = before.indexOf(w);
    while (i !== -1) {
      const prev = i === 0 ? NaN : before.charCodeAt(i - 1);
      const next = before.charCodeAt(i + w.length);
      if (!isAlpha(prev) && !isAlpha(next)) return true;
      i = before.indexOf(w, i + 1);
    }
  }
  return false;
}

/**
 * For a number starting at `s` right after "digit space": true when the token before it (back
 * to the previous whitespace) looks like a group of the same printed number — 4 to 6 capitals
 * and digits, as grouped card, IBAN and tracking numbers are written — rather than a token of
 * its own such as `ORD-123456`, `qty 3`, `12:30` or `$9.99`. Looks back at most 7 characters.
 */
export function afterNumberGroup(text: string, s: number): boolean {
  if (text.charCodeAt(s - 1) !== 32 || !isDigit(text.charCodeAt(s - 2))) return false;
  let n = 0;
  for (let i = s - 2; i >= 0; i--) {
    const c = text.charCodeAt(i);
    if (isSpace(c)) break;
    if (!isDigit(c) && !isUpper(c)) return false;
    if (++n > 6) return false;
  }
  return n >= 4;
}

// Letters that follow a backslash in a JSON or shell escape (`\n`, `\t`, `\r`, `\f`, `\v`, `\b`).
function isEscapeLetter(c: number): boolean {
  return c === 110 || c === 116 || c === 114 || c === 102 || c === 118 || c === 98;
}

/**
 * True when `text[i]` is the letter of a backslash escape (`\n` in text that arrived JSON- or
 * shell-escaped once more): an odd number of backslashes stands right before it. Such a letter
 * is whitespace to a reader and must not glue itself to the value after it. Looks back over the
 * backslashes only.
 */
export function isEscapedLetter(text: string, i: number): boolean {
  if (!isEscapeLetter(text.charCodeAt(i))) return false;
  let n = 0;
  for (let k = i - 1; k >= 0 && text.charCodeAt(k) === 92; k--) n++;
  return (n & 1) === 1;
}

/** The character before `i`, with an escape letter (`\n` written out) read as a space. */
export function charBefore(text: string, i: number): number {
  const c = text.charCodeAt(i - 1);
  return isEscapedLetter(text, i - 1) ? 32 : c;
}
