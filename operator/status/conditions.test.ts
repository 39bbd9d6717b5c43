import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Footprint } from './footprint.js';
import type { DataPlane, ResourceState } from '../xds/tracker.js';
import { CLUSTER, EXTPROC_CONFIG, LISTENER } from '../xds/type-urls.js';
import {
  conditionTime,
  desiredConditions,
  memoizedView,
  mergeStatus,
  operatorStopped,
  programmedCondition,
  sameStatus,
  type DataPlaneView,
} from './conditions.js';
import { localPlanes, type PlaneState } from './fleet.js';

const footprint: Footprint = {
  envoy: [
    { typeUrl: CLUSTER, name: 'c1' },
    { typeUrl: LISTENER, name: 'sluice' },
  ],
  extproc: [{ typeUrl: EXTPROC_CONFIG, name: 'extproc' }],
};

function plane(nodeId: string, types: string[]): DataPlane {
  return {
    nodeId,
    streamId: `s-${nodeId}`,
    connectedAt: new Date(0),
    types: Object.fromEntries(types.map((t) => [t, {}])),
  };
}

/**
 * A view where `states[node][name]` says where each node stands on each resource: acked,
 * pending, or any other string, which is the message of a NACK.
 */
function view(planes: DataPlane[], states: Record<string, Record<string, string>>): DataPlaneView {
  return {
    dataPlanes: () => planes,
    resourceStatus: (_t, name) =>
      Object.entries(states).flatMap(([nodeId, byName]): ResourceState[] => {
        const s = byName[name];
        const ids = { nodeId, streamId: `s-${nodeId}` };
        if (s === undefined) return [];
        if (s === 'acked' || s === 'pending') return [{ ...ids, state: s }];
        return [{ ...ids, state: 'nacked', message: s }];
      }),
  };
}

const fleet = (planes: DataPlane[], states: Record<string, Record<string, string>>) =>
  localPlanes(view(planes, states));

const ENVOY = [CLUSTER, LISTENER];
const ACKED = { c1: 'acked', sluice: 'acked' };

