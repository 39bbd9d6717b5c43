import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import {
  KubeSource,
  Reflector,
  backoffDelay,
  decodeSecretData,
  references,
  serviceEndpoints,
  toPolicy,
  toRoute,
  toSlice,
  type Kind,
  type ListPage,
  type ListWatcher,
  type SourceApi,
  type WatchEvent,
} from './kube.js';
import { translate } from '../translate/index.js';

const silent = pino({ level: 'silent' });
const tick = () => new Promise((r) => setImmediate(r));

async function until(what: string, cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A fake apiserver collection: lists what it holds, streams what tests push. */
class FakeCollection implements ListWatcher {
  items = new Map<string, Record<string, unknown>>();
  rv = 1;
  lists = 0;
  listError: Error | undefined;
  watches: { from: string; push(e: WatchEvent): void; end(err?: unknown): void }[] = [];

  list(token: string | undefined): Promise<ListPage> {
    this.lists++;
    if (this.listError) {
      const e = this.listError;
      this.listError = undefined;
      return Promise.reject(e);
    }
    // Two pages, to exercise continue tokens.
    const all = [...this.items.values()];
    const half = Math.ceil(all.length / 2);
    const page = token === undefined ? all.slice(0, half) : all.slice(half);
    return Promise.resolve({
      items: page,
      resourceVersion: String(this.rv),
      continue: token === undefined && all.length > half ? 'next' : undefined,
    });
  }

  watch(
    from: string,
    onEvent: (e: WatchEvent) => void,
    done: (err: unknown) => void,
  ): Promise<() => void> {
    let open = true;
    const w = {
      from,
      push: (e: WatchEvent) => open && onEvent(e),
      end: (err?: unknown) => {
        if (!open) return;
        open = false;
        done(err ?? null);
      },
    };
    this.watches.push(w);
    return Promise.resolve(() => w.end());
  }

  put(obj: Record<string, unknown>, type: 'ADDED' | 'MODIFIED' = 'MODIFIED'): void {
    const meta = obj.metadata as Record<string, unknown>;
    meta.resourceVersion = String(++this.rv);
    this.items.set(`${meta.namespace as string}/${meta.name as string}`, obj);
    this.current?.push({ type, object: obj });
  }

  remove(ns: string, name: string): void {
    const obj = this.items.get(`${ns}/${name}`);
    this.items.delete(`${ns}/${name}`);
    this.rv++;
    if (obj) this.current?.push({ type: 'DELETED', object: obj });
  }

  get current() {
    return this.watches.at(-1);
  }
}

function cm(ns: string, name: string, extra: Record<string, unknown> = {}) {
  return { metadata: { namespace: ns, name }, ...extra };
}

void describe('Reflector', () => {
  const make = (fake: FakeCollection, changes: string[]) =>
    new Reflector<Record<string, unknown>>({
      name: 'test',
      lw: fake,
      convert: (raw) => raw,
      onChange: (key, before, after) =>
        changes.push(`${before ? (after ? 'update' : 'delete') : 'add'} ${key}`),
      logger: silent,
      backoff: { initialMs: 1, maxMs: 4 },
      minWatchMs: 0,
    });

  it('lists every page, then applies watch events from the list resourceVersion', async () => {
    const fake = new FakeCollection();
    for (const n of ['a', 'b', 'c']) fake.put(cm('ns', n), 'ADDED');
    const changes: string[] = [];
    const r = make(fake, changes);
    r.start();
    await r.synced;
    assert.deepEqual([...r.values()].map((v) => (v.metadata as { name: string }).name).sort(), [
      'a',
      'b',
      'c',
    ]);
    await until('watching', () => fake.watches.length === 1);
    assert.equal(fake.current!.from, '4');
    fake.put(cm('ns', 'b', { data: 1 }));
    fake.remove('ns', 'a');
    assert.deepEqual(changes.slice(3), ['update ns/b', 'delete ns/a']);
    await r.stop();
  });

  it('relists after 410 Gone and reports objects that vanished meanwhile as deleted', async () => {
    const fake = new FakeCollection();
    fake.put(cm('ns', 'a'), 'ADDED');
    fake.put(cm('ns', 'b'), 'ADDED');
    const changes: string[] = [];
    const restarts: string[] = [];
    const r = new Reflector<Record<string, unknown>>({
      name: 'test',
      lw: fake,
      convert: (raw) => raw,
      onChange: (key, before, after) =>
        changes.push(`${before ? (after ? 'update' : 'delete') : 'add'} ${key}`),
      logger: silent,
      backoff: { initialMs: 1, maxMs: 4 },
      onRestart: (reason) => restarts.push(reason),
    });
    r.start();
    await until('watching', () => fake.watches.length === 1);
    // While the watch is away, b goes and c comes; the watch then says its rv is too old.
    fake.items.delete('ns/b');
    fake.items.set('ns/c', cm('ns', 'c', {}));
    (fake.items.get('ns/c')!.metadata as Record<string, unknown>).resourceVersion = '10';
    fake.current!.push({ type: 'ERROR', object: { kind: 'Status', code: 410 } });
    await until('relisted', () => fake.lists >= 3 && fake.watches.length === 2);
    assert.deepEqual(restarts, ['gone']);
    assert.ok(changes.includes('delete ns/b'));
    assert.ok(changes.includes('add ns/c'));
    assert.equal(r.get('ns/b'), undefined);
    await r.stop();
  });

  it('retries a failing list with backoff and never throws', async () => {
    const fake = new FakeCollection();
    fake.put(cm('ns', 'a'), 'ADDED');
    fake.listError = Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
    const r = make(fake, []);
    r.start();
    await r.synced;
    assert.equal(fake.lists, 2); // the failed one, then the retry
    await r.stop();
  });

  it('resumes a watch that ended from the last resourceVersion it saw', async () => {
    const fake = new FakeCollection();
    const r = make(fake, []);
    r.start();
    await until('watching', () => fake.watches.length === 1);
    fake.put(cm('ns', 'x'), 'ADDED');
    fake.current!.push({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '42' } } });
    fake.current!.end();
    await until('rewatching', () => fake.watches.length === 2);
    assert.equal(fake.current!.from, '42');
    assert.equal(fake.lists, 1);
    await r.stop();
  });
});

