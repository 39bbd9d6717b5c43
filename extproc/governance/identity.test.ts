import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { ConsumerDirectory, resolveIdentity, spiffeId } from './identity.js';
import { Consumer, IdentityPolicy } from './schema.js';

const sha = (k: string) => createHash('sha256').update(k).digest('hex');
const NOW = Date.UTC(2026, 0, 1);

const directory = new ConsumerDirectory(
  [
    { name: 'alice', team: 'red', keyHashes: [sha('sk-alice')] },
    { name: 'old', keyHashes: [sha('sk-old')], expiresAt: '2025-12-31T23:59:59Z' },
    { name: 'svc', team: 'blue' },
  ].map((c) => Consumer.parse(c)),
);

const headers = (h: Record<string, string>) => new Map(Object.entries(h));
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('resolveIdentity', () => {
  const keys = IdentityPolicy.parse({ keys: {} });

  it('finds a consumer by virtual key in either header and says which headers to strip', () => {
    const presented: Record<string, string>[] = [
      { authorization: 'Bearer sk-alice' },
      { 'x-api-key': 'sk-alice' },
    ];
    for (const h of presented) {
      const r = resolveIdentity(keys, headers(h), directory, NOW);
      assert.deepEqual(r, {
        ok: true,
        caller: { consumer: 'alice', team: 'red', method: 'key' },
        stripHeaders: Object.keys(h),
      });
    }
  });

  it('refuses unknown and expired keys, and missing identity when required', () => {
    const cases: [Record<string, string>, string][] = [
      [{ authorization: 'Bearer sk-nobody' }, 'The API key is not valid.'],
      [{ 'x-api-key': 'sk-old' }, 'The API key has expired.'],
      [{}, 'A valid API key or identity is required.'],
      [{ authorization: 'Basic dXNlcjpwYXNz' }, 'A valid API key or identity is required.'],
    ];
    for (const [h, message] of cases) {
      const r = resolveIdentity(keys, headers(h), directory, NOW);
      assert.ok(!r.ok);
      assert.equal(r.refusal.code, 'unauthenticated');
      assert.equal(r.refusal.status, 401);
      assert.equal(r.refusal.message, message);
      assert.ok(!r.refusal.message.includes('sk-'));
    }
  });

  it('lets anonymous callers through when identity is optional, but never a bad key', () => {
    const optional = IdentityPolicy.parse({ required: false, keys: {} });
    assert.deepEqual(resolveIdentity(optional, headers({}), directory, NOW), {
      ok: true,
      caller: undefined,
      stripHeaders: [],
    });
    const bad = resolveIdentity(optional, headers({ 'x-api-key': 'nope' }), directory, NOW);
    assert.equal(bad.ok, false);
  });

  it('maps JWT claims to a consumer and team', () => {
    const jwt = IdentityPolicy.parse({ jwt: { consumerClaim: 'sub', teamClaim: 'org.teams' } });
    const r = resolveIdentity(
      jwt,
      headers({ 'x-jwt-payload': b64({ sub: 'carol', org: { teams: ['green', 'x'] } }) }),
      directory,
      NOW,
    );
    assert.deepEqual(r.ok && r.caller, { consumer: 'carol', team: 'green', method: 'jwt' });

    const mapped = IdentityPolicy.parse({ jwt: { consumers: { 'client-1': 'alice' } } });
    const m = resolveIdentity(
      mapped,
      headers({ 'x-jwt-payload': b64({ sub: 'client-1' }) }),
      directory,
      NOW,
    );
    assert.deepEqual(m.ok && m.caller, { consumer: 'alice', team: 'red', method: 'jwt' });
    const un = resolveIdentity(
      mapped,
      headers({ 'x-jwt-payload': b64({ sub: 'client-2' }) }),
      directory,
      NOW,
    );
    assert.equal(un.ok, false);
    const junk = resolveIdentity(jwt, headers({ 'x-jwt-payload': '%%%' }), directory, NOW);
    assert.equal(junk.ok, false);
  });

  it('maps a mesh identity (bare SPIFFE ID or XFCC) to a consumer', () => {
    const mesh = IdentityPolicy.parse({
      mesh: { consumers: { 'spiffe://cluster.local/ns/apps/sa/svc': 'svc' } },
    });
    const xfcc =
      'By=spiffe://cluster.local/ns/gw/sa/envoy;Hash=abc;Subject="CN=a,O=b";' +
      'URI=spiffe://cluster.local/ns/apps/sa/svc';
    const r = resolveIdentity(mesh, headers({ 'x-forwarded-client-cert': xfcc }), directory, NOW);
    assert.deepEqual(r.ok && r.caller, { consumer: 'svc', team: 'blue', method: 'mesh' });
    const other = resolveIdentity(
      mesh,
      headers({ 'x-forwarded-client-cert': 'URI=spiffe://cluster.local/ns/apps/sa/evil' }),
      directory,
      NOW,
    );
    assert.equal(other.ok, false);
  });

  it('tries keys before JWT before mesh, without falling through on a bad key', () => {
    const all = IdentityPolicy.parse({ keys: {}, jwt: {} });
    const r = resolveIdentity(
      all,
      headers({ 'x-api-key': 'wrong', 'x-jwt-payload': b64({ sub: 'carol' }) }),
      directory,
      NOW,
    );
    assert.equal(r.ok, false);
  });
});

