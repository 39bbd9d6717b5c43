/**
 * The `sluice.upstream` filter: an upstream HTTP filter on every backend cluster, run once per
 * attempt (retries and fallbacks included). It knows the chosen backend from the cluster name
 * attribute, so it is the one place that shapes the request for that backend: path, model
 * override, credential, body schema.
 *
 * A refused attempt (no router state, unknown backend, a backend that cannot take the caller's
 * API) is recorded in the request's state and ended through the router phase's stream (see
 * interrupt.ts): Envoy up to 1.35 ignores an upstream ext_proc filter's immediate response and
 * leaves the attempt hanging. The attempt is answered with the same immediate response too, for
 * the data planes that honour it and for when the router phase's stream is gone.
 */
import { WIRE } from '../config/contract.js';
import type { ResolvedBackend } from '../config/runtime.js';
import type { RuntimeConfig } from '../config/runtime.js';
import { SluiceError, toSluiceError } from '../errors.js';
import { headerMap } from '../wire/headers.js';
import { CONTINUE, proceed, type Outcome } from './mutation.js';
import {
  attribute,
  type Attributes,
  type EndReason,
  type HeadersMessage,
  type PhaseHandler,
} from './phase.js';
import {
  backendApi,
  CALLER_CREDENTIAL_HEADERS,
  credentialHeaders,
  translatorFor,
  unsupportedBackend,
} from '../providers/index.js';
import type { RequestState, RequestStore } from './request-store.js';
import { MODEL_HEADER } from './router.js';
import { errorVerdict, REQUEST_ID_HEADER } from './verdict.js';

/** Client credentials and gateway-internal headers never reach a provider. */
const STRIP = [...CALLER_CREDENTIAL_HEADERS, REQUEST_ID_HEADER, MODEL_HEADER];

export interface UpstreamDeps {
  config: RuntimeConfig | undefined;
  store: RequestStore;
  onAttempt?: (backend: ResolvedBackend) => void;
}

export class UpstreamExchange implements PhaseHandler {
  private api: 'openai' | 'anthropic' = 'openai';
  private state: RequestState | undefined;

  constructor(private readonly deps: UpstreamDeps) {}

  requestHeaders(msg: HeadersMessage, attributes: Attributes | undefined): Outcome {
    const headers = headerMap(msg.headers?.headers);
    const id = headers.get(REQUEST_ID_HEADER);
    const state = id === undefined ? undefined : this.deps.store.get(id);
    // Fail closed: without the router phase's state this request was never checked.
    if (!state) throw new SluiceError('gateway_error', 'The gateway lost track of this request.');
    this.api = state.api;
    this.state = state;
    const cfg = this.deps.config;
    const named = attribute(attributes, WIRE.backendAttribute);
    const cluster = attribute(attributes, WIRE.clusterAttribute);
    const backend =
      named !== undefined && named !== ''
        ? cfg?.backend(named)
        : cluster === undefined
          ? undefined
          : cfg?.backendForCluster(cluster);
    if (!backend)
      throw new SluiceError('gateway_error', 'The gateway has no backend for this upstream.');
    const translator = translatorFor(state.api, backendApi(backend.provider));
    if (!translator) throw unsupportedBackend(state.api, [backend.provider]);
    const up = translator.request(state, backend);
    // This attempt goes out: an earlier attempt's refusal no longer describes the request.
    state.refusal = undefined;
    state.attempts.push({ backend: backend.name, provider: backend.provider });
    state.governance?.ledger.begin();
    this.deps.onAttempt?.(backend);

    const set: [string, string][] = [[':path', up.path]];
    // Uncompressed answers let the response side read usage and rewrite streams without recoding.
    set.push(['accept-encoding', 'identity'], ...up.headers);
    for (const d of up.defaultHeaders ?? []) if (!headers.has(d[0])) set.push(d);
    set.push(...credentialHeaders(backend, up));
    const remove = STRIP.filter((h) => headers.has(h));
    if (up.body === undefined) return proceed({ setHeaders: set, removeHeaders: remove });
    return proceed({ setHeaders: set, removeHeaders: remove, body: up.body, replace: true });
  }

  requestBody(): Outcome {
    return CONTINUE;
  }
  requestTrailers(): Outcome {
    return CONTINUE;
  }
  responseHeaders(): Outcome {
    return CONTINUE;
  }
  responseBody(): Outcome {
    return CONTINUE;
  }
  responseTrailers(): Outcome {
    return CONTINUE;
  }

  fail(err: unknown): Outcome {
    const e = toSluiceError(err);
    const state = this.state;
    if (state) {
      state.refusal = e;
      // First, so that it is the reply Envoy acts on where both would be honoured.
      state.interrupt?.(e);
    }
    return { kind: 'respond', verdict: errorVerdict(this.api, e, state?.id) };
  }

  finish(_reason: EndReason): void {}
}
