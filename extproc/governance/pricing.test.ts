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

  it('costs what the exact integer sum costs, at any size, and refuses what it refused', () => {
    const prices = { inputPerMTok: 0.15, outputPerMTok: 600, cachedInputPerMTok: 0.075 };
    const t = compilePricing(
      Pricing.parse({ models: { m: prices, big: { inputPerMTok: 1e6, outputPerMTok: 1e6 } } }),
    );
    // The sum in BigInt, as costMicros made it for every request: Σ tokens × price (millionths
    // of a micro-dollar per token), + half, / 1e6 truncated.
    const scaled = (usd: number) => BigInt(Math.round(usd * 1_000_000));
    const reference = (
      p: { input: number; output: number; cached: number; writes: number },
      u: ReturnType<typeof usage>,
    ): number => {
      const cached = Math.min(u.cachedInputTokens, u.inputTokens);
      const writes = Math.min(u.cacheCreationInputTokens, u.inputTokens - cached);
      const plain = u.inputTokens - cached - writes;
      const total =
        BigInt(plain) * scaled(p.input) +
        BigInt(cached) * scaled(p.cached) +
        BigInt(writes) * scaled(p.writes) +
        BigInt(u.outputTokens) * scaled(p.output);
      return Number((total + 500_000n) / 1_000_000n);
    };
    const m = { input: 0.15, output: 600, cached: 0.075, writes: 0.15 };
    const big = { input: 1e6, output: 1e6, cached: 1e6, writes: 1e6 };
    let seed = 7;
    const rnd = (max: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return Math.floor((seed / 2 ** 31) * max);
    };
    const cases: ReturnType<typeof usage>[] = [
      usage(0, 0, 0),
      usage(1, 0, 0),
      usage(3, 0, 1),
      usage(Number.MAX_SAFE_INTEGER, 0, 0),
      usage(0, 0, 15_000_000_000),
      usage(2 ** 40, 2 ** 39, 2 ** 30, 5),
      usage(10, 20, 0, -5),
      usage(-7, 0, -3),
    ];
    for (let i = 0; i < 2000; i++) {
      const scale = [10, 1e4, 1e7, 1e10, 1e13][i % 5]!;
      cases.push(usage(rnd(scale), rnd(scale), rnd(scale), rnd(scale)));
    }
    for (const u of cases) {
      assert.equal(costMicros(t.lookup('m'), u), reference(m, u), JSON.stringify(u));
      assert.equal(costMicros(t.lookup('big'), u), reference(big, u), JSON.stringify(u));
    }
    // A count that is not an integer is refused as before (BigInt throws).
    assert.throws(() => costMicros(t.lookup('m'), usage(1.5, 0, 0)), RangeError);
    assert.throws(() => costMicros(t.lookup('m'), usage(Number.NaN, 0, 0)), RangeError);
  });
});
