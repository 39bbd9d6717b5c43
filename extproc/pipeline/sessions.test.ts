import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { ExtprocConfig } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { gatewayKeeps, ownersOf } from './sessions.js';

const sha = (k: string) => createHash('sha256').update(k).digest('hex');
const ALICE = 'sk-sluice-alice-sessions';

const cfg = new RuntimeConfig(
  ExtprocConfig.parse({
    apiVersion: 'sluice.dev/extproc/v1',
    kind: 'ExtprocConfig',
    backends: [
      { name: 'openai', cluster: 'c-openai', provider: 'openai' },
      { name: 'azure', cluster: 'c-azure', provider: 'azure-openai', azure: { apiVersion: 'v1' } },
      { name: 'claude', cluster: 'c-claude', provider: 'anthropic' },
      { name: 'local', cluster: 'c-local', provider: 'openai-compatible' },
    ],
    consumers: [{ name: 'alice', keyHashes: [sha(ALICE)] }],
    policies: [
      { name: 'keys', identity: { required: true, keys: {} } },
      { name: 'keys-too', identity: { required: false, keys: {} } },
    ],
    routes: [
      {
        name: 'gpt',
        models: [{ exact: 'gpt' }],
        backends: [{ name: 'openai' }, { name: 'azure' }],
        governance: 'keys',
      },
      {
        name: 'claude',
        models: [{ exact: 'claude' }],
        backends: [{ name: 'claude' }],
        governance: 'keys-too',
      },
      {
        name: 'mixed',
        models: [{ exact: 'mixed' }],
        backends: [{ name: 'openai' }, { name: 'local' }],
      },
    ],
  }),
  new Map(),
);

describe('sessions in the request path', () => {
  it('keeps state at the gateway when some backend of the route keeps none', () => {
    const route = (n: string) => cfg.routes.find((r) => r.name === n)!;
    assert.equal(gatewayKeeps(cfg, route('gpt')), false);
    assert.equal(gatewayKeeps(cfg, route('claude')), true);
    assert.equal(gatewayKeeps(cfg, route('mixed')), true);
  });

  it('finds the caller under every governance policy, once', () => {
    const owners = ownersOf(cfg, new Map([['authorization', `Bearer ${ALICE}`]]), Date.now());
    assert.deepEqual(owners, [{ method: 'key', consumer: 'alice' }]);
  });

  it('is 401 for a key no policy accepts, and no one for a caller without a credential', () => {
    assert.throws(
      () => ownersOf(cfg, new Map([['authorization', 'Bearer sk-sluice-nope']]), Date.now()),
      (e: unknown) => e instanceof SluiceError && e.status === 401,
    );
    // The required policy refuses, the optional one lets an anonymous caller in: 401 as well,
    // since nothing identified the caller and a credential is what it lacks.
    assert.throws(
      () => ownersOf(cfg, new Map(), Date.now()),
      (e: unknown) => e instanceof SluiceError && e.status === 401,
    );
  });
});
