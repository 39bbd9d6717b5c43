// Azure OpenAI with Microsoft Entra ID tokens through `sluice run` from YAML, with masking and a
// budget on: `azure.entra` backends send `Authorization: Bearer <Entra token>` and never an
// `api-key` (the mock Azure OpenAI refuses a token the mock Entra tenant did not issue, an expired
// one, or any api-key alongside). Client credentials take the client secret from a Secret;
// workload identity takes the pod's federated token file (AZURE_FEDERATED_TOKEN_FILE, with
// AZURE_TENANT_ID and AZURE_CLIENT_ID, as the AKS webhook injects them). AZURE_AUTHORITY_HOST
// points both at the mock tenant. Tokens live 3 s, so several expire while requests keep coming:
// none of those requests fails (a token in its last quarter is not handed out: providers/
// refreshing.ts). A secret Entra refuses fails closed in the gateway's own words.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type OpenAI from 'openai';
import { startMockEntra, type MockEntra } from '../../operator/mock-provider/entra.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import {
  failure,
  policyDoc,
  routeDoc,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  type YamlGateway,
  sdkClients,
  until,
} from './harness.js';

const TENANT = 'a0b1c2d3-0000-4000-8000-00000000e2e0';
const CLIENT = 'c0ffee00-0000-4000-8000-00000000e2e1';
const SECRET = 'entra~e2e~client~secret';
const FEDERATED = 'eyJhbGciOiJSUzI1NiJ9.federated-e2e.sig';
const PRICE = { inputPerMTok: 1000, outputPerMTok: 1000 };

