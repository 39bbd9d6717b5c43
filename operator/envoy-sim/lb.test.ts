import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LoadBalancer } from './lb.js';
import type { HostModel, LocalityModel, OutlierModel } from './model.js';

const host = (port: number): HostModel => ({
  address: '10.0.0.1',
  port,
  pipe: false,
  hostname: `h${port}`,
  metadata: {},
});
const locality = (name: string, priority: number, hosts: HostModel[]): LocalityModel => ({
  name,
  priority,
  weight: 1,
  hosts,
});

const OUTLIER: OutlierModel = {
  consecutive5xx: 5,
  consecutiveGatewayFailure: 3,
  enforcingGatewayFailure: 100,
  intervalMs: 10_000,
  baseEjectionMs: 30_000,
  maxEjectionMs: 300_000,
  maxEjectionPercent: 100,
};

describe('envoy-sim load balancer: outlier detection', () => {
  const primary = host(1);
  const fallback = host(2);
  const ls = [locality('a', 0, [primary]), locality('b', 1, [fallback])];
  const pickAt = (lb: LoadBalancer, now: number) =>
    lb.pick(ls, true, undefined, { cluster: 'c', nowMs: now })!.host;

  it('ejects after consecutive gateway failures; the next priority takes first attempts', () => {
    const lb = new LoadBalancer(() => 0.5);
    assert.equal(pickAt(lb, 0), primary);
    for (let i = 0; i < 2; i++) lb.report('c', OUTLIER, primary, ls, { status: 503 }, 0);
    assert.equal(pickAt(lb, 0), primary, 'two failures do not eject');
    lb.report('c', OUTLIER, primary, ls, { localFailure: 'connect' }, 0);
    assert.equal(pickAt(lb, 1), fallback);
    assert.equal(pickAt(lb, 29_999), fallback);
    assert.equal(pickAt(lb, 30_000), primary, 'back after base_ejection_time');
  });

  it('a success resets the count; 429 never ejects; 500s eject after five', () => {
    const lb = new LoadBalancer(() => 0.5);
    for (let i = 0; i < 2; i++) lb.report('c', OUTLIER, primary, ls, { status: 502 }, 0);
    lb.report('c', OUTLIER, primary, ls, { status: 200 }, 0);
    lb.report('c', OUTLIER, primary, ls, { status: 502 }, 0);
    assert.equal(pickAt(lb, 0), primary);
    for (let i = 0; i < 20; i++) lb.report('c', OUTLIER, primary, ls, { status: 429 }, 0);
    assert.equal(pickAt(lb, 0), primary);
    for (let i = 0; i < 4; i++) lb.report('c', OUTLIER, primary, ls, { status: 500 }, 0);
    assert.equal(pickAt(lb, 0), primary);
    lb.report('c', OUTLIER, primary, ls, { status: 500 }, 0);
    assert.equal(pickAt(lb, 0), fallback);
  });

  it('ejections grow with each one and are bounded by max_ejection_time', () => {
    const lb = new LoadBalancer(() => 0.5);
    let now = 0;
    const lengths: number[] = [];
    for (let n = 0; n < 12; n++) {
      for (let i = 0; i < 3; i++) lb.report('c', OUTLIER, primary, ls, { status: 503 }, now);
      const from = now;
      while (pickAt(lb, now) !== primary) now += 1000;
      lengths.push(now - from);
    }
    assert.deepEqual(lengths.slice(0, 3), [30_000, 60_000, 90_000]);
    assert.equal(Math.max(...lengths), 300_000);
  });

  it('every host ejected: panic, routed as if healthy', () => {
    const lb = new LoadBalancer(() => 0.5);
    for (const h of [primary, fallback])
      for (let i = 0; i < 3; i++) lb.report('c', OUTLIER, h, ls, { status: 503 }, 0);
    assert.equal(pickAt(lb, 0), primary);
  });

  it('state is per cluster', () => {
    const lb = new LoadBalancer(() => 0.5);
    for (let i = 0; i < 3; i++) lb.report('other', OUTLIER, primary, ls, { status: 503 }, 0);
    assert.equal(pickAt(lb, 0), primary);
  });
});
