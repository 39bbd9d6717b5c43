/**
 * Cost of a request from its token usage and the policy's price table. Money is integer
 * micro-dollars: a price in USD per million tokens is exactly micro-dollars per token, so
 * cost = Σ tokens × price, rounded once per request (never per token class).
 */
import { compileGlob, type Matcher } from './glob.js';
import type { ModelPrice, Pricing } from './schema.js';
import type { TokenUsage } from '../usage/extract.js';

export const MICROS_PER_USD = 1_000_000;

/** Prices in millionths of a micro-dollar per token, so sums stay integral (BigInt below). */
interface ScaledPrice {
  input: bigint;
  output: bigint;
  cached: bigint;
  cacheWrite: bigint;
  /** The same as numbers, for sums that stay exact in a double (costMicros). */
  n: { input: number; output: number; cached: number; cacheWrite: number };
}

const SCALE = 1_000_000n;

function scale(usdPerMTok: number): bigint {
  return BigInt(Math.round(usdPerMTok * 1_000_000));
}

function scaled(p: ModelPrice): ScaledPrice {
  const input = scale(p.inputPerMTok);
  const output = scale(p.outputPerMTok);
  const cached = scale(p.cachedInputPerMTok ?? p.inputPerMTok);
  const cacheWrite = scale(p.cacheWriteInputPerMTok ?? p.inputPerMTok);
  return {
    input,
    output,
    cached,
    cacheWrite,
    n: {
      input: Number(input),
      output: Number(output),
      cached: Number(cached),
      cacheWrite: Number(cacheWrite),
    },
  };
}

export interface PriceTable {
  /** undefined: the model has no price; its spend counts as 0 and the caller should say so. */
  lookup(model: string): ScaledPrice | undefined;
}

/**
 * An exact key wins; among globs the one with the most literal characters wins (ties: the one
 * listed first), so `gpt-4o-mini*` beats `gpt-4o*` beats `*` whatever the order in the table.
 */
export function compilePricing(pricing: Pricing | undefined): PriceTable {
  const exact = new Map<string, ScaledPrice>();
  const globs: { m: Matcher; literal: number; price: ScaledPrice }[] = [];
  for (const [key, price] of Object.entries(pricing?.models ?? {})) {
    if (key.includes('*')) {
      globs.push({
        m: compileGlob(key),
        literal: key.replaceAll('*', '').length,
        price: scaled(price),
      });
    } else {
      exact.set(key, scaled(price));
    }
  }
  globs.sort((a, b) => b.literal - a.literal);
  const memo = new Map<string, ScaledPrice | undefined>();
  return {
    lookup(model) {
      const hit = exact.get(model);
      if (hit) return hit;
      if (memo.has(model)) return memo.get(model);
      const found = globs.find((g) => g.m(model))?.price;
      // Model names come from request bodies; bound the memo rather than trust their variety.
      if (memo.size >= 4096) memo.clear();
      memo.set(model, found);
      return found;
    },
  };
}

function round(scaledTotal: bigint): number {
  return Number((scaledTotal + SCALE / 2n) / SCALE);
}

/**
 * Uncached input at the input price, cache reads at the cached price, cache writes at the cache
 * write price, output at the output price. `inputTokens` includes both cache counts (TokenUsage).
 */
export function costMicros(
  price: ScaledPrice | undefined,
  usage: Pick<TokenUsage, 'inputTokens' | 'outputTokens' | 'cachedInputTokens'> &
    Partial<Pick<TokenUsage, 'cacheCreationInputTokens'>>,
): number {
  if (!price) return 0;
  const cached = Math.min(usage.cachedInputTokens, usage.inputTokens);
  const writes = Math.min(usage.cacheCreationInputTokens ?? 0, usage.inputTokens - cached);
  const plain = usage.inputTokens - cached - writes;
  const exact = exactInDoubles(price, plain, cached, writes, usage.outputTokens);
  if (exact !== undefined) return exact;
  return round(
    BigInt(plain) * price.input +
      BigInt(cached) * price.cached +
      BigInt(writes) * price.cacheWrite +
      BigInt(usage.outputTokens) * price.output,
  );
}

const MAX_EXACT = Number.MAX_SAFE_INTEGER - Number(SCALE);

/**
 * costMicros without BigInt when every count is a safe integer and every product and partial sum
 * stays within 2^53 (each is then exact in a double, and so is the rounding below): what nearly
 * every request costs, twice (reserve and settle), without a dozen BigInts each time. Otherwise
 * undefined, and the BigInt sum decides (and throws where it threw).
 */
function exactInDoubles(
  price: ScaledPrice,
  plain: number,
  cached: number,
  writes: number,
  output: number,
): number | undefined {
  const p = price.n;
  if (
    !Number.isSafeInteger(plain) ||
    !Number.isSafeInteger(cached) ||
    !Number.isSafeInteger(writes) ||
    !Number.isSafeInteger(output)
  )
    return undefined;
  const a = plain * p.input;
  const b = cached * p.cached;
  const c = writes * p.cacheWrite;
  const d = output * p.output;
  const ab = a + b;
  const abc = ab + c;
  const total = abc + d;
  if (
    !(Math.abs(a) <= MAX_EXACT) ||
    !(Math.abs(b) <= MAX_EXACT) ||
    !(Math.abs(c) <= MAX_EXACT) ||
    !(Math.abs(d) <= MAX_EXACT) ||
    !(Math.abs(ab) <= MAX_EXACT) ||
    !(Math.abs(abc) <= MAX_EXACT) ||
    !(Math.abs(total) <= MAX_EXACT)
  )
    return undefined;
  // As BigInt division: (total + SCALE/2) / SCALE, truncated toward zero.
  const r = total + HALF;
  return (r - (r % SCALE_N)) / SCALE_N;
}

const SCALE_N = Number(SCALE);
const HALF = SCALE_N / 2;

/** The reservation estimate: every prompt token at the full input price, plus the output cap. */
export function estimateCost(
  price: ScaledPrice | undefined,
  est: { inputTokens: number; maxOutputTokens: number },
): { tokens: number; costMicros: number } {
  return {
    tokens: est.inputTokens + est.maxOutputTokens,
    costMicros: costMicros(price, {
      inputTokens: est.inputTokens,
      outputTokens: est.maxOutputTokens,
      cachedInputTokens: 0,
    }),
  };
}

export function microsToUsd(micros: number): number {
  return micros / MICROS_PER_USD;
}

export function usdToMicros(usd: number): number {
  return Math.round(usd * MICROS_PER_USD);
}
