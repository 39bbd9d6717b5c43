import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { buildSnapshot, SnapshotCache } from '../../operator/xds/cache.js';
import { ResourceEncoder } from '../../operator/xds/encode.js';
import {
  extprocConfigResource,
  EXTPROC_RESOURCE_NAME,
} from '../../operator/xds/extproc-resource.js';
import { startAdsServer, type RunningAdsServer } from '../../operator/xds/server.js';
import { EXTPROC_CONFIG } from '../../operator/xds/type-urls.js';
import type { ExtprocConfigInput } from './contract.js';
import type { RuntimeConfig } from './runtime.js';
import { XdsConfigSource } from './xds-source.js';

const NODE = 'gateway-0/extproc';
const encoder = ResourceEncoder.fromProtoTree();
const silent = pino({ level: 'silent' });

function doc(version: string, overrides: Partial<ExtprocConfigInput> = {}): ExtprocConfigInput {
  return {
    apiVersion: 'sluice.dev/extproc/v1',
    kind: 'ExtprocConfig',
    version,
    backends: [
      {
        name: 'openai',
        cluster: 'sluice/backend/openai',
        provider: 'openai',
        credential: { value: 'sk-test-0001' },
      },
    ],
    routes: [{ name: 'gpt', models: [{ prefix: 'gpt-' }], backends: [{ name: 'openai' }] }],
    ...overrides,
  };
}

function snapshot(d: object, name = 'snap'): ReturnType<typeof buildSnapshot> {
  return buildSnapshot(encoder, name, {
    [EXTPROC_CONFIG]: { [EXTPROC_RESOURCE_NAME]: extprocConfigResource(d) },
  });
}

class Events {
  readonly configs: RuntimeConfig[] = [];
  readonly rejected: string[] = [];
  onConfig = (cfg: RuntimeConfig): void => {
    this.configs.push(cfg);
  };
  onRejected = (reason: string): void => {
    this.rejected.push(reason);
  };
}

describe('XdsConfigSource', () => {
  let dir: string;
  let address: string;
  let cache: SnapshotCache;
  let ads: RunningAdsServer;
  const events = new Events();
  let source: XdsConfigSource;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-xds-src-'));
    address = `unix:${join(dir, 'ads.sock')}`;
    cache = new SnapshotCache();
    cache.setSnapshot('*', snapshot(doc('cfg-1')));
    ads = await startAdsServer({ cache, listen: address });
    source = new XdsConfigSource(
      { address, nodeId: NODE, logger: silent, backoff: { initialMs: 50, maxMs: 200 } },
      events,
    );
  });

  after(async () => {
    source.close();
    await ads.close(100);
    await rm(dir, { recursive: true, force: true });
  });

  it('starts on the first good config and ACKs it', async () => {
    const acked = ads.tracker.whenAcked((e) => e.nodeId === NODE, 3000);
    const cfg = await source.start();
    assert.equal(cfg.version, 'cfg-1');
    assert.equal(cfg.backend('openai')?.credential, 'sk-test-0001');
    const e = await acked;
    assert.equal(e.typeUrl, EXTPROC_CONFIG);
    assert.deepEqual(e.resourceNames, [EXTPROC_RESOURCE_NAME]);
    const plane = ads.tracker.dataPlanes().find((p) => p.nodeId === NODE)!;
    assert.equal(plane.types[EXTPROC_CONFIG]!.ackedSnapshot, 'snap');
    assert.deepEqual(events.configs, [], 'the first config is start()’s result, not an event');
  });

  it('applies a new good config and ACKs it', async () => {
    const acked = ads.tracker.whenAcked(
      (e) => e.nodeId === NODE && e.snapshotVersion === 's2',
      3000,
    );
    cache.setSnapshot('*', snapshot(doc('cfg-2'), 's2'));
    await acked;
    assert.equal(events.configs.at(-1)?.version, 'cfg-2');
  });

  it('NACKs an invalid document with the refusal message and keeps the last good config', async () => {
    const nacked = ads.tracker.whenNacked((e) => e.nodeId === NODE, 3000);
    const bad = doc('cfg-bad', {
      routes: [{ name: 'gpt', models: [{ prefix: 'gpt-' }], backends: [{ name: 'nope' }] }],
    });
    cache.setSnapshot('*', snapshot(bad, 's-bad'));
    const e = await nacked;
    assert.equal(e.message, 'invalid config: routes.0.backends.0.name: unknown backend "nope"');
    assert.equal(events.rejected.at(-1), e.message);
    assert.equal(events.configs.at(-1)?.version, 'cfg-2');
    const status = ads.tracker.dataPlanes().find((p) => p.nodeId === NODE)!.types[EXTPROC_CONFIG]!;
    assert.equal(status.ackedSnapshot, 's2');
    assert.equal(status.nackMessage, e.message);
  });

  it('refuses env and file secrets over xDS', async () => {
    const nacked = ads.tracker.whenNacked((e) => e.snapshotVersion === 's-env', 3000);
    const withEnv = doc('cfg-env', {
      backends: [
        {
          name: 'openai',
          cluster: 'sluice/backend/openai',
          provider: 'openai',
          credential: { env: 'HOME' },
        },
      ],
    });
    cache.setSnapshot('*', snapshot(withEnv, 's-env'));
    assert.equal(
      (await nacked).message,
      'backend "openai": over xDS a credential must be given as value, not env or file',
    );
    assert.equal(events.configs.at(-1)?.version, 'cfg-2');
  });

  it('reconnects after the operator restarts and takes the config it serves', async () => {
    await ads.close(50);
    const fresh = new SnapshotCache();
    fresh.setSnapshot('*', snapshot(doc('cfg-3'), 's3'));
    ads = await startAdsServer({ cache: fresh, listen: address });
    await ads.tracker.whenAcked((e) => e.nodeId === NODE && e.snapshotVersion === 's3', 5000);
    assert.equal(events.configs.at(-1)?.version, 'cfg-3');
  });

  it('gives up start() after its timeout when no operator answers', async () => {
    const lonely = new XdsConfigSource(
      {
        address: `unix:${join(dir, 'nobody.sock')}`,
        nodeId: 'x/extproc',
        logger: silent,
        startTimeoutMs: 300,
        backoff: { initialMs: 20, maxMs: 50 },
      },
      new Events(),
    );
    await assert.rejects(lonely.start(), /no valid config from unix:.*nobody\.sock within 300 ms/);
  });
});
