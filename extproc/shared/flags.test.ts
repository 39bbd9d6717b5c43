import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { main as extprocMain } from '../main.js';
import { main as runMain } from '../../operator/standalone/main.js';
import { adminAddress, grpcAddress, stateUsage } from './flags.js';
import { captureMain } from '../../test/support/capture-main.js';

describe('state flags shared by sluice extproc and sluice run', () => {
  for (const [name, main, column] of [
    ['sluice extproc', extprocMain, 26],
    ['sluice run', runMain, 24],
  ] as const) {
    it(`${name} documents --redis-url and --vault-key-file in --help`, async () => {
      const r = await captureMain(main, ['--help']);
      assert.equal(r.code, 0);
      assert.ok(r.out.includes(stateUsage(column)), r.out);
      assert.match(r.out, /^ {2}--redis-url URL +budgets, usage/m);
      assert.match(r.out, /^ {2}--vault-key-file FILE +32-byte key/m);
    });

    it(`${name} refuses a --redis-url that is not redis:// or rediss://`, async () => {
      const args = name === 'sluice run' ? ['-f', '/nonexistent'] : ['--config', '/nonexistent'];
      const r = await captureMain(main, [...args, '--redis-url', 'http://127.0.0.1:6379']);
      assert.equal(r.code, 2);
      assert.match(r.err, /--redis-url must be redis:\/\/… or rediss:\/\/…/);
      const empty = await captureMain(main, [...args, '--vault-key-file', '']);
      assert.equal(empty.code, 2);
      assert.match(empty.err, /--vault-key-file must name a file/);
    });
  }

  it('lays the help out in the command’s own columns', () => {
    const text = stateUsage(24);
    for (const line of text.trimEnd().split('\n')) {
      assert.ok(line.length <= 100, line);
      assert.match(line, /^( {2}--\S+ \S+ +\S| {24}\S)/);
    }
  });
});

describe('address flags shared by every command', () => {
  it('takes unix:/path, host:port and [v6]:port for gRPC, naming the flag otherwise', () => {
    const schema = grpcAddress('--listen');
    for (const ok of ['unix:/run/x.sock', '127.0.0.1:0', 'extproc:50051', '[::1]:9000']) {
      assert.equal(schema.parse(ok), ok);
    }
    for (const bad of ['', 'localhost', ':9000', 'host:port', '[::1]']) {
      const r = schema.safeParse(bad);
      assert.equal(r.success, false, bad);
      assert.equal(r.error?.issues[0]?.message, '--listen must be unix:/path or host:port');
    }
    const required = grpcAddress('--xds-listen', '--xds-listen ADDR is required').safeParse(
      undefined,
    );
    assert.equal(required.error?.issues[0]?.message, '--xds-listen ADDR is required');
  });

  it('takes host:port, [v6]:port or off for --admin, and no unix socket or empty host', () => {
    const schema = adminAddress();
    for (const ok of ['off', '0.0.0.0:9902', '[::]:9901']) assert.equal(schema.parse(ok), ok);
    for (const bad of [':9902', 'unix:/x.sock', '127.0.0.1', 'on']) {
      const r = schema.safeParse(bad);
      assert.equal(r.success, false, bad);
      assert.equal(r.error?.issues[0]?.message, '--admin must be host:port or off');
    }
  });

  it('sluice extproc refuses an --admin that is not host:port before starting anything', async () => {
    const r = await captureMain(extprocMain, ['--config', '/nonexistent', '--admin', 'localhost']);
    assert.equal(r.code, 2);
    assert.match(r.err, /--admin must be host:port or off/);
  });
});