void describe('programmedCondition', () => {
  it('is True when the Envoy and the extproc of every gateway ACKed the current content', () => {
    const v = fleet(
      [
        plane('gw-1/envoy', ENVOY),
        plane('gw-1/extproc', [EXTPROC_CONFIG]),
        plane('gw-2/envoy', ENVOY),
        plane('gw-2/extproc', [EXTPROC_CONFIG]),
      ],
      {
        'gw-1/envoy': ACKED,
        'gw-1/extproc': { extproc: 'acked' },
        'gw-2/envoy': ACKED,
        'gw-2/extproc': { extproc: 'acked' },
      },
    );
    const c = programmedCondition(true, footprint, v, 4);
    assert.deepEqual(
      { status: c.status, reason: c.reason, gen: c.observedGeneration },
      { status: 'True', reason: 'Programmed', gen: 4 },
    );
    assert.match(c.message, /2 gateway\(s\) \(2 Envoy, 2 extproc\)/);
  });

  it('is False/Incomplete for a gateway whose Envoy ACKed but whose extproc is not connected', () => {
    const v = fleet([plane('gw-1/envoy', ENVOY)], { 'gw-1/envoy': ACKED });
    const c = programmedCondition(true, footprint, v, 1);
    assert.deepEqual([c.status, c.reason], ['False', 'Incomplete']);
    assert.match(c.message, /gateway gw-1 has an Envoy but no extproc connected/);
    // And the other way round: an extproc without its Envoy serves nothing.
    const x = fleet([plane('gw-2/extproc', [EXTPROC_CONFIG])], {
      'gw-2/extproc': { extproc: 'acked' },
    });
    const d = programmedCondition(true, footprint, x, 1);
    assert.match(d.message, /gateway gw-2 has an extproc but no Envoy connected/);
  });

  it('gives a gateway whose other half has not connected yet a grace as Pending', () => {
    const envoy: DataPlane = { ...plane('gw-new/envoy', ENVOY), connectedAt: new Date(100_000) };
    const v = fleet([envoy], { 'gw-new/envoy': ACKED });
    const early = programmedCondition(true, footprint, v, 1, 100_000 + 1000, 15_000);
    assert.deepEqual([early.status, early.reason], ['Unknown', 'Pending']);
    assert.match(early.message, /gw-new\/extproc/);
    const late = programmedCondition(true, footprint, v, 1, 100_000 + 15_000, 15_000);
    assert.deepEqual([late.status, late.reason], ['False', 'Incomplete']);
  });

  it('pairs by node id: the halves of different gateways do not make one whole', () => {
    const v = fleet([plane('gw-1/envoy', ENVOY), plane('gw-2/extproc', [EXTPROC_CONFIG])], {
      'gw-1/envoy': ACKED,
      'gw-2/extproc': { extproc: 'acked' },
    });
    const c = programmedCondition(true, footprint, v, 1);
    assert.equal(c.reason, 'Incomplete');
  });

  it('is False/NACKed with the data plane message when one refused', () => {
    const v = fleet(
      [
        plane('e1', [...ENVOY, EXTPROC_CONFIG]),
        plane('e2/envoy', ENVOY),
        plane('e2/extproc', [EXTPROC_CONFIG]),
      ],
      {
        e1: { ...ACKED, extproc: 'acked' },
        'e2/envoy': { c1: 'bad TLS context', sluice: 'acked' },
        'e2/extproc': { extproc: 'acked' },
      },
    );
    const c = programmedCondition(true, footprint, v, 1);
    assert.equal(c.status, 'False');
    assert.equal(c.reason, 'NACKed');
    assert.equal(c.message, 'e2/envoy rejected Cluster "c1": bad TLS context');
  });

  it('is Unknown/Pending while a node has not ACKed or not yet asked for a resource', () => {
    const v = fleet([plane('gw/envoy', ENVOY), plane('gw/extproc', [EXTPROC_CONFIG])], {
      'gw/envoy': { c1: 'acked' },
      'gw/extproc': { extproc: 'acked' },
    });
    const c = programmedCondition(true, footprint, v, 1);
    assert.deepEqual([c.status, c.reason], ['Unknown', 'Pending']);
    assert.match(c.message, /1 data plane\(s\).*gw\/envoy/);
  });

  it('is Unknown/NoDataPlane with no data plane anywhere', () => {
    const c = programmedCondition(true, footprint, fleet([], {}), 1);
    assert.deepEqual([c.status, c.reason], ['Unknown', 'NoDataPlane']);
  });

  it('judges a policy (extproc config only) on the extprocs, still per gateway', () => {
    const policy: Footprint = { envoy: [], extproc: footprint.extproc };
    const ok = fleet([plane('gw/envoy', ENVOY), plane('gw/extproc', [EXTPROC_CONFIG])], {
      'gw/extproc': { extproc: 'acked' },
    });
    assert.equal(programmedCondition(true, policy, ok, 1).reason, 'Programmed');
    const envoyOnly = fleet([plane('gw/envoy', ENVOY)], { 'gw/envoy': ACKED });
    assert.equal(programmedCondition(true, policy, envoyOnly, 1).reason, 'Incomplete');
  });

  it('is False/NotApplied for a policy that applies to no served route', () => {
    const idle: Footprint = {
      envoy: [],
      extproc: footprint.extproc,
      idle: 'every target withdrawn',
    };
    const v = fleet([plane('gw/envoy', ENVOY), plane('gw/extproc', [EXTPROC_CONFIG])], {
      'gw/envoy': ACKED,
      'gw/extproc': { extproc: 'acked' },
    });
    const c = programmedCondition(true, idle, v, 1);
    assert.deepEqual(
      [c.status, c.reason, c.message],
      ['False', 'NotApplied', 'every target withdrawn'],
    );
  });

  it('is False/NotAccepted for an object that is not in the config', () => {
    const c = programmedCondition(false, undefined, fleet([], {}), 2);
    assert.deepEqual([c.status, c.reason], ['False', 'NotAccepted']);
  });

  it('judges planes of other replicas as they reported', () => {
    const remote: PlaneState = {
      nodeId: 'gw-9/envoy',
      gateway: 'gw-9',
      envoy: true,
      extproc: false,
      replica: 'replica-b',
      connectedAt: 0,
      state: (ref) =>
        ref.typeUrl === CLUSTER ? { state: 'nacked', message: 'no TLS' } : { state: 'acked' },
    };
    const c = programmedCondition(true, footprint, [remote], 1);
    assert.equal(c.reason, 'NACKed');
    assert.match(c.message, /gw-9\/envoy rejected Cluster "c1": no TLS/);
  });

  it('asks the tracker once per resource per pass', () => {
    let calls = 0;
    const base = view([plane('e1', ENVOY)], { e1: ACKED });
    const v = memoizedView({
      dataPlanes: () => base.dataPlanes(),
      resourceStatus: (t, n) => {
        calls++;
        return base.resourceStatus(t, n);
      },
    });
    programmedCondition(true, footprint, localPlanes(v), 1);
    programmedCondition(true, footprint, localPlanes(v), 1);
    assert.equal(calls, 2);
  });
});