describe('resolveIdentity: JWTs Envoy verified (or did not)', () => {
  const header = 'x-sluice-jwt-payload';
  const both = IdentityPolicy.parse({ keys: {}, jwt: { header } });
  const jwtOnly = IdentityPolicy.parse({ required: false, jwt: { header } });
  const payload = b64({ sub: 'carol', iss: 'https://idp.example' });
  // Only the shape matters here: Envoy verified it, the extproc never checks a signature.
  const token = `${b64({ alg: 'RS256' })}.${payload}.c2ln`;

  it('does not take the verified bearer token for a bad virtual key', () => {
    const r = resolveIdentity(
      both,
      headers({ authorization: `Bearer ${token}`, [header]: payload }),
      directory,
      NOW,
    );
    assert.deepEqual(r.ok && r.caller, { consumer: 'carol', team: undefined, method: 'jwt' });
  });

  it('still refuses a bad key next to a verified token, and keys still win', () => {
    const bad = resolveIdentity(
      both,
      headers({ authorization: `Bearer ${token}`, 'x-api-key': 'sk-nobody', [header]: payload }),
      directory,
      NOW,
    );
    assert.ok(!bad.ok);
    assert.equal(bad.refusal.message, 'The API key is not valid.');
    const good = resolveIdentity(
      both,
      headers({ authorization: `Bearer ${token}`, 'x-api-key': 'sk-alice', [header]: payload }),
      directory,
      NOW,
    );
    assert.deepEqual(good.ok && good.caller, { consumer: 'alice', team: 'red', method: 'key' });
  });

  it("accepts only its own issuers' tokens when the policy names them", () => {
    const pinned = IdentityPolicy.parse({ jwt: { header, issuers: ['https://idp.example'] } });
    const ok = resolveIdentity(pinned, headers({ [header]: payload }), directory, NOW);
    assert.deepEqual(ok.ok && ok.caller, { consumer: 'carol', team: undefined, method: 'jwt' });
    for (const claims of [{ sub: 'carol', iss: 'https://partner.example' }, { sub: 'carol' }]) {
      const r = resolveIdentity(pinned, headers({ [header]: b64(claims) }), directory, NOW);
      assert.ok(!r.ok);
      assert.equal(r.refusal.message, 'The token was not issued for this route.');
    }
  });

  it('a token whose payload is not the verified one is not excused', () => {
    const other = `${b64({ alg: 'RS256' })}.${b64({ sub: 'mallory' })}.c2ln`;
    const r = resolveIdentity(
      both,
      headers({ authorization: `Bearer ${other}`, [header]: payload }),
      directory,
      NOW,
    );
    assert.ok(!r.ok);
    assert.equal(r.refusal.message, 'The bearer token could not be verified.');
  });

  it('refuses a bearer token Envoy did not verify, even when identity is optional', () => {
    for (const policy of [both, jwtOnly]) {
      for (const value of [`Bearer ${token}`, 'Bearer not-a-jwt']) {
        const r = resolveIdentity(policy, headers({ authorization: value }), directory, NOW);
        assert.ok(!r.ok, `${value} refused`);
        assert.equal(r.refusal.status, 401);
        assert.equal(r.refusal.code, 'unauthenticated');
      }
    }
    const unverified = resolveIdentity(
      jwtOnly,
      headers({ authorization: `Bearer ${token}` }),
      directory,
      NOW,
    );
    assert.ok(!unverified.ok);
    assert.equal(unverified.refusal.message, 'The bearer token could not be verified.');
    assert.ok(!unverified.refusal.message.includes(token));
    // Anonymous (no credential at all) is still allowed when optional.
    assert.deepEqual(resolveIdentity(jwtOnly, headers({}), directory, NOW), {
      ok: true,
      caller: undefined,
      stripHeaders: [],
    });
  });
});

describe('spiffeId', () => {
  it('takes the last XFCC element and ignores quoted separators', () => {
    assert.equal(spiffeId('URI=spiffe://a/one,Subject="x,y";URI=spiffe://a/two'), 'spiffe://a/two');
    assert.equal(spiffeId('spiffe://td/ns/x'), 'spiffe://td/ns/x');
    assert.equal(spiffeId('Hash=1'), undefined);
    assert.equal(spiffeId('spiffe://bad id'), undefined);
  });
});
