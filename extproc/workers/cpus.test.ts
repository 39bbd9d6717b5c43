import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  autoWorkers,
  cgroupCpuLimit,
  parseCgroupV2,
  resolveWorkers,
  type CpuSources,
} from './cpus.js';

function sources(files: Record<string, string>, cores = 8): CpuSources {
  return { read: (p) => files[p], parallelism: () => cores };
}

describe('worker count from the cgroup CPU limit', () => {
  it('reads cgroup v2 cpu.max', () => {
    assert.equal(parseCgroupV2('max 100000\n'), undefined);
    assert.equal(parseCgroupV2('200000 100000\n'), 2);
    assert.equal(parseCgroupV2('50000 100000'), 0.5);
    assert.equal(parseCgroupV2('garbage'), undefined);
    assert.deepEqual(cgroupCpuLimit(sources({ '/sys/fs/cgroup/cpu.max': '150000 100000\n' })), {
      cores: 1.5,
      source: 'cgroup-v2',
    });
  });

  it('falls back to cgroup v1 quota and period; -1 is no limit', () => {
    const v1 = (quota: string) =>
      sources({
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': `${quota}\n`,
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
      });
    assert.deepEqual(cgroupCpuLimit(v1('300000')), { cores: 3, source: 'cgroup-v1' });
    assert.deepEqual(cgroupCpuLimit(v1('-1')), { cores: undefined, source: 'cgroup-v1' });
    assert.equal(autoWorkers(v1('-1')), 8);
    assert.equal(autoWorkers(v1('300000')), 3);
  });

  it('auto: the limit rounded up, at least 1, at most the schedulable cores', () => {
    const v2 = (text: string, cores = 8) => sources({ '/sys/fs/cgroup/cpu.max': text }, cores);
    assert.equal(autoWorkers(v2('50000 100000')), 1);
    assert.equal(autoWorkers(v2('150000 100000')), 2);
    assert.equal(autoWorkers(v2('200000 100000')), 2);
    assert.equal(autoWorkers(v2('1600000 100000', 4)), 4);
    assert.equal(autoWorkers(v2('max 100000', 4)), 4);
    assert.equal(autoWorkers(sources({}, 2)), 2, 'no cgroup: availableParallelism');
    assert.equal(resolveWorkers(3, sources({}, 1)), 3, 'an explicit count is taken as given');
    assert.equal(resolveWorkers('auto', v2('100000 100000')), 1);
  });
});