function route(name: string, backend: Record<string, unknown>): unknown {
  return routeDoc(name, [
    {
      name: 'azure',
      provider: 'azure-openai',
      endpoint: { service: { name: 'azure-mock', port: 80 } },
      ...backend,
    },
  ]);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('e2e: Azure OpenAI with Microsoft Entra ID tokens', () => {
  let g: YamlGateway;
  let entra: MockEntra;
  let azure: MockProvider;
  let openai: OpenAI;
  let dir: string;
  const saved = { ...process.env };

  before(async () => {
    entra = await startMockEntra({
      tenantId: TENANT,
      clientId: CLIENT,
      clientSecret: SECRET,
      federatedToken: FEDERATED,
      tokenSeconds: 3,
    });
    azure = await startMockProvider({
      name: 'azure-mock',
      auth: { azureBearer: (a) => entra.valid(a) },
    });
    dir = await mkdtemp(join(tmpdir(), 'sluice-wi-'));
    const tokenFile = join(dir, 'azure-identity-token');
    await writeFile(tokenFile, FEDERATED);
    // What the AKS workload identity webhook injects; the authority is the mock tenant's host.
    Object.assign(process.env, {
      AZURE_AUTHORITY_HOST: entra.url,
      AZURE_TENANT_ID: TENANT,
      AZURE_CLIENT_ID: CLIENT,
      AZURE_FEDERATED_TOKEN_FILE: tokenFile,
    });
    g = await startYamlGateway([
      route('azure-secret', {
        credential: { secretRef: { name: 'entra-app' } },
        azure: {
          apiVersion: '2024-10-21',
          deployment: 'gpt-4o-prod',
          entra: { tenantId: TENANT, clientId: CLIENT },
        },
      }),
      route('azure-wi', { azure: { apiVersion: '2024-10-21', entra: {} } }),
      route('azure-bad-secret', {
        credential: { secretRef: { name: 'wrong-app' } },
        azure: { apiVersion: '2024-10-21', entra: { tenantId: TENANT, clientId: CLIENT } },
      }),
      policyDoc('azure-policy', ['azure-secret', 'azure-wi'], {
        masking: { detectors: ['EMAIL'], actions: { EMAIL: 'mask' }, reversible: true },
        pricing: { models: { '*': PRICE } },
        limits: { rules: [{ name: 'daily', per: ['route'], spendPerDayUsd: 100 }] },
      }),
      ...serviceDocs('azure-mock', azure.port),
      secretDoc('entra-app', SECRET),
      secretDoc('wrong-app', 'not~the~secret'),
    ]);
    ({ openai } = sdkClients(g.gateway.url));
  });
  after(async () => {
    await g?.close();
    await azure?.close();
    await entra?.close();
    await rm(dir, { recursive: true, force: true });
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
  });

  async function steady(model: string, seconds: number): Promise<string[]> {
    const failures: string[] = [];
    const until = Date.now() + seconds * 1000;
    for (let i = 0; Date.now() < until; i++) {
      try {
        const r = await openai.chat.completions.create({
          model,
          messages: [{ role: 'user', content: `call ${i} for jane.doe@example.com` }],
        });
        if (r.choices[0]!.message.content !== `echo: call ${i} for jane.doe@example.com`)
          failures.push(`call ${i}: ${r.choices[0]!.message.content}`);
      } catch (e) {
        failures.push(`call ${i}: ${String(e)}`);
      }
      await sleep(150);
    }
    return failures;
  }

  it('client secret: a bearer token, never an api-key; tokens expire mid-run, no request fails', async () => {
    azure.take();
    const before = entra.tokensIssued;
    assert.deepEqual(await steady('azure-secret', 7), []);
    const seen = azure.take();
    assert.ok(seen.length >= 10, `${seen.length} requests`);
    for (const c of seen) {
      assert.equal(c.headers['api-key'], undefined);
      assert.match(String(c.headers.authorization), /^Bearer eyJ0eXAiOiJKV1QifQ\.mock-entra-\d+$/);
      assert.match(
        c.path,
        /^\/openai\/deployments\/gpt-4o-prod\/chat\/completions\?api-version=2024-10-21$/,
      );
      assert.doesNotMatch(c.body.toString(), /jane\.doe/);
    }
    const tokens = new Set(seen.map((c) => c.headers.authorization));
    assert.ok(tokens.size >= 2, `tokens used: ${tokens.size}`);
    assert.ok(entra.tokensIssued - before >= 2);
    const forms = entra.requests.filter((r) => r.form.client_secret !== undefined);
    assert.ok(forms.length > 0 && forms.every((r) => r.form.client_secret === SECRET));
  });

  it('workload identity: the federated token as client assertion; refreshed, no request fails', async () => {
    azure.take();
    assert.deepEqual(await steady('azure-wi', 7), []);
    const seen = azure.take();
    assert.ok(seen.every((c) => c.headers['api-key'] === undefined));
    const assertions = entra.requests.filter((r) => r.form.client_assertion !== undefined);
    assert.ok(assertions.length >= 2, `${assertions.length} token requests`);
    for (const r of assertions) {
      assert.equal(r.form.client_assertion, FEDERATED);
      assert.equal(r.form.client_id, CLIENT);
      assert.equal(r.tenant, TENANT);
    }
  });

  it('streaming through an Entra-authenticated backend, usage charged', async () => {
    const s = await openai.chat.completions
      .create({
        model: 'azure-secret',
        messages: [{ role: 'user', content: 'stream to jane.doe@example.com' }],
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    let text = '';
    for await (const c of s.data) text += c.choices[0]?.delta.content ?? '';
    assert.equal(text, 'echo: stream to jane.doe@example.com');
    const id = s.response.headers.get('x-sluice-request-id');
    const line = await until(() => g.accessLog.find((l) => l['request_id'] === id));
    assert.ok(Number(line['cost_usd']) > 0);
  });

  it('a secret Entra refuses fails closed, in the gateway’s words', async () => {
    azure.take();
    const e = (await failure(
      openai.chat.completions.create({
        model: 'azure-bad-secret',
        messages: [{ role: 'user', content: 'x' }],
      }),
    )) as { status?: number; message?: string };
    assert.equal(e.status, 500);
    assert.match(String(e.message), /no usable Microsoft Entra credentials/);
    assert.doesNotMatch(String(e.message), /AADSTS|not~the~secret/);
    assert.equal(azure.take().length, 0);
  });
});
