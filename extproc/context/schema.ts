/**
 * The `context` section of a route's policy: each model's context window, and what the gateway
 * does with a request that cannot fit in it. Opt-in: a route without the section sends every
 * request on as it is (the provider then refuses what does not fit, after the round trip).
 */
import { z } from 'zod';

export const CONTEXT_OVERFLOW = ['reject', 'trim-oldest', 'trim-middle'] as const;
export type ContextOverflow = (typeof CONTEXT_OVERFLOW)[number];

/** One model's window, in tokens. */
export const ModelWindow = z
  .object({
    /** Input plus output, the model's whole window. */
    contextTokens: z.number().int().min(1).max(100_000_000),
    /** The most the model generates in one answer; absent: as much as the window leaves. */
    maxOutputTokens: z.number().int().min(1).max(100_000_000).optional(),
    /** The most input the model reads, when the provider bounds it apart from the window. */
    maxInputTokens: z.number().int().min(1).max(100_000_000).optional(),
  })
  .strict();
export type ModelWindow = z.infer<typeof ModelWindow>;

/** Model names and `*` globs, as in pricing: an exact name beats any glob. */
const modelKey = z.string().min(1).max(256);

export const ContextPolicy = z
  .object({
    /**
     * A request whose estimated input plus its output limit is more than the window: refused
     * (400 `context_length_exceeded`), or trimmed — the oldest turns first, or those after the
     * first turn (`trim-middle`) — keeping system and developer messages and the last turn.
     */
    contextOverflow: z.enum(CONTEXT_OVERFLOW).default('reject'),
    /** Windows by model name or glob; they replace the built-in catalog's for those models. */
    models: z.record(modelKey, ModelWindow).default({}),
    /** The built-in catalog (extproc/context/catalog.ts) for models `models` does not name. */
    builtInCatalog: z.boolean().default(true),
    /**
     * Room a trimmed request leaves for the answer when it sets no output limit of its own:
     * this many tokens, or the model's output maximum when smaller. (A request that sets one
     * leaves exactly that.)
     */
    reserveOutputTokens: z.number().int().min(0).max(1_000_000).default(4096),
  })
  .strict();
export type ContextPolicy = z.infer<typeof ContextPolicy>;
