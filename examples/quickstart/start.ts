/**
 * `npm start`: the quickstart gateway (quickstart.ts) on port 1975 (SLUICE_PORT to change it) with
 * metrics on 127.0.0.1:9901, until Ctrl-C. It needs no API key; with OPENAI_API_KEY set it also
 * routes gpt-* models to OpenAI, under the same policy.
 */
import { pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { startQuickstart } from './quickstart.js';

const portText = process.env['SLUICE_PORT'] ?? '1975';
const port = Number(portText);
if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
  process.stderr.write(
    `npm start: SLUICE_PORT must be a port number (1-65535), not "${portText}"\n`,
  );
  process.exit(2);
}
const levels = ['trace', 'debug', 'info', 'warn', 'error'];
const level = process.env['SLUICE_LOG_LEVEL'] ?? 'info';
if (!levels.includes(level)) {
  process.stderr.write(`npm start: SLUICE_LOG_LEVEL must be one of ${levels.join(', ')}\n`);
  process.exit(2);
}

const registry = new Registry();
collectDefaultMetrics({ register: registry });
const quickstart = await startQuickstart({
  port,
  admin: '127.0.0.1:9901',
  env: process.env,
  logger: pino({ level }),
  registry,
});
process.stdout.write(quickstart.text);

const stop = (): void => {
  void quickstart.close().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
