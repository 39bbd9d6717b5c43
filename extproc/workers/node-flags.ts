/**
 * The Node/V8 flags the extproc runs with, written once: the chart's container command, the
 * `sluice` bin's shebang (sluice run, sluice extproc started by hand), `npm start` and the
 * workers of `--workers N` all carry them, and tests hold each to this list (node-flags.test.ts).
 *
 * Why (issue 16, README "Tuning"): an extproc sidecar gets one core or less (a CPU limit is a
 * cgroup quota), and V8's parallel scavenger and concurrent marker then only take turns with the
 * main thread on that core: --single-threaded-gc does the same work on the main thread without
 * the hand-offs, which shortened the tail at 1,000 req/s on one pinned core.
 *
 * They must be on node's command line: Node refuses --single-threaded-gc in NODE_OPTIONS, and
 * v8.setFlagsFromString('--single-threaded-gc') after start-up aborts V8 at its next full
 * collection (a fatal check in cppgc's marker: concurrent marking was already set up).
 */
export const EXTPROC_NODE_FLAGS: readonly string[] = [
  '--single-threaded-gc',
  '--max-semi-space-size=16',
];

/** A flag's name as V8 reads it: without its value, `_` as `-`, `--no-x` as `--x`. */
function flagName(flag: string): string {
  const name = (flag.split('=', 1)[0] ?? flag).replaceAll('_', '-');
  return name.startsWith('--no-') ? `--${name.slice('--no-'.length)}` : name;
}

/**
 * The extproc's flags that a node command line (process.execArgv) lacks. One given with another
 * value, or negated (--no-single-threaded-gc), counts as given: the operator chose otherwise.
 */
export function missingNodeFlags(execArgv: readonly string[]): string[] {
  const given = new Set(execArgv.filter((a) => a.startsWith('--')).map(flagName));
  return EXTPROC_NODE_FLAGS.filter((f) => !given.has(flagName(f)));
}

/** A worker's execArgv: the extproc's flags it lacks, then the given ones. */
export function withNodeFlags(execArgv: readonly string[]): string[] {
  return [...missingNodeFlags(execArgv), ...execArgv];
}
