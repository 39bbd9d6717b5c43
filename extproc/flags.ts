/**
 * The one flag-parsing step every `sluice` subcommand shares: node's parseArgs (strict, no
 * positionals), `--help`, then the command's zod schema. Usage errors print the reason and the
 * usage text and exit 2; `--help` prints the usage and exits 0.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { z } from 'zod';

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
