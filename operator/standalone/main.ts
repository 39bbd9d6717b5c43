/** `sluice run`: parse and validate flags, then run(). Nothing else belongs here. */
import { X509Certificate } from 'node:crypto';
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { z } from 'zod';
import { run } from './run.js';
import { resolveWorkers, WorkersFlag } from '../../extproc/workers/cpus.js';
import {
  adminAddress,
  parseFlags,
  STATE_OPTIONS,
  StateFlags,
  stateOptions,
  stateUsage,
} from '../../extproc/shared/flags.js';

const USAGE = `Usage: sluice run -f PATH [-f PATH…] [options]

The whole gateway on one machine: AIRoute/AIPolicy/Secret YAML instead of a cluster, the
operator's compilation and xDS in-process, the extproc on a Unix socket, and Envoy when
ENVOY_BIN is set or envoy is on PATH, otherwise the built-in Envoy emulator.

Options:
  -f, --filename PATH   a file or directory of manifests (repeatable); watched and reloaded
                        (a file that stops parsing keeps its last good state until fixed)
  --port N              the apps' HTTP port (default 1975)
  --host ADDR           the address it listens on (default 127.0.0.1)
  --admin HOST:PORT     /metrics, /healthz, /readyz (default 127.0.0.1:9901; "off" disables)
  --mock-provider       serve Service sluice-mock-provider from a built-in OpenAI mock
  --upstream-ca FILE    PEM CA bundle that https:// backends' certificates must chain to, in
                        place of the system bundle (a private CA, or a TLS-inspecting proxy);
                        append the system bundle to it to trust public providers too
  --emulator            use the emulator even when Envoy is available
  --workers N|auto      extproc worker processes behind its one socket, sharing one state
                        (budgets, vault, cache, config), as with sluice extproc; auto: the
                        cgroup CPU limit, rounded up, else the cores available (default 1:
                        the extproc runs inside this process)
${stateUsage(24)}  --shutdown-grace-ms N how long requests and streams in flight may finish after SIGTERM
                        or SIGINT (default 15000); no new connection is accepted meanwhile,
                        and a second signal stops at once
  --no-watch            do not reload on file changes
  --log-level LEVEL     trace|debug|info|warn|error (default info)
  -h, --help            this text
`;

const Flags = z.object({
  filename: z.array(z.string().min(1)).min(1, 'at least one -f PATH is required'),
  port: z.coerce.number().int().min(1).max(65535).default(1975),
  host: z.string().min(1).default('127.0.0.1'),
  admin: adminAddress().default('127.0.0.1:9901'),
  'mock-provider': z.boolean().default(false),
  'upstream-ca': z
    .string()
    .min(1)
    .refine(
      isCertificateFile,
      '--upstream-ca must be a readable PEM file holding at least one certificate',
    )
    .optional(),
  emulator: z.boolean().default(false),
  workers: WorkersFlag,
  'no-watch': z.boolean().default(false),
  'shutdown-grace-ms': z.coerce.number().int().min(0).max(600_000).default(15_000),
  'log-level': z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
  ...StateFlags.shape,
});

/** Read here, not by the data plane, so a bad file is a usage error rather than a NACK at run time. */
function isCertificateFile(path: string): boolean {
  try {
    const pem = readFileSync(path, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) return false;
    // Parses the first certificate: a truncated or garbled file fails here.
    new X509Certificate(pem);
    return true;
  } catch {
    return false;
  }
}

/** ENVOY_BIN, else `envoy` on PATH, else nothing. */
export function findEnvoy(env: NodeJS.ProcessEnv): string | undefined {
  if (env['ENVOY_BIN']) return env['ENVOY_BIN'];
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, 'envoy');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export async function main(argv: string[]): Promise<number> {
  const p = parseFlags(
    'sluice run',
    argv,
    {
      filename: { type: 'string', short: 'f', multiple: true },
      port: { type: 'string' },
      host: { type: 'string' },
      admin: { type: 'string' },
      'mock-provider': { type: 'boolean' },
      'upstream-ca': { type: 'string' },
      emulator: { type: 'boolean' },
      workers: { type: 'string' },
      'no-watch': { type: 'boolean' },
      'shutdown-grace-ms': { type: 'string' },
      'log-level': { type: 'string' },
      ...STATE_OPTIONS,
    },
    Flags,
    USAGE,
  );
  if (!p.ok) return p.exitCode;
  const f = p.flags;
  const logger = pino({ level: f['log-level'], base: { component: 'sluice-run' } });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const envoyBin = f.emulator ? undefined : findEnvoy(process.env);
  let gateway;
  try {
    gateway = await run({
      files: f.filename,
      host: f.host,
      port: f.port,
      admin: f.admin === 'off' ? undefined : f.admin,
      mockProvider: f['mock-provider'],
      envoyBin,
      watch: !f['no-watch'],
      workers: resolveWorkers(f.workers),
      shutdownGraceMs: f['shutdown-grace-ms'],
      logLevel: f['log-level'],
      ...stateOptions(f),
      ...(f['upstream-ca'] ? { compile: { caFile: resolve(f['upstream-ca']) } } : {}),
      logger,
      registry,
      env: process.env,
    });
  } catch (err) {
    logger.fatal(
      { event: 'start_failed', reason: err instanceof Error ? err.message : 'unknown' },
      'sluice run failed to start',
    );
    return 1;
  }
  process.stderr.write(
    `sluice run: gateway on ${gateway.url} (data plane: ${
      gateway.dataPlane === 'envoy' ? `Envoy ${envoyBin}` : 'envoy-sim, the Envoy emulator'
    })${gateway.adminAddress ? `, admin on http://${gateway.adminAddress}` : ''}. Ctrl-C stops.\n`,
  );
  const grace = f['shutdown-grace-ms'];
  const code = await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write(`sluice run: ${signal} again: stopping now\n`);
        void gateway.close();
        resolve(1);
        // Whatever is still open must not hold the process: this is the "now" the user asked for.
        setImmediate(() => process.exit(1));
        return;
      }
      stopping = true;
      process.stderr.write(
        `sluice run: ${signal}: draining, up to ${grace} ms for requests in flight (again to stop now)\n`,
      );
      void gateway.shutdown(grace).then(() => resolve(0));
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  return code;
}
