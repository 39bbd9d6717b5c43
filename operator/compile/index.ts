/**
 * The pure compilation: Resources → IR → Envoy resources + extproc config + statuses.
 * No I/O, clock or randomness; the same input gives byte-identical output, sorted throughout,
 * so snapshots can be compared and versioned by content.
 */
import type { Resources } from '../api/types.js';
import { Limits, type ExtprocConfigInput } from '../../extproc/config/contract.js';
import type { IR, StatusResult } from './ir.js';
import {
  DEFAULT_ENVOY_OPTIONS,
  toEnvoy,
  type EnvoyOptions,
  type EnvoyResources,
} from './to-envoy.js';
import { toExtproc, type ExtprocOptions } from './to-extproc.js';
import { toIR } from './to-ir.js';

export type { IR, StatusResult } from './ir.js';
export type { EnvoyOptions, EnvoyResources } from './to-envoy.js';

export interface CompileOptions extends Partial<EnvoyOptions>, ExtprocOptions {
  /** The extproc contract `version`; the caller assigns it (e.g. from a content hash). */
  version?: string;
  /** Wall-clock milliseconds: consumer keys expired by then are left out (see toIR). */
  now?: number;
}

export interface Compilation {
  ir: IR;
  envoy: EnvoyResources;
  extproc: ExtprocConfigInput;
  statuses: StatusResult[];
}

export function compile(resources: Resources, options: CompileOptions = {}): Compilation {
  const { version = '0', limits, now, ...envoyOptions } = options;
  const ir = toIR(resources, now !== undefined ? { now } : {});
  return {
    ir,
    envoy: toEnvoy(ir, {
      ...envoyOptions,
      bufferLimitBytes: envoyBufferLimit(envoyOptions.bufferLimitBytes, limits),
    }),
    extproc: toExtproc(ir, version, limits ? { limits } : {}),
    statuses: ir.statuses,
  };
}

/**
 * Envoy's per-connection buffer bounds every BUFFERED body, and past it Envoy answers on its own,
 * in plain text and without the extproc (source/common/http/filter_manager.cc:
 * ActiveStreamDecoderFilter::requestDataTooLarge sends 413, ActiveStreamEncoderFilter::
 * responseDataTooLarge 500). So it is at least the largest body the extproc accepts whole (maxRequestBodyBytes,
 * maxResponseBodyBytes): a body the extproc would take is never cut by Envoy first. A larger
 * buffer asked for is kept.
 */
export function envoyBufferLimit(
  asked: number | undefined,
  limits: ExtprocConfigInput['limits'],
): number {
  const l = Limits.parse(limits ?? {});
  return Math.max(
    asked ?? DEFAULT_ENVOY_OPTIONS.bufferLimitBytes,
    l.maxRequestBodyBytes,
    l.maxResponseBodyBytes,
  );
}

/**
 * The Accepted=False reasons under which the routes an AIPolicy targets refuse requests (503
 * policy_invalid): a policy the schema or the extproc refuses, and a masking hash key whose Secret
 * or key is missing (to-ir.ts). TargetNotFound refuses nothing: it has no routes.
 */
const REFUSING_REASONS = [
  'Invalid',
  'InvalidPolicy',
  'SecretNotFound',
  'SecretKeyNotFound',
] as const;
type RefusingReason = (typeof REFUSING_REASONS)[number];

/** An AIPolicy compilation found invalid: the routes it targets refuse requests until it is fixed. */
export interface InvalidPolicy {
  /** `<namespace>/<name>` */
  policy: string;
  reason: RefusingReason;
  message: string;
}

function refusing(reason: string): reason is RefusingReason {
  return (REFUSING_REASONS as readonly string[]).includes(reason);
}

/** The invalid AIPolicies among the statuses (Accepted=False for a refusing reason), sorted. */
export function invalidPolicies(statuses: readonly StatusResult[]): InvalidPolicy[] {
  const out: InvalidPolicy[] = [];
  for (const s of statuses) {
    if (s.kind !== 'AIPolicy') continue;
    const c = s.conditions.find((x) => x.type === 'Accepted');
    if (c?.status !== 'False' || !refusing(c.reason)) continue;
    out.push({ policy: `${s.namespace}/${s.name}`, reason: c.reason, message: c.message });
  }
  return out.sort((a, b) => (a.policy < b.policy ? -1 : a.policy > b.policy ? 1 : 0));
}
