/**
 * `sluice render -f PATH…`: what the operator would program, from YAML, with the exact same
 * source and compilation code: statuses, Envoy resources and the extproc config, credentials
 * redacted.
 */
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { loadResources } from '../source/yaml.js';
import { compile } from '../compile/index.js';
import { redacted } from '../compile/redact.js';

const USAGE = `Usage: sluice render -f PATH [-f PATH…] [--only envoy|extproc|status] [--port N]

Prints, as YAML, what the operator would program for the given manifests (AIRoute, AIPolicy,
Secret, Service, EndpointSlice): each resource's status, the Envoy resources (listeners, routes,
clusters, endpoints) and the extproc config. Credentials are never printed.
PATH is a file, a directory or - for stdin.

Exit status: 0 when every resource is valid and Accepted, 1 otherwise, 2 on a usage error.
`;

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

const defaultIo: Io = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
};

export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: {
        filename: { type: 'string', short: 'f', multiple: true },
        only: { type: 'string' },
        port: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    io.err(`sluice render: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const paths = values.filename ?? [];
  if (paths.length === 0) {
    io.err(`sluice render: at least one -f PATH is required\n\n${USAGE}`);
    return 2;
  }
  const only = values.only;
  if (only !== undefined && !['envoy', 'extproc', 'status'].includes(only)) {
    io.err(`sluice render: --only takes envoy, extproc or status\n`);
    return 2;
  }
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
    io.err(`sluice render: --port must be a TCP port\n`);
    return 2;
  }
  const { resources, problems } = await loadResources(paths);
  const t = compile(resources, {
    version: 'render',
    // As the operator would program it now: keys already expired are left out.
    now: Date.now(),
    ...(port ? { listenerPort: port } : {}),
  });
  const doc: Record<string, unknown> = {};
  if (!only || only === 'status') {
    if (problems.length > 0) doc['problems'] = problems;
    doc['statuses'] = t.statuses;
  }
  if (!only || only === 'envoy') doc['envoy'] = t.envoy;
  if (!only || only === 'extproc') doc['extproc'] = redacted(t);
  io.out(stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false }));
  const rejected = t.statuses.some((s) =>
    s.conditions.some((c) => c.type === 'Accepted' && c.status !== 'True'),
  );
  return problems.length > 0 || rejected ? 1 : 0;
}
