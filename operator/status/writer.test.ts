import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiException } from '@kubernetes/client-node';
import type { ResourceStatus } from '../api/types.js';
import { StatusWriter, type StatusApi, type StatusTarget } from './writer.js';

class FakeStatusApi implements StatusApi {
  stored: StatusTarget = {
    metadata: { name: 'r', namespace: 'ns', resourceVersion: '5' },
    spec: {},
    status: { observedGeneration: 1, conditions: [] },
  };
  puts = 0;
  gets = 0;
  get(): Promise<StatusTarget | undefined> {
    this.gets++;
    return Promise.resolve(structuredClone(this.stored));
  }
  replaceStatus(_k: 'AIRoute' | 'AIPolicy', target: StatusTarget, status: ResourceStatus) {
    this.puts++;
    if (target.metadata.resourceVersion !== this.stored.metadata.resourceVersion) {
      return Promise.reject(new ApiException(409, 'conflict', '', {}));
    }
    const rv = String(Number(this.stored.metadata.resourceVersion) + 1);
    this.stored = {
      ...this.stored,
      metadata: { ...this.stored.metadata, resourceVersion: rv },
      status,
    };
    return Promise.resolve();
  }
}

const next: ResourceStatus = {
  observedGeneration: 2,
  conditions: [
    {
      type: 'Accepted',
      status: 'True',
      reason: 'Accepted',
      message: '',
      lastTransitionTime: '2025-01-01T00:00:00Z',
    },
  ],
};

void describe('StatusWriter', () => {
  it('writes nothing when the status is already right', async () => {
    const api = new FakeStatusApi();
    api.stored.status = structuredClone(next);
    const w = new StatusWriter(api);
    assert.equal(await w.write('AIRoute', api.stored, 'ns', 'r', () => next), 'unchanged');
    assert.equal(api.puts, 0);
    assert.equal(w.writes, 0);
  });

  it('rereads and recomputes on a conflict', async () => {
    const api = new FakeStatusApi();
    const stale = structuredClone(api.stored);
    api.stored.metadata.resourceVersion = '6';
    const seen: (ResourceStatus | undefined)[] = [];
    const w = new StatusWriter(api);
    const result = await w.write('AIRoute', stale, 'ns', 'r', (cur) => {
      seen.push(cur);
      return next;
    });
    assert.equal(result, 'written');
    assert.equal(api.puts, 2);
    assert.equal(api.gets, 1);
    assert.equal(seen.length, 2);
    assert.deepEqual(api.stored.status, next);
    assert.equal(w.writes, 1);
  });

  it('gives up after a bounded number of conflicts, for the queue to retry later', async () => {
    const api = new FakeStatusApi();
    api.replaceStatus = () => Promise.reject(new ApiException(409, 'conflict', '', {}));
    const w = new StatusWriter(api, 3);
    await assert.rejects(w.write('AIRoute', api.stored, 'ns', 'r', () => next));
    assert.equal(api.gets, 2);
  });

  it('reports an object deleted meanwhile', async () => {
    const api = new FakeStatusApi();
    api.replaceStatus = () => Promise.reject(new ApiException(404, 'gone', '', {}));
    assert.equal(
      await new StatusWriter(api).write('AIRoute', api.stored, 'ns', 'r', () => next),
      'gone',
    );
  });
});
