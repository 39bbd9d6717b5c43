import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { affinityKey, SessionIds, sessionValue, turnOf } from './session.js';

const alice = { method: 'key', consumer: 'alice' };
const bob = { method: 'key', consumer: 'bob' };

describe('affinity key', () => {
  it('is the same for a conversation on every replica, bound to route and caller', () => {
    const a = affinityKey('r', alice, 's1');
    assert.equal(a, affinityKey('r', alice, 's1'));
    assert.notEqual(a, affinityKey('r', bob, 's1'), 'another caller with the same session id');
    assert.notEqual(a, affinityKey('other', alice, 's1'));
    assert.notEqual(a, affinityKey('r', alice, 's2'));
    assert.match(a!, /^[A-Za-z0-9_-]{43}$/);
  });
  it('falls back to the caller, then the session alone; nothing: no key', () => {
    assert.equal(affinityKey('r', alice, undefined), affinityKey('r', alice, undefined));
    assert.notEqual(affinityKey('r', alice, undefined), affinityKey('r', bob, undefined));
    assert.ok(affinityKey('r', undefined, 's1'));
    assert.equal(affinityKey('r', undefined, undefined), undefined);
  });
});

describe('session ids for logs', () => {
  it('are keyed: the same key gives the same id, another key another; never the raw value', () => {
    const key = Buffer.alloc(32, 7);
    const a = new SessionIds(key).id('r', alice, 'alice@example.com');
    assert.equal(a, new SessionIds(key).id('r', alice, 'alice@example.com'));
    assert.notEqual(a, new SessionIds(Buffer.alloc(32, 8)).id('r', alice, 'alice@example.com'));
    assert.notEqual(a, new SessionIds(key).id('r', bob, 'alice@example.com'));
    assert.match(a, /^[0-9a-f]{32}$/);
    assert.ok(!a.includes('alice'));
  });
  it('ignores empty and oversized session headers', () => {
    const h = (v: string) => new Map([['x-sluice-session', v]]);
    assert.equal(sessionValue(h(''), 'x-sluice-session'), undefined);
    assert.equal(sessionValue(h('x'.repeat(257)), 'x-sluice-session'), undefined);
    assert.equal(sessionValue(h('abc'), 'x-sluice-session'), 'abc');
  });
});

describe('turnOf', () => {
  it('counts the user turns of a conversation, the asked one included', () => {
    assert.equal(
      turnOf('chat', {
        messages: [
          { role: 'system', content: 's' },
          { role: 'user', content: 'a' },
          { role: 'assistant', content: 'b' },
          { role: 'user', content: 'c' },
        ],
      }),
      2,
    );
    // Tool results continue a turn (Anthropic).
    assert.equal(
      turnOf('messages', {
        messages: [
          { role: 'user', content: 'a' },
          { role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'n', input: {} }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: 'x' }] },
        ],
      }),
      1,
    );
    assert.equal(turnOf('responses', { input: 'hello' }), 1);
    assert.equal(turnOf('embeddings', { input: 'x' }), 0);
  });
});
