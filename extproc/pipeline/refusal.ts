/**
 * Whether a backend can take a caller's request at all: the same question for the router phase
 * (before routing, for every backend of the route) and the upstream phase (for the one Envoy
 * picked), so both refuse with the same words.
 */
import type { ApiFormat } from '../api/endpoints.js';
import type { Provider } from '../config/contract.js';
import { SluiceError } from '../errors.js';
import { backendSchema, translatorFor } from './translate.js';

export function canServe(api: ApiFormat, provider: Provider): boolean {
  return translatorFor(api, backendSchema(provider)) !== undefined;
}

/** `providers`: the backends' providers, each named once, in the route's order. */
export function unsupportedBackend(api: ApiFormat, providers: readonly Provider[]): SluiceError {
  const names = [...new Set(providers)];
  const kind =
    names.length === 1
      ? `${/^[aeiou]/.test(names[0]!) ? 'an' : 'a'} ${names[0]} backend`
      : `${names.join(' or ')} backends`;
  return new SluiceError(
    'unsupported_backend',
    `This gateway cannot yet send ${api === 'anthropic' ? 'Anthropic' : 'OpenAI'}-format requests to ${kind}.`,
  );
}
