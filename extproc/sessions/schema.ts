/**
 * The `sessions` section of a route's policy: whether the gateway keeps conversation state for
 * callers of the route (stored Responses turns, for backends that keep none themselves), for how
 * long, and how much. On by default with these defaults: a Responses call with `store` (OpenAI's
 * default) works on an Anthropic, Bedrock, Gemini or self-hosted backend as it does on OpenAI.
 */
import { z } from 'zod';

export const DEFAULT_SESSION_TTL_SECONDS = 30 * 24 * 3600;
export const DEFAULT_MAX_STORED_BYTES = 1024 * 1024;

export const SessionsPolicy = z
  .object({
    /** Off: `store` is ignored and `previous_response_id` refused (400) on the route. */
    enabled: z.boolean().default(true),
    /** How long a stored response stays retrievable and usable as `previous_response_id`. */
    ttlSeconds: z
      .number()
      .int()
      .min(1)
      .max(90 * 24 * 3600)
      .default(DEFAULT_SESSION_TTL_SECONDS),
    /**
     * The largest stored turn: the whole conversation up to and including it (history, input and
     * output), as stored. A request whose history and input are already larger is refused (400).
     */
    maxStoredBytes: z
      .number()
      .int()
      .min(1024)
      .max(16 * 1024 * 1024)
      .default(DEFAULT_MAX_STORED_BYTES),
    /**
     * A caller the gateway did not authenticate owns no state: `refuse` (default) answers 400
     * `session_unbound` to a request that would store or continue one; `stateless` serves it as
     * `store: false` and still refuses `previous_response_id`.
     */
    anonymous: z.enum(['refuse', 'stateless']).default('refuse'),
  })
  .strict();
export type SessionsPolicy = z.infer<typeof SessionsPolicy>;

export const DEFAULT_SESSIONS: SessionsPolicy = SessionsPolicy.parse({});
