/** `sluice keys create|list|revoke`: parse and validate flags, pick the target, then run(). */
import { KubeConfig } from '@kubernetes/client-node';
import { z } from 'zod';
import { parseFlags } from '../../extproc/shared/flags.js';
import { ClusterTarget } from './cluster.js';
import { expiresValue, keyIdValue, labelValue, type Random } from './format.js';
import { run, type KeysOptions } from './run.js';
import { FileTarget, type KeyTarget } from './target.js';

const USAGE = `Usage: sluice keys create --consumer NAME [--team TEAM] [--expires 30d|12h|RFC3339] [--json]
       sluice keys list [--consumer NAME] [--json]
       sluice keys revoke (--id ID | --consumer NAME --all)
  each with [--namespace NS] [--file PATH | --kubeconfig FILE]

Virtual keys: each key of a consumer is a Secret labelled sluice.dev/consumer that holds only
the key's sha256 digest. "create" prints the new key once, on stdout; it cannot be shown again.
"list" shows consumer, team, key id, creation and expiry, never a key or a digest. "revoke"
deletes the key's Secret; gateways refuse the key once the operator has applied the change.

Options:
  --consumer NAME    the consumer (letters, digits, '-', '_', '.'; at most 63)
  --team TEAM        the consumer's team (create; default: the team of its other keys)
  --expires WHEN     a duration (90m, 12h, 30d, 2w) or an RFC 3339 date-time (create)
  --id ID            the key id "list" shows (revoke)
  --all              every key of --consumer (revoke)
  --json             JSON instead of text (create, list)
  --namespace NS     where the Secrets are (default sluice-system, the operator's consumer namespace)
  --file PATH        a local YAML file of Secret manifests (as "sluice run -f" reads) instead of
                     a cluster; "create" makes it if missing; other documents are kept
  --kubeconfig FILE  cluster access (default: $KUBECONFIG, ~/.kube/config, or in-cluster)
  -h, --help         this text

Exit status: 0 on success, 1 when the file or cluster refuses or fails, 2 on a usage error.
`;

const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const common = {
  namespace: z
    .string()
    .max(63, '--namespace must be a namespace name')
    .regex(NAMESPACE, '--namespace must be a namespace name')
    .default('sluice-system'),
  file: z.string().min(1, '--file must name a file').optional(),
  kubeconfig: z.string().min(1, '--kubeconfig must name a file').optional(),
};

const oneTarget = (f: { file?: string | undefined; kubeconfig?: string | undefined }) =>
  f.file === undefined || f.kubeconfig === undefined;
const ONE_TARGET = { message: '--file and --kubeconfig name different targets: give one' };

const Create = z
  .object({
    ...common,
    consumer: labelValue('--consumer', '--consumer NAME is required'),
    team: labelValue('--team').optional(),
    expires: expiresValue.optional(),
    json: z.boolean().default(false),
  })
  .refine(oneTarget, ONE_TARGET);

const List = z
  .object({
    ...common,
    consumer: labelValue('--consumer').optional(),
    json: z.boolean().default(false),
  })
  .refine(oneTarget, ONE_TARGET);

const Revoke = z
  .object({
    ...common,
    id: keyIdValue.optional(),
    consumer: labelValue('--consumer').optional(),
    all: z.boolean().default(false),
  })
  .refine(oneTarget, ONE_TARGET)
  .refine(
    (f) => (f.id !== undefined) !== (f.consumer !== undefined && f.all),
    'give --id ID, or --consumer NAME --all (not both)',
  )
  .refine((f) => !f.all || f.consumer !== undefined, '--all needs --consumer NAME')
  .refine(
    (f) => f.id === undefined || f.consumer === undefined,
    '--id names one key already: leave out --consumer',
  );

const STRING = { type: 'string' } as const;
const BOOLEAN = { type: 'boolean' } as const;
const TARGET_FLAGS = { namespace: STRING, file: STRING, kubeconfig: STRING };

export interface KeysIo {
  out: (s: string) => void;
  err: (s: string) => void;
  now?: () => number;
  random?: Random;
}

export async function main(argv: string[], io?: KeysIo): Promise<number> {
  const out = io?.out ?? ((s: string) => void process.stdout.write(s));
  const err = io?.err ?? ((s: string) => void process.stderr.write(s));
  const [command, ...rest] = argv;
  if (command === '-h' || command === '--help' || command === 'help') {
    out(USAGE);
    return 0;
  }
  let options: KeysOptions;
  let target: { file?: string | undefined; kubeconfig?: string | undefined };
  if (command === 'create') {
    const p = parseFlags(
      'sluice keys create',
      rest,
      { ...TARGET_FLAGS, consumer: STRING, team: STRING, expires: STRING, json: BOOLEAN },
      Create,
      USAGE,
    );
    if (!p.ok) return p.exitCode;
    options = { command, ...p.flags };
    target = p.flags;
  } else if (command === 'list') {
    const p = parseFlags(
      'sluice keys list',
      rest,
      { ...TARGET_FLAGS, consumer: STRING, json: BOOLEAN },
      List,
      USAGE,
    );
    if (!p.ok) return p.exitCode;
    options = { command, ...p.flags };
    target = p.flags;
  } else if (command === 'revoke') {
    const p = parseFlags(
      'sluice keys revoke',
      rest,
      { ...TARGET_FLAGS, id: STRING, consumer: STRING, all: BOOLEAN },
      Revoke,
      USAGE,
    );
    if (!p.ok) return p.exitCode;
    options = { command, ...p.flags };
    target = p.flags;
  } else {
    const what = command === undefined ? 'a command is required' : `unknown command "${command}"`;
    err(`sluice keys: ${what}: create, list or revoke\n\n${USAGE}`);
    return 2;
  }
  let t: KeyTarget;
  if (target.file !== undefined) {
    t = new FileTarget(target.file);
  } else {
    const kubeConfig = new KubeConfig();
    try {
      if (target.kubeconfig !== undefined) kubeConfig.loadFromFile(target.kubeconfig);
      else kubeConfig.loadFromDefault();
    } catch {
      // The loader's message can quote the file, credentials included.
      err(`sluice keys ${command}: the kubeconfig cannot be read\n`);
      return 1;
    }
    t = new ClusterTarget(kubeConfig);
  }
  return run(options, {
    target: t,
    out,
    err,
    now: io?.now ?? Date.now,
    ...(io?.random ? { random: io.random } : {}),
  });
}
