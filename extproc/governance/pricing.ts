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
}

const SCALE = 1_000_000n;

function scale(usdPerMTok: number): bigint {
  return BigInt(Math.round(usdPerMTok * 1_000_000));
}

function scaled(p: ModelPrice): ScaledPrice {
  return {
    input: scale(p.inputPerMTok),
    output: scale(p.outputPerMTok),
    cached: scale(p.cachedInputPerMTok ?? p.inputPerMTok),
    cacheWrite: scale(p.cacheWriteInputPerMTok ?? p.inputPerMTok),
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
  return round(
    BigInt(plain) * price.input +
      BigInt(cached) * price.cached +
      BigInt(writes) * price.cacheWrite +
      BigInt(usage.outputTokens) * price.output,
  );
}

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
