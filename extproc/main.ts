/** `sluice extproc`: parse and validate flags, then run(). Nothing else belongs here. */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { z } from 'zod';
import { run } from './run.js';
import { logDestination } from './telemetry/log-destination.js';
import { GRPC_SERVERS } from './server.js';
import { resolveWorkers, WorkersFlag } from './workers/cpus.js';
import { runPrimary, runWorker, workerId } from './workers/process.js';
import {
  adminAddress,
  grpcAddress,
  parseFlags,
  STATE_OPTIONS,
  StateFlags,
  stateOptions,
  stateUsage,
} from './shared/flags.js';

const USAGE = `Usage: sluice extproc (--config FILE | --xds ADDR --node-id ID) [options]

The Sluice ext_proc service: the gRPC server Envoy calls for every AI request.

Options:
  --config FILE           extproc config (YAML or JSON, contract sluice.dev/extproc/v1); reloaded on change
  --xds ADDR              take the config from the operator's ADS server instead (unix:/path or host:port)
  --node-id ID            this extproc's xDS node id, e.g. <pod>/extproc (required with --xds)
  --xds-start-timeout-ms N  how long to wait for a first good config over xDS (default 30000)
  --listen ADDR           unix:/path/to.sock or host:port (default unix:/var/run/sluice/extproc.sock)
  --admin HOST:PORT       /metrics, /healthz, /readyz (default 127.0.0.1:9901; "off" disables)
  --max-message-bytes N   largest ext_proc message accepted, i.e. buffered body size (default 16777216)
  --grpc-server h2|node-http2|grpc-js  the ext_proc gRPC server: Sluice's own, on its own HTTP/2
                          (default; ext_proc and health only), the same on node:http2, or grpc-js's
  --shutdown-grace-ms N   how long open streams may finish after SIGTERM (default 15000)
  --workers N|auto        worker processes behind the one socket, sharing one state (budgets,
                          vault, cache, config); auto: the cgroup CPU limit, rounded up, else
                          the cores available (default 1: this process serves alone)
${stateUsage(26)}  --no-watch              do not reload the config on change (SIGHUP still reloads)
  --log-level LEVEL       trace|debug|info|warn|error (default info)
  -h, --help              this text
`;

/** The longest a log line waits in the write buffer. */
export const LOG_FLUSH_MS = 1000;

const Flags = z
  .object({
    config: z.string().min(1).optional(),
    xds: grpcAddress('--xds').optional(),
    'node-id': z.string().min(1).max(256).optional(),
    'xds-start-timeout-ms': z.coerce.number().int().min(100).max(600_000).default(30_000),
    listen: grpcAddress('--listen').default('unix:/var/run/sluice/extproc.sock'),
    admin: adminAddress().default('127.0.0.1:9901'),
    'max-message-bytes': z.coerce
      .number()
      .int()
      .min(65536)
      .max(512 * 1024 * 1024)
      .default(16 * 1024 * 1024),
    'shutdown-grace-ms': z.coerce.number().int().min(0).max(600_000).default(15_000),
    'grpc-server': z.enum(GRPC_SERVERS).default('h2'),
    workers: WorkersFlag,
    ...StateFlags.shape,
    'no-watch': z.boolean().default(false),
    'log-level': z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
  })
  .superRefine((f, ctx) => {
    if ((f.config === undefined) === (f.xds === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give exactly one of --config FILE and --xds ADDR' });
    }
    if (f.xds !== undefined && f['node-id'] === undefined) {
      ctx.addIssue({ code: 'custom', message: '--xds needs --node-id ID' });
    }
  });

export async function main(argv: string[]): Promise<number> {
  const p = parseFlags(
    'sluice extproc',
    argv,
    {
      config: { type: 'string' },
      xds: { type: 'string' },
      'node-id': { type: 'string' },
      'xds-start-timeout-ms': { type: 'string' },
      listen: { type: 'string' },
      admin: { type: 'string' },
      'max-message-bytes': { type: 'string' },
      'shutdown-grace-ms': { type: 'string' },
      'grpc-server': { type: 'string' },
      workers: { type: 'string' },
      ...STATE_OPTIONS,
      'no-watch': { type: 'boolean' },
      'log-level': { type: 'string' },
    },
    Flags,
    USAGE,
  );
  if (!p.ok) return p.exitCode;
  const f = p.flags;
  // One write syscall per access-log line cost ~14% of the extproc's CPU under load; buffer
  // asynchronously, and flush on a timer too, so a quiet extproc's start-up, config and
  // reconnect lines reach `kubectl logs` within a second rather than at shutdown.
  const worker = workerId();
  const workers = worker === undefined ? resolveWorkers(f.workers) : 1;
  const clustered = worker !== undefined || workers > 1;
  const destination = logDestination({ shared: clustered });
  const flushTimer = setInterval(() => {
    try {
      destination.flush();
    } catch {
      // stdout is gone (destroyed); nothing more can be written anyway.
    }
  }, LOG_FLUSH_MS);
  flushTimer.unref();
  const logger = pino(
    {
      level: f['log-level'],
      base: { component: 'extproc', ...(worker !== undefined && { worker }) },
    },
    destination,
  );
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const flush = (): void => {
    clearInterval(flushTimer);
    destination.flushSync();
  };
  const xds =
    f.xds === undefined
      ? undefined
      : { address: f.xds, nodeId: f['node-id']!, startTimeoutMs: f['xds-start-timeout-ms'] };
  const shared = {
    listen: f.listen,
    maxMessageBytes: f['max-message-bytes'],
    grpcServer: f['grpc-server'],
    watchConfig: !f['no-watch'],
    shutdownGraceMs: f['shutdown-grace-ms'],
    ...stateOptions(f),
    logger,
    registry,
    now: () => performance.now(),
    env: process.env,
  };
  // `--workers N`: this process is the cluster's primary, or one of its workers (workers/).
  if (worker !== undefined) return runWorker(worker, shared, flush);
  if (workers > 1) {
    return runPrimary(
      {
        ...shared,
        workers,
        configPath: f.config,
        xds,
        admin: f.admin === 'off' ? undefined : f.admin,
      },
      flush,
    );
  }
  let extproc;
  try {
    extproc = await run({
      ...shared,
      configPath: f.config,
      xds,
      admin: f.admin === 'off' ? undefined : f.admin,
    });
  } catch (err) {
    logger.fatal(
      { event: 'start_failed', reason: err instanceof Error ? err.message : 'unknown' },
      'extproc failed to start',
    );
    clearInterval(flushTimer);
    destination.flushSync();
    return 1;
  }
  process.on('SIGHUP', () => void extproc.reload());
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      void extproc.close().then(() => {
        clearInterval(flushTimer);
        destination.flushSync();
        resolve();
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return 0;
}
