/** The operator's Prometheus metrics, registered on the registry run() is given. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { AckTracker } from '../xds/tracker.js';
import { policyInvalidGauge } from './invalid-policies.js';

export interface OperatorMetrics {
  syncs: Counter<'result'>;
  syncSeconds: Histogram;
  snapshots: Counter;
  statusWrites: Counter<'kind' | 'result'>;
  dataPlanes: Gauge;
  leader: Gauge;
  watchRestarts: Counter<'kind' | 'reason'>;
  nacks: Counter<'type' | 'node'>;
  policyInvalid: Gauge<'policy'>;
}

/**
 * `sluice_xds_nacks_total`: served by every ADS server, the operator's and `sluice run`'s, so the
 * NACK alert covers both.
 */
export function xdsNackCounter(registry: Registry): Counter<'type' | 'node'> {
  return new Counter({
    name: 'sluice_xds_nacks_total',
    help: 'Configurations a data plane connected to this replica refused, by xDS type and node id.',
    labelNames: ['type', 'node'],
    registers: [registry],
  });
}

/** Counts every NACK `tracker` sees on `counter`, by the type's short name and the node id. */
export function countNacks(tracker: AckTracker, counter: Counter<'type' | 'node'>): void {
  tracker.onNack((e) =>
    counter.inc({ type: e.typeUrl.slice(e.typeUrl.lastIndexOf('.') + 1), node: e.nodeId }),
  );
}

export function operatorMetrics(registry: Registry): OperatorMetrics {
  const registers = [registry];
  return {
    syncs: new Counter({
      name: 'sluice_operator_syncs_total',
      help: 'Reconciles of the whole configuration, by result.',
      labelNames: ['result'],
      registers,
    }),
    syncSeconds: new Histogram({
      name: 'sluice_operator_sync_duration_seconds',
      help: 'Time to compile and build the snapshot.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    snapshots: new Counter({
      name: 'sluice_operator_snapshots_total',
      help: 'Snapshots with new content handed to the ADS server.',
      registers,
    }),
    statusWrites: new Counter({
      name: 'sluice_operator_status_writes_total',
      help: 'Status subresource writes, by kind and result.',
      labelNames: ['kind', 'result'],
      registers,
    }),
    dataPlanes: new Gauge({
      name: 'sluice_operator_data_planes',
      help: 'ADS streams open on this replica.',
      registers,
    }),
    leader: new Gauge({
      name: 'sluice_operator_status_leader',
      help: '1 while this replica holds the status lease.',
      registers,
    }),
    watchRestarts: new Counter({
      name: 'sluice_operator_watch_restarts_total',
      help: 'List/watch restarts, by kind and reason (gone: relist after 410).',
      labelNames: ['kind', 'reason'],
      registers,
    }),
    nacks: xdsNackCounter(registry),
    policyInvalid: policyInvalidGauge(registry),
  };
}
