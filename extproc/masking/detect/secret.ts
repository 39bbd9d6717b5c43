import { Buffer } from 'node:buffer';
import { isAlnum, isBase64Url, isDigit, isLower, isSpace, isUpper, isWord } from './chars.js';
import type { Detector, Finding, TextView } from './types.js';

const AWS_KEY_ID_PREFIXES = new Set([
  'AKIA',
  'ASIA',
  'ABIA',
  'ACCA',
  'AGPA',
  'AIDA',
  'AROA',
  'AIPA',
  'ANPA',
  'ANVA',
]);

/** Length of the run of characters accepted by `accept` starting at `i` (capped at `max`). */
function runLength(text: string, i: number, accept: (c: number) => boolean, max = 4096): number {
  let j = i;
  while (j - i < max && accept(text.charCodeAt(j))) j++;
  return j - i;
}

function isTokenChar(c: number): boolean {
  return isBase64Url(c);
}

function hasDigitAndLetter(text: string, s: number, e: number): boolean {
  let digit = false;
  let letter = false;
  for (let i = s; i < e; i++) {
    const c = text.charCodeAt(i);
    if (isDigit(c)) digit = true;
    else if (isUpper(c) || isLower(c)) letter = true;
    if (digit && letter) return true;
  }
  return false;
}

function awsKeyId(text: string, at: number): number {
  if (!AWS_KEY_ID_PREFIXES.has(text.slice(at, at + 4))) return -1;
  const n = runLength(text, at + 4, (c) => isUpper(c) || isDigit(c), 17);
  if (n !== 16 || isWord(text.charCodeAt(at + 20))) return -1;
  return at + 20;
}

function googleKey(text: string, at: number): number {
  const n = runLength(text, at + 4, isTokenChar, 36);
  return n === 35 ? at + 39 : -1;
}

/** sk-/sk-proj-/sk-ant-… (OpenAI, Anthropic), sk-sluice-… (Sluice) and sk_live_/rk_test_… (Stripe). */
function skKey(text: string, at: number): number {
  const sep = text.charCodeAt(at + 2);
  if (sep === 95) {
    // Stripe secret and restricted keys: (sk|rk)_(live|test)_ then 24+ alphanumerics.
    const mode = text.slice(at + 3, at + 8);
    if (mode !== 'live_' && mode !== 'test_') return -1;
    const n = runLength(text, at + 8, isAlnum, 256);
    return n >= 20 ? at + 8 + n : -1;
  }
  if (text.charCodeAt(at) !== 115) return -1;
  if (text.startsWith('sk-sluice-', at)) {
    // Sluice virtual keys (`sluice keys create`): 43 base62 characters, which may hold no digit.
    const n = runLength(text, at + 10, isAlnum, 256);
    if (n >= 32 && !isTokenChar(text.charCodeAt(at + 10 + n))) return at + 10 + n;
  }
  const body = at + 3;
  const n = runLength(text, body, isTokenChar, 512);
  if (n < 20 || !hasDigitAndLetter(text, body, body + n)) return -1;
  return body + n;
}

function githubToken(text: string, at: number): number {
  if (text.startsWith('github_pat_', at)) {
    const n = runLength(text, at + 11, (c) => isAlnum(c) || c === 95, 256);
    return n >= 22 ? at + 11 + n : -1;
  }
  const n = runLength(text, at + 4, isAlnum, 256);
  return n >= 30 ? at + 4 + n : -1;
}

function slackToken(text: string, at: number): number {
  const c = text.charCodeAt(at + 3);
  // xoxb (bot), xoxp (user), xoxa/xoxr (app/refresh), xoxo, xoxs, xoxe.
  if (c !== 98 && c !== 112 && c !== 97 && c !== 114 && c !== 111 && c !== 115 && c !== 101) {
    return -1;
  }
  const n = runLength(text, at + 5, (ch) => isAlnum(ch) || ch === 45, 256);
  return n >= 10 && hasDigitAndLetter(text, at + 5, at + 5 + n) ? at + 5 + n : -1;
}

