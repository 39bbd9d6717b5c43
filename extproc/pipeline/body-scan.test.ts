import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { duplicateKey } from '../masking/json-keys.js';
import { scanBody } from './body-scan.js';

/**
 * What the router relies on: a body the scan vouches for is one JSON object that JSON.parse
 * takes, without a duplicate key, and each top-level member's span is that member's value.
 */
function assertSound(text: string | Buffer, what = String(text).slice(0, 80)): boolean {
  const buf = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  if (!isUtf8(buf)) return false;
  const scan = scanBody(buf);
  if (!scan) return false;
  const s = buf.toString('utf8');
  let parsed: unknown;
  assert.doesNotThrow(() => (parsed = JSON.parse(s)), what);
  assert.ok(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed), what);
  assert.equal(duplicateKey(s, parsed), undefined, what);
  const obj = parsed as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!/^[\x20-\x7e]*$/.test(key)) continue;
    const span = scan.member(key);
    assert.ok(span, `${what}: member ${key}`);
    assert.deepEqual(JSON.parse(buf.toString('utf8', span.start, span.end)), obj[key], what);
  }
  for (const key of ['absent', 'mode', 'models', '']) {
    if (!(key in obj)) assert.equal(scan.member(key), undefined, `${what}: ${key}`);
  }
  return true;
}

/** A small deterministic generator (the fuzz cases repeat run to run). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function randomValue(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 3 ? 5 : 7));
  switch (k) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return [0, -0.5, 12, 1e21, -3.25e-7, 123456789][Math.floor(r() * 6)];
    case 3:
    case 4: {
      const chars = ['a', 'é', '"', '\\', '\n', '\u0001', '€', '😀', '/', ' ', 'z'];
      let s = '';
      for (let i = Math.floor(r() * 6); i > 0; i--) s += chars[Math.floor(r() * chars.length)];
      return s;
    }
    case 5: {
      const a: unknown[] = [];
      for (let i = Math.floor(r() * 4); i > 0; i--) a.push(randomValue(r, depth + 1));
      return a;
    }
    default: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 5); i > 0; i--) {
        o[['model', 'stream', 'a', 'b', 'é', 'k"q', 'x\\y'][Math.floor(r() * 7)]!] = randomValue(
          r,
          depth + 1,
        );
      }
      return o;
    }
  }
}

const JSONISH = [
  '{',
  '}',
  '[',
  ']',
  ',',
  ':',
  '"',
  '\\',
  ' ',
  '\n',
  '0',
  '1',
  '-',
  '.',
  'e',
  'u',
  't',
  'n',
  'a',
  '\u0001',
  '\u00e9',
];

describe('body scan', () => {
  it('vouches for the bodies clients send, with spans that read as JSON.parse reads them', () => {
    const bodies = [
      '{}',
      ' \t\r\n{ } \n',
      '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
      '{"model": "gpt\\u002d4o", "stream": true, "stream_options": {"include_usage": true}}',
      '{"n": [0, -0, 1.5, -2e10, 3E+2, 4e-3, 123], "t": true, "f": false, "z": null}',
      '{"s": "é€😀 \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uD83D\\uDE00 \\ud800"}',
      '{"a": {"a": {"a": 1}}, "b": [{"a": 1}, {"a": 2}]}',
      '{"model": "m", "messages": [' + '{"role":"user","content":"x"},'.repeat(50) + '{}]}',
    ];
    for (const b of bodies) assert.ok(assertSound(b), b.slice(0, 80));
  });

  it('leaves to JSON.parse what it cannot vouch for', () => {
    const refused = [
      '',
      ' ',
      '[]',
      '"s"',
      '1',
      'null',
      '\ufeff{}',
      '{',
      '{"a"}',
      '{"a":}',
      '{"a":1,}',
      '{,"a":1}',
      '{"a":1 "b":2}',
      '{"a":[1,]}',
      '{"a":[,1]}',
      '{"a":01}',
      '{"a":-}',
      '{"a":1.}',
      '{"a":.5}',
      '{"a":+1}',
      '{"a":1e}',
      '{"a":1e+}',
      '{"a":NaN}',
      '{"a":tru}',
      '{"a":nul}',
      "{'a':1}",
      '{"a":"\\x"}',
      '{"a":"\\u12G4"}',
      '{"a":"\\u12"}',
      '{"a":"x\u0001"}',
      '{"a":"x\ty"}',
      '{"a":"unterminated}',
      '{"a":1}}',
      '{"a":1} x',
      '{"a":1} {}',
      '{"a":1,"a":2}',
      '{"a":{"b":1,"b":1}}',
      '{"a":[{"b":1,"b":2}]}',
      // An escaped key, too wide, too deep: valid, but JSON.parse decides.
      '{"\\u0061":1}',
      JSON.stringify(Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, i]))),
      '{"a":' + '['.repeat(100) + ']'.repeat(100) + '}',
      '{"a":1 /* comment */}',
    ];
    for (const b of refused) assert.equal(scanBody(Buffer.from(b, 'utf8')), undefined, b);
  });

  it('never vouches for a body JSON.parse refuses or that has a duplicate key (fuzzed)', () => {
    const r = rng(16);
    let vouched = 0;
    for (let i = 0; i < 3000; i++) {
      const value = { model: 'm', ...(randomValue(r, 0) as object) };
      let text = JSON.stringify(value, null, r() < 0.3 ? 1 : undefined);
      // Some valid bodies, and mutations of them: a byte replaced, inserted or removed.
      for (let m = Math.floor(r() * 3); m > 0; m--) {
        const at = Math.floor(r() * (text.length + 1));
        const c = JSONISH[Math.floor(r() * JSONISH.length)]!;
        const op = r();
        text =
          op < 0.4
            ? text.slice(0, at) + c + text.slice(at + 1)
            : op < 0.8
              ? text.slice(0, at) + c + text.slice(at)
              : text.slice(0, at) + text.slice(at + 1);
      }
      if (assertSound(text)) vouched++;
    }
    // Most fuzzed bodies are still valid JSON; the scan must have vouched for many of them.
    assert.ok(vouched > 1000, `vouched for ${vouched}`);
  });

  it('compares keys as bytes: equal UTF-8 keys are duplicates, different ones are not', () => {
    assert.equal(scanBody(Buffer.from('{"é":1,"é":2}')), undefined);
    assert.ok(assertSound('{"é":1,"è":2,"e":3}'));
    assert.ok(assertSound('{"ab":1,"a":2,"b":3,"ba":4}'));
  });
});
