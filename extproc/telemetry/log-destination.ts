/**
 * Where the extproc's log lines go: a file descriptor (stdout) through sonic-boom, buffered and
 * written asynchronously, in sonic-boom's Buffer mode.
 *
 * Why Buffer mode: in its default string mode sonic-boom appends each line to the string it is
 * collecting and then measures that string's UTF-8 length (Buffer.byteLength), which flattens
 * the whole collected string, up to maxWrite (16 KiB), on every write. With the access log's
 * one line per request that was ~9 KiB allocated per request, a tenth of all the extproc
 * allocated (test/bench section lean, BENCH_ALLOC_PROFILE: pino `write`). In Buffer mode each
 * line is encoded once into a pooled Buffer and the collected lines are joined once per write.
 * The bytes written are the same.
 */
import { pino, type DestinationStream } from 'pino';

export interface LogDestination extends DestinationStream, PartsWriter {
  /** Starts writing what is buffered (asynchronously). */
  flush(): void;
  /** Writes what is buffered before returning (shutdown, fatal errors). */
  flushSync(): void;
}

export interface LogDestinationOptions {
  /** Default 1 (stdout). */
  fd?: number;
  /**
   * Several processes share the descriptor (`--workers`): each write then holds whole lines and
   * at most PIPE_BUF (4,096) bytes, which a pipe never interleaves with another process's write.
   */
  shared: boolean;
}

/**
 * A destination that takes one line as three strings, written into one Buffer: the access line
 * (access-line.ts) hands its parts so, and no flat copy of the joined line is made first (a
 * string built by concatenation is flattened before it can be encoded: ~1 KiB per request).
 */
export interface PartsWriter {
  writeParts(a: string, b: string, c: string): void;
  /** One whole line (its newline included) already encoded, handed over: not kept by the caller. */
  writeLine(line: Buffer): void;
}

/** What sonic-boom's Buffer mode takes in write() (its types name only strings). */
type BufferWrite = (data: Buffer) => boolean;

export function logDestination(o: LogDestinationOptions): LogDestination {
  const boom = pino.destination({
    dest: o.fd ?? 1,
    sync: false,
    contentMode: 'buffer',
    // sonic-boom wants the buffer threshold below maxWrite. Alone on the descriptor, lines are
    // written 32 KiB at a time: each write is handed to libuv's thread pool, and at 4 KiB (about
    // seven access lines) those hand-offs were ~5% of the extproc's CPU on the plain path (bench
    // chat-2k, --cpu-prof). The flush timer (main.ts) still writes a quiet extproc's lines within
    // a second.
    ...(o.shared
      ? { minLength: 2048, maxWrite: 4096 }
      : { minLength: 32 * 1024, maxWrite: 64 * 1024 }),
  });
  const write = boom.write.bind(boom) as unknown as BufferWrite;
  return {
    // pino hands over each line as one string; encoded once here, copied once when written.
    write: (line: string) => write(Buffer.from(line, 'utf8')),
    writeParts: (a, b, c) => {
      const la = Buffer.byteLength(a);
      const lb = Buffer.byteLength(b);
      const buf = Buffer.allocUnsafe(la + lb + Buffer.byteLength(c));
      buf.write(a, 0, la, 'utf8');
      buf.write(b, la, lb, 'utf8');
      buf.write(c, la + lb, 'utf8');
      write(buf);
    },
    writeLine: (line) => write(line),
    flush: () => boom.flush(),
    flushSync: () => boom.flushSync(),
  };
}
