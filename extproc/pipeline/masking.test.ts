import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Policy } from '../config/contract.js';
import { SluiceError } from '../errors.js';
import { compilePolicy } from '../policy/policy.js';
import { applyRequestPolicy, SESSION_UNBOUND, type SessionOwner } from './masking.js';
import { newPolicyState, VAULT_DEGRADED } from '../policy/state.js';
import { MAX_REQUEST_DEPTH } from '../masking/fields.js';
import { MemoryVault, PolicyUnavailableError, type Vault } from '../masking/vault.js';

const EMAIL = 'jane.doe@example.com';
const PHONE = '+1 415 555 0132';

function policy(failureMode: 'open' | 'closed' = 'closed') {
  return compilePolicy(Policy.parse({ name: 'p', failureMode, masking: {} }));
}

interface Turn {
  sent: string;
  answer: (text: string) => string;
  verdicts: Set<string>;
}

async function turn(
  vault: Vault,
  content: string,
  opts: { session?: string; caller?: SessionOwner; failureMode?: 'open' | 'closed' } = {},
): Promise<Turn> {
  const state = newPolicyState(policy(opts.failureMode));
  const body = { model: 'm', messages: [{ role: 'user', content }] };
  const headers = new Map<string, string>();
  if (opts.session !== undefined) headers.set('x-sluice-session', opts.session);
  const r = await applyRequestPolicy({
    state,
    operation: 'chat',
    body,
    headers,
    route: 'r',
    vault,
    caller: opts.caller,
  });
  return {
    sent: r.body ? r.body.toString() : JSON.stringify(body),
    answer: (text) => state.output!.whole(text),
    verdicts: state.verdicts,
  };
}

const alice: SessionOwner = { method: 'key', consumer: 'alice' };
const bob: SessionOwner = { method: 'key', consumer: 'bob' };

describe('conversation vault ownership', () => {
  it('restores a session only for the authenticated caller that opened it', async () => {
    const vault = new MemoryVault();
    const a = await turn(vault, `mail ${EMAIL}`, { session: 's1', caller: alice });
    assert.match(a.sent, /mail \[EMAIL_1\]/);
    const again = await turn(vault, 'and?', { session: 's1', caller: alice });
    assert.equal(again.answer('[EMAIL_1]'), EMAIL, 'the owner keeps its conversation');

    const other = await turn(vault, 'who is [EMAIL_1]?', { session: 's1', caller: bob });
    assert.equal(other.answer('It is [EMAIL_1]'), 'It is [EMAIL_1]');
    // The same consumer name authenticated another way is another principal.
    const jwt = await turn(vault, 'x', { session: 's1', caller: { ...alice, method: 'jwt' } });
    assert.equal(jwt.answer('[EMAIL_1]'), '[EMAIL_1]');
  });

  it('ignores the session header of an anonymous caller: placeholders live for one request', async () => {
    const vault = new MemoryVault();
    const a = await turn(vault, `mail ${EMAIL}`, { session: 'shared' });
    assert.match(a.sent, /mail \[EMAIL_1\]/);
    assert.equal(a.answer('ok [EMAIL_1]'), `ok ${EMAIL}`, 'restored within its own request');
    assert.ok(a.verdicts.has(SESSION_UNBOUND));
    assert.equal(vault.size, 0, 'nothing was kept for a conversation');

    const b = await turn(vault, 'what was [EMAIL_1]?', { session: 'shared' });
    assert.equal(b.answer('It was [EMAIL_1]'), 'It was [EMAIL_1]');
    const none = await turn(vault, 'hello');
    assert.ok(!none.verdicts.has(SESSION_UNBOUND));
  });
});

const downVault: Vault = {
  open: () => Promise.reject(new PolicyUnavailableError('The state store is unavailable.')),
  close: () => undefined,
};

describe('the shared vault unavailable', () => {
  it('open mode masks with a vault of the request and reports the degraded mode', async () => {
    const t = await turn(downVault, `before [EMAIL_1] [PHONE_2]; now ${EMAIL}, ${PHONE}`, {
      session: 's',
      caller: alice,
      failureMode: 'open',
    });
    assert.ok(!t.sent.includes(EMAIL) && !t.sent.includes(PHONE), t.sent);
    // Numbers written by earlier turns are not reused for this request's values.
    assert.match(t.sent, /before \[EMAIL_1\] \[PHONE_2\]; now \[EMAIL_2\], \[PHONE_1\]/);
    assert.equal(
      t.answer('[EMAIL_1] [EMAIL_2] [PHONE_1] [PHONE_2]'),
      `[EMAIL_1] ${EMAIL} ${PHONE} [PHONE_2]`,
    );
    assert.ok(t.verdicts.has(VAULT_DEGRADED));
  });

  it('closed mode refuses', async () => {
    await assert.rejects(
      turn(downVault, `mail ${EMAIL}`, { session: 's', caller: alice }),
      (e) => e instanceof SluiceError && e.code === 'policy_unavailable',
    );
  });

  it('a failure other than the vault still follows the failure mode', async () => {
    const broken: Vault = {
      open: () => {
        throw new TypeError('bug');
      },
      close: () => undefined,
    };
    const t = await turn(broken, `mail ${EMAIL}`, {
      session: 's',
      caller: alice,
      failureMode: 'open',
    });
    assert.ok(!t.verdicts.has(VAULT_DEGRADED));
  });
});

describe('depth', () => {
  function nested(levels: number): unknown {
    let v: unknown = EMAIL;
    for (let i = 0; i < levels; i++) v = i % 2 ? [v] : { k: v };
    return v;
  }

  async function apply(body: Record<string, unknown>, mode: 'enforce' | 'shadow' = 'enforce') {
    const state = newPolicyState(
      compilePolicy(Policy.parse({ name: 'p', mode, failureMode: 'open', masking: {} })),
    );
    const r = await applyRequestPolicy({
      state,
      operation: 'messages',
      body,
      headers: new Map(),
      route: 'r',
      vault: new MemoryVault(),
    });
    return { r, state };
  }

  it('masks tool input nested 60 levels deep', async () => {
    const body = {
      model: 'm',
      messages: [
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id: 't', name: 'f', input: nested(50) }],
        },
      ],
    };
    const { r } = await apply(body);
    assert.ok(r.body && !r.body.toString().includes(EMAIL));
  });

  it('refuses deeper nesting with a 400 even in open mode; shadow mode records it', async () => {
    const deep = () => ({
      model: 'm',
      messages: [
        {
          role: 'user',
          content: [
            {
              type: 'tool_result',
              tool_use_id: 't',
              content: JSON.stringify(nested(MAX_REQUEST_DEPTH)),
            },
          ],
        },
      ],
    });
    await assert.rejects(
      apply(deep()),
      (e) => e instanceof SluiceError && e.code === 'nesting_too_deep' && e.status === 400,
    );
    const { state } = await apply(deep(), 'shadow');
    assert.ok(state.verdicts.has('would_nesting_too_deep'));
  });
});
