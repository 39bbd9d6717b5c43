/**
 * Status conditions, computed without Kubernetes: `Programmed` from what the connected data
 * planes ACKed, and the merge of freshly computed conditions into an object's current status.
 *
 * ## Programmed
 *
 * Judged per object on its footprint (controller/snapshot.ts): the Envoy resources that carry it
 * on every connected Envoy node, and the extproc config on every connected extproc node. A node
 * counts as an Envoy when it subscribed to any Envoy type, as an extproc when it subscribed to the
 * extproc config. For each node and each resource of the footprint:
 * - acked: the node ACKed a response holding the resource's CURRENT content;
 * - nacked: it NACKed a response holding that content;
 * - pending: anything else, including not (yet) subscribed to it (an Envoy asks for RDS and EDS
 *   only after it took LDS and CDS, so a resource not asked for is not applied either).
 * Then: any nacked → False/NACKed with the data plane's message; else any pending →
 * False/Pending; else True/Programmed. An object that is not accepted is not in the config:
 * False/NotAccepted.
 *
 * No data plane of the kinds the footprint needs is connected → Unknown/NoDataPlane. Unknown
 * rather than False because the verdict comes from the streams open on THIS replica: with
 * several replicas serving xDS, the data planes may be connected to the others, and "not
 * programmed" would be a claim this replica cannot make. (With one replica it is also honest:
 * nothing has refused the config; nothing has applied it either.)
 *
 * A NACK is per response, not per resource: SotW CDS and LDS send every resource of the type at
 * once, so a response refused because of one route's cluster marks every resource in it as
 * NACKed, and other routes report NACKed too, with the data plane's message (which names the
 * offending resource). That is the truth about those routes: the data plane did not apply them.
 */
import type { Condition, ResourceStatus } from '../api/types.js';
import type { ConditionResult, StatusResult } from '../translate/ir.js';
import type { DataPlane, ResourceState } from '../xds/tracker.js';
import { CLUSTER, ENDPOINT, EXTPROC_CONFIG, LISTENER, ROUTE } from '../xds/type-urls.js';
import type { Footprint, ResourceRef } from '../controller/snapshot.js';

/** What the ACK tracker knows, as read by the status computation. */
export interface DataPlaneView {
  dataPlanes(): DataPlane[];
  resourceStatus(typeUrl: string, name: string): ResourceState[];
}

const ENVOY_TYPES = [CLUSTER, ENDPOINT, LISTENER, ROUTE];

/** The condition types this operator owns on its objects; others' conditions are left alone. */
export const OWNED_CONDITIONS = new Set(['Accepted', 'Programmed', 'Conflicted', 'EndpointsReady']);

export type ProgrammedReason = 'Programmed' | 'Pending' | 'NACKed' | 'NoDataPlane' | 'NotAccepted';

/** The CRD caps a message at 32768 characters; NACK messages can be long. */
const MAX_MESSAGE = 4096;

function clip(s: string): string {
  return s.length <= MAX_MESSAGE ? s : `${s.slice(0, MAX_MESSAGE - 1)}…`;
}

/**
 * A view that reads each resource's state once per pass: routes share the listener, the route
 * configuration and the extproc config, so a pass over thousands of routes would otherwise ask
 * the tracker the same question thousands of times.
 */
export function memoizedView(view: DataPlaneView): DataPlaneView {
  let planes: DataPlane[] | undefined;
  const states = new Map<string, ResourceState[]>();
  return {
    dataPlanes: () => (planes ??= view.dataPlanes()),
    resourceStatus: (typeUrl, name) => {
      const k = `${typeUrl}\0${name}`;
      let s = states.get(k);
      if (!s) {
        s = view.resourceStatus(typeUrl, name);
        states.set(k, s);
      }
      return s;
    },
  };
}

type NodeState = { state: 'acked' } | { state: 'pending' } | { state: 'nacked'; message: string };

function nodeState(view: DataPlaneView, ref: ResourceRef, nodeId: string): NodeState {
  const states = view.resourceStatus(ref.typeUrl, ref.name).filter((s) => s.nodeId === nodeId);
  const nacked = states.find((s) => s.state === 'nacked');
  if (nacked && nacked.state === 'nacked') return { state: 'nacked', message: nacked.message };
  if (states.length > 0 && states.every((s) => s.state === 'acked')) return { state: 'acked' };
  return { state: 'pending' };
}

