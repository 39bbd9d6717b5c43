import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatIssues } from '../config/contract.js';
import { GovernanceConfig, GovernancePolicy, Limit } from './schema.js';

const HASH = 'a'.repeat(64);

describe('governance schema', () => {
  it('fills defaults', () => {
    const p = GovernancePolicy.parse({
      name: 'team-budgets',
      identity: { keys: {} },
      limits: { rules: [{ name: 'l', tokensPerMinute: 10 }] },
    });
    assert.equal(p.mode, 'enforce');
    assert.equal(p.failureMode, 'closed');
    assert.equal(p.identity?.required, true);
    assert.deepEqual(p.identity?.keys?.headers, ['authorization', 'x-api-key']);
    assert.equal(p.limits?.defaultMaxTokens, 4096);
    assert.equal(p.limits?.reservationTtlSeconds, 900);
    assert.deepEqual(p.limits?.rules[0]?.per, []);
  });

  it('refuses limits without amounts, repeated dimensions and duplicate names', () => {
    assert.equal(Limit.safeParse({ name: 'x' }).success, false);
    assert.equal(
      Limit.safeParse({ name: 'x', per: ['team', 'team'], concurrent: 1 }).success,
      false,
    );
    const dup = GovernancePolicy.safeParse({
      name: 'p',
      limits: {
        rules: [
          { name: 'a', concurrent: 1 },
          { name: 'a', concurrent: 2 },
        ],
      },
    });
    assert.equal(dup.success, false);
  });

  it('checks consumers: unique names, a key hash owned once, mappings to known consumers', () => {
    const r = GovernanceConfig.safeParse({
      consumers: [
        { name: 'a', keyHashes: [HASH] },
        { name: 'b', keyHashes: [HASH] },
      ],
      policies: [{ name: 'p', identity: { mesh: { consumers: { 'spiffe://td/x': 'ghost' } } } }],
    });
    assert.ok(!r.success);
    const text = formatIssues(r.error);
    assert.match(text, /a key hash belongs to two consumers/);
    assert.match(text, /unknown consumer "ghost"/);
    assert.ok(!text.includes(HASH), 'digests are never echoed');
    assert.equal(
      GovernanceConfig.safeParse({ consumers: [{ name: 'a', keyHashes: ['ABC'] }] }).success,
      false,
    );
    assert.equal(
      GovernanceConfig.safeParse({ consumers: [{ name: 'a', expiresAt: 'tomorrow' }] }).success,
      false,
    );
  });
});
