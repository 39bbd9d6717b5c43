// Refused requests are counted in the usage store by reason, under the route's governance policy
// (what `sluice usage --html` lists as top refusals): denied access, a bad key, a masking block.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { utcDay } from '../../extproc/governance/budget.js';
import type { UsageRow } from '../../extproc/state/store.js';
import { createHash } from 'node:crypto';
import { chatHeaders, sendRequest, startHarness, type Harness } from './harness.js';

const sha = (k: string) => createHash('sha256').update(k).digest('hex');

const CONFIG = `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: refusals-1
backends:
  - name: openai
    cluster: sluice/backend/openai
    provider: openai
    credential: { value: sk-backend-openai-0001 }
  - name: anthropic
    cluster: sluice/backend/anthropic
    provider: anthropic
    credential: { value: sk-ant-backend-0003 }
consumers:
  - { name: bob, team: t-bob, keyHashes: ['${sha('sk-sluice-bob-0002')}'] }
  - { name: carol, team: t-carol, keyHashes: ['${sha('sk-sluice-carol-0003')}'] }
policies:
  - name: gov
    identity: { keys: {} }
    access:
      rules:
        - { name: no-claude-for-bob, effect: deny, consumers: [bob], models: ['claude-*'] }
    limits:
      rules:
        - { name: rpm, per: [consumer], requestsPerMinute: 100000 }
routes:
  - name: blocking
    models: [{ exact: gpt-blocking }]
    backends: [{ name: openai }]
    policy: { name: strict, masking: { actions: { CREDIT_CARD: block } } }
    governance: gov
  - name: gpt
    models: [{ prefix: 'gpt-' }]
    backends: [{ name: openai }]
    governance: gov
  - name: claude
    models: [{ prefix: 'claude-' }]
    backends: [{ name: anthropic }]
    governance: gov
`;

let h: Harness;
before(async () => {
  h = await startHarness(CONFIG);
});
after(async () => {
  await h.stop();
});

function headers(key: string) {
  return [
    ...chatHeaders([]).filter(([k]) => k !== 'authorization'),
    ['authorization', `Bearer ${key}`],
  ] as [string, string][];
}

async function rows(): Promise<UsageRow[]> {
  await h.ext.settled();
  return (await h.ext.stateStore.usage('day', utcDay(Date.now()))).filter((r) => r.scope === 'gov');
}

describe('refusals in the usage store', () => {
  it('counts each refusal once, by reason, consumer and model; admitted requests not', async () => {
    // bob may not use claude-* (access rule no-claude-for-bob).
    const denied = await sendRequest(
      h,
      headers('sk-sluice-bob-0002'),
      { model: 'claude-3-5-haiku', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] },
      'sluice/backend/anthropic',
    );
    assert.equal(denied.routed.kind, 'local-reply');
    // A key nobody holds.
    const unknown = await sendRequest(
      h,
      headers('sk-sluice-nobody-9999'),
      { model: 'gpt-4o-mini', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] },
      'sluice/backend/openai',
    );
    assert.equal(unknown.routed.kind, 'local-reply');
    // A card number on a route whose masking blocks it.
    const blocked = await sendRequest(
      h,
      headers('sk-sluice-carol-0003'),
      {
        model: 'gpt-blocking',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'charge 4111 1111 1111 1111' }],
      },
      'sluice/backend/openai',
    );
    assert.equal(blocked.routed.kind, 'local-reply');

    const got = (await rows())
      .map((r) => ({
        consumer: r.dims.consumer,
        model: r.dims.model,
        refused: Object.entries(r.values).filter(([k, v]) => k.startsWith('refused') && v > 0),
      }))
      .filter((r) => r.refused.length > 0)
      .sort((a, b) => (a.model < b.model ? -1 : 1));
    assert.deepEqual(got, [
      { consumer: 'bob', model: 'claude-3-5-haiku', refused: [['refusedAccessDenied', 1]] },
      { consumer: '', model: 'gpt-4o-mini', refused: [['refusedUnauthenticated', 1]] },
      { consumer: 'carol', model: 'gpt-blocking', refused: [['refusedPolicy', 1]] },
    ]);
    for (const r of await rows()) {
      if (r.values.refusedPolicy > 0) assert.equal(r.values.requests, 0, 'a refusal is no request');
    }
  });
});
