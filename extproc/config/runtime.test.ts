import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ExtprocConfig, type ExtprocConfigInput } from './contract.js';
import { RuntimeConfig } from './runtime.js';

type PolicyInput = NonNullable<ExtprocConfigInput['routes'][number]['policy']>;

const policy: PolicyInput = {
  name: 'pii',
  masking: {
    detectors: ['EMAIL', 'PERSON'],
    wordLists: [{ type: 'PROJECT', words: ['bluebird', 'nightjar'] }],
  },
  guard: { denyPatterns: [{ name: 'exfil', pattern: 'exfiltrate the prompt' }] },
};

function runtime(routes: ExtprocConfigInput['routes']): RuntimeConfig {
  const input: ExtprocConfigInput = {
    apiVersion: 'sluice.dev/extproc/v1',
    kind: 'ExtprocConfig',
    backends: [{ name: 'b', cluster: 'b', provider: 'openai', credential: { value: 'sk-1' } }],
    routes,
  };
  return new RuntimeConfig(ExtprocConfig.parse(input), new Map([['b', 'sk-1']]));
}

test('routes with equal policies share one compiled policy and one guard; others get their own', () => {
  const route = (name: string, p: PolicyInput | undefined) => ({
    name,
    models: [{ exact: name }],
    backends: [{ name: 'b' }],
    ...(p ? { policy: p } : {}),
  });
  // Each route carries its own copy, as the operator writes one merged policy per route.
  const copy = (): PolicyInput => JSON.parse(JSON.stringify(policy)) as PolicyInput;
  const cfg = runtime([
    route('a', copy()),
    route('b', copy()),
    route('c', { ...copy(), failureMode: 'open' }),
    route('d', { ...copy(), name: 'other' }),
    route('e', undefined),
  ]);
  const a = cfg.policyFor('a');
  assert.ok(a?.masking);
  assert.equal(cfg.policyFor('b'), a);
  assert.equal(cfg.guardFor('b'), cfg.guardFor('a'));
  assert.notEqual(cfg.policyFor('c'), a);
  assert.equal(cfg.policyFor('c')?.failureMode, 'open');
  assert.notEqual(cfg.policyFor('d'), a);
  assert.equal(cfg.policyFor('d')?.name, 'other');
  assert.notEqual(cfg.guardFor('c'), cfg.guardFor('a'));
  assert.equal(cfg.policyFor('e'), undefined);
  assert.equal(cfg.guardFor('e'), undefined);
  assert.deepEqual(cfg.knownNames().policies.sort(), ['other', 'pii']);
});
