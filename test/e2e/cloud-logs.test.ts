// No secret and no prompt reaches the logs through the cloud paths. One `sluice run` gateway,
// logging at trace level, serves every cloud backend kind — Bedrock Converse (plain, streamed,
// Anthropic callers), Claude through InvokeModel, Bedrock embeddings, the Gemini API, Vertex AI
// (Gemini, Claude, embeddings) and Azure OpenAI with Entra ID — with masking on, and also fails
// on purpose (a signature Bedrock refuses, a service-account key Google refuses, a client secret
// Entra refuses). Then no log line of the whole run may hold: the AWS secret key, a SigV4
// signature the mock received, the Gemini API key, the service account's private key, an OAuth or
// Entra access token that went out, the Entra client secret or federated token, the prompt text,
// the answer text, or the email that masking replaced.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startMockBedrock, type MockBedrock } from '../../operator/mock-provider/bedrock.js';
import { startMockEntra, type MockEntra } from '../../operator/mock-provider/entra.js';
import { startMockGemini, type MockGemini } from '../../operator/mock-provider/gemini.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import { testServiceAccount } from '../support/service-account.js';
import {
  policyDoc,
  routeDoc,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  type YamlGateway,
  sdkClients,
} from './harness.js';

const AWS = { accessKeyId: 'AKIDLOGSCHECK0001', secretAccessKey: 'logs/aws+SECRET+never+logged' };
const AWS_FILE = `[default]\naws_access_key_id = ${AWS.accessKeyId}\naws_secret_access_key = ${AWS.secretAccessKey}\n`;
const WRONG_AWS = `[default]\naws_access_key_id = ${AWS.accessKeyId}\naws_secret_access_key = wrong/aws+SECRET+also+unlogged\n`;
const GEMINI_KEY = 'AIza-LOGS-gemini-key-never-logged';
const SA_EMAIL = 'logs@sluice-e2e.iam.gserviceaccount.com';
const SA = testServiceAccount(SA_EMAIL);
/** The same account with a key Google never issued. */
const WRONG_SA = testServiceAccount(SA_EMAIL);
const TENANT = 'a0b1c2d3-0000-4000-8000-0000000010e5';
const CLIENT = 'c0ffee00-0000-4000-8000-0000000010e5';
const ENTRA_SECRET = 'entra~LOGS~client~secret';
const FEDERATED = 'eyJhbGciOiJSUzI1NiJ9.federated-LOGS.sig';
/** Prompt and answer text no log line may hold, and PII masking replaced. */
const PROMPT = 'zebra-quartz-prompt-7731';
const ANSWER = 'walrus-umber-answer-5519';
const EMAIL = 'ada.lovelace@example.org';
const ROUTES = [
  'converse',
  'invoke',
  'titan',
  'bedrock-wrong',
  'gemini',
  'vertex',
  'vertex-claude',
  'vertex-embed',
  'vertex-wrong',
  'azure-secret',
  'azure-wi',
];