void describe('backoffDelay', () => {
  it('doubles up to the ceiling, jittered in its upper half', () => {
    const b = { initialMs: 100, maxMs: 1000 };
    assert.equal(
      backoffDelay(b, 0, () => 0),
      50,
    );
    assert.equal(
      backoffDelay(b, 0, () => 1),
      100,
    );
    assert.equal(
      backoffDelay(b, 3, () => 1),
      800,
    );
    assert.equal(
      backoffDelay(b, 20, () => 1),
      1000,
    );
  });
});

void describe('conversions', () => {
  it('decodes Secret data', () => {
    assert.deepEqual(
      decodeSecretData({ data: { apiKey: Buffer.from('sk-1').toString('base64') } }),
      {
        apiKey: 'sk-1',
      },
    );
  });

  it('hands translation a policy whose spec it cannot compile as stored, so its routes are refused', () => {
    // The apiserver stores this (CEL does not compile RE2); the operator must not drop it, or
    // the route would be served with no key check and no masking.
    const stored = {
      metadata: { name: 'p', namespace: 'ns', generation: 4 },
      spec: {
        targetRefs: [{ name: 'chat' }],
        consumers: { required: true, keys: {} },
        masking: { customPatterns: [{ type: 'ZIP', pattern: '(?<=zip )\\d{5}' }] },
      },
    };
    const policy = toPolicy(stored)!;
    assert.deepEqual(policy.spec, stored.spec);
    const chat = toRoute({
      metadata: { name: 'chat', namespace: 'ns' },
      spec: {
        models: [{ exact: 'm' }],
        backends: [
          {
            name: 'b',
            provider: 'openai-compatible',
            endpoint: { url: 'https://llm.example.com' },
          },
        ],
      },
    })!;
    const t = translate({ routes: [chat], policies: [policy], secrets: [], endpoints: [] });
    assert.deepEqual(
      t.extproc.routes.map((r) => [r.name, r.refuse, r.governance, r.policy]),
      [['ns/chat', 'policy_invalid', undefined, undefined]],
    );
    const status = t.statuses.find((s) => s.kind === 'AIPolicy')!.conditions[0]!;
    assert.deepEqual([status.reason, status.observedGeneration], ['InvalidPolicy', 4]);
  });

  it('keeps what translation reads of a route, frozen, without the last-applied copy', () => {
    const r = toRoute({
      metadata: {
        name: 'r',
        namespace: 'ns',
        generation: 3,
        resourceVersion: '9',
        creationTimestamp: new Date('2025-01-02T03:04:05Z'),
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}', keep: 'me' },
        managedFields: [{}],
      },
      spec: { models: [], backends: [] },
      status: { observedGeneration: 2 },
    })!;
    assert.equal(r.metadata.creationTimestamp, '2025-01-02T03:04:05.000Z');
    assert.deepEqual(r.metadata.annotations, { keep: 'me' });
    assert.equal(r.status?.observedGeneration, 2);
    assert.ok(Object.isFrozen(r.spec));
  });

  it('maps a Service port to the slice port of the same name', () => {
    const svc = {
      namespace: 'ns',
      name: 'vllm',
      ports: [
        { name: 'http', port: 80 },
        { name: 'metrics', port: 9090 },
      ],
    };
    const s1 = toSlice({
      metadata: { name: 'a', namespace: 'ns', labels: { 'kubernetes.io/service-name': 'vllm' } },
      addressType: 'IPv4',
      ports: [
        { name: 'metrics', port: 9100 },
        { name: 'http', port: 8000 },
      ],
      endpoints: [
        { addresses: ['10.0.0.1'], conditions: { ready: true }, zone: 'z1' },
        { addresses: ['10.0.0.2'], conditions: { ready: false } },
        { addresses: ['10.0.0.3'] },
      ],
    })!;
    const fqdn = toSlice({
      metadata: { name: 'b', namespace: 'ns', labels: { 'kubernetes.io/service-name': 'vllm' } },
      addressType: 'FQDN',
    });
    assert.equal(fqdn, undefined);
    assert.deepEqual(serviceEndpoints({ namespace: 'ns', service: 'vllm', port: 80 }, svc, [s1]), {
      namespace: 'ns',
      service: 'vllm',
      port: 80,
      addresses: [
        { ip: '10.0.0.1', port: 8000, ready: true, zone: 'z1' },
        { ip: '10.0.0.2', port: 8000, ready: false },
        { ip: '10.0.0.3', port: 8000, ready: true },
      ],
    });
    // The Service is there but not the port: said apart from a missing Service.
    assert.deepEqual(serviceEndpoints({ namespace: 'ns', service: 'vllm', port: 81 }, svc, [s1]), {
      namespace: 'ns',
      service: 'vllm',
      port: 81,
      addresses: [],
      portNotFound: { ports: [80, 9090] },
    });
    assert.equal(
      serviceEndpoints({ namespace: 'ns', service: 'vllm', port: 80 }, undefined, []),
      undefined,
    );
  });

  it('pairs a one-port Service with a one-port slice whatever the names', () => {
    const svc = { namespace: 'ns', name: 's', ports: [{ name: '', port: 80 }] };
    const s = toSlice({
      metadata: { name: 'a', namespace: 'ns', labels: { 'kubernetes.io/service-name': 's' } },
      ports: [{ name: 'web', port: 8080 }],
      endpoints: [{ addresses: ['10.0.0.1'] }],
    })!;
    assert.deepEqual(
      serviceEndpoints({ namespace: 'ns', service: 's', port: 80 }, svc, [s])?.addresses,
      [{ ip: '10.0.0.1', port: 8080, ready: true }],
    );
  });
});

