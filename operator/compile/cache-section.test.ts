// The AIPolicy `cache` section through compilation: checked with the extproc's own schema (a bad
// section makes the policy InvalidPolicy), merged per route by priority like every section, and
// compiled into the route's contract policy.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExtprocConfig } from '../../extproc/config/contract.js';
import { AIPolicySpecSchema } from '../api/schema.js';
import { compile } from './index.js';
import { compileProblems } from './policy.js';
import { bundle, policy, route } from '../../test/support/resources.js';

describe('AIPolicy cache section', () => {
  it('the CRD schema takes the contract’s fields and refuses others', () => {
    const ok = AIPolicySpecSchema.safeParse({
      targetRefs: [{ name: 'r' }],
      cache: { ttlSeconds: 60, scope: 'team', hitCostFraction: 0.25 },
    });
    assert.equal(ok.success, true);
    for (const cache of [
      { scope: 'everyone' },
      { ttlSeconds: 0 },
      { hitCostFraction: 2 },
      { x: 1 },
    ])
      assert.equal(
        AIPolicySpecSchema.safeParse({ targetRefs: [{ name: 'r' }], cache }).success,
        false,
        JSON.stringify(cache),
      );
    assert.deepEqual(
      compileProblems({ targetRefs: [{ name: 'r' }], cache: { maxEntryBytes: 10 } }).map(
        (p) => p.field,
      ),
      ['spec.cache.maxEntryBytes'],
    );
  });

  it('the winning section becomes the route policy’s cache; the loser is Conflicted', () => {
    const t = compile(
      bundle({
        routes: [route('chat'), route('other')],
        policies: [
          policy('low', { targetRefs: [{ name: 'chat' }], cache: { ttlSeconds: 10 } }),
          policy('high', {
            targetRefs: [{ name: 'chat' }],
            priority: 5,
            cache: { ttlSeconds: 600, scope: 'route' },
          }),
        ],
      }),
    );
    const parsed = ExtprocConfig.parse(t.extproc);
    const chat = parsed.routes.find((r) => r.name === 'ns/chat')!;
    assert.deepEqual(chat.policy?.cache, {
      ttlSeconds: 600,
      scope: 'route',
      maxEntryBytes: 256 * 1024,
      cacheToolCalls: false,
      cacheNonDeterministic: false,
      hitCostFraction: 0,
    });
    assert.equal(parsed.routes.find((r) => r.name === 'ns/other')!.policy, undefined);
    const low = t.statuses.find((s) => s.kind === 'AIPolicy' && s.name === 'low')!;
    assert.ok(low.conditions.some((c) => c.type === 'Conflicted' && c.status === 'True'));
  });
});
