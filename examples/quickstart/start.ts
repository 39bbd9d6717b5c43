/**
 * `npm start`: the quickstart gateway. Runs `sluice run` on this directory with the built-in mock
 * provider, so it needs no API key; with OPENAI_API_KEY set it also routes gpt-* models to OpenAI
 * (the key goes into a generated Secret in a private temp directory, never into the repo).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { stringify } from 'yaml';
import { findEnvoy } from '../../operator/standalone/main.js';
import { run } from '../../operator/standalone/run.js';

const here = dirname(fileURLToPath(import.meta.url));
const port = Number(process.env['SLUICE_PORT'] ?? 1975);
const files = [here];
let secretDir: string | undefined;
const openaiKey = process.env['OPENAI_API_KEY'];
if (openaiKey) {
  secretDir = await mkdtemp(join(tmpdir(), 'sluice-quickstart-'));
  const docs = [
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name: 'openai', namespace: 'default' },
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

const logger = pino({ level: process.env['SLUICE_LOG_LEVEL'] ?? 'info' });
const registry = new Registry();
collectDefaultMetrics({ register: registry });
const gateway = await run({
  files,
  host: '127.0.0.1',
  port,
  admin: '127.0.0.1:9901',
  mockProvider: true,
  envoyBin: findEnvoy(process.env),
  logger,
  registry,
  env: process.env,
});

const model = openaiKey ? 'gpt-4o-mini' : 'mock-model';
process.stdout.write(`
Sluice is running on ${gateway.url}
  data plane: ${gateway.dataPlane === 'envoy' ? 'Envoy' : 'envoy-sim (the Envoy emulator; set ENVOY_BIN to use Envoy)'}
  models:     mock-model (built-in mock provider)${openaiKey ? ', gpt-* (OpenAI, your OPENAI_API_KEY)' : ''}
  metrics:    http://${gateway.adminAddress ?? '-'}/metrics
  config:     ${here} (edit and save: reloaded live)

Try it:

  curl -s ${gateway.url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"${model}","messages":[{"role":"user","content":"Hello, Sluice!"}]}'

  curl -s ${gateway.url}/v1/models

Or with the OpenAI SDK (npm i openai):

  import OpenAI from 'openai';
  const client = new OpenAI({ baseURL: '${gateway.url}/v1', apiKey: 'any-key' });
  const stream = await client.chat.completions.create({
    model: '${model}', stream: true,
    messages: [{ role: 'user', content: 'Hello, Sluice!' }],
  });
  for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta.content ?? '');

Token usage for every request (streamed too) is in the access log and in
gen_ai_client_token_usage on the metrics endpoint. Ctrl-C stops.
`);

const stop = (): void => {
  void gateway
    .close()
    .then(() => (secretDir ? rm(secretDir, { recursive: true, force: true }) : undefined))
    .then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
