// What the test tiers' setup scripts share: installing a Debian package through apt-get (as root,
// or through `sudo -n`), and the error a setup step fails with. Plain ESM so that a setup runs
// before tsx is wanted.
import { spawnSync } from 'node:child_process';

/** A setup step's failure: its message is printed alone, without a stack. */
export class StepError extends Error {}

/** Whether a command is on PATH. */
export function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Runs apt-get with these arguments, non-interactive; throws StepError if it fails. */
export function aptGet(args) {
  const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  const [file, ...rest] = [...sudo, 'apt-get', ...args];
  const r = spawnSync(file, rest, {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.error) throw new StepError(`apt-get: ${r.error.message}`);
  if (r.status !== 0) throw new StepError(`\`apt-get ${args.join(' ')}\` exited with ${r.status}`);
}

/**
 * Installs Debian packages without their recommends. A fresh container has empty package lists,
 * so install would find nothing without the update first.
 */
export function aptInstall(packages, what) {
  if (!have('apt-get'))
    throw new StepError(`${what} is missing and there is no apt-get to install it`);
  aptGet(['update', '-qq']);
  aptGet(['install', '-y', '-qq', '--no-install-recommends', ...packages]);
}

/** The setup's one line on failure, and its exit. */
export function failed(tag, secs, err) {
  console.error(
    `[${tag}] FAILED after ${secs()}: ${err instanceof StepError ? err.message : (err?.stack ?? err)}`,
  );
  process.exit(1);
}
