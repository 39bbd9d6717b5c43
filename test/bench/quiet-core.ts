/**
 * Every server the bench measures is pinned to the same core (SERVER_CORE), and the ones not
 * being measured are not idle to V8: after its own point a Node server keeps compiling
 * (TurboFan's concurrent jobs), marking and sweeping on its platform threads, and V8's memory
 * reducer runs full collections some seconds after its allocation rate drops — tens of ms of CPU
 * in bursts, on the measured server's core. The kernel shares the core fairly between every
 * runnable thread, so the measured server's main thread, runnable, waits: a loadgen -trace with
 * perf sched showed the second extproc (sluice-grpc-js, idle) taking ~40 ms of the core during
 * Sluice's 4 s point at 500 req/s, in the stalls that made its p99.
 *
 * pausedDuring stops those other servers (SIGSTOP) for the length of a point and continues
 * them after it, whatever the point did. A stopped server keeps its sockets and its state; its
 * deferred work runs once it is continued, before or during its own next point's warm-up.
 */

/** Runs `fn` with the processes `pids` stopped; continues them afterwards, even if `fn` throws. */
export async function pausedDuring<T>(pids: number[], fn: () => Promise<T>): Promise<T> {
  const stopped: number[] = [];
  try {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGSTOP');
        stopped.push(pid);
      } catch {
        // already gone: nothing of it runs on the core
      }
    }
    return await fn();
  } finally {
    for (const pid of stopped) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // exited while stopped (killed by someone else): nothing to continue
      }
    }
  }
}
