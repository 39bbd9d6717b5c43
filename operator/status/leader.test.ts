import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiException } from '@kubernetes/client-node';
import { pino } from 'pino';
import { LeaderElector, microTime, type Lease, type LeaseApi } from './leader.js';

/** One Lease with optimistic concurrency, as the apiserver keeps it. */
class FakeLeases implements LeaseApi {
  lease: Lease | undefined;
  rv = 0;
  failing = false;

  get(): Promise<Lease | undefined> {
    if (this.failing) return Promise.reject(new Error('apiserver down'));
    return Promise.resolve(this.lease && structuredClone(this.lease));
  }
  create(namespace: string, lease: Lease): Promise<void> {
    if (this.lease) return Promise.reject(new ApiException(409, 'exists', '', {}));
    this.lease = {
      ...lease,
      metadata: { ...lease.metadata, namespace, resourceVersion: String(++this.rv) },
    };
    return Promise.resolve();
  }
  replace(_ns: string, _name: string, lease: Lease): Promise<void> {
    if (this.failing) return Promise.reject(new Error('apiserver down'));
    if (lease.metadata.resourceVersion !== this.lease?.metadata.resourceVersion) {
      return Promise.reject(new ApiException(409, 'conflict', '', {}));
    }
    this.lease = { ...lease, metadata: { ...lease.metadata, resourceVersion: String(++this.rv) } };
    return Promise.resolve();
  }
}

const silent = pino({ level: 'silent' });

function elector(api: LeaseApi, identity: string, clock: { t: number }, events: string[] = []) {
  return new LeaderElector({
    api,
    namespace: 'ns',
    identity,
    leaseDurationMs: 3000,
    renewDeadlineMs: 2000,
    retryPeriodMs: 5,
    now: () => clock.t,
    logger: silent,
    onStartedLeading: () => events.push(`${identity} leads`),
    onStoppedLeading: () => events.push(`${identity} stops`),
  });
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 1000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met');
    await wait(2);
  }
}

void describe('LeaderElector', () => {
  it('formats MicroTime with six fraction digits', () => {
    assert.equal(microTime(Date.UTC(2025, 0, 2, 3, 4, 5, 67)), '2025-01-02T03:04:05.067000Z');
  });

  it('creates the lease, renews it, and keeps a second candidate waiting', async () => {
    const api = new FakeLeases();
    const clock = { t: 1_000_000 };
    const events: string[] = [];
    const a = elector(api, 'a', clock, events);
    const b = elector(api, 'b', clock, events);
    a.start();
    await until(() => a.isLeader);
    b.start();
    clock.t += 1000;
    await wait(30);
    assert.equal(api.lease?.spec?.holderIdentity, 'a');
    assert.equal(b.isLeader, false);
    assert.equal(api.lease?.spec?.renewTime, microTime(clock.t));
    await b.stop();
    await a.stop();
    assert.deepEqual(events, ['a leads', 'a stops']);
  });

  it('takes over a lease whose holder stopped renewing, judged by its own clock', async () => {
    const api = new FakeLeases();
    const clock = { t: 5_000_000 };
    api.lease = {
      metadata: { name: 'sluice-operator-status', namespace: 'ns', resourceVersion: '1' },
      // A renewTime far in the future (a skewed clock) must not keep the lease alive.
      spec: {
        holderIdentity: 'gone',
        leaseDurationSeconds: 3,
        renewTime: microTime(9e12),
        leaseTransitions: 4,
      },
    };
    api.rv = 1;
    const b = elector(api, 'b', clock);
    b.start();
    await wait(30);
    assert.equal(b.isLeader, false);
    clock.t += 3000;
    await until(() => b.isLeader);
    assert.equal(api.lease.spec?.holderIdentity, 'b');
    assert.equal(api.lease.spec?.leaseTransitions, 5);
    await b.stop();
  });

  it('steps down when it cannot renew within the deadline', async () => {
    const api = new FakeLeases();
    const clock = { t: 0 };
    const a = elector(api, 'a', clock);
    a.start();
    await until(() => a.isLeader);
    api.failing = true;
    clock.t += 1000;
    await wait(20);
    assert.equal(a.isLeader, true);
    clock.t += 1500;
    await until(() => !a.isLeader);
    await a.stop();
  });

  it('releases the lease on stop so a standby takes over at once', async () => {
    const api = new FakeLeases();
    const clock = { t: 0 };
    const a = elector(api, 'a', clock);
    const b = elector(api, 'b', clock);
    a.start();
    await until(() => a.isLeader);
    b.start();
    await a.stop();
    assert.equal(api.lease?.spec?.holderIdentity, undefined);
    await until(() => b.isLeader);
    await b.stop();
  });

  it('warns when the lease is forbidden, once per reason and minute, and says when it recovers', async () => {
    const api = new FakeLeases();
    let forbidden = true;
    const get = api.get.bind(api);
    api.get = () =>
      forbidden ? Promise.reject(new ApiException(403, 'Forbidden', '', {})) : get();
    const clock = { t: 0 };
    const lines: { level: number; event: string; reason?: string }[] = [];
    const logger = pino(
      { level: 'info' },
      { write: (l: string) => lines.push(JSON.parse(l) as (typeof lines)[number]) },
    );
    const a = new LeaderElector({
      api,
      namespace: 'default',
      identity: 'a',
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 2,
      now: () => clock.t,
      logger,
    });
    a.start();
    await until(() => lines.some((l) => l.event === 'lease_error'));
    await wait(30);
    const warnings = () => lines.filter((l) => l.event === 'lease_error');
    assert.equal(warnings().length, 1, 'one warning, not one per retry');
    assert.equal(warnings()[0]!.level, 40);
    assert.match(warnings()[0]!.reason!, /403 Forbidden.*--lease-namespace/);
    clock.t += 61_000;
    await until(() => warnings().length === 2);
    forbidden = false;
    await until(() => a.isLeader);
    assert.ok(lines.some((l) => l.event === 'lease_recovered'));
    await a.stop();
  });
});
