#!/usr/bin/env node
/** The `sluice` command: one binary for every component; each subcommand loads only its own code. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const COMMANDS: Record<
  string,
  { about: string; load: () => Promise<{ main(argv: string[]): Promise<number> }> }
> = {
  extproc: {
    about: 'run the ext_proc gRPC service Envoy calls',
    load: () => import('../extproc/main.js'),
  },
  run: {
    about: 'run the whole gateway locally from YAML (Envoy if present, else its emulator)',
    load: () => import('./standalone/main.js'),
  },
  mask: {
    about: 'mask PII in JSON lines {"id","text"} from stdin, offline, with a policy',
    load: () => import('./mask/main.js'),
  },
  usage: {
    about: 'print spend and tokens per consumer, team, model or route from the state store',
    load: () => import('./usage/main.js'),
  },
  keys: {
    about: 'create, list and revoke virtual keys (consumer Secrets in a cluster or a YAML file)',
    load: () => import('./keys/main.js'),
  },
  operator: {
    about: 'watch AIRoutes and AIPolicies, serve Envoy and the extproc over ADS, write status',
    load: () => import('./main.js'),
  },
  validate: {
    about: 'check AIRoute/AIPolicy YAML with the same schemas and CEL rules as the cluster',
    load: () => import('./validate/main.js'),
  },
  render: {
    about: 'print the Envoy resources and extproc config the operator would program (no secrets)',
    load: () => import('./render/main.js'),
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.about}`);
  return `Usage: sluice <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nRun "sluice <command> --help" for a command's options.\n`;
}

/** The repository's package.json, found upward (this file runs from source and from dist/). */
function packageJson(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('package.json not found');
    dir = parent;
  }
  return join(dir, 'package.json');
}

async function cli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    const pkg = JSON.parse(readFileSync(packageJson(), 'utf8')) as { version: string };
    process.stdout.write(`sluice ${pkg.version}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`sluice: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return (await command.load()).main(rest);
}

process.exitCode = await cli(process.argv.slice(2));
