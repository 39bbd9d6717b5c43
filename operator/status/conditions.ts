/**
 * Status conditions, computed without Kubernetes: `Programmed` from what the data planes of the
 * whole fleet ACKed, and the merge of freshly computed conditions into an object's current status.
 *
 * ## Programmed
 *
 * Judged per object on its footprint (controller/snapshot.ts) over every data plane of the fleet
 * (status/fleet.ts: this replica's own streams plus the other replicas' reports), grouped into
 * gateways: a gateway pod's Envoy (`<pod>/envoy`) and extproc (`<pod>/extproc`) serve a request
 * together, so an object is programmed on a gateway only when each half it needs (Envoy for an
 * AIRoute's Envoy resources, the extproc for the extproc config) is connected and ACKed. A node
 * is an Envoy when it subscribed to any Envoy type, an extproc when it subscribed to the extproc
 * config. For each node and each resource of the footprint:
 * - acked: the node ACKed a response holding the resource's CURRENT content;
 * - nacked: it NACKed a response holding that content;
 * - pending: anything else, including not (yet) subscribed to it (an Envoy asks for RDS and EDS
 *   only after it took LDS and CDS, so a resource not asked for is not applied either).
 * Then, in this order: any nacked → False/NACKed with the data plane's message; a gateway
 * missing a half the object needs → False/Incomplete (requests to it cannot be served); any
 * pending → Unknown/Pending; else True/Programmed. An object that is not accepted is not in the
 * config: False/NotAccepted. No data plane anywhere → Unknown/NoDataPlane: nothing refused the
 * config, and nothing applied it either.
 *
 * A NACK is per response, not per resource: SotW CDS and LDS send every resource of the type at
 * once, so a response refused because of one route's cluster marks every resource in it as
 * NACKed, and other routes report NACKed too, with the data plane's message (which names the
 * offending resource). That is the truth about those routes: the data plane did not apply them.
 */
import type { Condition, ResourceStatus } from '../api/types.js';
import type { ConditionResult, StatusResult } from '../compile/ir.js';
import type { Footprint, ResourceRef } from './footprint.js';
import type { PlaneState } from './fleet.js';

export { memoizedView, type DataPlaneView } from './fleet.js';

/** The condition types this operator owns on its objects; others' conditions are left alone. */
export const OWNED_CONDITIONS = new Set(['Accepted', 'Programmed', 'Conflicted', 'EndpointsReady']);

export type ProgrammedReason =
  | 'Programmed'
  | 'Pending'
  | 'NACKed'
  | 'Incomplete'
  | 'NoDataPlane'
  | 'NotAccepted'
  | 'NotApplied'
  | 'OperatorStopped';

/** The CRD caps a message at 32768 characters; NACK messages can be long. */
const MAX_MESSAGE = 4096;

function clip(s: string): string {
  return s.length <= MAX_MESSAGE ? s : `${s.slice(0, MAX_MESSAGE - 1)}…`;
}

function list(ids: Iterable<string>): string {
  const sorted = [...new Set(ids)].sort();
  return (
    sorted.slice(0, 5).join(', ') + (sorted.length > 5 ? `, and ${sorted.length - 5} more` : '')
  );
}

/**
 * A gateway pod's Envoy and extproc do not connect at the same instant: for this long after its
 * first half connected, a missing other half is Pending, not Incomplete.
 */
export const INCOMPLETE_GRACE_MS = 15_000;