export function programmedCondition(
  accepted: boolean,
  footprint: Footprint | undefined,
  view: DataPlaneView,
  observedGeneration: number | undefined,
): ConditionResult {
  const cond = (
    status: ConditionResult['status'],
    reason: ProgrammedReason,
    message: string,
  ): ConditionResult => {
    const c: ConditionResult = { type: 'Programmed', status, reason, message: clip(message) };
    if (observedGeneration !== undefined) c.observedGeneration = observedGeneration;
    return c;
  };
  if (!accepted || !footprint) {
    return cond('False', 'NotAccepted', 'Not accepted, so not part of the served configuration.');
  }
  const envoys = new Set<string>();
  const extprocs = new Set<string>();
  for (const p of view.dataPlanes()) {
    const types = Object.keys(p.types);
    if (types.some((t) => ENVOY_TYPES.includes(t))) envoys.add(p.nodeId);
    if (types.includes(EXTPROC_CONFIG)) extprocs.add(p.nodeId);
  }
  const checks: [string, ResourceRef[]][] = [];
  if (footprint.envoy.length > 0) for (const n of envoys) checks.push([n, footprint.envoy]);
  if (footprint.extproc.length > 0) for (const n of extprocs) checks.push([n, footprint.extproc]);
  if (checks.length === 0) {
    const what =
      footprint.envoy.length > 0 ? 'no Envoy or extproc is connected' : 'no extproc is connected';
    return cond('Unknown', 'NoDataPlane', `${what} to this operator replica.`);
  }
  const nacks: string[] = [];
  const pending = new Set<string>();
  const nodes = new Set<string>();
  for (const [node, refs] of checks) {
    nodes.add(node);
    for (const ref of refs) {
      const s = nodeState(view, ref, node);
      if (s.state === 'nacked') {
        nacks.push(`${node} rejected ${shortType(ref.typeUrl)} "${ref.name}": ${s.message}`);
        break;
      }
      if (s.state === 'pending') pending.add(node);
    }
  }
  if (nacks.length > 0) return cond('False', 'NACKed', nacks.sort().join('; '));
  if (pending.size > 0) {
    const ids = [...pending].sort();
    const shown =
      ids.slice(0, 5).join(', ') + (ids.length > 5 ? `, and ${ids.length - 5} more` : '');
    return cond(
      'False',
      'Pending',
      `Waiting for ${pending.size} of ${nodes.size} data planes to ACK: ${shown}.`,
    );
  }
  const e = [...nodes].filter((n) => envoys.has(n) && footprint.envoy.length > 0).length;
  const x = [...nodes].filter((n) => extprocs.has(n) && footprint.extproc.length > 0).length;
  return cond(
    'True',
    'Programmed',
    `ACKed by every connected data plane (${e} Envoy, ${x} extproc).`,
  );
}

function shortType(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
}

/**
 * The status to write: `desired` conditions in their order (lastTransitionTime kept while a
 * condition's status stays the same), then conditions of types this operator does not own, as
 * they were. Conditions it owns but no longer computes (a Conflicted that cleared) are dropped.
 */
export function mergeStatus(
  current: ResourceStatus | undefined,
  desired: { observedGeneration?: number | undefined; conditions: readonly ConditionResult[] },
  now: string,
): ResourceStatus {
  const existing = new Map((current?.conditions ?? []).map((c) => [c.type, c]));
  const conditions: Condition[] = desired.conditions.map((d) => {
    const old = existing.get(d.type);
    const c: Condition = {
      type: d.type,
      status: d.status,
      reason: d.reason,
      message: d.message,
      lastTransitionTime: old && old.status === d.status ? old.lastTransitionTime : now,
    };
    if (d.observedGeneration !== undefined) c.observedGeneration = d.observedGeneration;
    return c;
  });
  const ours = new Set(desired.conditions.map((c) => c.type));
  for (const c of current?.conditions ?? []) {
    if (!ours.has(c.type) && !OWNED_CONDITIONS.has(c.type)) conditions.push(c);
  }
  const out: ResourceStatus = { conditions };
  if (desired.observedGeneration !== undefined) {
    out.observedGeneration = desired.observedGeneration;
  }
  return out;
}

/** Whether two statuses say the same (key order and absent-vs-undefined do not matter). */
export function sameStatus(a: ResourceStatus | undefined, b: ResourceStatus | undefined): boolean {
  const norm = (s: ResourceStatus | undefined) => ({
    observedGeneration: s?.observedGeneration ?? null,
    conditions: (s?.conditions ?? []).map((c) => [
      c.type,
      c.status,
      c.reason,
      c.message,
      c.observedGeneration ?? null,
      normalizeTime(c.lastTransitionTime),
    ]),
  });
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}

/** Kubernetes stores condition times at second precision, RFC 3339 with Z. */
export function normalizeTime(t: string | undefined): string | null {
  if (t === undefined) return null;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? t : new Date(Math.floor(ms / 1000) * 1000).toISOString();
}

/** A timestamp as the apiserver will store it, so a written status reads back identical. */
export function conditionTime(nowMs: number): string {
  return new Date(Math.floor(nowMs / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Translation's conditions plus Programmed: the full set of conditions the operator owns. */
export function desiredConditions(
  result: StatusResult,
  footprint: Footprint | undefined,
  view: DataPlaneView,
): { observedGeneration?: number; conditions: ConditionResult[] } {
  const accepted = result.conditions.some((c) => c.type === 'Accepted' && c.status === 'True');
  const conditions = [
    ...result.conditions,
    programmedCondition(accepted, footprint, view, result.observedGeneration),
  ];
  const out: { observedGeneration?: number; conditions: ConditionResult[] } = { conditions };
  if (result.observedGeneration !== undefined) out.observedGeneration = result.observedGeneration;
  return out;
}