describe('e2e: no secret, token, signature or prompt in the logs of the cloud paths', () => {
  let g: YamlGateway;
  let bedrock: MockBedrock;
  let google: MockGemini;
  let entra: MockEntra;
  let azure: MockProvider;
  let dir: string;
  const saved = { ...process.env };

  before(async () => {
    bedrock = await startMockBedrock({ region: 'us-east-1', credentials: AWS });
    google = await startMockGemini({
      apiKey: GEMINI_KEY,
      vertex: SA.vertex('sluice-logs', 'us-east5'),
    });
    entra = await startMockEntra({
      tenantId: TENANT,
      clientId: CLIENT,
      clientSecret: ENTRA_SECRET,
      federatedToken: FEDERATED,
    });
    azure = await startMockProvider({
      name: 'azure',
      auth: { azureBearer: (a) => entra.valid(a) },
    });
    dir = await mkdtemp(join(tmpdir(), 'sluice-logs-'));
    await writeFile(join(dir, 'token'), FEDERATED);
    Object.assign(process.env, {
      AZURE_AUTHORITY_HOST: entra.url,
      AZURE_TENANT_ID: TENANT,
      AZURE_CLIENT_ID: CLIENT,
      AZURE_FEDERATED_TOKEN_FILE: join(dir, 'token'),
    });
    const svc = (name: string) => ({ service: { name, port: 80 } });
    const b = (name: string, backend: Record<string, unknown>): unknown =>
      routeDoc(name, [{ name: 'b', ...backend }], { retry: { attempts: 0 } });
    const bedrockB = (model: string, over: Record<string, unknown> = {}) => ({
      provider: 'aws-bedrock',
      endpoint: svc('bedrock'),
      credential: { secretRef: { name: 'aws' } },
      modelOverride: model,
      aws: { region: 'us-east-1' },
      ...over,
    });
    const vertexB = (model: string, over: Record<string, unknown> = {}) => ({
      provider: 'gcp-vertex',
      endpoint: svc('google'),
      credential: { secretRef: { name: 'sa' } },
      modelOverride: model,
      gcp: { project: 'sluice-logs', region: 'us-east5' },
      ...over,
    });
    const routes: unknown[] = [
      b('converse', bedrockB('anthropic.claude-3-haiku-20240307-v1:0')),
      b(
        'invoke',
        bedrockB('anthropic.claude-3-haiku-20240307-v1:0', {
          aws: { region: 'us-east-1', anthropicInvoke: true },
        }),
      ),
      b('titan', bedrockB('amazon.titan-embed-text-v2:0')),
      b(
        'bedrock-wrong',
        bedrockB('anthropic.claude-3-haiku-20240307-v1:0', {
          credential: { secretRef: { name: 'aws-wrong' } },
        }),
      ),
      b('gemini', {
        provider: 'gemini',
        endpoint: svc('google'),
        credential: { secretRef: { name: 'gemini' } },
        modelOverride: 'gemini-2.5-flash',
      }),
      b('vertex', vertexB('gemini-2.5-pro')),
      b(
        'vertex-claude',
        vertexB('claude-sonnet-4@20250514', {
          gcp: { project: 'sluice-logs', region: 'us-east5', publisher: 'anthropic' },
        }),
      ),
      b('vertex-embed', vertexB('text-embedding-005')),
      b(
        'vertex-wrong',
        vertexB('gemini-2.5-pro', { credential: { secretRef: { name: 'sa-wrong' } } }),
      ),
      b('azure-secret', {
        provider: 'azure-openai',
        endpoint: svc('azure'),
        credential: { secretRef: { name: 'entra' } },
        azure: { apiVersion: '2024-10-21', entra: { tenantId: TENANT, clientId: CLIENT } },
      }),
      b('azure-wi', {
        provider: 'azure-openai',
        endpoint: svc('azure'),
        azure: { apiVersion: '2024-10-21', entra: {} },
      }),
    ];
    g = await startYamlGateway([
      ...routes,
      policyDoc('mask-all', ROUTES, {
        masking: { detectors: ['EMAIL'], actions: { EMAIL: 'mask' }, reversible: true },
        pricing: { models: { '*': { inputPerMTok: 1, outputPerMTok: 1 } } },
        limits: { rules: [{ name: 'daily', per: ['route'], spendPerDayUsd: 100 }] },
      }),
      ...serviceDocs('bedrock', bedrock.port),
      ...serviceDocs('google', google.port),
      ...serviceDocs('azure', azure.port),
      secretDoc('aws', AWS_FILE),
      secretDoc('aws-wrong', WRONG_AWS),
      secretDoc('gemini', GEMINI_KEY),
      secretDoc('sa', SA.keyFile(`${google.url}/token`)),
      secretDoc('sa-wrong', WRONG_SA.keyFile(`${google.url}/token`)),
      secretDoc('entra', ENTRA_SECRET),
    ]);
  });
  after(async () => {
    await g?.close();
    await bedrock?.close();
    await google?.close();
    await azure?.close();
    await entra?.close();
    await rm(dir, { recursive: true, force: true });
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
  });

  it('every cloud path served (and three refused), then not one log line holds a secret or the text', async () => {
    const { openai, anthropic } = sdkClients(g.gateway.url);
    const say = `${PROMPT} mail ${EMAIL}`;
    const answers = { content: `${ANSWER} ${EMAIL}` };
    const outcomes: string[] = [];
    const run = async (what: string, p: Promise<unknown>): Promise<void> => {
      outcomes.push(
        await p.then(
          () => `${what}: ok`,
          (e: { status?: number }) => `${what}: ${e.status}`,
        ),
      );
    };
    for (const model of [
      'converse',
      'gemini',
      'vertex',
      'vertex-claude',
      'azure-secret',
      'azure-wi',
    ]) {
      (model === 'converse' ? bedrock : model.startsWith('azure') ? azure : google).enqueue(
        answers,
        answers,
      );
      await run(
        model,
        openai.chat.completions.create({ model, messages: [{ role: 'user', content: say }] }),
      );
      const s = await openai.chat.completions.create({
        model,
        messages: [{ role: 'user', content: say }],
        stream: true,
      });
      for await (const _ of s) void _;
      outcomes.push(`${model} stream: ok`);
    }
    for (const model of ['converse', 'invoke', 'vertex-claude']) {
      (model === 'vertex-claude' ? google : bedrock).enqueue(answers);
      await run(
        `${model} anthropic`,
        anthropic.messages
          .stream({ model, max_tokens: 50, messages: [{ role: 'user', content: say }] })
          .finalMessage(),
      );
    }
    await run('titan', openai.embeddings.create({ model: 'titan', input: say }));
    await run('vertex-embed', openai.embeddings.create({ model: 'vertex-embed', input: say }));
    await run(
      'bedrock-wrong',
      openai.chat.completions.create({
        model: 'bedrock-wrong',
        messages: [{ role: 'user', content: say }],
      }),
    );
    await run(
      'vertex-wrong',
      openai.chat.completions.create({
        model: 'vertex-wrong',
        messages: [{ role: 'user', content: say }],
      }),
    );
    assert.deepEqual(outcomes, [
      ...['converse', 'gemini', 'vertex', 'vertex-claude', 'azure-secret', 'azure-wi'].flatMap(
        (m) => [`${m}: ok`, `${m} stream: ok`],
      ),
      'converse anthropic: ok',
      'invoke anthropic: ok',
      'vertex-claude anthropic: ok',
      'titan: ok',
      'vertex-embed: ok',
      'bedrock-wrong: 403',
      'vertex-wrong: 500',
    ]);

    // What went out on the wire, so the check covers the very values that were used.
    const signatures = bedrock.requests
      .map((r) => /Signature=([0-9a-f]{64})/.exec(String(r.headers.authorization))?.[1])
      .filter((s): s is string => s !== undefined);
    const bearers = [...google.requests, ...azure.requests]
      .map((r) => /^Bearer (\S+)$/.exec(String(r.headers.authorization))?.[1])
      .filter((s): s is string => s !== undefined);
    assert.ok(signatures.length >= 6 && bearers.length >= 10);
    const keyBody = SA.privateKeyPem.split('\n')[5]!;
    const forbidden: Record<string, string> = {
      'AWS secret key': AWS.secretAccessKey,
      'the wrong AWS secret key': 'wrong/aws+SECRET+also+unlogged',
      'Gemini API key': GEMINI_KEY,
      'service-account private key': keyBody,
      'Entra client secret': ENTRA_SECRET,
      'federated token': FEDERATED,
      prompt: PROMPT,
      answer: ANSWER,
      email: EMAIL,
      ...Object.fromEntries(signatures.map((s, i) => [`SigV4 signature ${i}`, s])),
      ...Object.fromEntries(bearers.map((t, i) => [`access token ${i}`, t])),
    };
    assert.ok(g.logLines.length > 20, 'the run logged');
    // The scan covers every path: each route's requests were logged (and masking's findings).
    for (const name of ROUTES)
      assert.ok(
        g.accessLog.some((l) => l['route'] === `e2e/${name}`),
        `no access-log line for ${name}`,
      );
    assert.ok(g.accessLog.some((l) => JSON.stringify(l['findings'] ?? []).includes('EMAIL')));
    for (const line of g.logLines)
      for (const [name, value] of Object.entries(forbidden))
        assert.ok(!line.includes(value), `a log line holds the ${name}: ${line.slice(0, 200)}`);
  });
});
