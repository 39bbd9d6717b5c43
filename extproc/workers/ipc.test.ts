import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  channelPair,
  IpcError,
  IpcPeer,
  processChannel,
  RemoteError,
  type IpcChannel,
} from './ipc.js';

/** `ch` with every message it sends recorded. */
function recorded(ch: IpcChannel): { ch: IpcChannel; sent: unknown[] } {
  const sent: unknown[] = [];
  return {
    ch: { ...ch, send: (m) => (sent.push(m), ch.send(m)) },
    sent,
  };
}

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
    await new Promise((r) => setImmediate(r)); // it leaves at the end of this turn
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

  it('what a peer sends in one turn leaves as one channel message, in order', async () => {
    const [a, b] = channelPair();
    const out = recorded(a);
    const back = recorded(b);
    const client = new IpcPeer(out.ch);
    const server = new IpcPeer(back.ch);
    const order: string[] = [];
    server.handle('echo', (x: number) => (order.push(`call ${x}`), x * 10));
    server.onNotify('note', (x: number) => order.push(`note ${x}`));
    const replies = Promise.all([1, 2, 3].map((x) => client.call<number>('echo', x)));
    // A notification flushes at once, after the calls queued before it.
    assert.equal(client.notify('note', 4), true);
    assert.deepEqual(await replies, [10, 20, 30]);
    assert.equal(out.sent.length, 1, 'three calls and a notification: one message');
    assert.equal(back.sent.length, 1, 'three replies: one message');
    assert.deepEqual(order, ['call 1', 'call 2', 'call 3', 'note 4']);
    // A lone message goes as itself.
    assert.equal(await client.call('echo', 5), 50);
    assert.equal((out.sent[1] as { kind: string }).kind, 'call');
  });

  it('calls of a batch the channel refuses reject as never sent', async () => {
    const [a, b] = channelPair();
    new IpcPeer(b).handle('x', () => 1);
    let open = true;
    const client = new IpcPeer({ ...a, send: (m) => open && a.send(m) });
    open = false;
    const errs = await Promise.all(
      [client.call('x', 1), client.call('x', 2)].map((p) => p.catch((e: unknown) => e)),
    );
    for (const e of errs) assert.ok(e instanceof IpcError && !e.sent, String(e));
    // Queued and then closed before the turn ended: never sent either.
    const queued = client.call('x', 3).catch((e: unknown) => e);
    client.close();
    const q = await queued;
    assert.ok(q instanceof IpcError && !q.sent, 'closed before it left');
  });

  it("a worker's channel counts a backed-up send as sent", () => {
    const got: unknown[] = [];
    const proc = {
      connected: true,
      // process.send returns false when its queue is long: the message is still delivered.
      send: (m: unknown) => (got.push(m), false),
      on: () => proc,
      once: () => proc,
    };
    const ch = processChannel(proc as unknown as Parameters<typeof processChannel>[0]);
    assert.equal(ch.send({ a: 1 }), true);
    assert.deepEqual(got, [{ a: 1 }]);
    proc.connected = false;
    assert.equal(ch.send({ a: 2 }), false, 'a closed channel sends nothing');
    assert.equal(got.length, 1);
  });
});
