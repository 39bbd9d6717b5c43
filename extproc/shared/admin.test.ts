import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { readiness, splitHostPort, startAdmin, type RunningAdmin } from './admin.js';

describe('readiness', () => {
  it('says draining first, then what the command waits for, else ready', () => {
    assert.deepEqual(readiness(true, 'no config'), { ready: false, reason: 'draining' });
    assert.deepEqual(readiness(true, undefined), { ready: false, reason: 'draining' });
    assert.deepEqual(readiness(false, 'no config'), { ready: false, reason: 'no config' });
    assert.deepEqual(readiness(false, undefined), { ready: true });
  });
});

describe('splitHostPort', () => {
  it('splits host:port and [v6]:port', () => {
    assert.deepEqual(splitHostPort('127.0.0.1:9901'), { host: '127.0.0.1', port: 9901 });
    assert.deepEqual(splitHostPort('[::1]:0'), { host: '::1', port: 0 });
  });

  it('refuses what has no host or no valid port', () => {
    assert.throws(() => splitHostPort(':9901'), /is not host:port/);
    assert.throws(() => splitHostPort('localhost'), /is not host:port/);
    assert.throws(() => splitHostPort('localhost:70000'), /has no valid port/);
    assert.throws(() => splitHostPort('localhost:x'), /has no valid port/);
  });
});

describe('startAdmin', () => {
  const registry = new Registry();
  new Counter({ name: 'sluice_admin_test_total', help: 'test', registers: [registry] }).inc();
  let state = readiness(false, 'no config');
  let admin: RunningAdmin;
  before(async () => {
    admin = await startAdmin({ listen: '127.0.0.1:0', registry, ready: () => state });
  });
  after(() => admin.close());

  const get = async (path: string, method = 'GET') => {
    const res = await fetch(`http://${admin.address}${path}`, { method });
    return { status: res.status, text: await res.text() };
  };

  it('binds the port it was given (0 picks one) and reports it', () => {
    assert.match(admin.address, /^127\.0\.0\.1:[1-9]\d*$/);
  });

  it('answers /healthz always and /readyz with the reason it is not ready', async () => {
    assert.deepEqual(await get('/healthz'), { status: 200, text: 'ok\n' });
    assert.deepEqual(await get('/readyz'), { status: 503, text: 'no config\n' });
    state = readiness(false, undefined);
    assert.deepEqual(await get('/readyz?verbose'), { status: 200, text: 'ready\n' });
    state = readiness(true, undefined);
    assert.deepEqual(await get('/readyz'), { status: 503, text: 'draining\n' });
  });

  it('serves the registry on /metrics, 404 elsewhere and 405 for writes', async () => {
    const m = await get('/metrics');
    assert.equal(m.status, 200);
    assert.match(m.text, /^sluice_admin_test_total 1$/m);
    assert.equal((await get('/nope')).status, 404);
    assert.equal((await get('/healthz', 'POST')).status, 405);
  });
});
