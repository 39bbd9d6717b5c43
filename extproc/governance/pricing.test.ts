import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { compilePricing, costMicros, estimateCost } from './pricing.js';
import { Pricing } from './schema.js';

const fixture = (f: string): unknown =>
  parse(readFileSync(new URL(`../../test/fixtures/pricing/${f}`, import.meta.url), 'utf8'));

const usage = (input: number, cached: number, output: number, writes = 0) => ({
  inputTokens: input,
  outputTokens: output,
  cachedInputTokens: cached,
  cacheCreationInputTokens: writes,
});

describe('pricing', () => {
  const table = compilePricing(Pricing.parse(fixture('table.yaml')));

  it('prices uncached input, cached input, cache writes and output separately', () => {
    // (1000 - 400) × 2 + 400 × 0.5 + 500 × 8 = 1200 + 200 + 4000 µ$
    assert.equal(costMicros(table.lookup('m-exact'), usage(1000, 400, 500)), 5400);
    // m-long-*: 100 plain × 3 + 200 writes × 3.75 + 10 × 12 = 300 + 750 + 120
    assert.equal(costMicros(table.lookup('m-long-x'), usage(300, 0, 10, 200)), 1170);
  });

  it('picks the exact name, then the most specific glob', () => {
    assert.equal(costMicros(table.lookup('m-other'), usage(10, 0, 10)), 20);
    assert.equal(costMicros(table.lookup('m-long-y'), usage(10, 0, 0)), 30);
    assert.equal(table.lookup('unknown'), undefined);
    assert.equal(costMicros(undefined, usage(10, 0, 10)), 0);
  });

  it('keeps fractional micro-dollars until one final rounding', () => {
    // 7 × 0.075 + 3 × 0.3 = 0.525 + 0.9 = 1.425 → 1 µ$; per-class rounding would give 2.
    assert.equal(costMicros(table.lookup('fractional'), usage(7, 0, 3)), 1);
    // A million tokens at $0.075/MTok is exactly 75,000 µ$ = $0.075.
    assert.equal(costMicros(table.lookup('fractional'), usage(1_000_000, 0, 0)), 75_000);
  });

  it('estimates a reservation from the prompt and the output cap at full input price', () => {
    assert.deepEqual(
      estimateCost(table.lookup('m-exact'), { inputTokens: 100, maxOutputTokens: 50 }),
      {
        tokens: 150,
        costMicros: 600,
      },
    );
  });

  it('parses the shipped example and refuses an invalid table', () => {
    const example = parse(
      readFileSync(new URL('../../examples/pricing.yaml', import.meta.url), 'utf8'),
    );
    const t = compilePricing(Pricing.parse(example));
    assert.equal(
      costMicros(t.lookup('gpt-4o-mini-2024-07-18'), usage(1_000_000, 0, 1_000_000)),
      750_000,
    );
    assert.equal(Pricing.safeParse(fixture('invalid.yaml')).success, false);
  });
});
