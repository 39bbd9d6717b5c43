import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Footprint } from '../controller/snapshot.js';
import type { DataPlane, ResourceState } from '../xds/tracker.js';
import { CLUSTER, EXTPROC_CONFIG, LISTENER } from '../xds/type-urls.js';
import {
  conditionTime,
  desiredConditions,
  memoizedView,
  mergeStatus,
  programmedCondition,
  sameStatus,
  type DataPlaneView,
} from './conditions.js';

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
        if (s === undefined) return [];
        if (s === 'acked' || s === 'pending') return [{ nodeId, state: s }];
        return [{ nodeId, state: 'nacked', message: s }];
      }),
  };
}

const ENVOY = [CLUSTER, LISTENER];

void describe('programmedCondition', () => {
  it('is True when every connected Envoy and extproc ACKed the current content', () => {
    const v = view([plane('e1', ENVOY), plane('x1', [EXTPROC_CONFIG])], {
      e1: { c1: 'acked', sluice: 'acked' },
      x1: { extproc: 'acked' },
    });
    const c = programmedCondition(true, footprint, v, 4);
    assert.deepEqual(
      { status: c.status, reason: c.reason, gen: c.observedGeneration },
      { status: 'True', reason: 'Programmed', gen: 4 },
    );
    assert.match(c.message, /1 Envoy, 1 extproc/);
  });

  it('is False/NACKed with the data plane message when one refused', () => {
    const v = view([plane('e1', ENVOY), plane('e2', ENVOY)], {
      e1: { c1: 'acked', sluice: 'acked' },
      e2: { c1: 'bad TLS context', sluice: 'acked' },
    });
    const c = programmedCondition(true, footprint, v, 1);
    assert.equal(c.status, 'False');
    assert.equal(c.reason, 'NACKed');
    assert.equal(c.message, 'e2 rejected Cluster "c1": bad TLS context');
  });

  it('is False/Pending while a node has not ACKed or not yet asked for a resource', () => {
    const v = view([plane('e1', ENVOY)], { e1: { c1: 'acked' } });
    const c = programmedCondition(true, footprint, v, 1);
    assert.equal(c.reason, 'Pending');
    assert.match(c.message, /1 of 1 .*e1/);
  });

  it('is Unknown/NoDataPlane with nothing of the needed kind connected', () => {
    assert.equal(programmedCondition(true, footprint, view([], {}), 1).reason, 'NoDataPlane');
    // A policy lives only in the extproc config: Envoys alone cannot program it.
    const policy: Footprint = { envoy: [], extproc: footprint.extproc };
    const c = programmedCondition(true, policy, view([plane('e1', ENVOY)], {}), 1);
    assert.deepEqual([c.status, c.reason], ['Unknown', 'NoDataPlane']);
  });

  it('is False/NotAccepted for an object that is not in the config', () => {
    const c = programmedCondition(false, undefined, view([], {}), 2);
    assert.deepEqual([c.status, c.reason], ['False', 'NotAccepted']);
  });

  it('asks the tracker once per resource per pass', () => {
    let calls = 0;
    const base = view([plane('e1', ENVOY)], { e1: { c1: 'acked', sluice: 'acked' } });
    const v = memoizedView({
      dataPlanes: () => base.dataPlanes(),
      resourceStatus: (t, n) => {
        calls++;
        return base.resourceStatus(t, n);
      },
    });
    programmedCondition(true, footprint, v, 1);
    programmedCondition(true, footprint, v, 1);
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
      view([], {}),
    );
    assert.deepEqual(
      d.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`),
      ['Accepted=True/Accepted', 'Programmed=Unknown/NoDataPlane'],
    );
    assert.equal(d.observedGeneration, 3);
  });
});
