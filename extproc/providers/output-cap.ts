/**
 * Holds a backend to the output tokens the budget reserved for a request (RequestState's
 * `outputTokenCap`, decided by governance in the router phase). Without it, a request that sets no
 * cap is reserved `defaultMaxTokens` but may generate the model's whole maximum, and a burst of
 * such requests overshoots a spend budget many times over.
 *
 * Applied per upstream attempt, in the backend's own API, because the field that a server honours
 * depends on it:
 * - OpenAI chat: `max_completion_tokens` for OpenAI and Azure OpenAI (reasoning models refuse
 *   `max_tokens`); `max_tokens` for OpenAI-compatible servers: Ollama and LM Studio read only
 *   `max_tokens`, vLLM and SGLang read `max_completion_tokens or max_tokens`, so `max_tokens` is
 *   the spelling all of them honour.
 * - OpenAI legacy completions: `max_tokens`. Responses: `max_output_tokens`.
 * - Anthropic messages: `max_tokens`.
 *
 * Every spelling the backend might read is clamped, not only the one injected: a caller who sets
 * `max_completion_tokens: 1` (which the reservation counts) and `max_tokens: 1000000` must not get
 * a million tokens from a server that reads only `max_tokens`.
 */
import type { Operation } from './endpoints.js';
import type { Provider } from '../config/contract.js';
import { SluiceError } from '../errors.js';

interface CapFields {
  /** Every field of the backend's API that limits output; all are held to the cap. */
  read: readonly string[];
  /** The one set when the request has none of them. */
  inject: string;
}

function capFields(operation: Operation, provider: Provider): CapFields | undefined {
  switch (provider) {
    case 'openai':
    case 'azure-openai':
    case 'openai-compatible':
      switch (operation) {
        case 'chat':
          return {
            read: ['max_completion_tokens', 'max_tokens'],
            inject: provider === 'openai-compatible' ? 'max_tokens' : 'max_completion_tokens',
          };
        case 'completions':
          return { read: ['max_tokens'], inject: 'max_tokens' };
        case 'responses':
          return { read: ['max_output_tokens'], inject: 'max_output_tokens' };
        default:
          return undefined;
      }
    case 'anthropic':
      return operation === 'messages' ? { read: ['max_tokens'], inject: 'max_tokens' } : undefined;
    default:
      return undefined;
  }
}

function withinCap(v: unknown, cap: number): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= cap;
}

/**
 * The body with every output limit at most `cap` (per choice), the backend's own field added when
 * there is none; undefined when the body already complies. A value that is not a whole number in
 * [1, cap] (null, 0, -1, a string) is replaced too: servers differ in what they make of those, and
 * some read -1 or 0 as "no limit". Embeddings generate nothing and are never changed. A backend
 * whose output limit is unknown here is refused (fail closed) rather than sent uncapped.
 */
export function withOutputTokenCap(
  operation: Operation,
  provider: Provider,
  body: Readonly<Record<string, unknown>>,
  cap: number,
): Record<string, unknown> | undefined {
  if (operation === 'embeddings') return undefined;
  const fields = capFields(operation, provider);
  if (!fields) {
    throw new SluiceError(
      'unsupported_backend',
      'The gateway cannot limit the output of this backend to what the budget reserved.',
    );
  }
  let out: Record<string, unknown> | undefined;
  let present = false;
  for (const f of fields.read) {
    if (!(f in body) || body[f] === undefined) continue;
    present = true;
    if (!withinCap(body[f], cap)) (out ??= { ...body })[f] = cap;
  }
  if (!present) (out ??= { ...body })[fields.inject] = cap;
  return out;
}