export function programmedCondition(
  accepted: boolean,
  footprint: Footprint | undefined,
  planes: readonly PlaneState[],
  observedGeneration: number | undefined,
  now = Date.now(),
  incompleteGraceMs = INCOMPLETE_GRACE_MS,
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
  if (footprint.idle !== undefined) return cond('False', 'NotApplied', footprint.idle);
  const needs: { role: 'envoy' | 'extproc'; refs: ResourceRef[] }[] = [];
  if (footprint.envoy.length > 0) needs.push({ role: 'envoy', refs: footprint.envoy });
  if (footprint.extproc.length > 0) needs.push({ role: 'extproc', refs: footprint.extproc });
  const gateways = new Map<string, PlaneState[]>();
  for (const p of planes) {
    if (!p.envoy && !p.extproc) continue;
    let g = gateways.get(p.gateway);
    if (!g) gateways.set(p.gateway, (g = []));
    g.push(p);
  }
  if (gateways.size === 0) {
    return cond(
      'Unknown',
      'NoDataPlane',
      'No Envoy or extproc is connected to any operator replica.',
    );
  }
  const nacks: string[] = [];
  const missing: string[] = [];
  const pending: string[] = [];
  let envoys = 0;
  let extprocs = 0;
  for (const [gateway, members] of gateways) {
    for (const need of needs) {
      const serving = members.filter((p) => p[need.role]);
      if (serving.length === 0) {
        const has = need.role === 'envoy' ? 'an extproc but no Envoy' : 'an Envoy but no extproc';
        const since = Math.min(...members.map((p) => p.connectedAt));
        if (now - since < incompleteGraceMs) pending.push(`${gateway}/${need.role}`);
        else missing.push(`gateway ${gateway} has ${has} connected`);
        continue;
      }
      for (const p of serving) {
        if (need.role === 'envoy') envoys++;
        else extprocs++;
        for (const ref of need.refs) {
          const s = p.state(ref);
          if (s.state === 'nacked') {
            nacks.push(
              `${p.nodeId} rejected ${shortType(ref.typeUrl)} "${ref.name}": ${s.message}`,
            );
            break;
          }
          if (s.state === 'pending') pending.push(p.nodeId);
        }
      }
    }
  }
  if (nacks.length > 0) return cond('False', 'NACKed', [...new Set(nacks)].sort().join('; '));
  if (missing.length > 0) {
    return cond(
      'False',
      'Incomplete',
      `${list(missing)}: requests through it cannot be served. A gateway is an Envoy ` +
        '(node id <pod>/envoy) and an extproc (<pod>/extproc) together.',
    );
  }
  if (pending.length > 0) {
    const n = new Set(pending).size;
    return cond('Unknown', 'Pending', `Waiting for ${n} data plane(s) to ACK: ${list(pending)}.`);
  }
  return cond(
    'True',
    'Programmed',
    `ACKed by every data plane of ${gateways.size} gateway(s) (${envoys} Envoy, ${extprocs} extproc).`,
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
  desired: {
    observedGeneration?: number | undefined;
    conditions: readonly ConditionResult[];
    /** One-line summaries for printer columns (status/summary.ts), set as given. */
    summary?: Readonly<Record<string, string>> | undefined;
  },
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
  return desired.summary ? { ...out, ...desired.summary } : out;
}

/**
 * The status to leave behind when no operator replica is left: Programmed Unknown (nothing
 * watches the data planes any more), everything else as it was.
 */
export function operatorStopped(current: ResourceStatus | undefined, now: string): ResourceStatus {
  const conditions = (current?.conditions ?? []).map((c) =>
    c.type !== 'Programmed'
      ? c
      : {
          ...c,
          status: 'Unknown' as const,
          reason: 'OperatorStopped',
          message:
            'No Sluice operator is running, so nothing watches whether the data planes still ' +
            'have this object. It was: ' +
            `${c.status} ${c.reason}.`,
          lastTransitionTime: c.status === 'Unknown' ? c.lastTransitionTime : now,
        },
  );
  return { ...current, conditions };
}

/** Whether two statuses say the same (key order and absent-vs-undefined do not matter). */
export function sameStatus(a: ResourceStatus | undefined, b: ResourceStatus | undefined): boolean {
  const norm = (s: ResourceStatus | undefined) => ({
    summary: Object.entries(s ?? {})
      .filter(([k]) => k !== 'conditions' && k !== 'observedGeneration')
      .sort(([a], [b]) => (a < b ? -1 : 1)),
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

/** Compilation's conditions plus Programmed: the full set of conditions the operator owns. */
export function desiredConditions(
  result: StatusResult,
  footprint: Footprint | undefined,
  planes: readonly PlaneState[],
  now = Date.now(),
  incompleteGraceMs = INCOMPLETE_GRACE_MS,
): { observedGeneration?: number; conditions: ConditionResult[] } {
  const accepted = result.conditions.some((c) => c.type === 'Accepted' && c.status === 'True');
  const conditions = [
    ...result.conditions,
    programmedCondition(
      accepted,
      footprint,
      planes,
      result.observedGeneration,
      now,
      incompleteGraceMs,
    ),
  ];
  const out: { observedGeneration?: number; conditions: ConditionResult[] } = { conditions };
  if (result.observedGeneration !== undefined) out.observedGeneration = result.observedGeneration;
  return out;
}
