/**
 * extproc/shared/ is the floor every `sluice` command stands on: flag parsing (this file), the
 * admin endpoint and its readiness rule (admin.ts), finding and loading proto/ and the ADS
 * service (proto.ts), binding and stopping a gRPC server (grpc-server.ts), retry backoff
 * (backoff.ts). It imports nothing else of the repository (extproc/layers.test.ts holds it to
 * that), so the extproc, the operator and the tools can all use it without pulling in each
 * other's layers. It lives under extproc/ because the operator already depends on extproc for
 * the contract, and the top level of the repository is fixed.
 */

/**
 * The one flag-parsing step every `sluice` subcommand shares: node's parseArgs (strict, no
 * positionals), `--help`, then the command's zod schema. Usage errors print the reason and the
 * usage text and exit 2; `--help` prints the usage and exits 0.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { z } from 'zod';

export type Parsed<T> = { ok: true; flags: T } | { ok: false; exitCode: number };

export function parseFlags<S extends z.ZodType>(
  command: string,
  argv: string[],
  options: NonNullable<ParseArgsConfig['options']>,
  schema: S,
  usage: string,
): Parsed<z.infer<S>> {
  let raw: Record<string, unknown>;
  try {
    raw = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    process.stderr.write(`${command}: ${(err as Error).message}\n\n${usage}`);
    return { ok: false, exitCode: 2 };
  }
  if (raw['help']) {
    process.stdout.write(usage);
    return { ok: false, exitCode: 0 };
  }
  const { help: _help, ...values } = raw;
  const parsed = schema.safeParse(values);
  if (!parsed.success) {
    process.stderr.write(
      `${command}: ${parsed.error.issues.map((i) => i.message).join('; ')}\n\n${usage}`,
    );
    return { ok: false, exitCode: 2 };
  }
  return { ok: true, flags: parsed.data };
}

/** `unix:/path`, `host:port` or `[v6]:port`: where a gRPC server listens or a client dials. */
const GRPC_ADDRESS = /^(unix:.+|[^:]+:\d+|\[[0-9a-fA-F:]+\]:\d+)$/;
/** `host:port` or `[v6]:port` (what splitHostPort in admin.ts takes), or `off`. */
const ADMIN_ADDRESS = /^(off|[^:]+:\d+|\[[0-9a-fA-F:]+\]:\d+)$/;

/**
 * A gRPC address flag (`--listen`, `--xds`, `--xds-listen`): the one rule every command uses.
 * `missing` is the message for a required flag left out.
 */
export function grpcAddress(flag: string, missing?: string): z.ZodString {
  return z
    .string(missing === undefined ? undefined : { message: missing })
    .regex(GRPC_ADDRESS, `${flag} must be unix:/path or host:port`);
}

/** An `--admin HOST:PORT|off` flag. */
export function adminAddress(): z.ZodString {
  return z.string().regex(ADMIN_ADDRESS, '--admin must be host:port or off');
}

/**
 * The state flags every command that runs an extproc takes (`sluice extproc`, `sluice run`):
 * one definition, so the two cannot drift. Each falls back to its environment variable, which
 * is how the Helm chart sets them.
 */
export const STATE_OPTIONS = {
  'redis-url': { type: 'string' },
  'vault-key-file': { type: 'string' },
  'otlp-endpoint': { type: 'string' },
  'trace-ratio': { type: 'string' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

export const StateFlags = z.object({
  'redis-url': z
    .string()
    .regex(/^rediss?:\/\/\S+$/, '--redis-url must be redis://… or rediss://…')
    .optional(),
  'vault-key-file': z.string().min(1, '--vault-key-file must name a file').optional(),
  'otlp-endpoint': z
    .string()
    .regex(/^https?:\/\/\S+$/, '--otlp-endpoint must be http://… or https://…')
    .optional(),
  'trace-ratio': z
    .string()
    .regex(/^(0(\.\d+)?|1(\.0+)?)$/, '--trace-ratio must be a number from 0 to 1')
    .transform(Number)
    .optional(),
});

const STATE_HELP: [flag: string, lines: string[]][] = [
  [
    '--redis-url URL',
    [
      'budgets, usage and (with a vault key) the masking vault in Redis, shared',
      'by replicas (default: env SLUICE_REDIS_URL, else in process memory)',
    ],
  ],
  [
    '--vault-key-file FILE',
    [
      '32-byte key of the masking vault (raw, hex or base64; default: env',
      'SLUICE_VAULT_KEY_FILE); with Redis, conversations are shared by replicas',
    ],
  ],
  [
    '--otlp-endpoint URL',
    [
      'OpenTelemetry traces over OTLP/HTTP to URL/v1/traces (default:',
      'env OTEL_EXPORTER_OTLP_ENDPOINT, else no traces)',
    ],
  ],
  [
    '--trace-ratio R',
    [
      "share of requests traced, 0 to 1, unless a caller's traceparent",
      'decides (default: env OTEL_TRACES_SAMPLER_ARG, else 1)',
    ],
  ],
];

/** The state flags' lines of a usage text, descriptions starting at `column`. */
export function stateUsage(column: number): string {
  const pad = ' '.repeat(column);
  return STATE_HELP.map(([flag, lines]) => {
    const head = `  ${flag}`;
    const first =
      head.length < column ? head.padEnd(column) + lines[0] : `${head}\n${pad}${lines[0]}`;
    return [first, ...lines.slice(1).map((l) => pad + l)].join('\n');
  })
    .join('\n')
    .concat('\n');
}

/** What run() takes from the state flags; absent flags leave the environment to decide. */
export function stateOptions(f: z.infer<typeof StateFlags>): {
  redisUrl: string | undefined;
  vaultKeyFile: string | undefined;
  otlpEndpoint: string | undefined;
  traceSamplingRatio: number | undefined;
} {
  return {
    redisUrl: f['redis-url'],
    vaultKeyFile: f['vault-key-file'],
    otlpEndpoint: f['otlp-endpoint'],
    traceSamplingRatio: f['trace-ratio'],
  };
}
