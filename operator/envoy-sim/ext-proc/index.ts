/**
 * Envoy-exact ext_proc client ("driver").
 *
 * Drives an `envoy.service.ext_proc.v3.ExternalProcessor` server the way Envoy's ext_proc HTTP
 * filter does (shared/ENVOY-EXTPROC.md) and judges every answer by Envoy's rules. It speaks the
 * targeted Envoy release's API (proto/envoy-api), not the project's own proto/ declarations.
 *
 * Usage:
 *
 *   const client = new ExtProcClient('unix:/var/run/sluice/extproc.sock'); // or 'host:port'
 *   const config: FilterConfig = {
 *     processingMode: { requestBodyMode: 'BUFFERED', responseBodyMode: 'BUFFERED' },
 *     allowModeOverride: true,
 *   };
 *   const filter = new ExtProcFilter(client, config); // one per HTTP request
 *   const req = await filter.runRequest(
 *     [[':method', 'POST'], [':path', '/v1/chat/completions'], [':scheme', 'http'],
 *      [':authority', 'gw'], ['content-type', 'application/json']],
 *     [Buffer.from('{"model":"m"}')],
 *   );
 *   if (req.kind === 'local-reply') { ... req.status, req.headers, req.body, req.details }
 *   else {
 *     // req.headers / req.body as the router would see them, req.routeCacheCleared
 *     const res = await filter.runResponse([[':status', '200']], [Buffer.from('{}')]);
 *   }
 *   // every result carries filter.violations (must be empty for a conformant server) and
 *   // filter.timings (round trip per message).
 *   filter.close(); // only needed if the response direction was not run to its end
 *   client.close();
 *
 * Streaming (SSE, per-chunk latency):
 *
 *   const s = filter.streamResponse([[':status', '200'], ['content-type', 'text/event-stream']]);
 *   s.write(chunk1); s.write(chunk2); s.end();          // feed over time
 *   for await (const { data, endStream } of s) { ... } // each chunk as Envoy releases it
 *   const result = await s.result;
 *
 * Lower level: `filter.request` / `filter.response` are Envoy's decode/encode callbacks
 * (`headers(h, endStream)`, `data(chunk, endStream)`, `trailers(t)`), with `observe()` to see
 * what passes on and `result()`; use them to interleave directions (e.g. response messages
 * while request messages are unanswered).
 *
 * Conventions: headers are `[name, value][]`, names lowercase, pseudo-headers included; values
 * are byte strings (latin1), as node:http exposes them. The gRPC stream opens lazily on the
 * first message, carries protocol_config on that message, and is closed (half-close, then
 * cancel) after an immediate response, on errors, once both directions are done, or by
 * `close()`. One `ExtProcClient` (one channel) can serve any number of concurrent filters.
 *
 * `violations` lists everything where Envoy would fail the request or silently ignore what
 * the server asked; `strict: true` rejects the pending results at the first one instead.
 *
 * Releases: the newest Envoy release is modelled by default; `envoyRelease: '1.34'…'1.36'`
 * selects what changed since (release.ts): the stream closed after the last expected answer,
 * status_on_error, spurious answers failing the request, upstream local replies.
 *
 * Upstream filters (`upstream: true`): clear_route_cache is ignored. From 1.37 their local replies
 * (immediate_response, and the fail-closed errors) go downstream like any filter's. Up to 1.36
 * Envoy counts them (`filter.stats.send_immediate_resp_upstream_ignored`) and holds the request
 * without resuming it; `filter.stalled` says so and observers hear `stalled(details)`, while the
 * result promises stay pending, as the attempt would until the router's timeout. Body data that
 * arrives after that resumes the request unprocessed (Envoy's filter manager continues on a data
 * callback that returns Continue): give an upstream filter the router's buffered body with
 * `dataWithHeaders`, as Envoy's router does.
 */
export { ExtProcClient, type ClientOptions } from './client.js';
export {
  type FilterConfig,
  type JsonValue,
  type Phase,
  type ProcessingModeConfig,
  type Timing,
} from './config.js';
export {
  ExtProcFilter,
  ViolationError,
  type FilterObserver,
  type RunOptions,
  type StreamingPhase,
} from './filter.js';
export {
  Direction,
  type Continued,
  type DirectionObserver,
  type LocalReply,
  type PhaseResult,
  type ReleasedChunk,
} from './processor-state.js';
export { getHeader, type HeaderList } from './headers.js';
export {
  NEWEST_RELEASE,
  OLDEST_SUPPORTED_RELEASE,
  releaseBehaviour,
  type ReleaseBehaviour,
} from './release.js';
export {
  extProcCodec,
  type BodySendMode,
  type ExtProcCodec,
  type HeaderSendMode,
  type ProcessingRequest,
  type ProcessingResponse,
} from './codec.js';