void describe('mergeStatus', () => {
  const accepted = {
    type: 'Accepted',
    status: 'True' as const,
    reason: 'Accepted',
    message: 'ok',
    observedGeneration: 2,
  };

  it('keeps lastTransitionTime while the status stays, moves it when it changes', () => {
    const t0 = '2025-01-01T00:00:00Z';
    const current = {
      observedGeneration: 1,
      conditions: [{ ...accepted, observedGeneration: 1, message: 'old', lastTransitionTime: t0 }],
    };
    const same = mergeStatus(current, { observedGeneration: 2, conditions: [accepted] }, 'NOW');
    assert.equal(same.conditions![0]!.lastTransitionTime, t0);
    assert.equal(same.conditions![0]!.message, 'ok');
    assert.equal(same.observedGeneration, 2);
    const flipped = mergeStatus(
      current,
      { observedGeneration: 2, conditions: [{ ...accepted, status: 'False', reason: 'Invalid' }] },
      'NOW',
    );
    assert.equal(flipped.conditions![0]!.lastTransitionTime, 'NOW');
  });

  it("drops owned conditions no longer computed and keeps others' conditions", () => {
    const t = '2025-01-01T00:00:00Z';
    const current = {
      conditions: [
        {
          type: 'Conflicted',
          status: 'True' as const,
          reason: 'ModelConflict',
          message: '',
          lastTransitionTime: t,
        },
        {
          type: 'example.com/Audited',
          status: 'True' as const,
          reason: 'Done',
          message: '',
          lastTransitionTime: t,
        },
      ],
    };
    const next = mergeStatus(current, { conditions: [accepted] }, t);
    assert.deepEqual(
      next.conditions!.map((c) => c.type),
      ['Accepted', 'example.com/Audited'],
    );
  });

  it('compares statuses as the apiserver stores them', () => {
    const a = mergeStatus(
      undefined,
      { observedGeneration: 2, conditions: [accepted] },
      conditionTime(1_700_000_000_123),
    );
    const b = structuredClone(a);
    b.conditions![0]!.lastTransitionTime = '2023-11-14T22:13:20.000Z';
    assert.equal(a.conditions![0]!.lastTransitionTime, '2023-11-14T22:13:20Z');
    assert.ok(sameStatus(a, b));
    b.conditions![0]!.message = 'changed';
    assert.ok(!sameStatus(a, b));
  });
});

void describe('operatorStopped', () => {
  it('turns Programmed Unknown and keeps every other condition', () => {
    const t = '2025-01-01T00:00:00Z';
    const cur = {
      observedGeneration: 2,
      conditions: [
        {
          type: 'Accepted',
          status: 'True' as const,
          reason: 'Accepted',
          message: '',
          lastTransitionTime: t,
        },
        {
          type: 'Programmed',
          status: 'True' as const,
          reason: 'Programmed',
          message: '',
          lastTransitionTime: t,
        },
      ],
    };
    const out = operatorStopped(cur, 'NOW');
    assert.deepEqual(out.conditions![0], cur.conditions[0]);
    const p = out.conditions![1]!;
    assert.deepEqual(
      [p.status, p.reason, p.lastTransitionTime],
      ['Unknown', 'OperatorStopped', 'NOW'],
    );
    assert.equal(out.observedGeneration, 2);
  });
});

void describe('desiredConditions', () => {
  it('appends Programmed to what translation decided', () => {
    const d = desiredConditions(
      {
        kind: 'AIRoute',
        namespace: 'ns',
        name: 'r',
        observedGeneration: 3,
        conditions: [
          {
            ...{ type: 'Accepted', status: 'True', reason: 'Accepted', message: '' },
            observedGeneration: 3,
          },
        ],
      },
      footprint,
      [],
    );
    assert.deepEqual(
      d.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`),
      ['Accepted=True/Accepted', 'Programmed=Unknown/NoDataPlane'],
    );
    assert.equal(d.observedGeneration, 3);
  });
});
