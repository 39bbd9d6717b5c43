import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { Kind, SourceApi } from './kube-api.js';
import { KubeSource } from './kube.js';
import type { ListWatcher } from './reflector.js';
import { FakeCollection, routeObject, until } from './testing/fake-apiserver.js';

const silent = pino({ level: 'silent' });
const tick = () => new Promise((r) => setImmediate(r));

function secretObj(ns: string, name: string, value: string) {
  return {
    metadata: { namespace: ns, name },
    data: { apiKey: Buffer.from(value).toString('base64') },
  };
}

class FakeApi implements SourceApi {
  readonly collections = new Map<Kind, FakeCollection>();
  /** Label-selected collections, by `kind namespace selector`, as the source asked for them. */
  readonly selected = new Map<string, FakeCollection>();
  gets: string[] = [];
  constructor() {
    for (const k of ['AIRoute', 'AIPolicy', 'Secret', 'Service', 'EndpointSlice'] as Kind[]) {
      this.collections.set(k, new FakeCollection());
    }
  }
  c(kind: Kind): FakeCollection {
    return this.collections.get(kind)!;
  }
  listWatcher(kind: Kind, namespace?: string, labelSelector?: string): ListWatcher {
    if (labelSelector === undefined) return this.c(kind);
    const k = `${kind} ${namespace ?? '*'} ${labelSelector}`;
    if (!this.selected.has(k)) this.selected.set(k, new FakeCollection());
    return this.selected.get(k)!;
  }
  getSecret(namespace: string, name: string) {
    this.gets.push(`${namespace}/${name}`);
    return Promise.resolve(this.c('Secret').items.get(`${namespace}/${name}`));
  }
}

void describe('KubeSource', () => {
  it('holds values only of referenced Secrets, reading a newly referenced one by name', async () => {
    const api = new FakeApi();
    api.c('Secret').put(secretObj('ns', 'used', 'v-used'), 'ADDED');
    api.c('Secret').put(secretObj('ns', 'other', 'v-other'), 'ADDED');
    api.c('AIRoute').put(routeObject('ns', 'r1', 'used'), 'ADDED');
    const source = new KubeSource({ api, logger: silent });
    const changes: boolean[] = [];
    source.onChange((c) => changes.push(c.spec));
    await source.start();
    let res = await source.resources();
    assert.deepEqual(
      res.secrets.map((s) => [s.metadata.name, s.data.apiKey]),
      [['used', 'v-used']],
    );
    assert.deepEqual(api.gets, []);
    assert.ok(Object.isFrozen(res) && Object.isFrozen(res.routes));

    // A Secret nobody references changes: no new compilation.
    await until('watching', () => api.c('Secret').watches.length === 1);
    await tick();
    changes.length = 0;
    api.c('Secret').put(secretObj('ns', 'other', 'v-other-2'));
    await tick();
    assert.deepEqual(changes, []);

    // A route starts referencing it: it is read once, and the bundle carries it.
    await until('watching routes', () => api.c('AIRoute').watches.length === 1);
    api.c('AIRoute').put(routeObject('ns', 'r2', 'other'), 'ADDED');
    await until('change', () => changes.some((c) => c));
    res = await source.resources();
    assert.deepEqual(api.gets, ['ns/other']);
    assert.deepEqual(
      res.secrets.map((s) => [s.metadata.name, s.data.apiKey]),
      [
        ['other', 'v-other-2'],
        ['used', 'v-used'],
      ],
    );

    // Rotation of a referenced Secret arrives through the watch.
    changes.length = 0;
    api.c('Secret').put(secretObj('ns', 'used', 'v-rotated'));
    await until('change', () => changes.some((c) => c));
    res = await source.resources();
    assert.equal(res.secrets.find((s) => s.metadata.name === 'used')?.data.apiKey, 'v-rotated');
    await source.stop();
  });

  it('signals a status-only change by key, without a new compilation', async () => {
    const api = new FakeApi();
    const r = routeObject('ns', 'r1', 'k');
    api.c('AIRoute').put(r, 'ADDED');
    const source = new KubeSource({ api, logger: silent });
    const seen: { spec: boolean; status: string[] }[] = [];
    source.onChange((c) => seen.push({ spec: c.spec, status: [...c.status] }));
    await source.start();
    await tick();
    seen.length = 0;
    await until('watching', () => api.c('AIRoute').watches.length === 1);
    api.c('AIRoute').put({ ...r, status: { observedGeneration: 1 } });
    await until('change', () => seen.length > 0);
    assert.deepEqual(seen, [{ spec: false, status: ['AIRoute/ns/r1'] }]);
    await source.stop();
  });

  it('builds endpoints only for referenced Services and signals their slices', async () => {
    const api = new FakeApi();
    api.c('AIRoute').put(routeObject('ns', 'r1', undefined, 'vllm'), 'ADDED');
    api.c('Service').put(
      {
        metadata: { namespace: 'ns', name: 'vllm' },
        spec: { ports: [{ name: 'http', port: 80 }] },
      },
      'ADDED',
    );
    api
      .c('Service')
      .put(
        { metadata: { namespace: 'ns', name: 'unused' }, spec: { ports: [{ port: 80 }] } },
        'ADDED',
      );
    const sliceOf = (service: string, ip: string) => ({
      metadata: {
        namespace: 'ns',
        name: `${service}-1`,
        labels: { 'kubernetes.io/service-name': service },
      },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8000 }],
      endpoints: [{ addresses: [ip] }],
    });
    api.c('EndpointSlice').put(sliceOf('vllm', '10.0.0.1'), 'ADDED');
    api.c('EndpointSlice').put(sliceOf('unused', '10.0.0.9'), 'ADDED');
    const source = new KubeSource({ api, logger: silent });
    let specChanges = 0;
    source.onChange((c) => (specChanges += c.spec ? 1 : 0));
    await source.start();
    assert.deepEqual((await source.resources()).endpoints, [
      {
        namespace: 'ns',
        service: 'vllm',
        port: 80,
        addresses: [{ ip: '10.0.0.1', port: 8000, ready: true }],
      },
    ]);
    await until('watching', () => api.c('EndpointSlice').watches.length === 1);
    await tick();
    specChanges = 0;
    api.c('EndpointSlice').put(sliceOf('unused', '10.0.0.8'));
    await tick();
    assert.equal(specChanges, 0);
    api.c('EndpointSlice').put(sliceOf('vllm', '10.0.0.2'));
    await until('change', () => specChanges === 1);
    assert.equal((await source.resources()).endpoints[0]?.addresses[0]?.ip, '10.0.0.2');
    await source.stop();
  });
});

