/**
 * The Node/V8 flags the extproc runs with, written once: the chart's container command, `npm
 * start` and the workers of `--workers N` carry them, and tests hold each to this list.
 *
 * --max-semi-space-size=16 (issue 16, README "node flags"): V8 sizes its young generation from
 * the memory it is given, and under a container memory limit that is small (1 MiB semi-spaces
 * under 1Gi): 80 scavenges per 1,000 requests instead of 4.5, and every request in flight
 * promoted. 16 MiB is what Node takes on a large machine and what the bench measures.
 *
 * --heap-growing-percent=30 (issue 16, README "node flags"): after each full collection V8 lets
 * the old generation grow to a multiple of what survived it, a multiple it picks between 1.1 and a
 * ceiling set by the heap's size limit, which Node takes from the memory it is given: 1.3 under
 * the chart's 1Gi limit (a 256 MiB old generation), 1.6 at 4Gi, 4.0 from 8Gi or on a host
 * without a limit (the bench's); within that, the faster the program allocates against how fast
 * V8 marks, the higher. So the extproc's memory and how often it collects followed the machine
 * and its load: on the bench's host, every feature on, a closed loop at 16 in flight held 243-250
 * MiB at V8's own factor and 145-156 at 1.2-1.5, for 4-12x the full collections and ~10-20% more
 * CPU per request (3 interleaved rounds, load 5-11); on a machine too busy for the loop to run
 * fast V8 picked ~1.3 itself and the two were alike. The lean bench at 2,000 req/s (3 runs each,
 * busy): RSS 142-157 MiB instead of 191-212 plain, 184-188 instead of 254-291 every feature on;
 * full collections of 11-23 ms instead of 24-93, but 5-9 per window instead of 1-2 and ~25% more
 * CPU per masking + budget request. A fixed 1.3 is what the chart's default limit gives already,
 * now wherever the extproc runs, so the bench measures what is deployed; the way to fewer full
 * collections at any factor is less promoted per request.
 *
 * --v8-pool-size=1 (issue 16, README "node flags"): V8's helper threads (concurrent marking,
 * parallel phases of a collection's pause, background compiles). Node starts 4 whatever the CPUs,
 * and an extproc given about one core (the chart's limit, the bench's pinned core) ran them on
 * it beside the main thread, which then waited in a full collection's pause for helpers it had
 * displaced. Lean bench at 500 and 1,000 req/s, 6 interleaved pairs of runs: the longest pause of
 * a window with a full collection a median 4.9 ms (2.0-12.8, 15 windows) instead of 7.7 (2.5-11.3,
 * 15), masking + budget's p99 at 500 req/s (median of its windows) 3.9-5.4 ms instead of 5.2-7.8;
 * the plain route's p99, CPU per request and RSS alike. With --workers each process has its own.
 *
 * --single-threaded-gc is not among them: on a busy machine it lost (interleaved runs: higher p99,
 * masking + budget not holding 1,000 req/s, 2-3x the promotion, as incremental marking on the main
 * thread keeps the young generation alive longer). Where it is wanted it must be on node's command
 * line (gateway.extproc.nodeFlags in the chart): Node refuses it in NODE_OPTIONS, and
 * v8.setFlagsFromString('--single-threaded-gc') after start-up aborts V8 at its next full
 * collection (a fatal check in cppgc's marker).
 */
export const EXTPROC_NODE_FLAGS: readonly string[] = [
  '--max-semi-space-size=16',
  '--heap-growing-percent=30',
  '--v8-pool-size=1',
];

/**
 * The extproc's environment beside its flags (the chart's container env). glibc reads it when
 * the process starts, so it is set by whatever starts node (workers inherit it).
 *
 * MALLOC_ARENA_MAX=2: glibc gives threads malloc arenas of their own, up to 8 per core, and two
 * held ~10 MiB less RSS under load.
 *
 * MALLOC_MMAP_THRESHOLD_=98304: a Buffer of 96 KiB or more (a large request body and its copies)
 * gets a mapping of its own, unmapped when freed, instead of a place in the brk heap, which glibc
 * returns to the system only above its highest chunk in use: 32 streams of 100 KB bodies left it
 * at 57-67 MiB resident (34-38 with this), and the lean bench's long-lived extproc at 80. glibc's
 * own threshold starts at 128 KiB and rises to the size of any mapped chunk freed (up to 32 MiB),
 * so in a process that ran a while nearly everything lands in brk; a set value stays put. Below
 * 64 KiB + its header it would map node's 64 KiB socket reads too: ~10 more page faults per
 * every-feature request and ~35 per 100 KB one.
 */
export const EXTPROC_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: '2',
  MALLOC_MMAP_THRESHOLD_: '98304',
};

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