/** Three base64url parts whose first decodes to a JSON object with an `alg` member. */
function jwt(text: string, at: number): number {
  const h = runLength(text, at, isTokenChar, 2048);
  if (h < 10 || text.charCodeAt(at + h) !== 46) return -1;
  const p = at + h + 1;
  const pl = runLength(text, p, isTokenChar, 16384);
  if (pl < 2 || text.charCodeAt(p + pl) !== 46) return -1;
  const sig = p + pl + 1;
  const sl = runLength(text, sig, isTokenChar, 4096);
  if (isWord(text.charCodeAt(sig + sl))) return -1;
  try {
    const header: unknown = JSON.parse(Buffer.from(text.slice(at, at + h), 'base64url').toString());
    if (typeof header !== 'object' || header === null || !('alg' in header)) return -1;
    if (typeof header.alg !== 'string') return -1;
  } catch {
    return -1;
  }
  return sig + sl;
}

function isBearerChar(c: number): boolean {
  // RFC 6750 b64token: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" then "=" padding.
  return isAlnum(c) || c === 45 || c === 46 || c === 95 || c === 126 || c === 43 || c === 47;
}

/** The token after "Bearer ", not the scheme word, so a log keeps its shape. */
function bearer(text: string, at: number): Finding | null {
  let s = at + 6;
  while (s < text.length && (text.charCodeAt(s) === 32 || text.charCodeAt(s) === 9)) s++;
  let e = s + runLength(text, s, isBearerChar, 16384);
  while (text.charCodeAt(e) === 61) e++;
  // Trailing '.' is sentence punctuation more often than token.
  while (e > s && text.charCodeAt(e - 1) === 46) e--;
  if (e - s < 16 || !hasDigitAndLetter(text, s, e)) return null;
  return { type: 'SECRET', start: s, end: e };
}

function pemBlock(text: string, at: number, noEnd: Set<string>): number {
  const labelStart = at + 11;
  const close = text.indexOf('-----', labelStart);
  if (close === -1 || close - labelStart > 40) return -1;
  const label = text.slice(labelStart, close);
  if (!label.endsWith('PRIVATE KEY')) return -1;
  const endMarker = `-----END ${label}-----`;
  // Remembering a missing END marker keeps many BEGIN lines from each searching to the end.
  const end = noEnd.has(label) ? -1 : text.indexOf(endMarker, close + 5);
  if (end !== -1) return end + endMarker.length;
  noEnd.add(label);
  // Truncated block: the key material runs as long as base64, whitespace or escaped newlines do.
  let i = close + 5;
  for (;;) {
    const c = text.charCodeAt(i);
    if (isAlnum(c) || c === 43 || c === 47 || c === 61 || isSpace(c) || c === 92 || c === 58) i++;
    else break;
  }
  return i;
}

/** `scheme://user:password@host` → the password. */
function urlPassword(text: string, at: number): Finding | null {
  let s = at;
  while (s > 0 && (isAlnum(text.charCodeAt(s - 1)) || text.charCodeAt(s - 1) === 43)) s--;
  if (s === at) return null;
  const authStart = at + 3;
  let i = authStart;
  let atSign = -1;
  let colon = -1;
  for (; i < text.length && i - authStart < 512; i++) {
    const c = text.charCodeAt(i);
    if (
      isSpace(c) ||
      c === 47 ||
      c === 63 ||
      c === 35 ||
      c === 34 ||
      c === 39 ||
      c === 60 ||
      c === 62
    )
      break;
    if (c === 64) atSign = i;
    else if (c === 58 && colon === -1 && atSign === -1) colon = i;
  }
  if (atSign === -1 || colon === -1 || colon > atSign || atSign - colon < 2) return null;
  if (!isAlnum(text.charCodeAt(atSign + 1))) return null;
  return { type: 'SECRET', start: colon + 1, end: atSign };
}

// Key names whose value is a credential. Matched against the end of the identifier before ':'
// or '=', case-insensitively, so "DB_PASSWORD", "client_secret" and "x-api-key" all count.
/** The scheme of a bearer token, as written (one array, not one per scan). */
const BEARER: readonly string[] = ['Bearer', 'bearer'];

/** A lower-case word (once: a regex literal in a function is a new RegExp per run). */
const LOWER_WORD = /^[a-z]+$/;

