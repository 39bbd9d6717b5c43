/**
 * The Envoy release the driver and the emulator model, and what differs between releases in the
 * behaviour they model (shared/ENVOY-EXTPROC.md §0, audited against Envoy's source):
 *
 * | behaviour                                             | 1.34  | 1.35  | 1.36  | 1.37+ |
 * |-------------------------------------------------------|-------|-------|-------|-------|
 * | local replies sent to the router ext_proc filter      | no    | no    | no    | no    |
 * | upstream-filter-chain local replies sent to it        | no    | no    | no    | yes   |
 * | upstream ext_proc: immediate response / errors honoured | no  | no    | no    | yes   |
 * | spurious answer fails the request (fail closed)        | no    | yes   | yes   | yes   |
 * | `status_on_error` configurable (else 500)              | no    | no    | yes   | yes   |
 * | stream closed after the last expected answer           | no    | no    | no    | yes*  |
 * | `mode_override` DEFAULT header mode keeps the config   | yes   | yes   | yes   | yes   |
 *
 * (*) `ext_proc_stream_close_optimization`, never in BUFFERED / BUFFERED_PARTIAL modes.
 *
 * Sources: source/extensions/filters/http/ext_proc/ext_proc.cc — `onLocalReply` sets
 * processing_complete_ (CVE-2025-30157, 1.34 and the 1.30–1.33 patch releases) and from 1.37
 * leaves local replies of the upstream filter chain to the processor (PR #41769);
 * `sendImmediateResponse` lost its `isUpstream()` early return (PR #41231, 1.37);
 * `closeGrpcStreamIfLastRespReceived` / `isLastBodyResponse` (1.37, runtime guard
 * envoy.reloadable_features.ext_proc_stream_close_optimization); the spurious branch of
 * `onReceiveMessage` behind envoy.reloadable_features.ext_proc_fail_close_spurious_resp (1.35);
 * `effectiveModeOverride` (PR #38254, 1.34); `status_on_error` (1.36). Releases before 1.34 are
 * not modelled.
 *
 * Supported data planes are the releases that still receive patches: 1.37 and later as of
 * December 2026 (1.36 and older are out of support). They agree on every row above, so the
 * configuration the operator emits has one form for all of them. The emulator and the driver
 * model the newest release by default; 1.34–1.36 stay selectable to show (and test) what an
 * out-of-support data plane would do with the same configuration.
 */

/** The newest Envoy release modelled (and pinned by the chart): 1.40. */
export const NEWEST_RELEASE = '1.40';
/** The oldest release that still receives patches. */
export const OLDEST_SUPPORTED_RELEASE = '1.37';
const OLDEST_MODELLED_MINOR = 34;

export interface ReleaseBehaviour {
  /** The release, as `1.<minor>`. */
  release: string;
  minor: number;
  /** An upstream ext_proc filter's local replies go downstream (else: ignored, attempt stalls). */
  upstreamLocalReplies: boolean;
  /** Local replies generated in the upstream filter chain reach the router ext_proc filter. */
  upstreamChainRepliesToExtProc: boolean;
  /** A spurious answer fails the request (else the processor is dropped and the request goes on). */
  spuriousFailClose: boolean;
  /** `status_on_error` is honoured (else gRPC and mutation errors answer 500). */
  statusOnError: boolean;
  /** The stream is closed after the last expected answer (not in BUFFERED modes). */
  streamCloseOptimization: boolean;
}

/** Parses `1.<minor>` (a patch suffix is allowed) and refuses releases that are not modelled. */
export function releaseBehaviour(release: string = NEWEST_RELEASE): ReleaseBehaviour {
  const m = /^1\.(\d+)(?:\.\d+)?$/.exec(release);
  const minor = m ? Number(m[1]) : NaN;
  const newest = Number(NEWEST_RELEASE.slice(2));
  if (!(minor >= OLDEST_MODELLED_MINOR && minor <= newest)) {
    throw new Error(
      `Envoy release ${JSON.stringify(release)} is not modelled (1.${OLDEST_MODELLED_MINOR} to ${NEWEST_RELEASE})`,
    );
  }
  return {
    release: `1.${minor}`,
    minor,
    upstreamLocalReplies: minor >= 37,
    upstreamChainRepliesToExtProc: minor >= 37,
    spuriousFailClose: minor >= 35,
    statusOnError: minor >= 36,
    streamCloseOptimization: minor >= 37,
  };
}