function consumerSecret(
  ns: string,
  name: string,
  labels: Record<string, string>,
  data: Record<string, string>,
) {
  return {
    metadata: { namespace: ns, name, labels },
    data: Object.fromEntries(
      Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
    ),
  };
}

function logCapture() {
  const lines: string[] = [];
  const logger = pino(
    { level: 'warn' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString('utf8'));
        cb();
      },
    }),
  );
  return { lines, logger };
}

void describe('KubeSource: consumer Secrets', () => {
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');

  it('watches only the consumer namespaces, by label, and keeps digests, never keys', async () => {
    const api = new FakeApi();
    const { lines, logger } = logCapture();
    const source = new KubeSource({
      api,
      namespaces: ['team-a'],
      consumerNamespaces: ['sluice-system', 'sluice-system'],
      logger,
    });
    assert.deepEqual([...api.selected.keys()], ['Secret sluice-system sluice.dev/consumer']);
    const keys = api.selected.get('Secret sluice-system sluice.dev/consumer')!;
    keys.put(
      consumerSecret(
        'sluice-system',
        'alice-1',
        { 'sluice.dev/consumer': 'alice', 'sluice.dev/team': 'search' },
        { key: 'sk-raw-alice\n' },
      ),
      'ADDED',
    );
    keys.put(
      consumerSecret(
        'sluice-system',
        'alice-2',
        { 'sluice.dev/consumer': 'alice' },
        { key: 'sk-2' },
      ),
      'ADDED',
    );
    keys.put(
      consumerSecret(
        'sluice-system',
        'bob-1',
        { 'sluice.dev/consumer': 'bob' },
        { key: 'sk-raw-bob', keyHash: sha('sk-raw-bob') },
      ),
      'ADDED',
    );
    const changes: boolean[] = [];
    source.onChange((c) => changes.push(c.spec));
    await source.start();
    let res = await source.resources();
    assert.deepEqual(
      res.consumerKeys?.map((k) => [k.secret, k.consumer, k.keyHash]),
      [
        ['alice-1', 'alice', sha('sk-raw-alice')],
        ['alice-2', 'alice', sha('sk-2')],
      ],
    );
    assert.ok(!JSON.stringify(res).includes('sk-raw'), 'no raw key in the bundle');
    // The ambiguous Secret and the team disagreement, each logged once, without a value.
    const warnings = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      warnings().map((w) => [w.event, w.secret ?? w.consumer]),
      [
        ['consumer_secret_refused', 'sluice-system/bob-1'],
        ['consumer_refused', 'alice'],
      ],
    );
    assert.ok(!lines.join('').includes('sk-raw') && !lines.join('').includes(sha('sk-raw-bob')));

    // The disagreement mended through the watch: a new compilation, and the warning is not
    // repeated for a bundle that no longer has it.
    await until('watching', () => keys.watches.length === 1);
    await tick();
    changes.length = 0;
    keys.put(
      consumerSecret(
        'sluice-system',
        'alice-2',
        { 'sluice.dev/consumer': 'alice', 'sluice.dev/team': 'search' },
        { keyHash: sha('sk-3') },
      ),
    );
    await until('change', () => changes.some((c) => c));
    res = await source.resources();
    assert.deepEqual(
      res.consumerKeys?.map((k) => [k.secret, k.team, k.keyHash]),
      [
        ['alice-1', 'search', sha('sk-raw-alice')],
        ['alice-2', 'search', sha('sk-3')],
      ],
    );
    assert.equal(warnings().length, 2);
    keys.remove('sluice-system', 'alice-1');
    await until('deleted', () => changes.filter((c) => c).length === 2);
    res = await source.resources();
    assert.deepEqual(
      res.consumerKeys?.map((k) => k.secret),
      ['alice-2'],
    );
    await source.stop();
  });

  it('has no consumer watch without consumer namespaces', async () => {
    const api = new FakeApi();
    const source = new KubeSource({ api, logger: silent });
    await source.start();
    assert.equal(api.selected.size, 0);
    assert.deepEqual((await source.resources()).consumerKeys, []);
    await source.stop();
  });

  it('holds the value of a masking hash key Secret a policy references', async () => {
    const api = new FakeApi();
    api.c('Secret').put(secretObj('ns', 'hmac', 'hmac-key-0123456789'), 'ADDED');
    api.c('AIPolicy').put(
      {
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'AIPolicy',
        metadata: { name: 'p', namespace: 'ns' },
        spec: {
          selector: {},
          masking: { hashKeySecretRef: { name: 'hmac', key: 'apiKey' } },
        },
      },
      'ADDED',
    );
    const source = new KubeSource({ api, logger: silent });
    await source.start();
    const res = await source.resources();
    assert.deepEqual(
      res.secrets.map((s) => [s.metadata.name, s.data.apiKey]),
      [['hmac', 'hmac-key-0123456789']],
    );
    await source.stop();
  });
});
