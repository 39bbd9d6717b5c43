import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExtprocConfig, WIRE } from '../../extproc/config/contract.js';
import type { AIPolicy, AIPolicySpec, AIRoute, ConsumerKey, Resources } from '../api/types.js';
import {
  checkGovernanceSections,
  combinedName,
  compileConsumers,
  jwtProvider,
  nextKeyExpiry,
  unknownConsumers,
} from './governance.js';
import { compile } from './index.js';
import { redacted, REDACTED_KEY_HASH } from './redact.js';

const hex = (c: string) => c.repeat(64);

function key(consumer: string, secret: string, more: Partial<ConsumerKey> = {}): ConsumerKey {
  return {
    namespace: 'sluice-system',
    secret,
    consumer,
    keyHash: hex(secret.slice(-1)),
    ...more,
  };
}

function route(name: string, labels: Record<string, string> = {}): AIRoute {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'ns', generation: 1, labels },
    spec: {
      models: [{ exact: `${name}-model` }],
      backends: [
        { name: 'b', provider: 'openai-compatible', endpoint: { url: 'https://llm.example.com' } },
      ],
    },
  };
}

function policy(name: string, spec: AIPolicySpec, created = '2025-01-01T00:00:00Z'): AIPolicy {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIPolicy',
    metadata: { name, namespace: 'ns', generation: 3, creationTimestamp: created },
    spec,
  };
}

function bundle(parts: Partial<Resources>): Resources {
  return { routes: [], policies: [], secrets: [], endpoints: [], ...parts };
}

function accepted(t: ReturnType<typeof compile>, kind: string, name: string) {
  const c = t.statuses
    .find((s) => s.kind === kind && s.name === name)
    ?.conditions.find((x) => x.type === 'Accepted');
  assert.ok(c, `Accepted of ${kind} ${name}`);
  return c;
}

function valid(t: ReturnType<typeof compile>): void {
  const parsed = ExtprocConfig.safeParse(t.extproc);
  assert.deepEqual(parsed.error?.issues ?? [], [], 'the extproc document follows the contract');
}

const JWKS = JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'AA', y: 'BB' }] });

void describe('compileConsumers', () => {
  void it('merges rotated keys of a consumer, sorted, with the agreed team', () => {
    const { consumers, problems } = compileConsumers([
      key('bob', 's-2', { team: 't' }),
      key('alice', 's-1'),
      key('bob', 's-3', { team: 't' }),
      key('bob', 's-4', { team: 't', keyHash: hex('2') }),
    ]);
    assert.deepEqual(problems, []);
    assert.deepEqual(consumers, [
      { name: 'alice', keyHashes: [hex('1')] },
      { name: 'bob', team: 't', keyHashes: [hex('2'), hex('3')] },
    ]);
  });

  void it('drops expired keys at `now` and sets expiresAt only when every key expires', () => {
    const keys = [
      key('a', 's-1', { expiresAt: '2030-01-01T00:00:00.000Z' }),
      key('a', 's-2', { expiresAt: '2031-01-01T00:00:00.000Z' }),
      key('b', 's-3', { expiresAt: '2030-01-01T00:00:00.000Z' }),
      key('b', 's-4'),
    ];
    const now = Date.parse('2030-06-01T00:00:00Z');
    assert.deepEqual(compileConsumers(keys, now).consumers, [
      { name: 'a', keyHashes: [hex('2')], expiresAt: '2031-01-01T00:00:00.000Z' },
      { name: 'b', keyHashes: [hex('4')] },
    ]);
    // Without a clock nothing is dropped; the consumer's own expiry still holds.
    assert.deepEqual(compileConsumers(keys).consumers[0]!.keyHashes, [hex('1'), hex('2')]);
    // Every key expired: the consumer stays known (policies may name it), with no key.
    const late = Date.parse('2032-01-01T00:00:00Z');
    assert.deepEqual(compileConsumers(keys, late).consumers[0], {
      name: 'a',
      keyHashes: [],
      expiresAt: '2031-01-01T00:00:00.000Z',
    });
    assert.equal(nextKeyExpiry(keys, now), Date.parse('2031-01-01T00:00:00Z'));
    assert.equal(nextKeyExpiry(keys, late), undefined);
  });

  void it('leaves out, fail-closed, consumers whose Secrets disagree and keys two consumers share', () => {
    const { consumers, problems } = compileConsumers([
      key('a', 's-1', { team: 'x' }),
      key('a', 's-2'),
      key('b', 's-3'),
      key('c', 's-4', { keyHash: hex('3') }),
      key('c', 's-5'),
    ]);
    assert.deepEqual(consumers, [
      { name: 'b', keyHashes: [] },
      { name: 'c', keyHashes: [hex('5')] },
    ]);
    assert.deepEqual(
      problems.map((p) => [p.consumer, p.secrets]),
      [
        ['a', ['sluice-system/s-1', 'sluice-system/s-2']],
        ['b', ['sluice-system/s-3']],
        ['c', ['sluice-system/s-4']],
      ],
    );
    assert.match(problems[0]!.message, /disagree on the team \("x", \(none\)\)/);
    assert.match(problems[1]!.message, /also a key of another consumer/);
    for (const p of problems) assert.ok(!p.message.includes(hex('3')), 'no digest in messages');
  });

  void it('refuses a consumer with more keys than the contract holds', () => {
    const many = Array.from({ length: 65 }, (_, i) =>
      key('big', `s-${i}`, { keyHash: i.toString(16).padStart(64, '0') }),
    );
    const { consumers, problems } = compileConsumers(many);
    assert.deepEqual(consumers, []);
    assert.match(problems[0]!.message, /65 keys, more than 64/);
  });
});

