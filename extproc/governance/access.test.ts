import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkAccess, compileAccess } from './access.js';
import { compileGlob } from './glob.js';
import { AccessPolicy } from './schema.js';
import type { Caller } from './identity.js';

const alice: Caller = { consumer: 'alice', team: 'red', method: 'key' };
const bob: Caller = { consumer: 'bob', team: 'blue', method: 'key' };

describe('checkAccess', () => {
  const access = compileAccess(
    AccessPolicy.parse({
      default: 'deny',
      rules: [
        { name: 'red-gpt', effect: 'allow', teams: ['red'], models: ['gpt-*'] },
        { name: 'no-o1-for-alice', effect: 'deny', consumers: ['alice'], models: ['gpt-o1*'] },
        { name: 'everyone-llama', effect: 'allow', models: ['llama-*'], routes: ['local'] },
      ],
    }),
  );

  it('lets deny beat allow whatever the order, and names the rule', () => {
    const r = checkAccess(access, alice, { model: 'gpt-o1-mini', route: 'openai' });
    assert.ok(!r.ok);
    assert.equal(r.refusal.code, 'access_denied');
    assert.equal(r.refusal.status, 403);
    assert.equal(r.refusal.rule, 'no-o1-for-alice');
    assert.ok(!r.refusal.message.includes('red'), 'no team or other consumers in the message');
  });

  it('allows by team, by a rule for everyone, and otherwise applies the default', () => {
    assert.deepEqual(checkAccess(access, alice, { model: 'gpt-4o', route: 'openai' }), {
      ok: true,
      rule: 'red-gpt',
    });
    assert.deepEqual(checkAccess(access, undefined, { model: 'llama-3', route: 'local' }), {
      ok: true,
      rule: 'everyone-llama',
    });
    const r = checkAccess(access, bob, { model: 'gpt-4o', route: 'openai' });
    assert.ok(!r.ok);
    assert.equal(r.refusal.rule, 'default');
    assert.equal(checkAccess(access, bob, { model: 'llama-3', route: 'cloud' }).ok, false);
  });

  it('allows everything without an access section', () => {
    assert.deepEqual(checkAccess(undefined, undefined, { model: 'x', route: 'y' }), {
      ok: true,
      rule: undefined,
    });
  });
});

describe('compileGlob', () => {
  it('matches * as any run of characters and nothing else as special', () => {
    const cases: [string, string, boolean][] = [
      ['gpt-*', 'gpt-4o', true],
      ['gpt-*', 'gpt-', true],
      ['gpt-*', 'xgpt-4', false],
      ['*-mini', 'gpt-4o-mini', true],
      ['a*b*c', 'abc', true],
      ['a*b*c', 'aXbYc', true],
      ['a*b*c', 'acb', false],
      ['a*aa', 'aa', false],
      ['a.b', 'aXb', false],
      ['*', '', true],
      ['exact', 'exact', true],
    ];
    for (const [p, s, want] of cases) assert.equal(compileGlob(p)(s), want, `${p} ~ ${s}`);
  });
});
