// The emulator's jwt_authn, on configs decoded from the official protos exactly as ADS delivers
// them, with tokens signed here by node:crypto.
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, createHmac, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import type { HeaderList } from './ext-proc/index.js';
import { strictFromJson } from '../../test/envoy-config/strict-json.js';
import { ConfigError } from './json.js';
import { compileJwtAuthn, runJwtAuthn, type JwtEnv } from './jwt-authn.js';
import { decodeResource, envoyRoot, type Json } from './protos.js';

const TYPE = 'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
const PAYLOAD_HEADER = 'x-sluice-jwt-payload';
const NOW = 1_800_000_000;

/** Envoy YAML form → wire → what the emulator receives over ADS. */
function decoded(json: Json): Json {
  const root = envoyRoot();
  const t = root.lookupType(TYPE);
  const bytes = t.encode(t.fromObject(strictFromJson(root, TYPE, json))).finish();
  return decodeResource({ type_url: `type.googleapis.com/${TYPE}`, value: bytes }).json;
}

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ed = generateKeyPairSync('ed25519');
const hmacSecret = Buffer.from('a shared secret of enough length!');

function jwk(key: KeyObject, kid: string, alg?: string): Json {
  return { ...(key.export({ format: 'jwk' }) as Json), kid, ...(alg ? { alg } : {}) };
}

const KEYS = {
  keys: [
    jwk(rsa.publicKey, 'rsa'),
    jwk(ec.publicKey, 'ec', 'ES256'),
    jwk(ed.publicKey, 'ed'),
    { kty: 'oct', kid: 'hs', alg: 'HS256', k: hmacSecret.toString('base64url') },
  ],
};

type Alg = 'RS256' | 'PS256' | 'ES256' | 'EdDSA' | 'HS256';

function token(alg: Alg, claims: Json, header: Json = {}): string {
  const kid = { RS256: 'rsa', PS256: 'rsa', ES256: 'ec', EdDSA: 'ed', HS256: 'hs' }[alg];
  const signed = `${b64({ alg, kid, typ: 'JWT', ...header })}.${b64(claims)}`;
  const data = Buffer.from(signed);
  let sig: Buffer;
  if (alg === 'RS256') sig = sign('sha256', data, rsa.privateKey);
  else if (alg === 'PS256') {
    sig = sign('sha256', data, { key: rsa.privateKey, padding: 6, saltLength: 32 });
  } else if (alg === 'ES256') {
    sig = sign('sha256', data, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
  } else if (alg === 'EdDSA') sig = sign(null, data, ed.privateKey);
  else sig = createHmac('sha256', hmacSecret).update(data).digest();
  return `${signed}.${sig.toString('base64url')}`;
}

const ISS = 'https://issuer.example';
const good = (extra: Json = {}): Json => ({
  iss: ISS,
  sub: 'carol',
  aud: 'sluice',
  exp: NOW + 600,
  ...extra,
});

/** `extra` overrides; an undefined value leaves the field out. */
function provider(extra: Json = {}): Json {
  const p: Json = {
    issuer: ISS,
    audiences: ['sluice'],
    local_jwks: { inline_string: JSON.stringify(KEYS) },
    forward: false,
    from_headers: [{ name: 'authorization', value_prefix: 'Bearer ' }],
    forward_payload_header: PAYLOAD_HEADER,
    ...extra,
  };
  return Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined));
}

/** The shape the operator emits: any provider, or let it through without a payload. */
function sluiceConfig(providers: Record<string, Json>): Json {
  return {
    providers,
    rules: [
      {
        match: { prefix: '/' },
        requires: {
          requires_any: {
            requirements: [
              ...Object.keys(providers).map((p) => ({ provider_name: p })),
              { allow_missing_or_failed: {} },
            ],
          },
        },
      },
    ],
  };
}

function env(over: Partial<JwtEnv> = {}): JwtEnv {
  return {
    nowSeconds: () => NOW,
    monotonicMs: () => 0,
    fetch: () => Promise.reject(new Error('no fetch expected')),
    ...over,
  };
}

