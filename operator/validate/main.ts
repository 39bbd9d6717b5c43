/** `sluice validate -f PATH [-f PATH…]`: checks manifests offline as the cluster and the extproc would. */
import { readDocuments } from '../source/yaml.js';
import { compileErrors } from './compile.js';
import { validateDocuments } from './validate.js';

const USAGE = `Usage: sluice validate -f PATH [-f PATH…]

Validates AIRoute and AIPolicy manifests one by one: the same schemas and CEL rules as the
cluster, then what the operator checks in a route on its own (rules, backends, provider
blocks) and what the extproc compiles (masking and guard patterns with RE2, word lists,
templates, JWKS, access globs, limits, prices), which the cluster does not check: a policy the
extproc cannot compile is accepted by the apiserver, marked InvalidPolicy by the operator, and
the routes it targets refuse every request (503 policy_invalid) until it is fixed.
PATH is a file, a directory (searched recursively for .yaml, .yml and .json) or - for stdin.
Other kinds (Secrets, Services, …) are reported as skipped.

Verdicts that depend on several resources (model conflicts, missing Secrets, policy targets,
consumers) are not made here: \`sluice render -f PATH\` shows each resource's status as the
operator would write it.

Exit status: 0 when every Sluice document is valid, 1 otherwise, 2 on a usage error.
`;

export interface Io {
  out: (s: string) => void;
  stdin?: () => Promise<string>;
}

const defaultIo: Io = { out: (s) => process.stdout.write(s) };

export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
  const paths: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h' || arg === '--help') {
      io.out(USAGE);
      return 0;
    }
    if (arg === '-f' || arg === '--filename') {
      const value = argv[++i];
      if (value === undefined) return usage(io, `${arg} needs a path`);
      paths.push(value);
    } else if (arg.startsWith('--filename=')) {
      paths.push(arg.slice('--filename='.length));
    } else {
      return usage(io, `unexpected argument "${arg}"`);
    }
  }
  if (paths.length === 0) return usage(io, 'at least one -f PATH is required');

  const { documents, problems } = await readDocuments(paths, io.stdin);
  let failed = problems.length > 0;
  for (const p of problems) io.out(`error ${p.source}: ${p.message}\n`);
  const results = validateDocuments(documents.map((d) => d.doc));
  results.forEach((r, i) => {
    const id = `${r.kind ?? '<no kind>'}/${r.namespace ?? 'default'}/${r.name ?? '<no name>'}`;
    const uncompiled = compileErrors(r);
    if (uncompiled.length > 0) {
      failed = true;
      io.out(`invalid ${id} (${documents[i]!.source})\n`);
      for (const e of uncompiled) io.out(`  ${e.detail}\n`);
      io.out(
        r.kind === 'AIPolicy'
          ? '  (the apiserver accepts this policy, the extproc cannot compile it: the routes it ' +
              'targets would refuse every request with 503 policy_invalid)\n'
          : '  (the apiserver accepts this route, the operator refuses it: it would not be served)\n',
      );
    } else if (r.outcome === 'valid') io.out(`ok ${id}\n`);
    else if (r.outcome === 'skipped') io.out(`skipped ${id}\n`);
    else {
      failed = true;
      io.out(`invalid ${id} (${documents[i]!.source})\n`);
      for (const e of r.errors) io.out(`  ${e.detail}\n`);
    }
  });
  if (documents.length === 0 && problems.length === 0) {
    io.out('no documents found\n');
    return 1;
  }
  return failed ? 1 : 0;
}

function usage(io: Io, why: string): number {
  io.out(`sluice validate: ${why}\n\n${USAGE}`);
  return 2;
}
