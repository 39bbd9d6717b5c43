import { afterNumberGroup, charBefore, hasContextBefore, isDigit, isWord } from './chars.js';
import type { Detector, Finding, TextView } from './types.js';

// Without separators nine digits are too common (order ids, zip+4, account numbers) to call an
// SSN without one of these words nearby.
const CONTEXT = ['ssn', 'ss#', 'ssn#', 'social security', 'social', 'taxpayer', 'itin', 'tin'];

// Numbers the SSA voided after they were published in advertising.
const VOIDED = new Set(['078051120', '219099999']);

function num(text: string, at: number, len: number): number {
  let v = 0;
  for (let i = 0; i < len; i++) v = v * 10 + (text.charCodeAt(at + i) - 48);
  return v;
}

/** SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000. */
export function validSsn(area: number, group: number, serial: number): boolean {
  return area !== 0 && area !== 666 && area < 900 && group !== 0 && serial !== 0;
}

function badBefore(c: number): boolean {
  return (
    isWord(c) || c === 45 || c === 46 || c === 47 || c === 43 || c === 35 || c === 36 || c === 58
  );
}

function badAfter(text: string, end: number): boolean {
  const c = text.charCodeAt(end);
  if (isWord(c)) return true;
  return (c === 45 || c === 46 || c === 47 || c === 58) && isDigit(text.charCodeAt(end + 1));
}

export function scanSsns(view: TextView, type = 'US_SSN'): Finding[] {
  const text = view.text;
  const runs = view.digitRuns();
  const out: Finding[] = [];
  for (let r = 0; r < runs.length; r += 2) {
    const s = runs[r]!;
    const e = runs[r + 1]!;
    if (badBefore(charBefore(text, s))) continue;
    // After "digits + space", the spaced form (123 45 6789) may be the tail of a longer grouped
    // number, and so may bare digits after a group; the dashed form is a shape of its own.
    if (text.charCodeAt(s - 1) === 32 && isDigit(text.charCodeAt(s - 2))) {
      const sep = text.charCodeAt(e);
      if (sep === 32 || (sep !== 45 && afterNumberGroup(text, s))) continue;
    }
    let end: number;
    let g: number;
    let sr: number;
    if (e - s === 3) {
      const sep = text.charCodeAt(e);
      if (sep !== 45 && sep !== 32) continue;
      if (runs[r + 2] !== e + 1 || runs[r + 3] !== e + 3) continue;
      if (text.charCodeAt(e + 3) !== sep || runs[r + 4] !== e + 4 || runs[r + 5] !== e + 8)
        continue;
      g = e + 1;
      sr = e + 4;
      end = e + 8;
    } else if (e - s === 9) {
      // The keyword must be close and not separated from the number by another number
      // ("ssn=… employee_id=505812614" is not an SSN context for the second value).
      const window = r === 0 ? 40 : Math.min(40, s - runs[r - 1]!);
      if (!hasContextBefore(text, s, window, CONTEXT)) continue;
      g = s + 3;
      sr = s + 5;
      end = e;
    } else {
      continue;
    }
    if (badAfter(text, end)) continue;
    if (!validSsn(num(text, s, 3), num(text, g, 2), num(text, sr, 4))) continue;
    if (VOIDED.has(text.slice(s, s + 3) + text.slice(g, g + 2) + text.slice(sr, sr + 4))) continue;
    out.push({ type, start: s, end });
  }
  return out;
}

export function usSsnDetector(): Detector {
  return { type: 'US_SSN', scan: (view: TextView) => scanSsns(view) };
}
