import { isAlnum, isDigit, isLower, isUpper, isWord } from './chars.js';
import { ibanMod97 } from './checksums.js';
import type { Detector, Finding, TextView } from './types.js';

// IBAN length per country (SWIFT IBAN registry), as country code + length.
const REGISTRY =
  'AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 ' +
  'DJ27 DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HN28 ' +
  'HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 ' +
  'MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29 ' +
  'RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 ' +
  'VA22 VG24 XK20 YE30';

export const IBAN_LENGTHS: ReadonlyMap<string, number> = new Map(
  REGISTRY.split(' ').map((e) => [e.slice(0, 2), Number(e.slice(2))]),
);

/**
 * Returns the end of an IBAN whose country code starts at `start`, or -1. Accepts the electronic
 * form and the print form (groups separated by single spaces); the length must be exactly the
 * country's and the mod-97 check must pass.
 */
export function matchIban(text: string, start: number): number {
  const len = IBAN_LENGTHS.get(text.slice(start, start + 2));
  if (len === undefined) return -1;
  let count = 0;
  let i = start;
  while (count < len) {
    const c = text.charCodeAt(i);
    if (isDigit(c) || isUpper(c)) {
      count++;
      i++;
    } else if (c === 32 && count >= 4 && isAlnum(text.charCodeAt(i + 1))) {
      i++;
    } else {
      return -1;
    }
  }
  const after = text.charCodeAt(i);
  if (isWord(after) || isLower(after)) return -1;
  return ibanMod97(text, start, i) ? i : -1;
}

export function scanIbans(view: TextView, type = 'IBAN'): Finding[] {
  const text = view.text;
  const runs = view.digitRuns();
  const out: Finding[] = [];
  let consumed = 0;
  for (let r = 0; r < runs.length; r += 2) {
    const s = runs[r]!;
    // Country code: two capitals right before the check digits, at a word start.
    if (s < consumed + 2 || runs[r + 1]! - s < 2) continue;
    if (!isUpper(text.charCodeAt(s - 1)) || !isUpper(text.charCodeAt(s - 2))) continue;
    if (isWord(text.charCodeAt(s - 3))) continue;
    const end = matchIban(text, s - 2);
    if (end !== -1) {
      out.push({ type, start: s - 2, end });
      consumed = end;
    }
  }
  return out;
}

export function ibanDetector(): Detector {
  return { type: 'IBAN', scan: (view: TextView) => scanIbans(view) };
}
