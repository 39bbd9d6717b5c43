// Vertex AI tokens: a service-account key's JWT assertion (signed with jose) exchanged at the
// mock's token endpoint, which verifies it; tokens that expire during the test are refreshed ahead
// of expiry, so a steady stream of Vertex calls never meets an expired one; the mock refuses a
// missing or expired token.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { startMockGemini } from '../../operator/mock-provider/gemini.js';
import { GcpTokens, parseServiceAccount } from './gcp-oauth.js';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PRIVATE_PEM = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const PUBLIC_PEM = publicKey.export({ type: 'spki', format: 'pem' }).toString();
const EMAIL = 'sluice@proj-e2e.iam.gserviceaccount.com';

function saJson(tokenUri: string): string {
  return JSON.stringify({
    type: 'service_account',
    project_id: 'proj-e2e',
    private_key_id: 'k1',
    private_key: PRIVATE_PEM,
    client_email: EMAIL,
    token_uri: tokenUri,
  });
}

function vertex(credential: string | undefined): ResolvedBackend {
  return {
    name: 'ns/r/vertex',
    cluster: 'c',
    provider: 'gcp-vertex',
    credential,
    gcp: { project: 'proj-e2e', region: 'us-central1' },
  };
}

const PATH =
  '/v1/projects/proj-e2e/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent';
const BODY = JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] });

describe('service-account key → OAuth token', () => {
  it('refuses a key that is not a service-account key, never quoting it', () => {
    for (const bad of ['sk-not-json-secret', '{"client_email":"a@b"}']) {
      assert.throws(
        () => parseServiceAccount(bad),
        (e: unknown) =>
          e instanceof SluiceError && !e.message.includes('secret') && e.code === 'gateway_error',
      );
    }
  });

  it('tokens from the mock’s token endpoint; refreshed ahead of expiry; calls never fail', async () => {
    const mock = await startMockGemini({
      apiKey: 'unused',
      vertex: {
        project: 'proj-e2e',
        location: 'us-central1',
        clientEmail: EMAIL,
        publicKeyPem: PUBLIC_PEM,
        tokenSeconds: 1,
      },
    });
    // Tokens live 1 s; refreshed 700 ms ahead, i.e. ~300 ms after issue.
    const tokens = new GcpTokens({}, { aheadMs: 700, retryMs: 100 });
    try {
      // Without a token, or with one the mock did not issue: 401.
      const none = await fetch(`${mock.url}${PATH}`, { method: 'POST', body: BODY });
      assert.equal(none.status, 401);
      assert.equal(
        ((await none.json()) as { error: { status: string } }).error.status,
        'UNAUTHENTICATED',
      );
      const backend = vertex(saJson(`${mock.url}/token`));
      const seen = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const h = new Map(await tokens.headers(backend));
        const auth = h.get('authorization')!;
        assert.match(auth, /^Bearer ya29\.mock-\d+$/);
        seen.add(auth);
        const r = await fetch(`${mock.url}${PATH}`, {
          method: 'POST',
          headers: { authorization: auth, 'content-type': 'application/json' },
          body: BODY,
        });
        assert.equal(r.status, 200, `call ${i} with ${auth}`);
        await new Promise((res) => setTimeout(res, 150));
      }
      assert.ok(seen.size >= 3, `tokens rotated: ${seen.size}`);
      // A token past its expiry is refused by the mock.
      const old = [...seen][0]!;
      const expired = await fetch(`${mock.url}${PATH}`, {
        method: 'POST',
        headers: { authorization: old, 'content-type': 'application/json' },
        body: BODY,
      });
      assert.equal(expired.status, 401);
    } finally {
      tokens.close();
      await mock.close();
    }
  });

  it('a token endpoint or metadata server that never answers fails the wait closed, after the timeout', async () => {
    // Accepts connections and never answers.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const host = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const tokens = new GcpTokens({ GCE_METADATA_HOST: host }, { retryMs: 60_000, timeoutMs: 300 });
    try {
      for (const backend of [vertex(saJson(`http://${host}/token`)), vertex(undefined)]) {
        const started = Date.now();
        await assert.rejects(
          tokens.headers(backend),
          (e: unknown) => e instanceof SluiceError && e.code === 'gateway_error',
        );
        assert.ok(Date.now() - started < 5_000);
      }
    } finally {
      tokens.close();
      silent.closeAllConnections();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('a key the token endpoint refuses fails closed with the gateway’s own words', async () => {
    const mock = await startMockGemini({
      apiKey: 'unused',
      vertex: {
        project: 'p',
        location: 'l',
        clientEmail: 'someone-else@x',
        publicKeyPem: PUBLIC_PEM,
      },
    });
    const tokens = new GcpTokens({}, { retryMs: 60_000 });
    try {
      await assert.rejects(
        tokens.headers(vertex(saJson(`${mock.url}/token`))),
        (e: unknown) =>
          e instanceof SluiceError &&
          e.code === 'gateway_error' &&
          !/invalid_grant/.test(e.message),
      );
    } finally {
      tokens.close();
      await mock.close();
    }
  });
});
