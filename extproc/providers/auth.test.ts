// Which header carries a backend's credential: the provider's own (api-key for Azure OpenAI), and
// for an Azure OpenAI backend with `azure.entra` none at all — its credential is the app's client
// secret, which buys Entra ID tokens and must never leave as an api-key. The token comes from
// signingHeaders (providers/azure-entra.ts); without a usable way to get one, it fails closed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { credentialHeaders, signingHeaders } from './auth.js';

const UP = {
  path: '/openai/deployments/d/chat/completions?api-version=v',
  headers: [],
  body: undefined,
};
const azure = (over: Partial<ResolvedBackend> = {}): ResolvedBackend => ({
  name: 'ns/r/azure',
  cluster: 'c',
  provider: 'azure-openai',
  credential: 'the-secret',
  azure: { apiVersion: '2024-10-21' },
  ...over,
});

describe('credential headers', () => {
  it('Azure OpenAI with a key: api-key, and nothing to wait for', () => {
    assert.deepEqual(credentialHeaders(azure(), UP), [['api-key', 'the-secret']]);
    assert.equal(signingHeaders(azure(), UP, { method: 'POST', authority: 'x' }, 0), undefined);
  });

  it('Azure OpenAI with Entra ID: the client secret is never sent; a token is waited for', async () => {
    const entra = azure({
      azure: { apiVersion: '2024-10-21', entra: { tenantId: 't', clientId: 'c' } },
    });
    assert.deepEqual(credentialHeaders(entra, UP), []);
    // No Entra endpoint answers here (an unroutable authority): the wait fails closed.
    const prev = process.env.AZURE_AUTHORITY_HOST;
    process.env.AZURE_AUTHORITY_HOST = 'http://127.0.0.1:9/';
    try {
      const pending = signingHeaders(entra, UP, { method: 'POST', authority: 'x' }, 0);
      assert.ok(pending, 'an Entra backend waits for its token');
      await assert.rejects(
        pending,
        (e: unknown) =>
          e instanceof SluiceError &&
          e.code === 'gateway_error' &&
          !e.message.includes('the-secret'),
      );
    } finally {
      if (prev === undefined) delete process.env.AZURE_AUTHORITY_HOST;
      else process.env.AZURE_AUTHORITY_HOST = prev;
    }
  });
});