function request(extra: [string, string][]): HeaderList {
  return [
    [':method', 'POST'],
    [':path', '/v1/chat/completions'],
    [':scheme', 'http'],
    [':authority', 'gw.local'],
    ...extra,
  ];
}

const values = (h: HeaderList, name: string): string[] =>
  h.filter(([k]) => k === name).map(([, v]) => v);

describe('envoy-sim jwt_authn: verification', () => {
  const spec = compileJwtAuthn('jwt', decoded(sluiceConfig({ 'apps/idp': provider() })));

  for (const alg of ['RS256', 'PS256', 'ES256', 'EdDSA', 'HS256'] as const) {
    it(`verifies ${alg}: the payload segment is forwarded verbatim and the token removed`, async () => {
      const t = token(alg, good());
      const h = request([['authorization', `Bearer ${t}`]]);
      assert.deepEqual(await runJwtAuthn(spec, h, env()), { ok: true });
      assert.deepEqual(values(h, PAYLOAD_HEADER), [t.split('.')[1]]);
      assert.deepEqual(values(h, 'authorization'), []);
    });
  }

  const refusedButLetThrough: [string, string][] = [
    ['expired', token('RS256', good({ exp: NOW - 61 }))],
    ['not yet valid', token('RS256', good({ nbf: NOW + 61 }))],
    ['another issuer', token('RS256', good({ iss: 'https://evil.example' }))],
    ['another audience', token('RS256', good({ aud: ['other'] }))],
    ['a bad signature', `${token('RS256', good()).slice(0, -4)}AAAA`],
    [
      'a payload swapped under a good signature',
      swapPayload(token('ES256', good()), good({ sub: 'mallory' })),
    ],
    ['a kid no key has', token('RS256', good(), { kid: 'nope' })],
    ['alg none', `${b64({ alg: 'none' })}.${b64(good())}.`],
    ['a virtual key', 'sk-sluice-not-a-jwt'],
  ];
  for (const [what, t] of refusedButLetThrough) {
    it(`lets ${what} through untouched and without a payload (allow_missing_or_failed)`, async () => {
      const h = request([
        ['authorization', `Bearer ${t}`],
        [PAYLOAD_HEADER, b64({ sub: 'forged' })],
      ]);
      assert.deepEqual(await runJwtAuthn(spec, h, env()), { ok: true });
      assert.deepEqual(values(h, PAYLOAD_HEADER), [], 'the forged payload header is gone');
      assert.deepEqual(values(h, 'authorization'), [`Bearer ${t}`]);
    });
  }

  it('allows Envoy’s 60 s of clock skew on exp and nbf', async () => {
    for (const claims of [good({ exp: NOW - 60 }), good({ nbf: NOW + 60 })]) {
      const h = request([['authorization', `Bearer ${token('ES256', claims)}`]]);
      await runJwtAuthn(spec, h, env());
      assert.equal(values(h, PAYLOAD_HEADER).length, 1, JSON.stringify(claims));
    }
  });

  it('normalises audiences as jwt_verify_lib does (scheme and trailing slash)', async () => {
    const s = compileJwtAuthn(
      'jwt',
      decoded(sluiceConfig({ p: provider({ audiences: ['https://gw.example/'] }) })),
    );
    const h = request([['authorization', `Bearer ${token('RS256', good({ aud: 'gw.example' }))}`]]);
    await runJwtAuthn(s, h, env());
    assert.equal(values(h, PAYLOAD_HEADER).length, 1);
  });

  it('tries each provider in turn: the one whose issuer signed the token verifies it', async () => {
    const s = compileJwtAuthn(
      'jwt',
      decoded(
        sluiceConfig({
          'a/first': provider({ issuer: 'https://other.example' }),
          'b/second': provider(),
        }),
      ),
    );
    const h = request([['authorization', `Bearer ${token('EdDSA', good())}`]]);
    assert.deepEqual(await runJwtAuthn(s, h, env()), { ok: true });
    assert.equal(values(h, PAYLOAD_HEADER).length, 1);
  });

  it('forward: true keeps the verified token', async () => {
    const s = compileJwtAuthn('jwt', decoded(sluiceConfig({ p: provider({ forward: true }) })));
    const t = token('RS256', good());
    const h = request([['authorization', `Bearer ${t}`]]);
    await runJwtAuthn(s, h, env());
    assert.deepEqual(values(h, 'authorization'), [`Bearer ${t}`]);
    assert.equal(values(h, PAYLOAD_HEADER).length, 1);
  });

  it('an invalid JWKS (one bad key spoils the set, as in Envoy) verifies nothing', async () => {
    const bad = { keys: [...KEYS.keys, { kty: 'RSA', kid: 'x', n: 'AQAB', e: 'Aw' + 'A' }] };
    const s = compileJwtAuthn(
      'jwt',
      decoded(
        sluiceConfig({ p: provider({ local_jwks: { inline_string: JSON.stringify(bad) } }) }),
      ),
    );
    const h = request([['authorization', `Bearer ${token('RS256', good())}`]]);
    await runJwtAuthn(s, h, env());
    assert.deepEqual(values(h, PAYLOAD_HEADER), []);
  });
});

