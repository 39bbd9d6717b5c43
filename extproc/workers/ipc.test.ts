import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { channelPair, IpcError, IpcPeer, RemoteError } from './ipc.js';

describe('IPC calls between primary and workers', () => {
  it('answers calls, sync and async, and carries notifications', async () => {
    const [a, b] = channelPair();
    const client = new IpcPeer(a);
    const server = new IpcPeer(b);
    server.handle('add', (x: { a: number; b: number }) => x.a + x.b);
    server.handle('later', (x: string) => Promise.resolve(`${x}!`));
    const got: unknown[] = [];
    server.onNotify('push', (x: unknown) => got.push(x));
    assert.equal(await client.call('add', { a: 2, b: 3 }), 5);
    assert.equal(await client.call('later', 'hi'), 'hi!');
    client.notify('push', { v: 1 });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(got, [{ v: 1 }]);
    assert.equal(client.inFlight, 0);
  });

  it('a handler error arrives by name and message, without a stack', async () => {
    const [a, b] = channelPair();
    const server = new IpcPeer(b);
    server.handle('boom', () => {
      const e = new Error('no such thing');
      e.name = 'StoreUnavailable';
      throw Object.assign(e, { ipcData: false });
    });
    const err = await new IpcPeer(a).call('boom', null).catch((e: unknown) => e);
    assert.ok(err instanceof RemoteError);
    assert.equal(err.name, 'StoreUnavailable');
    assert.equal(err.message, 'no such thing');
    assert.equal(err.data, false);
    assert.ok(!String(err.stack).includes('ipc.test.ts:2'), 'the remote stack stays remote');
    const missing = await new IpcPeer(a).call('nope', null).catch((e: unknown) => e);
    assert.ok(missing instanceof RemoteError && /no handler/.test(missing.message));
  });

  it('a call times out as sent; a closed channel rejects pending and new calls', async () => {
    const [a, b] = channelPair();
    new IpcPeer(b).handle('hang', () => new Promise(() => undefined));
    const client = new IpcPeer(a);
    const t = await client.call('hang', null, 20).catch((e: unknown) => e);
    assert.ok(t instanceof IpcError && t.sent);
    const pending = client.call('hang', null, 10_000);
    (a as unknown as { close(): void }).close();
    const p = await pending.catch((e: unknown) => e);
    assert.ok(p instanceof IpcError && p.sent, 'may have been handled');
    const after = await client.call('hang', null).catch((e: unknown) => e);
    assert.ok(after instanceof IpcError && !after.sent, 'never left this process');
  });

  it('ignores messages that are not its own', async () => {
    const [a, b] = channelPair();
    const server = new IpcPeer(b);
    server.handle('x', () => 1);
    a.send({ type: 'prom-client:getMetricsReq', requestId: 1 });
    assert.equal(await new IpcPeer(a).call('x', null), 1);
  });
});
