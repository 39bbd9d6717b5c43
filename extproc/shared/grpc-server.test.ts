import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  bindGrpcServer,
  dialAddress,
  parseListen,
  shutdownGrpcServer,
  stopWithin,
} from './grpc-server.js';

/** A server with one bidirectional method that never ends its calls on its own. */
function echoServer(): { server: grpc.Server; service: grpc.ServiceDefinition } {
  const service: grpc.ServiceDefinition = {
    Echo: {
      path: '/test.Echo/Echo',
      requestStream: true,
      responseStream: true,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    },
  };
  const server = new grpc.Server();
  server.addService(service, {
    Echo: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (b: Buffer) => call.write(b));
    },
  });
  return { server, service };
}

async function echoOnce(address: string, service: grpc.ServiceDefinition) {
  const Client = grpc.makeGenericClientConstructor(service, 'Echo');
  const client = new Client(address, grpc.credentials.createInsecure());
  const call = (client as unknown as { Echo(): grpc.ClientDuplexStream<Buffer, Buffer> }).Echo();
  const echoed = await new Promise<Buffer>((resolve, reject) => {
    call.once('data', resolve);
    call.once('error', reject);
    call.write(Buffer.from('ping'));
  });
  return { client, call, echoed };
}

describe('bindGrpcServer', () => {
  it('turns port 0 into the port bound, which clients dial', async () => {
    const { server, service } = echoServer();
    const address = await bindGrpcServer(server, '127.0.0.1:0');
    assert.match(address, /^127\.0\.0\.1:[1-9]\d*$/);
    const { client, call, echoed } = await echoOnce(address, service);
    assert.equal(echoed.toString(), 'ping');
    call.cancel();
    client.close();
    server.forceShutdown();
  });

  it('makes a unix socket’s folder and replaces a stale socket file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-grpc-'));
    try {
      const path = join(dir, 'nested', 'x.sock');
      const first = echoServer();
      assert.equal(await bindGrpcServer(first.server, `unix:${path}`), `unix:${path}`);
      first.server.forceShutdown();
      await writeFile(path, 'left by a killed predecessor').catch(() => undefined);
      const second = echoServer();
      const address = await bindGrpcServer(second.server, `unix://${path}`);
      assert.equal(address, `unix://${path}`);
      const { client, call, echoed } = await echoOnce(address, second.service);
      assert.equal(echoed.toString(), 'ping');
      call.cancel();
      client.close();
      second.server.forceShutdown();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects an address it cannot bind', async () => {
    const { server } = echoServer();
    await assert.rejects(bindGrpcServer(server, '256.0.0.1:0'));
    server.forceShutdown();
  });
});

describe('shutdownGrpcServer', () => {
  it('resolves at once when nothing is open', async () => {
    const { server } = echoServer();
    await bindGrpcServer(server, '127.0.0.1:0');
    const t0 = Date.now();
    await shutdownGrpcServer(server, 60_000);
    assert.ok(Date.now() - t0 < 30_000);
  });

  it('cancels a call still open at the deadline', async () => {
    const { server, service } = echoServer();
    const address = await bindGrpcServer(server, '127.0.0.1:0');
    const { client, call } = await echoOnce(address, service);
    const ended = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => undefined);
    await shutdownGrpcServer(server, 50);
    assert.notEqual((await ended).code, grpc.status.OK);
    client.close();
  });
});

describe('parseListen and dialAddress', () => {
  it('reads unix sockets (one or three slashes) and host:port, IPv6 in brackets', () => {
    assert.deepEqual(parseListen('unix:/run/x.sock'), { path: '/run/x.sock' });
    assert.deepEqual(parseListen('unix:///run/x.sock'), { path: '/run/x.sock' });
    assert.deepEqual(parseListen('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
    assert.deepEqual(parseListen('[::1]:9001'), { host: '::1', port: 9001 });
    for (const bad of ['nohost', 'h:70000', 'h:1.5', 'h:']) {
      assert.throws(() => parseListen(bad), /expected unix:\/path or host:port/);
    }
  });

  it('names the bound port for host:port and the socket as given', () => {
    assert.equal(dialAddress('127.0.0.1:0', 40123), '127.0.0.1:40123');
    assert.equal(dialAddress('[::1]:0', 40123), '[::1]:40123');
    assert.equal(dialAddress('unix:///run/x.sock', 0), 'unix:///run/x.sock');
  });
});

describe('stopWithin', () => {
  it('resolves when the graceful stop is done, without forcing', async () => {
    let forced = 0;
    await stopWithin(
      60_000,
      (done) => setImmediate(done),
      () => forced++,
    );
    assert.equal(forced, 0);
  });

  it('forces at the deadline, and a late graceful end changes nothing', async () => {
    let forced = 0;
    let finish: (() => void) | undefined;
    await stopWithin(
      10,
      (done) => (finish = done),
      () => forced++,
    );
    assert.equal(forced, 1);
    finish!();
    assert.equal(forced, 1);
  });
});
