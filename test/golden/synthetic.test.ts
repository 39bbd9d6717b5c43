import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compile } from '../../operator/compile/index.js';
import { syntheticResources } from './synthetic.js';

// Not a timing test (the budget is measured by `npm run bench`): this only proves the bundle the
// bench translates is valid, so the bench measures real work rather than rejections.
void describe('synthetic bundle for the bench', () => {
  void it('translates with every route and policy accepted', () => {
    const t = compile(syntheticResources(200));
    assert.equal(t.ir.routes.length, 200);
    const notAccepted = t.statuses.filter(
      (s) => s.conditions.find((c) => c.type === 'Accepted')?.status !== 'True',
    );
    assert.deepEqual(notAccepted, []);
    assert.ok(t.ir.routes.some((r) => Object.keys(r.policies).length > 0));
    assert.ok(t.envoy.endpoints.length > 0, 'some rules are EDS clusters');
  });
});
