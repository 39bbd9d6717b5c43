import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Reflector } from './reflector.js';
import { FakeCollection, until } from './testing/fake-apiserver.js';

const silent = pino({ level: 'silent' });

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
