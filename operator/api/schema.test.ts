import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AIPolicySchema, AIRouteSchema, AIRouteSpecSchema, CEL_RULES } from './schema.js';

const backend = {
  name: 'openai',
  provider: 'openai',
  endpoint: { url: 'https://api.openai.com/v1' },
  credential: { secretRef: { name: 'openai-key' } },
};
const spec = (over: Record<string, unknown> = {}) => ({
  models: [{ exact: 'gpt-4o' }],
  backends: [backend],
  ...over,
});
const issues = (value: unknown) => {
  const r = AIRouteSpecSchema.safeParse(value);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

void describe('AIRoute schema', () => {
  void it('parses a minimal route and defaults the namespace', () => {
    const route = AIRouteSchema.parse({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name: 'gpt', managedFields: [{}] },
      spec: spec(),
    });
    assert.deepEqual(route.metadata, { name: 'gpt', namespace: 'default' });
    assert.deepEqual(route.spec, spec());
  });

  void it('accepts https URLs with host, port and path only', () => {
    for (const url of [
      'https://api.openai.com',
      'https://contoso.openai.azure.com:8443/openai',
      'https://10.0.0.1/v1',
      'https://[fd00::1]:443',
    ]) {
      assert.deepEqual(issues(spec({ backends: [{ ...backend, endpoint: { url } }] })), [], url);
    }
    for (const url of [
      'http://api.openai.com',
      'https://user:pw@api.openai.com',
      'https://api.openai.com/v1?x=1',
      'https://api.openai.com/#frag',
      'https://',
      'https://bad host',
    ]) {
      assert.notDeepEqual(issues(spec({ backends: [{ ...backend, endpoint: { url } }] })), [], url);
    }
  });

  void it('takes Go durations only', () => {
    for (const timeout of ['500ms', '30s', '1m30s', '2h', '1.5s', '100us', '10µs']) {
      assert.deepEqual(issues(spec({ timeout })), [], timeout);
    }
    for (const timeout of ['30', '5 minutes', '-1s', '1d', '', 's']) {
      assert.notDeepEqual(issues(spec({ timeout })), [], timeout);
    }
  });

  void it('bounds weights, priorities, attempts and lists', () => {
    const b = (over: object) => spec({ backends: [{ ...backend, ...over }] });
    assert.deepEqual(issues(b({ weight: 0, priority: 7 })), []);
    assert.deepEqual(issues(b({ weight: 10000 })), []);
    assert.match(issues(b({ weight: 10001 }))[0]!, /^backends\.0\.weight: /);
    assert.match(issues(b({ priority: 8 }))[0]!, /^backends\.0\.priority: /);
    assert.match(issues(b({ weight: 1.5 }))[0]!, /^backends\.0\.weight: /);
    assert.match(issues(spec({ retry: { attempts: 11 } }))[0]!, /^retry\.attempts: /);
    assert.deepEqual(issues(spec({ models: [] })), ['models: at least one model is required']);
    assert.deepEqual(issues(spec({ retry: { retryOn: ['5xx', 'reset', '5xx'] } })), [
      'retry.retryOn.2: a retry condition is repeated',
    ]);
  });

  void it('requires DNS-label backend names and refuses unknown fields', () => {
    assert.match(issues(spec({ backends: [{ ...backend, name: 'Open_AI' }] }))[0]!, /DNS label/);
    assert.match(issues(spec({ backends: [{ ...backend, weigth: 2 }] }))[0]!, /weigth/);
  });

  void it('leaves cross-field rules to CEL', () => {
    // Both set: the zod schema alone accepts it; operator/validate adds the CEL verdict.
    assert.deepEqual(issues(spec({ models: [{ exact: 'a', prefix: 'b' }] })), []);
    assert.ok(Object.keys(CEL_RULES).length >= 12);
    const ids = Object.values(CEL_RULES).map((r) => r.id);
    assert.equal(new Set(ids).size, ids.length, 'rule ids are unique');
  });
});

void describe('AIPolicy schema', () => {
  const policy = (spec: object) => ({
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIPolicy',
    metadata: { name: 'p', namespace: 'team-a' },
    spec,
  });

  void it('parses the governance sections as the contract spells them', () => {
    const spec = {
      selector: {},
      consumers: {
        required: true,
        keys: { headers: ['authorization'] },
        jwt: {
          issuer: 'https://idp.example.com/',
          audiences: ['sluice'],
          jwksUri: 'https://idp.example.com/keys?tenant=a',
          cacheDuration: '5m',
          consumerClaim: 'sub',
          teamClaim: 'groups',
          consumers: { 'alice@example.com': 'alice' },
        },
        mesh: { consumers: { 'spiffe://cluster.local/ns/a/sa/app': 'app' } },
      },
      access: {
        default: 'deny',
        rules: [{ name: 'chat', effect: 'allow', teams: ['search'], models: ['gpt-*'] }],
      },
      limits: {
        rules: [{ name: 'tpm', per: ['consumer'], tokensPerMinute: 1000, spendPerDayUsd: 1.5 }],
        defaultMaxTokens: 1024,
        reservationTtlSeconds: 60,
      },
      pricing: { models: { 'gpt-4o': { inputPerMTok: 2.5, outputPerMTok: 10 } } },
    };
    const parsed = AIPolicySchema.parse(policy(spec));
    assert.deepEqual(parsed.spec, spec);
  });

  void it('refuses unknown fields and out-of-range values in governance sections', () => {
    const bad: [object, RegExp][] = [
      [{ limits: { tokensPerMinute: 10 } }, /limits/],
      [{ limits: { rules: [{ name: 'x', per: ['consumer', 'consumer'] }] } }, /per/],
      [{ limits: { rules: [{ name: 'x', spendPerDayUsd: -1 }] } }, /spendPerDayUsd/],
      [{ consumers: { keys: { headers: ['Authorization'] } } }, /headers/],
      [{ consumers: { jwt: { issuer: 'i', jwksUri: 'http://idp/keys' } } }, /jwksUri/],
      [{ consumers: { jwt: { issuer: 'i', jwks: '{}', header: 'x-a' } } }, /jwt/],
      [{ consumers: { mesh: { consumers: { 'spiffe://a/b': 'not a name' } } } }, /mesh/],
      [{ access: { rules: [{ name: 'r', effect: 'maybe' }] } }, /effect/],
      [{ pricing: { models: { m: { inputPerMTok: -1, outputPerMTok: 1 } } } }, /inputPerMTok/],
    ];
    for (const [sections, field] of bad) {
      const r = AIPolicySchema.safeParse(policy({ selector: {}, ...sections }));
      assert.ok(!r.success, JSON.stringify(sections));
      assert.match(
        r.error.issues.map((i) => `${i.path.join('.')} ${JSON.stringify(i)}`).join('\n'),
        field,
      );
    }
  });

  void it('checks the enums and the priority', () => {
    assert.ok(AIPolicySchema.safeParse(policy({ selector: {}, mode: 'shadow' })).success);
    assert.ok(!AIPolicySchema.safeParse(policy({ selector: {}, mode: 'audit' })).success);
    assert.ok(!AIPolicySchema.safeParse(policy({ selector: {}, failureMode: 'x' })).success);
    assert.ok(!AIPolicySchema.safeParse(policy({ selector: {}, priority: -1 })).success);
    assert.ok(!AIPolicySchema.safeParse(policy({ targetRefs: [] })).success);
  });
});