const PASSWORD_KEYS = ['password', 'passwd', 'pwd', 'passphrase'];
const SECRET_KEYS = [
  'secret',
  'secret_key',
  'secretkey',
  'secret_access_key',
  'api_key',
  'apikey',
  'api-key',
  'access_key',
  'access_token',
  'auth_token',
  'refresh_token',
  'token',
  'private_key',
  'client_secret',
  'credentials',
];

function keyKind(key: string): 0 | 1 | 2 {
  for (const k of PASSWORD_KEYS) if (key.endsWith(k)) return 1;
  for (const k of SECRET_KEYS) if (key.endsWith(k)) return 2;
  return 0;
}

function isKeyChar(c: number): boolean {
  return isAlnum(c) || c === 95 || c === 45 || c === 46;
}

const PLACEHOLDER =
  /^(?:\*+|x+|\.+|null|none|nil|true|false|undefined|required|optional|redacted|<[^>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{\{.*\}\})$/i;

/** `password: hunter2`, `"api_key": "…"`, `AWS_SECRET_ACCESS_KEY=…` → the value. */
function keyValue(text: string, op: number): Finding | null {
  let k = op - 1;
  while (k >= 0 && text.charCodeAt(k) === 32) k--;
  const q = text.charCodeAt(k);
  if (q === 34 || q === 39) k--;
  const keyEnd = k + 1;
  while (k >= 0 && keyEnd - k <= 40 && isKeyChar(text.charCodeAt(k))) k--;
  if (keyEnd - k - 1 < 3) return null;
  const kind = keyKind(text.slice(k + 1, keyEnd).toLowerCase());
  if (kind === 0) return null;
  let s = op + 1;
  while (text.charCodeAt(s) === 32 || text.charCodeAt(s) === 9) s++;
  const open = text.charCodeAt(s);
  let e: number;
  if (open === 34 || open === 39) {
    s++;
    e = s;
    while (e < text.length && e - s < 1024) {
      const c = text.charCodeAt(e);
      if (c === open || c === 10) break;
      e++;
    }
    if (text.charCodeAt(e) !== open) return null;
  } else {
    e = s;
    while (e < text.length && e - s < 1024) {
      const c = text.charCodeAt(e);
      if (isSpace(c) || c === 44 || c === 59 || c === 125 || c === 34 || c === 39 || c === 38)
        break;
      e++;
    }
    // An unquoted value's sentence-final punctuation belongs to the sentence.
    while (e > s && (text.charCodeAt(e - 1) === 46 || text.charCodeAt(e - 1) === 41)) e--;
  }
  const len = e - s;
  if (len === 0 || PLACEHOLDER.test(text.slice(s, e))) return null;
  if (kind === 1) {
    if (len < 4) return null;
    // "Forgot your password: click the link" — an unquoted lower-case word after ':' is prose.
    if (
      open !== 34 &&
      open !== 39 &&
      text.charCodeAt(op) === 58 &&
      LOWER_WORD.test(text.slice(s, e))
    ) {
      return null;
    }
  } else if (len < 12 || !hasDigitAndLetter(text, s, e)) {
    return null;
  }
  return { type: 'SECRET', start: s, end: e };
}

function scanKeyValues(text: string, ch: string, out: Finding[]): void {
  let i = text.indexOf(ch);
  while (i !== -1) {
    // "://" is a URL, "==" and ":=" are code, not assignments of credentials.
    const n = text.charCodeAt(i + 1);
    if (n !== 47 && n !== 61) {
      const f = keyValue(text, i);
      if (f !== null) {
        out.push(f);
        i = text.indexOf(ch, f.end);
        continue;
      }
    }
    i = text.indexOf(ch, i + 1);
  }
}

function startsWord(text: string, at: number): boolean {
  const c = text.charCodeAt(at - 1);
  return !isWord(c) && c !== 45;
}

function pushToken(text: string, at: number, end: number, out: Finding[]): void {
  if (end !== -1 && !isWord(text.charCodeAt(end))) out.push({ type: 'SECRET', start: at, end });
}

/**
 * Each family is found from a rare literal with `indexOf` (vectorized in V8, several GB/s on
 * prose) and only then checked in detail. One alternation regex over all prefixes measured
 * about ten times slower because no single literal can drive its search.
 */
export function scanSecrets(view: TextView): Finding[] {
  const text = view.text;
  const out: Finding[] = [];
  for (let i = text.indexOf('://'); i !== -1; i = text.indexOf('://', i + 3)) {
    const f = urlPassword(text, i);
    if (f !== null) out.push(f);
  }
  // Needles start with a rare character: V8 scans for the first character and then compares,
  // so "earer" or "eyJ" (first letter 'e') would crawl through prose.
  // Made at the first PEM header (rare): a Set per scan otherwise (issue 16).
  let noEnd: Set<string> | undefined;
  for (let i = text.indexOf('-----'); i !== -1; i = text.indexOf('-----', i + 5)) {
    if (!text.startsWith('BEGIN ', i + 5)) continue;
    const end = pemBlock(text, i, (noEnd ??= new Set<string>()));
    if (end !== -1) {
      out.push({ type: 'SECRET', start: i, end });
      i = end - 5;
    }
  }
  for (let i = text.indexOf('J'); i !== -1; i = text.indexOf('J', i + 1)) {
    if (i < 2 || text.charCodeAt(i - 1) !== 121 || text.charCodeAt(i - 2) !== 101) continue;
    if (!startsWord(text, i - 2)) continue;
    const end = jwt(text, i - 2);
    if (end !== -1) {
      pushToken(text, i - 2, end, out);
      i = end - 1;
    } else {
      // Any later "eyJ" in the same run of token characters fails the same way; skipping the
      // run keeps crafted input like "eyJeyJeyJ…" linear.
      i += runLength(text, i, isTokenChar, 2048) - 1;
    }
  }
  for (const word of BEARER) {
    for (let i = text.indexOf(word); i !== -1; i = text.indexOf(word, i + 6)) {
      if (isSpace(text.charCodeAt(i + 6)) && startsWord(text, i)) {
        const f = bearer(text, i);
        if (f !== null) out.push(f);
      }
    }
  }
  for (let i = text.indexOf('xox'); i !== -1; i = text.indexOf('xox', i + 3)) {
    if (text.charCodeAt(i + 4) === 45 && startsWord(text, i)) {
      pushToken(text, i, slackToken(text, i), out);
    }
  }
  for (let i = text.indexOf('sk-'); i !== -1; i = text.indexOf('sk-', i + 3)) {
    if (startsWord(text, i)) pushToken(text, i, skKey(text, i), out);
  }
  // '_' is rare in prose and sits at a fixed place in GitHub and Stripe prefixes.
  for (let i = text.indexOf('_'); i !== -1; i = text.indexOf('_', i + 1)) {
    if (i >= 6 && text.startsWith('github_pat_', i - 6) && startsWord(text, i - 6)) {
      pushToken(text, i - 6, githubToken(text, i - 6), out);
    } else if (
      i >= 3 &&
      text.charCodeAt(i - 3) === 103 &&
      text.charCodeAt(i - 2) === 104 &&
      'pousr'.includes(text[i - 1]!) &&
      startsWord(text, i - 3)
    ) {
      pushToken(text, i - 3, githubToken(text, i - 3), out);
    } else if (
      i >= 2 &&
      text.charCodeAt(i - 1) === 107 &&
      (text.charCodeAt(i - 2) === 115 || text.charCodeAt(i - 2) === 114) &&
      startsWord(text, i - 2)
    ) {
      pushToken(text, i - 2, skKey(text, i - 2), out);
    }
  }
  for (let i = text.indexOf('A'); i !== -1; i = text.indexOf('A', i + 1)) {
    // Cheap reject first: every AWS id and Google key has a capital or 'I' next.
    const n = text.charCodeAt(i + 1);
    if (!isUpper(n) || !startsWord(text, i)) continue;
    const end = n === 73 && text.startsWith('za', i + 2) ? googleKey(text, i) : awsKeyId(text, i);
    if (end !== -1 && !isWord(text.charCodeAt(end))) {
      out.push({ type: 'SECRET', start: i, end });
      i = end - 1;
    }
  }
  scanKeyValues(text, '=', out);
  scanKeyValues(text, ':', out);
  return out;
}

export function secretDetector(): Detector {
  return { type: 'SECRET', scan: (view: TextView) => scanSecrets(view) };
}