function route(ns: string, name: string, secret?: string, service?: string) {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: ns, generation: 1 },
    spec: {
      models: [{ exact: name }],
      backends: [
        service
          ? {
              name: 'b',
              provider: 'openai-compatible',
              endpoint: { service: { name: service, port: 80 } },
            }
          : {
              name: 'b',
              provider: 'openai',
              endpoint: { url: 'https://api.openai.com' },
              credential: { secretRef: { name: secret } },
            },
      ],
    },
  };
}

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
    api.c('AIRoute').put(route('ns', 'r1', 'used'), 'ADDED');
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

    // A Secret nobody references changes: no new translation.
    await until('watching', () => api.c('Secret').watches.length === 1);
    await tick();
    changes.length = 0;
    api.c('Secret').put(secretObj('ns', 'other', 'v-other-2'));
    await tick();
    assert.deepEqual(changes, []);

    // A route starts referencing it: it is read once, and the bundle carries it.
    await until('watching routes', () => api.c('AIRoute').watches.length === 1);
    api.c('AIRoute').put(route('ns', 'r2', 'other'), 'ADDED');
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

  it('signals a status-only change by key, without a new translation', async () => {
    const api = new FakeApi();
    const r = route('ns', 'r1', 'k');
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
    api.c('AIRoute').put(route('ns', 'r1', undefined, 'vllm'), 'ADDED');
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

    // The disagreement mended through the watch: a new translation, and the warning is not
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

void describe('references', () => {
  it('collects Secrets and Service ports per namespace', () => {
    const refs = references([
      toRoute(route('a', 'r1', 's1'))!,
      toRoute(route('b', 'r2', undefined, 'svc'))!,
    ]);
    assert.deepEqual([...refs.secrets], ['a/s1']);
    assert.deepEqual([...refs.services.keys()], ['b/svc:80']);
    assert.deepEqual([...refs.serviceNames], ['b/svc']);
  });
});
