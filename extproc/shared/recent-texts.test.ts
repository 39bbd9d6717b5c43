import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RecentTexts, textKey, turnTextsHeld } from './recent-texts.js';

const long = (n: number): string => `text number ${n} `.padEnd(80, '.');
/** Texts of different lengths: textKey holds one text per length. */
const sized = (n: number): string => `text number ${n} `.padEnd(80 + n, '.');

void describe('RecentTexts', () => {
  it('makes a value once per text while it recurs, with the argument given', () => {
    const recent = new RecentTexts<string>();
    let made = 0;
    const make = (text: string, tag: string): string => (made++, `${tag}:${text.length}`);
    for (const round of [1, 2, 3]) {
      assert.equal(recent.get(long(1), make, 'a'), 'a:80', `round ${round}`);
      assert.equal(recent.get(long(2), make, 'b'), 'b:80', `round ${round}`);
    }
    assert.equal(made, 2);
  });

  it('keeps the values of different scopes apart', () => {
    const recent = new RecentTexts<string>();
    const make = (_: string, tag: string): string => tag;
    assert.equal(recent.get(long(1), make, 'a', '1'), 'a');
    assert.equal(recent.get(long(1), make, 'b', '2'), 'b');
    assert.equal(recent.get(long(1), make, 'c', '1'), 'a');
    assert.equal(recent.size, 2);
  });

  it('gives a text changed at any one position an entry of its own', () => {
    const recent = new RecentTexts<number>(0, 10_000);
    const base =
      'The quarterly report shows revenue growth in every region except the north-east, where tw';
    const make = (text: string): number => text.length;
    recent.get(base, make, undefined);
    for (let i = 0; i < base.length; i++) {
      const c = base.charCodeAt(i);
      recent.get(
        base.slice(0, i) + String.fromCharCode(c ^ 1) + base.slice(i + 1),
        make,
        undefined,
      );
      recent.get(
        base.slice(0, i) + String.fromCharCode(c + 0x100) + base.slice(i + 1),
        make,
        undefined,
      );
    }
    assert.equal(recent.size, 1 + 2 * base.length);
    // A NUL at the end is a character like any other.
    recent.get(`${base}x`, make, undefined);
    recent.get(`${base}x\u0000`, make, undefined);
    assert.equal(recent.size, 3 + 2 * base.length);
  });

  it('keeps no text: only digests', () => {
    const recent = new RecentTexts<number>();
    const secret = 'my card is 4111 1111 1111 1111, my mail is leak@example.com, keep it safe';
    recent.get(secret, () => 1, undefined);
    const kept = JSON.stringify(
      Object.values(recent).map((v: unknown) => (v instanceof Map ? [...v.keys()] : v)),
    );
    assert.ok(kept.length > 40, kept);
    assert.ok(!kept.includes('4111') && !kept.includes('leak@'), kept);
  });

  it('holds texts of minChars or more that are well-formed, nothing else', () => {
    const recent = new RecentTexts<number>(64);
    assert.equal(recent.holds('x'.repeat(63)), false);
    assert.equal(recent.holds('x'.repeat(64)), true);
    // A lone surrogate and U+FFFD have the same UTF-8: such a text is never given another's value.
    assert.equal(recent.holds(`${'x'.repeat(70)}\ud800`), false);
  });

  it('at most two generations of entries; texts in use stay', () => {
    const recent = new RecentTexts<number>(0, 2);
    let made = 0;
    const make = (): number => ++made;
    recent.get(long(1), make, undefined);
    recent.get(long(2), make, undefined);
    recent.get(long(3), make, undefined); // the first generation (1, 2) becomes the previous one
    assert.equal(recent.size, 3);
    recent.get(long(1), make, undefined); // a hit in the previous generation, carried over
    recent.get(long(4), make, undefined); // (3, 1) full: (1, 2) dropped, 2 with them
    assert.equal(made, 4);
    recent.get(long(1), make, undefined);
    assert.equal(made, 4, 'text 1 was in use and stayed');
    recent.get(long(2), make, undefined);
    assert.equal(made, 5, 'text 2 was dropped');
    assert.ok(recent.size <= 4);
  });
});

void describe('textKey', () => {
  it('digests a text once per turn and holds no text after the turn', async () => {
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(turnTextsHeld(), 0);
    const a = textKey(sized(1));
    assert.equal(textKey(sized(1)), a, 'the same text, the same key');
    assert.notEqual(textKey(sized(2)), a);
    assert.equal(turnTextsHeld(), 2);
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(turnTextsHeld(), 0, 'the turn is over: its texts are dropped');
    assert.equal(textKey(sized(1)), a, 'a later turn gives the same key');
  });

  it('holds at most 32 texts in a turn, and still keys every text', async () => {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const keys = new Set<string>();
    for (let i = 0; i < 100; i++) keys.add(textKey(sized(i)));
    assert.equal(keys.size, 100);
    assert.equal(turnTextsHeld(), 32);
    assert.equal(textKey(sized(90)), textKey(sized(90)));
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(turnTextsHeld(), 0);
  });

  it('scopes keep the same text apart in one cache and one turn', () => {
    const recent = new RecentTexts<string>();
    const make = (_: string, tag: string): string => tag;
    for (const scope of ['', '1\u0000', '11\u0000', '2\u0000'])
      assert.equal(recent.get(sized(7), make, scope, scope), scope);
    assert.equal(recent.size, 4);
  });
});

void describe('textKey against texts of one length', () => {
  it('holds one text per length, so a lookup compares characters with one text at most', async () => {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const base = 'x'.repeat(5000);
    const texts = Array.from({ length: 20 }, (_, i) => `${base}${String(i).padStart(3, '0')}`);
    const keys = texts.map((t) => textKey(t));
    assert.equal(new Set(keys).size, 20);
    assert.equal(turnTextsHeld(), 1);
    assert.deepEqual(
      texts.map((t) => textKey(t)),
      keys,
    );
    await new Promise<void>((resolve) => setImmediate(resolve));
  });
});
