/**
 * The `cache` section of a route's policy: whether answers may be served again, for how long and
 * to whom. Opt-in: a route without the section caches nothing. The defaults share nothing across
 * consumers and cache only what a provider would answer the same way again.
 */
import { z } from 'zod';

export const CACHE_SCOPES = ['consumer', 'team', 'route'] as const;
export type CacheScope = (typeof CACHE_SCOPES)[number];

export const CachePolicy = z
  .object({
    /** How long an entry may be served after it was stored. */
    ttlSeconds: z
      .number()
      .int()
      .min(1)
      .max(30 * 24 * 3600)
      .default(300),
    /**
     * Who may be served an entry: the consumer that caused it (default), its team, or every caller
     * of the route. A request without the identity its scope needs (an anonymous caller under
     * `consumer`, a consumer without a team under `team`) bypasses the cache.
     */
    scope: z.enum(CACHE_SCOPES).default('consumer'),
    /** Answers larger than this (in their stored form) are not stored. */
    maxEntryBytes: z
      .number()
      .int()
      .min(1024)
      .max(16 * 1024 * 1024)
      .default(256 * 1024),
    /** Answers that call tools are stored too (an agent re-asking then skips the model's decision). */
    cacheToolCalls: z.boolean().default(false),
    /**
     * Requests with sampling (temperature absent or above 0) are cached too. Off: only requests
     * that ask for `temperature: 0` (and embeddings, which do not sample) are cached.
     */
    cacheNonDeterministic: z.boolean().default(false),
    /** The share of the original answer's cost a hit is charged (0: free). */
    hitCostFraction: z.number().min(0).max(1).default(0),
  })
  .strict();
export type CachePolicy = z.infer<typeof CachePolicy>;
