import assert from 'node:assert/strict';
import { it } from 'node:test';
import { DEFAULT_NAMESPACE, leaseNamespace } from './main.js';

it('puts the status Lease in the flag, the pod or else sluice-system, never default', () => {
  const none = () => undefined;
  assert.deepEqual(leaseNamespace('ops', { POD_NAMESPACE: 'x' }, none), {
    namespace: 'ops',
    guessed: false,
  });
  assert.deepEqual(leaseNamespace(undefined, { POD_NAMESPACE: 'x' }, none), {
    namespace: 'x',
    guessed: false,
  });
  assert.deepEqual(
    leaseNamespace(undefined, {}, () => 'from-sa'),
    {
      namespace: 'from-sa',
      guessed: false,
    },
  );
  // Out of a cluster: the chart's namespace, and the caller warns.
  assert.deepEqual(leaseNamespace(undefined, {}, none), {
    namespace: DEFAULT_NAMESPACE,
    guessed: true,
  });
  assert.equal(DEFAULT_NAMESPACE, 'sluice-system');
});
