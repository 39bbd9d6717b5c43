// The AIPolicy `sessions` section through compilation: checked with the extproc's own schema (a
// bad section makes the policy InvalidPolicy), merged per route by priority like every section,
// and compiled into the route's contract policy.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExtprocConfig } from '../../extproc/config/contract.js';
import { AIPolicySpecSchema } from '../api/schema.js';
import { compile } from './index.js';
import { compileProblems } from './policy.js';
import { bundle, policy, route } from '../../test/support/resources.js';

describe('AIPolicy sessions section', () => {
  it('the CRD schema takes the contract’s fields and refuses others', () => {
    const ok = AIPolicySpecSchema.safeParse({
      targetRefs: [{ name: 'r' }],
      sessions: { ttlSeconds: 3600, maxStoredBytes: 65536, anonymous: 'stateless' },
    });
    assert.equal(ok.success, true);
    for (const sessions of [
      { anonymous: 'everyone' },
      { ttlSeconds: 0 },
      { maxStoredBytes: 100 },
      { ttlSeconds: 91 * 24 * 3600 },
      { x: 1 },
    ])
      assert.equal(
        AIPolicySpecSchema.safeParse({ targetRefs: [{ name: 'r' }], sessions }).success,
        false,
        JSON.stringify(sessions),
      );
    assert.deepEqual(
      compileProblems({ targetRefs: [{ name: 'r' }], sessions: { maxStoredBytes: 10 } }).map(
        (p) => p.field,
      ),
      ['spec.sessions.maxStoredBytes'],
    );
  });

  it('the winning section becomes the route policy’s sessions; the loser is Conflicted', () => {
    const t = compile(
      bundle({
        routes: [route('chat'), route('other')],
        policies: [
          policy('low', { targetRefs: [{ name: 'chat' }], sessions: { ttlSeconds: 10 } }),
          policy('high', {
            targetRefs: [{ name: 'chat' }],
            priority: 5,
            sessions: { ttlSeconds: 600, enabled: false },
          }),
        ],
      }),
    );
    const parsed = ExtprocConfig.parse(t.extproc);
    const chat = parsed.routes.find((r) => r.name === 'ns/chat')!;
    assert.deepEqual(chat.policy?.sessions, {
      enabled: false,
      ttlSeconds: 600,
      maxStoredBytes: 1024 * 1024,
      anonymous: 'refuse',
    });
    assert.equal(parsed.routes.find((r) => r.name === 'ns/other')!.policy, undefined);
    const low = t.statuses.find((s) => s.kind === 'AIPolicy' && s.name === 'low')!;
    assert.ok(low.conditions.some((c) => c.type === 'Conflicted' && c.status === 'True'));
  });
});
