/**
 * The quickstart gateway as a component: `sluice run` on this directory with the built-in mock
 * provider, and the text that tells a newcomer what to try. start.ts (`npm start`) runs it as a
 * program; the e2e tier runs it in-process and sends the requests that text prints.
 *
 * With OPENAI_API_KEY set it also routes gpt-* models to OpenAI: the key goes into a generated
 * Secret in a private temp directory, never into the repo, and the route carries the label that
 * puts it under policy.yaml (virtual key, masking, budget), like the mock route.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { stringify } from 'yaml';
import { findEnvoy } from '../../operator/standalone/main.js';
import { run, type RunningGateway } from '../../operator/standalone/run.js';

export const QUICKSTART_DIR = dirname(fileURLToPath(import.meta.url));

/** The demo consumer's key, as in keys.yaml. Published on purpose: it guards nothing real. */
export const DEMO_KEY = 'sk-sluice-quickstart-demo';

/** What the masking example sends: one value the policy masks, one it redacts. */
export const MASKING_PROMPT = 'Email ada@example.com, card 4111 1111 1111 1111';
const BUDGET_PROMPT = 'Hello, Sluice!';
const BUDGET_LOOP = 8;

export interface QuickstartOptions {
  port: number;
  /** host:port of /metrics; absent: none. */
  admin?: string | undefined;
  /** OPENAI_API_KEY and ENVOY_BIN/PATH are read from here; the extproc gets it too. */
  env: NodeJS.ProcessEnv;
  logger: Logger;
  registry: Registry;
}

export interface Quickstart {
  gateway: RunningGateway;
  /** Whether gpt-* models route to OpenAI (OPENAI_API_KEY was set). */
  openai: boolean;
  /** What to try, for the terminal. */
  text: string;
  close(): Promise<void>;
}

export async function startQuickstart(opts: QuickstartOptions): Promise<Quickstart> {
  const files = [QUICKSTART_DIR];
  let secretDir: string | undefined;
  const openaiKey = opts.env['OPENAI_API_KEY'];
  if (openaiKey) {
    secretDir = await mkdtemp(join(tmpdir(), 'sluice-quickstart-'));
    const docs = [
      {
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'AIRoute',
        metadata: { name: 'openai', namespace: 'default', labels: { example: 'quickstart' } },
        spec: {
          models: [{ prefix: 'gpt-' }],
          backends: [
            {
              name: 'openai',
              provider: 'openai',
              endpoint: { url: 'https://api.openai.com/v1' },
              credential: { secretRef: { name: 'openai' } },
            },
          ],
        },
      },
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'openai', namespace: 'default' },
        stringData: { apiKey: openaiKey },
      },
    ];
    const file = join(secretDir, 'openai.yaml');
    await writeFile(file, docs.map((d) => stringify(d)).join('---\n'), { mode: 0o600 });
    files.push(file);
  }
  const removeSecrets = () =>
    secretDir ? rm(secretDir, { recursive: true, force: true }) : Promise.resolve();

  let gateway: RunningGateway;
  try {
    gateway = await run({
      files,
      host: '127.0.0.1',
      port: opts.port,
      admin: opts.admin,
      mockProvider: true,
      envoyBin: findEnvoy(opts.env),
      logger: opts.logger,
      registry: opts.registry,
      env: opts.env,
    });
  } catch (err) {
    await removeSecrets();
    throw err;
  }
  return {
    gateway,
    openai: openaiKey !== undefined && openaiKey !== '',
    text: instructions(gateway, openaiKey ? 'gpt-4o-mini' : 'mock-model', Boolean(openaiKey)),
    close: () => gateway.close().then(removeSecrets),
  };
}

function instructions(gateway: RunningGateway, sdkModel: string, openai: boolean): string {
  const url = gateway.url;
  const chat = (content: string): string =>
    `${url}/v1/chat/completions \\\n` +
    `    -H 'authorization: Bearer ${DEMO_KEY}' -H 'content-type: application/json' \\\n` +
    `    -d '${JSON.stringify({ model: 'mock-model', messages: [{ role: 'user', content }] })}'`;
  return `
Sluice is running on ${url}
  data plane: ${gateway.dataPlane === 'envoy' ? 'Envoy' : 'envoy-sim (the Envoy emulator; set ENVOY_BIN to use Envoy)'}
  models:     mock-model (built-in mock provider: it answers with what it received)${openai ? ',\n              gpt-* (OpenAI, with your OPENAI_API_KEY)' : ''}
  policy:     virtual key required, personal data masked, $0.01 a day per model (policy.yaml)
  demo key:   ${DEMO_KEY} (consumer "demo" in keys.yaml; public, for this demo only)
  metrics:    ${gateway.adminAddress ? `http://${gateway.adminAddress}/metrics` : '-'}
  config:     ${QUICKSTART_DIR} (edit and save: reloaded live)

Masking. The mock echoes what reached it, so its answer shows what left the gateway: the email
went out as [EMAIL_1] and is put back in the answer; the card was redacted and stays [CREDIT_CARD].

  curl -s ${chat(MASKING_PROMPT)}

The key is required (without it: 401); /v1/models lists the models it may use:

  curl -s ${url}/v1/models -H 'authorization: Bearer ${DEMO_KEY}'

With the OpenAI SDK (npm i openai):

  import OpenAI from 'openai';
  const client = new OpenAI({ baseURL: '${url}/v1', apiKey: '${DEMO_KEY}' });
  const stream = await client.chat.completions.create({
    model: '${sdkModel}', stream: true,
    messages: [{ role: 'user', content: 'Hello, Sluice! Reply to ada@example.com.' }],
  });
  for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta.content ?? '');

Budget (try it last: it uses up the day's budget). Each request reserves its estimate at the demo
price, then pays what it used; after a few requests the $0.01 is gone and the answer is 429 with
retry-after. The budget resets at 00:00 UTC or on restart; raise spendPerDayUsd in policy.yaml
and save to go on.

  for i in $(seq ${BUDGET_LOOP}); do curl -s -o /dev/null -w '%{http_code}\\n' ${chat(BUDGET_PROMPT)}; done

Token usage and spend for every request (streamed too) are in the access log and on the metrics
endpoint (gen_ai_client_token_usage, sluice_spend_usd_total). Ctrl-C stops.
`;
}