void describe('governance sections', () => {
  void it('finds what the extproc and Envoy would refuse', () => {
    const problems = checkGovernanceSections({
      selector: {},
      consumers: {
        jwt: { issuer: 'i', jwks: '{"keys":[{"use":"sig"}]}' },
        mesh: { consumers: { 'not-spiffe': 'a' } },
      },
      limits: {
        rules: [{ name: 'empty' }, { name: 'dup', concurrent: 1 }, { name: 'dup', concurrent: 2 }],
      },
      pricing: { models: { '': { inputPerMTok: 1, outputPerMTok: 1 } } },
      access: { rules: [{ name: 'ok', effect: 'allow' }] },
    });
    assert.deepEqual(problems.map((p) => `${p.field}: ${p.message}`).sort(), [
      'spec.consumers.jwt.jwks: keys[0] is not a JSON Web Key (no "kty")',
      'spec.consumers.mesh.consumers.not-spiffe: invalid key: a SPIFFE ID',
      'spec.limits.rules: duplicate limit "dup"',
      'spec.limits.rules[0]: a limit needs at least one amount',
      'spec.pricing.models.: invalid key: Too small: expected string to have >=1 characters',
    ]);
    const jwks = (jwt: object) =>
      checkGovernanceSections({ selector: {}, consumers: { jwt: { issuer: 'i', ...jwt } } }).map(
        (p) => `${p.field}: ${p.message}`,
      );
    assert.match(jwks({ jwks: 'nope' })[0]!, /jwks: not JSON/);
    assert.match(jwks({ jwks: '{"keys":[]}' })[0]!, /non-empty "keys" array/);
    assert.match(jwks({ jwksUri: 'https://idp/k', cacheDuration: '500ms' })[0]!, /at least 1s/);
    assert.match(jwks({})[0]!, /exactly one of jwksUri and jwks/);
    assert.deepEqual(jwks({ jwks: JWKS }), []);
    // The CRD lets 0 through (see schema.ts); the contract does not.
    assert.deepEqual(
      checkGovernanceSections({
        selector: {},
        limits: { rules: [{ name: 'broke', spendPerDayUsd: 0 }] },
      }),
      [
        {
          field: 'spec.limits.rules[0].spendPerDayUsd',
          message: 'Too small: expected number to be >0',
        },
      ],
    );
  });

  void it('names the consumers a mapping points at that no Secret declares', () => {
    const known = new Set(['alice']);
    assert.equal(
      unknownConsumers({ jwt: { issuer: 'i', jwks: JWKS, consumers: { x: 'alice' } } }, known),
      undefined,
    );
    const msg = unknownConsumers(
      {
        jwt: { issuer: 'i', jwks: JWKS, consumers: { x: 'bob', y: 'alice', z: 'bob' } },
        mesh: { consumers: { 'spiffe://a/b': 'carol' } },
      },
      known,
    );
    assert.equal(
      msg,
      'spec.consumers.jwt.consumers: no consumer "bob"; spec.consumers.mesh.consumers: no ' +
        'consumer "carol" (a consumer is declared by a Secret labelled sluice.dev/consumer in ' +
        "the operator's consumer namespaces)",
    );
  });

  void it('turns a jwksUri into what Envoy dials, with its default cache time', () => {
    assert.deepEqual(
      jwtProvider('ns/p', { issuer: 'iss', jwksUri: 'https://idp.example.com/k?x=1' }),
      {
        name: 'ns/p',
        issuer: 'iss',
        audiences: [],
        jwks: {
          kind: 'remote',
          uri: 'https://idp.example.com/k?x=1',
          host: 'idp.example.com',
          port: 443,
          cacheDurationSeconds: 600,
        },
      },
    );
    const v6 = jwtProvider('ns/p', {
      issuer: 'iss',
      audiences: ['a'],
      jwksUri: 'https://[fd00::1]:8443/keys',
      cacheDuration: '1m30s',
    });
    assert.deepEqual(v6.jwks, {
      kind: 'remote',
      uri: 'https://[fd00::1]:8443/keys',
      host: 'fd00::1',
      port: 8443,
      cacheDurationSeconds: 90,
    });
    assert.deepEqual(jwtProvider('ns/p', { issuer: 'iss', jwks: JWKS }).jwks, {
      kind: 'inline',
      json: JWKS,
    });
  });

  void it('keeps combined names within the contract bound, stably', () => {
    assert.equal(combinedName(['a/x', 'b/y', 'a/x']), 'a/x:b/y');
    const long = Array.from({ length: 4 }, (_, i) => `ns/${String(i).repeat(100)}`);
    const name = combinedName(long);
    assert.match(name, /^combined:[0-9a-f]{32}$/);
    assert.equal(combinedName(long), name);
  });
});