describe('envoy-sim jwt_authn: requirements without a bypass answer themselves', () => {
  const strict = compileJwtAuthn(
    'jwt',
    decoded({
      providers: { p: provider() },
      rules: [
        { match: { prefix: '/healthz' } },
        {
          match: { prefix: '/' },
          requires: {
            requires_any: { requirements: [{ provider_name: 'p' }, { allow_missing: {} }] },
          },
        },
      ],
    }),
  );

  it('allow_missing: no token passes, a bad one is a 401 with Envoy’s text', async () => {
    assert.deepEqual(await runJwtAuthn(strict, request([]), env()), { ok: true });
    const r = await runJwtAuthn(
      strict,
      request([['authorization', `Bearer ${token('RS256', good({ exp: NOW - 3600 }))}`]]),
      env(),
    );
    assert.ok(!r.ok);
    assert.equal(r.status, 401);
    assert.equal(r.body, 'Jwt is expired');
    assert.deepEqual(r.headers, [
      [
        'www-authenticate',
        'Bearer realm="http://gw.local/v1/chat/completions", error="invalid_token"',
      ],
    ]);
  });

  it('a disallowed audience is a 403; a rule without requirements checks nothing', async () => {
    const r = await runJwtAuthn(
      strict,
      request([['authorization', `Bearer ${token('RS256', good({ aud: 'x' }))}`]]),
      env(),
    );
    assert.ok(!r.ok);
    assert.equal(r.status, 403);
    const health: HeaderList = [
      [':path', '/healthz'],
      ['authorization', 'Bearer junk'],
    ];
    assert.deepEqual(await runJwtAuthn(strict, health, env()), { ok: true });
  });

  it('only the verifiers that run remove a client’s payload header', async () => {
    // /healthz matches a rule without requirements: no verifier runs, the header stays (the
    // operator's header_mutation before jwt_authn removes it). A rule that runs p removes it.
    const forged: [string, string] = [PAYLOAD_HEADER, 'eyJzdWIiOiJhZG1pbiJ9'];
    const health: HeaderList = [[':path', '/healthz'], forged];
    assert.deepEqual(await runJwtAuthn(strict, health, env()), { ok: true });
    assert.deepEqual(values(health, PAYLOAD_HEADER), [forged[1]]);
    const h = request([forged]);
    assert.deepEqual(await runJwtAuthn(strict, h, env()), { ok: true });
    assert.deepEqual(values(h, PAYLOAD_HEADER), []);
  });

  it('a provider requirement alone refuses a missing token', async () => {
    const only = compileJwtAuthn(
      'jwt',
      decoded({
        providers: { p: provider() },
        rules: [{ match: { prefix: '/' }, requires: { provider_name: 'p' } }],
      }),
    );
    const r = await runJwtAuthn(only, request([]), env());
    assert.ok(!r.ok);
    assert.equal(r.body, 'Jwt is missing');
    assert.deepEqual(r.headers, [
      ['www-authenticate', 'Bearer realm="http://gw.local/v1/chat/completions"'],
    ]);
  });
});

