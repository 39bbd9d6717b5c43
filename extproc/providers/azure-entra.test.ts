// Microsoft Entra ID tokens for Azure OpenAI: client credentials with a client secret and
// workload identity with the federated token file, each a form post to the mock tenant's token
// endpoint (reached through AZURE_AUTHORITY_HOST); tokens that expire during the test are
// refreshed ahead of expiry off the request path, so a steady stream of calls never meets an
// expired one; refusals fail closed in the gateway's own words, never the secret's.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { startMockEntra } from '../../operator/mock-provider/entra.js';
import { AzureTokens, entraTokenUrl } from './azure-entra.js';

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT = '0f1e2d3c-aaaa-bbbb-cccc-123456789abc';
const SECRET = 'entra~client~secret~never~logged';

function azure(credential: string | undefined, entra = { tenantId: TENANT, clientId: CLIENT }) {
  return {
    name: 'ns/r/azure',
    cluster: 'c',
    provider: 'azure-openai',
    credential,
    azure: { apiVersion: '2024-10-21', entra },
  } as ResolvedBackend;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Entra token endpoint URL', () => {
  it('the public cloud by default; AZURE_AUTHORITY_HOST with or without its slash', () => {
    assert.equal(
      entraTokenUrl({}, TENANT),
      `https://login.microsoftonline.com/${TENANT}/oauth2/v2.0/token`,
    );
    assert.equal(
      entraTokenUrl({ AZURE_AUTHORITY_HOST: 'https://login.microsoftonline.us' }, 't'),
      'https://login.microsoftonline.us/t/oauth2/v2.0/token',
    );
  });
});

describe('Entra tokens for Azure OpenAI', () => {
  it('client secret: tokens refreshed ahead of expiry while calls go on, none expired', async () => {
    const entra = await startMockEntra({
      tenantId: TENANT,
      clientId: CLIENT,
      clientSecret: SECRET,
      tokenSeconds: 1,
    });
    // Tokens live 1 s and are refreshed 700 ms ahead, i.e. ~300 ms after each is issued.
    const tokens = new AzureTokens(
      { AZURE_AUTHORITY_HOST: entra.url },
      { aheadMs: 700, retryMs: 100 },
    );
    try {
      const seen = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const h = new Map(await tokens.headers(azure(SECRET)));
        assert.deepEqual([...h.keys()], ['authorization']);
        const auth = h.get('authorization')!;
        assert.ok(entra.valid(auth), `call ${i}: ${auth} is valid`);
        seen.add(auth);
        await sleep(150);
      }
      assert.ok(seen.size >= 3, `tokens rotated: ${seen.size}`);
      assert.ok(!entra.valid([...seen][0]), 'the first token has expired by now');
      const form = entra.requests[0]!.form;
      assert.deepEqual(form, {
        grant_type: 'client_credentials',
        client_id: CLIENT,
        client_secret: SECRET,
        scope: 'https://cognitiveservices.azure.com/.default',
      });
      // Refreshed by the timer, not per call: far fewer token requests than calls.
      assert.ok(entra.tokensIssued <= 8, `issued ${entra.tokensIssued}`);
    } finally {
      tokens.close();
      await entra.close();
    }
  });

  it('workload identity: the federated token file, re-read at each refresh, as the client assertion', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-entra-'));
    const file = join(dir, 'azure-identity-token');
    await writeFile(file, 'federated-token-1\n');
    const entra = await startMockEntra({
      tenantId: TENANT,
      clientId: CLIENT,
      federatedToken: 'federated-token-1',
      tokenSeconds: 1,
    });
    const tokens = new AzureTokens(
      {
        AZURE_AUTHORITY_HOST: `${entra.url}/`,
        AZURE_TENANT_ID: TENANT,
        AZURE_CLIENT_ID: CLIENT,
        AZURE_FEDERATED_TOKEN_FILE: file,
      },
      { aheadMs: 700, retryMs: 100 },
    );
    try {
      // The ids from the pod's environment (the webhook injects them): an empty entra block.
      const backend = azure(undefined, {} as never);
      const first = new Map(await tokens.headers(backend)).get('authorization');
      assert.ok(entra.valid(first));
      assert.deepEqual(entra.requests[0]!.form, {
        grant_type: 'client_credentials',
        client_id: CLIENT,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: 'federated-token-1',
        scope: 'https://cognitiveservices.azure.com/.default',
      });
      // The kubelet rotates the file: the next refresh presents what it holds then.
      await writeFile(file, 'federated-token-2\n');
      await sleep(500);
      assert.equal(entra.requests.at(-1)!.form.client_assertion, 'federated-token-2');
    } finally {
      tokens.close();
      await entra.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a token endpoint that never answers fails the wait closed, after the timeout', async () => {
    // Accepts connections and never answers.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const tokens = new AzureTokens(
      { AZURE_AUTHORITY_HOST: url },
      { retryMs: 60_000, timeoutMs: 300 },
    );
    try {
      const started = Date.now();
      await assert.rejects(
        tokens.headers(azure(SECRET)),
        (e: unknown) => e instanceof SluiceError && e.code === 'gateway_error',
      );
      assert.ok(Date.now() - started < 5_000);
    } finally {
      tokens.close();
      silent.closeAllConnections();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('a secret the endpoint refuses, or no way to get a token, fails closed in the gateway’s words', async () => {
    const entra = await startMockEntra({
      tenantId: TENANT,
      clientId: CLIENT,
      clientSecret: 'other',
    });
    const tokens = new AzureTokens({ AZURE_AUTHORITY_HOST: entra.url }, { retryMs: 60_000 });
    const closed = (e: unknown): boolean =>
      e instanceof SluiceError &&
      e.code === 'gateway_error' &&
      !e.message.includes(SECRET) &&
      !/AADSTS|invalid_client/.test(e.message);
    try {
      await assert.rejects(tokens.headers(azure(SECRET)), closed);
      // No secret and no federated token file: nothing to authenticate with.
      await assert.rejects(tokens.headers(azure(undefined)), closed);
      // No entra block at all: never reached (the backend uses api-key), refused if it is.
      await assert.rejects(
        tokens.headers({ ...azure(SECRET), azure: { apiVersion: 'v' } }),
        closed,
      );
    } finally {
      tokens.close();
      await entra.close();
    }
  });
});