void describe('compilation of governance', () => {
  const keys = [key('alice', 's-1', { team: 'search' }), key('svc', 's-2')];

  void it('compiles winners per route into shared, named policies with the JWT and mesh issuers', () => {
    const t = compile(
      bundle({
        routes: [route('chat', { tier: 'a' }), route('embed', { tier: 'a' }), route('solo')],
        policies: [
          policy('identity', {
            selector: {},
            priority: 5,
            consumers: {
              keys: {},
              jwt: {
                issuer: 'https://idp/',
                jwksUri: 'https://idp.example.com/keys',
                consumers: { 'alice@example.com': 'alice' },
              },
              mesh: { consumers: { 'spiffe://cluster.local/ns/a/sa/x': 'svc' } },
            },
          }),
          policy('budgets', {
            selector: { matchLabels: { tier: 'a' } },
            mode: 'shadow',
            failureMode: 'open',
            limits: { rules: [{ name: 'tpm', per: ['consumer'], tokensPerMinute: 100 }] },
            pricing: { models: { '*': { inputPerMTok: 1, outputPerMTok: 2 } } },
          }),
        ],
        consumerKeys: keys,
      }),
      { version: 't' },
    );
    valid(t);
    assert.equal(accepted(t, 'AIPolicy', 'identity').status, 'True');
    const byRoute = Object.fromEntries(t.extproc.routes.map((r) => [r.name, r.governance]));
    assert.deepEqual(byRoute, {
      'ns/chat': 'ns/identity:ns/budgets',
      'ns/embed': 'ns/identity:ns/budgets',
      'ns/solo': 'ns/identity',
    });
    const shared = t.extproc.policies!.find((p) => p.name === 'ns/identity:ns/budgets')!;
    // Stricter of the two winners' modes.
    assert.equal(shared.mode, 'enforce');
    assert.equal(shared.failureMode, 'closed');
    assert.deepEqual(shared.identity, {
      keys: {},
      jwt: {
        header: WIRE.jwtPayloadHeader,
        issuers: ['https://idp/'],
        consumers: { 'alice@example.com': 'alice' },
      },
      mesh: { consumers: { 'spiffe://cluster.local/ns/a/sa/x': 'svc' } },
    });
    assert.deepEqual(
      t.extproc.policies!.map((p) => p.name),
      ['ns/identity', 'ns/identity:ns/budgets'],
    );
    assert.deepEqual(t.extproc.consumers, [
      { name: 'alice', team: 'search', keyHashes: [hex('1')] },
      { name: 'svc', keyHashes: [hex('2')] },
    ]);
    const gov = t.ir.governance!;
    assert.equal(gov.meshIdentity, true);
    assert.deepEqual(
      gov.jwtProviders.map((p) => [p.name, p.jwks.kind]),
      [['ns/identity', 'remote']],
    );
  });

  void it('refuses routes whose consumers policy maps to an unknown consumer, fail-closed', () => {
    const t = compile(
      bundle({
        routes: [route('chat'), route('other')],
        policies: [
          policy('jwt', {
            targetRefs: [{ name: 'chat' }],
            priority: 9,
            consumers: { jwt: { issuer: 'i', jwks: JWKS, consumers: { x: 'ghost' } } },
          }),
          // A lower-priority identity must not take over: that would be identity nobody chose.
          policy('keys-only', { selector: {}, consumers: { required: false, keys: {} } }),
        ],
        consumerKeys: keys,
      }),
    );
    valid(t);
    const p = accepted(t, 'AIPolicy', 'jwt');
    assert.equal(p.status, 'False');
    assert.equal(p.reason, 'InvalidPolicy');
    assert.match(
      p.message,
      /no consumer "ghost".*routes where this policy wins consumers refuse requests \(503 policy_invalid\)/,
    );
    const r = accepted(t, 'AIRoute', 'chat');
    assert.equal(r.reason, 'PolicyNotReady');
    assert.match(r.message, /consumers policy ns\/jwt is not ready/);
    // Refused, not withheld: its models stay its own, and no identity is dropped.
    assert.deepEqual(
      t.extproc.routes.map((x) => [x.name, x.refuse, x.governance]),
      [
        ['ns/chat', 'policy_invalid', undefined],
        ['ns/other', undefined, t.extproc.routes[1]!.governance],
      ],
    );
    assert.deepEqual(t.ir.governance!.jwtProviders, []);
    // The same policy, once the consumer exists.
    const fixed = compile(
      bundle({
        routes: [route('chat')],
        policies: [
          policy('jwt', {
            targetRefs: [{ name: 'chat' }],
            consumers: { jwt: { issuer: 'i', jwks: JWKS, consumers: { x: 'ghost' } } },
          }),
        ],
        consumerKeys: [key('ghost', 's-9')],
      }),
    );
    assert.equal(accepted(fixed, 'AIRoute', 'chat').status, 'True');
    assert.equal(fixed.ir.governance!.jwtProviders[0]!.jwks.kind, 'inline');
  });

  void it('makes a section the extproc would refuse InvalidPolicy and refuses its routes, never serving them under the rest', () => {
    const t = compile(
      bundle({
        routes: [route('chat')],
        policies: [
          policy('broken', { selector: {}, priority: 5, limits: { rules: [{ name: 'none' }] } }),
          policy('fine', {
            selector: {},
            limits: { rules: [{ name: 'rpm', requestsPerMinute: 5 }] },
          }),
        ],
      }),
    );
    valid(t);
    const c = accepted(t, 'AIPolicy', 'broken');
    assert.equal(c.reason, 'InvalidPolicy');
    assert.match(c.message, /spec\.limits\.rules\[0\]: a limit needs at least one amount/);
    assert.match(c.message, /Requests to ns\/chat are refused \(503 policy_invalid\)/);
    // Not served under the valid policy alone: that would be a budget nobody asked for alone.
    const r = accepted(t, 'AIRoute', 'chat');
    assert.equal(r.status, 'False');
    assert.equal(r.reason, 'PolicyInvalid');
    assert.deepEqual(t.extproc.routes, [
      {
        name: 'ns/chat',
        models: t.extproc.routes[0]!.models,
        backends: t.extproc.routes[0]!.backends,
        refuse: 'policy_invalid',
      },
    ]);
    assert.equal(t.extproc.policies, undefined);
  });

  void it('leaves keys out once expired when given a clock, and redacts digests', () => {
    const expiring = [
      key('alice', 's-1', { expiresAt: '2030-01-01T00:00:00.000Z' }),
      key('alice', 's-2'),
    ];
    const res = bundle({ routes: [route('chat')], consumerKeys: expiring });
    const before = compile(res, { now: Date.parse('2029-12-31T23:59:59Z') });
    const after = compile(res, { now: Date.parse('2030-01-01T00:00:00Z') });
    assert.deepEqual(before.extproc.consumers![0]!.keyHashes, [hex('1'), hex('2')]);
    assert.deepEqual(after.extproc.consumers![0]!.keyHashes, [hex('2')]);
    const shown = JSON.stringify(redacted(before));
    assert.ok(!shown.includes(hex('1')) && !shown.includes(hex('2')), 'no digest rendered');
    assert.deepEqual(redacted(before).consumers![0]!.keyHashes, [
      REDACTED_KEY_HASH,
      REDACTED_KEY_HASH,
    ]);
    // No consumer, no policy: the document reads as before governance existed.
    const none = compile(bundle({ routes: [route('chat')] }));
    assert.equal(none.extproc.consumers, undefined);
    assert.equal(none.extproc.policies, undefined);
    assert.equal(none.ir.governance, undefined);
  });
});
