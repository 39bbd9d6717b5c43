import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExtprocConfig, formatIssues, MaskingPolicy, Policy } from '../config/contract.js';
import { maskRequest, PolicyUnavailableError, Tally } from './engine.js';
import { compileMasking, keyedHash, partial } from './compiled.js';
import type { Vault } from './vault.js';

function issues(doc: unknown): string {
  const r = MaskingPolicy.safeParse(doc);
  return r.success ? '' : formatIssues(r.error);
}

describe('masking policy contract', () => {
  it('fills defaults for an empty section', () => {
    const m = MaskingPolicy.parse({});
    assert.equal(m.defaultAction, 'mask');
    assert.equal(m.reversible, true);
    assert.equal(m.sessionHeader, 'x-sluice-session');
    assert.equal(m.scanResponses, true);
    assert.equal(m.systemNote, false);
    assert.equal(m.detectors, undefined);
    const p = Policy.parse({ name: 'p' });
    assert.equal(p.mode, 'enforce');
    assert.equal(p.failureMode, 'closed');
  });

  it('refuses backtracking patterns, unknown types and actions, stray fields', () => {
    assert.match(
      issues({ customPatterns: [{ type: 'X', pattern: '(a)\\1' }] }),
      /customPatterns: .*backreference/,
    );
    assert.match(issues({ customPatterns: [{ type: 'X', pattern: '(?=a)b' }] }), /lookaround/);
    assert.match(
      issues({ detectors: ['EMAIL'], actions: { PHONE: 'block' } }),
      /actions.PHONE: no detector/,
    );
    assert.match(issues({ actions: { EMAIL: 'explode' } }), /actions.EMAIL/);
    assert.match(issues({ customPatterns: [{ type: 'lower', pattern: 'a' }] }), /upper-case/);
    assert.match(issues({ detectors: ['NAME'] }), /detectors/);
    assert.match(issues({ hashKey: 'plain' }), /hashKey/);
    assert.match(issues({ sessionHeader: 'X-Session' }), /sessionHeader/);
    assert.match(issues({ extra: 1 }), /extra|Unrecognized/);
    assert.equal(
      issues({
        customPatterns: [{ type: 'ORDER', pattern: '(a+)+b' }],
        actions: { ORDER: 'redact' },
      }),
      '',
    );
  });

  it('rides on routes as an optional field', () => {
    const cfg = ExtprocConfig.parse({
      apiVersion: 'sluice.dev/extproc/v1',
      kind: 'ExtprocConfig',
      backends: [{ name: 'b', cluster: 'c', provider: 'openai' }],
      routes: [
        {
          name: 'r',
          models: [{ exact: 'm' }],
          backends: [{ name: 'b' }],
          policy: { name: 'p', masking: {} },
        },
        { name: 'plain', models: [{ exact: 'n' }], backends: [{ name: 'b' }] },
      ],
    });
    assert.equal(cfg.routes[0]!.policy!.masking!.defaultAction, 'mask');
    assert.equal(cfg.routes[1]!.policy, undefined);
  });
});

describe('actions', () => {
  it('partial keeps the last letters and digits and the separators', () => {
    assert.equal(partial('4111 1111 1111 1111', 4), '**** **** **** 1111');
    assert.equal(partial('+1 (415) 555-0132', 4), '+* (***) ***-0132');
    assert.equal(partial('12345', 4), '*****', 'short values are masked whole');
  });

  it('hash is keyed, stable and type-separated', () => {
    const k1 = Buffer.from('k1');
    assert.equal(keyedHash(k1, 'EMAIL', 'a@x'), keyedHash(k1, 'EMAIL', 'a@x'));
    assert.notEqual(keyedHash(k1, 'EMAIL', 'a@x'), keyedHash(Buffer.from('k2'), 'EMAIL', 'a@x'));
    assert.notEqual(keyedHash(k1, 'EMAIL', 'a@x'), keyedHash(k1, 'SECRET', 'a@x'));
    assert.match(keyedHash(k1, 'EMAIL', 'a@x'), /^[0-9a-f]{10}$/);
  });
});

describe('maskRequest', () => {
  const masking = compileMasking(MaskingPolicy.parse({}));

  it('in shadow mode counts would_* and changes nothing', async () => {
    const body = { model: 'm', messages: [{ role: 'user', content: 'a@x.example' }] };
    const tally = new Tally();
    const r = await maskRequest({ masking, shadow: true, operation: 'chat', body, tally });
    assert.equal(r.changed, false);
    assert.equal(body.messages[0]!.content, 'a@x.example');
    assert.deepEqual(tally.list(), [
      { direction: 'request', type: 'EMAIL', action: 'would_mask', count: 1 },
    ]);
  });

  it('non-reversible masks get placeholders that are never restored', async () => {
    const m = compileMasking(MaskingPolicy.parse({ reversible: false }));
    const body = { model: 'm', prompt: 'a@x.example' };
    const r = await maskRequest({
      masking: m,
      shadow: false,
      operation: 'completions',
      body,
      tally: new Tally(),
    });
    assert.equal(body.prompt, '[EMAIL_1]');
    assert.equal(r.lookup.size, 0);
  });

  it('a vault slower than the policy allows is a policy failure', async () => {
    const slow: Vault = {
      open: () => new Promise(() => undefined),
      close: () => undefined,
    };
    const m = compileMasking(MaskingPolicy.parse({ timeoutMs: 20 }));
    await assert.rejects(
      maskRequest({
        masking: m,
        shadow: false,
        operation: 'embeddings',
        body: { model: 'm', input: 'a@x.example' },
        tally: new Tally(),
        vault: slow,
        session: 's',
      }),
      PolicyUnavailableError,
    );
  });

  it('scans names, users and image URLs; leaves the model, ids and base64 images alone', async () => {
    const png = `data:image/png;base64,${Buffer.from('d@x.example 4111111111111111').toString('base64')}`;
    const body = {
      model: 'a@x.example',
      user: 'b@x.example',
      messages: [
        {
          role: 'user',
          name: 'c@x.example',
          content: [
            { type: 'image_url', image_url: { url: 'https://h/d@x.example' } },
            { type: 'image_url', image_url: { url: png } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_e@x.example', content: 'ok' },
      ],
    };
    const r = await maskRequest({
      masking,
      shadow: false,
      operation: 'chat',
      body,
      tally: new Tally(),
    });
    assert.equal(r.changed, true);
    assert.equal(body.model, 'a@x.example');
    assert.equal(body.user, '[EMAIL_1]');
    assert.equal(body.messages[0]!.name, '[EMAIL_2]');
    assert.deepEqual(body.messages[0]!.content, [
      { type: 'image_url', image_url: { url: 'https://h/[EMAIL_3]' } },
      { type: 'image_url', image_url: { url: png } },
    ]);
    assert.equal(body.messages[1]!.tool_call_id, 'call_e@x.example');
  });
});
