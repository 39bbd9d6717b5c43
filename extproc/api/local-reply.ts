/**
 * Replies the data plane generated itself (Envoy's "local replies": no healthy upstream, connect
 * failure or reset, TLS verification failure, upstream timeout, no route, direct responses) as
 * errors in the caller's API format. Envoy words them as text/plain with internals in them
 * ("upstream connect error or disconnect/reset before headers. reset reason: …"); the caller
 * gets our error object with a stable code and a generic message instead, and the detail goes
 * to the access log.
 *
 * How a local reply is told from a backend's own response: the router filter requests the
 * attribute `response.code_details` for the response direction. Envoy sets it to `via_upstream`
 * just before a backend's headers enter the encoder filters, and to its own reason just before
 * it encodes a local reply through the whole encoder chain (which the router ext_proc filter is
 * part of) — the same signal Envoy's custom_response filter and ESPv2 use. Heuristics on the
 * headers (no x-envoy-upstream-service-time, text/plain) would break with
 * suppress_envoy_headers or a provider answering text/plain, and could rewrite a provider's own
 * error, which the SDKs parse; when the attribute is absent nothing is rewritten.
 *
 * Envoy's local_reply_config mappers were the alternative: they match on status and flags and
 * render one body format per mapper, but the caller's API format is known only from the path the
 * extproc parsed, they cannot carry the request id or the extproc's codes, and every path would
 * need its own mappers.
 */
import { SluiceError } from '../errors.js';

/** `response.code_details` of a response that came from a backend. */
export const VIA_UPSTREAM = 'via_upstream';
/** `response.code_details` of a route's direct_response. */
const DIRECT_RESPONSE = 'direct_response';
/**
 * The extproc's own immediate responses are marked `sluice_<code>` (verdict.ts) and are already
 * in the caller's format. The router filter's own never come back through it; this covers the
 * upstream filter's, which Envoy releases after 1.35 send downstream as a local reply with our
 * details (UpstreamFilterManager::sendLocalReply; 1.35 ignores them, see
 * pipeline/interrupt.ts).
 */
const OWN_DETAILS_PREFIX = 'sluice_';
const MAX_DETAILS_CHARS = 256;

export interface LocalReply {
  /** The status Envoy chose. */
  status: number;
  /** Envoy's response code details, log-safe (printable ASCII, bounded). */
  details: string;
}

/**
 * The local reply a response is, or undefined when it goes on untouched: it came from a backend,
 * the data plane did not say (attribute not requested), it is no error, or it is already ours.
 */
export function localReplyOf(status: number, details: string | undefined): LocalReply | undefined {
  if (details === undefined || details === '' || details === VIA_UPSTREAM) return undefined;
  if (!(status >= 400 && status <= 599)) return undefined;
  if (details.startsWith(OWN_DETAILS_PREFIX)) return undefined;
  return { status, details: logSafe(details) };
}

/**
 * The error the caller gets for a local reply. `sluiceCode` is the response's x-sluice-error-code:
 * the operator's direct responses name their code there. Messages name no internals.
 */
export function localReplyError(reply: LocalReply, sluiceCode: string | undefined): SluiceError {
  const { status, details } = reply;
  if (details === DIRECT_RESPONSE) {
    if (sluiceCode === 'model_not_found') return noRoute();
    if (sluiceCode === 'no_matching_rule') {
      return new SluiceError(
        'no_matching_rule',
        "No rule of this model's route matches this request.",
        { param: 'model' },
      );
    }
  }
  if (status === 504) {
    return new SluiceError('upstream_timeout', 'The model backend did not answer in time.');
  }
  if (status === 502 || status === 503) {
    return new SluiceError('upstream_unavailable', 'The model backend could not be reached.', {
      status,
    });
  }
  if (status === 404) return noRoute();
  if (status === 413) {
    return new SluiceError('request_too_large', 'The request is larger than the gateway accepts.');
  }
  return new SluiceError('gateway_error', 'The gateway could not complete this request.', {
    status,
  });
}

function noRoute(): SluiceError {
  return new SluiceError('model_not_found', 'No route of this gateway serves this request.', {
    param: 'model',
  });
}

/** Envoy's details are tokens (spaces already replaced); anything else is dropped, length bounded. */
function logSafe(details: string): string {
  const printable = details.replace(/[^\x21-\x7e]/g, '_');
  return printable.length > MAX_DETAILS_CHARS
    ? `${printable.slice(0, MAX_DETAILS_CHARS)}…`
    : printable;
}