describe('envoy-sim jwt_authn: remote JWKS', () => {
  const remote = (cache?: string): Json =>
    provider({
      local_jwks: undefined,
      remote_jwks: {
        http_uri: {
          uri: 'https://idp.example/keys',
          cluster: 'jwks/idp.example:443',
          timeout: '2s',
        },
        ...(cache ? { cache_duration: cache } : {}),
      },
    });

  it('fetches through the named cluster, caches for cache_duration, then fetches again', async () => {
    const s = compileJwtAuthn('jwt', decoded(sluiceConfig({ p: remote('30s') })));
    let clock = 0;
    const fetched: string[] = [];
    const e = env({
      monotonicMs: () => clock,
      fetch: (cluster, uri, timeoutMs) => {
        fetched.push(`${cluster} ${uri} ${timeoutMs}`);
        return Promise.resolve({ status: 200, body: JSON.stringify(KEYS) });
      },
    });
    const verify = async (): Promise<number> => {
      const h = request([['authorization', `Bearer ${token('ES256', good())}`]]);
      await runJwtAuthn(s, h, e);
      return values(h, PAYLOAD_HEADER).length;
    };
    assert.equal(await verify(), 1);
    clock = 29_999;
    assert.equal(await verify(), 1);
    assert.deepEqual(fetched, ['jwks/idp.example:443 https://idp.example/keys 2000']);
    clock = 30_000;
    assert.equal(await verify(), 1);
    assert.equal(fetched.length, 2);
  });

  it('a failed fetch, an error status or a bad JWKS fails the token (no payload), uncached', async () => {
    const s = compileJwtAuthn('jwt', decoded(sluiceConfig({ p: remote() })));
    const answers: (() => Promise<{ status: number; body: string }>)[] = [
      () => Promise.reject(new Error('connect')),
      () => Promise.resolve({ status: 503, body: JSON.stringify(KEYS) }),
      () => Promise.resolve({ status: 200, body: '{"keys": "no"}' }),
    ];
    let calls = 0;
    for (const answer of answers) {
      const h = request([['authorization', `Bearer ${token('RS256', good())}`]]);
      const r = await runJwtAuthn(
        s,
        h,
        env({
          fetch: () => {
            calls++;
            return answer();
          },
        }),
      );
      assert.deepEqual(r, { ok: true });
      assert.deepEqual(values(h, PAYLOAD_HEADER), []);
    }
    // Nothing is cached, and each request fetches twice: the provider's verifier, then the
    // bypass, which verifies the same token again (Envoy's authenticators share no fetch).
    assert.equal(calls, 6);
  });
});

describe('envoy-sim jwt_authn: config Envoy would refuse, or the emulator cannot run', () => {
  const refuses = (json: Json, message: RegExp): void => {
    assert.throws(
      () => compileJwtAuthn('jwt', decoded(json)),
      (err: unknown) => err instanceof ConfigError && message.test(err.message),
    );
  };

  it('a requirement naming an unknown provider', () => {
    refuses(
      {
        providers: { p: provider() },
        rules: [{ match: { prefix: '/' }, requires: { provider_name: 'q' } }],
      },
      /Required provider \['q'\] is not configured/,
    );
  });

  it('requires_any with a single requirement', () => {
    refuses(
      {
        providers: { p: provider() },
        rules: [
          {
            match: { prefix: '/' },
            requires: { requires_any: { requirements: [{ provider_name: 'p' }] } },
          },
        ],
      },
      /at least 2/,
    );
  });

  it('a provider on Envoy’s default token locations (which include a query parameter)', () => {
    refuses(sluiceConfig({ p: provider({ from_headers: undefined }) }), /from_headers/);
  });
});

function swapPayload(t: string, claims: Json): string {
  const [h, , s] = t.split('.');
  return `${h}.${b64(claims)}.${s}`;
}
