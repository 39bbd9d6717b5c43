import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TextCounts } from './text-counts.js';
import { estimateTokens } from './estimate.js';

const PROSE =
  'The quarterly report shows revenue growth in every region except the north-east, where two ' +
  'large customers renewed late and one moved its spend to the next fiscal year.';

describe('TextCounts', () => {
  it('answers what the count answers, and counts a text it holds only once', () => {
    const calls: string[] = [];
    const counts = new TextCounts((t) => {
      calls.push(t);
      return estimateTokens(t);
    });
    const texts = [PROSE, `${PROSE} Again.`, PROSE.toUpperCase(), PROSE.slice(1), PROSE];
    for (const t of texts) assert.equal(counts.get(t), estimateTokens(t));
    assert.equal(calls.length, 4, 'the repeated text came from the cache');
    assert.equal(counts.get(PROSE), estimateTokens(PROSE));
    assert.equal(calls.length, 4);
  });

  it('never answers one text with the count of another of the same length', () => {
    const counts = new TextCounts((t) => estimateTokens(t));
    const base = PROSE;
    // One character changed, two swapped, one moved: same length, other counts or not.
    const variants = [
      base.replace('revenue', 'Revenue'),
      base.replace('re', 'er'),
      `${base.slice(1)}${base[0]}`,
      base.replace('north-east', 'north east'),
      base.replace('year.', 'year!'),
    ];
    assert.equal(counts.get(base), estimateTokens(base));
    for (const v of variants) {
      assert.equal(v.length, base.length);
      assert.notEqual(v, base);
      assert.equal(counts.get(v), estimateTokens(v));
    }
  });

  it('counts a text with a lone surrogate every time (its UTF-8 would not tell it apart)', () => {
    const calls: string[] = [];
    const counts = new TextCounts((t) => {
      calls.push(t);
      return t.length;
    }, 1);
    const a = `${PROSE}\ud800`;
    const b = `${PROSE}\ud801`;
    assert.equal(counts.get(a), a.length);
    assert.equal(counts.get(b), b.length);
    assert.equal(counts.get(a), a.length);
    assert.equal(calls.length, 3);
    assert.equal(counts.size, 0);
  });

  it('counts short texts every time and keeps no entry for them', () => {
    let calls = 0;
    const counts = new TextCounts(() => ++calls, 64);
    counts.get('short');
    counts.get('short');
    assert.equal(calls, 2);
    assert.equal(counts.size, 0);
  });

  it('stays within two generations of its capacity and keeps texts in use', () => {
    let calls = 0;
    const counts = new TextCounts(
      (t) => {
        calls++;
        return t.length;
      },
      1,
      100,
    );
    const kept = 'a text that is asked for all the time';
    for (let i = 0; i < 1000; i++) {
      assert.equal(counts.get(`text number ${i}`), `text number ${i}`.length);
      assert.equal(counts.get(kept), kept.length);
      assert.ok(counts.size <= 200);
    }
    assert.equal(calls, 1001, 'the text in use was counted once');
  });
});
