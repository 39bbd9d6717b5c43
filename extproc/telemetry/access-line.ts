/**
 * The access log's one line per request, serialized once.
 *
 * Why: pino serializes a logged object key by key (a JSON string per value, then a concatenation
 * per key); for the access-log record that was ~3.3 KiB allocated per request against ~0.9 KiB
 * for one JSON.stringify of the same record (section lean's allocation profile had pino
 * `_asJson` at 5.5% of all the extproc allocated). Here the record is stringified once and put
 * between the parts pino itself would write — its level and time, the logger's bindings, the
 * message — and handed to the logger's destination: the same line, byte for byte
 * (access-line.test.ts compares them).
 *
 * Only for a plain pino logger: one with formatters, a mixin, hooks, redaction, a nested key or a
 * message prefix (none of which the extproc sets) goes through logger.info as before, and so
 * does a record JSON.stringify cannot write (a cycle).
 */
import { pino, type Logger } from 'pino';
import { JsonBytes } from './json-bytes.js';
import type { PartsWriter } from './log-destination.js';

const COMMA = 0x2c;

export type LineWriter = (record: object, msg: string) => void;

/**
 * A record the line is written from member by member (JsonBytes.member…), its object made only
 * when that cannot be done (the destination takes no bytes, or `members` answers false): the
 * access record then costs no object of its own (telemetry.ts).
 */
export interface RecordSource<T> {
  /** What JSON.stringify(record(x)) writes between its braces, or false. */
  members(b: JsonBytes, x: T): boolean;
  record(x: T): object;
}

const OBJECTS: RecordSource<object> = {
  members: (b, o) => b.members(o),
  record: (o) => o,
};

const S = pino.symbols;

interface PinoInternals {
  [S.lsCacheSym]: Record<number, string>;
  [S.timeSym]: () => string;
  [S.chindingsSym]: string;
  [S.endSym]: string;
  [S.streamSym]: {
    write(line: string): unknown;
    writeParts?: PartsWriter['writeParts'];
    writeLine?: PartsWriter['writeLine'];
  };
  [S.formattersSym]: { log?: unknown };
  [S.mixinSym]: unknown;
  [S.hooksSym]: { streamWrite?: unknown; logMethod?: unknown };
  [S.nestedKeySym]: unknown;
  [S.stringifiersSym]: object;
  [S.messageKeySym]: string;
}

/** Writes `record` at info level through `logger`'s destination, as logger.info would. */
export function infoLineWriter(logger: Logger): LineWriter {
  return infoSourceWriter(logger, OBJECTS);
}

/** Writes the record of `x` at info level through `logger`'s destination, as logger.info would. */
export function infoSourceWriter<T>(
  logger: Logger,
  src: RecordSource<T>,
): (x: T, msg: string) => void {
  const fallback = (record: object, msg: string): void => logger.info(record, msg);
  const p = logger as unknown as PinoInternals;
  const plain =
    typeof p[S.timeSym] === 'function' &&
    typeof p[S.chindingsSym] === 'string' &&
    typeof p[S.endSym] === 'string' &&
    typeof p[S.streamSym]?.write === 'function' &&
    p[S.formattersSym]?.log === undefined &&
    !p[S.mixinSym] &&
    !p[S.hooksSym]?.streamWrite &&
    !p[S.hooksSym]?.logMethod &&
    !p[S.nestedKeySym] &&
    !(logger as { msgPrefix?: string }).msgPrefix &&
    Object.getOwnPropertySymbols(p[S.stringifiersSym] ?? {}).length === 0 &&
    Object.keys(p[S.stringifiersSym] ?? {}).length === 0 &&
    p[S.messageKeySym] === 'msg';
  if (!plain) return (x, msg) => fallback(src.record(x), msg);
  const level = logger.levels.values.info!;
  // The line's end for the last message: the access log writes one message ("request"), so
  // its JSON and the end string are made once, not per line.
  let lastMsg: string | undefined;
  let lastTail = '';
  // The line is written as bytes when the destination takes them (log-destination.ts): no JSON
  // string of the record is made (json-bytes.ts); a record it cannot write exactly is written
  // as below.
  const bytes = new JsonBytes();
  return (x, msg) => {
    // The level may change at run time (--log-level is fixed, but a logger's level is settable).
    if (!logger.isLevelEnabled('info')) return;
    const stream = p[S.streamSym];
    if (msg !== lastMsg) {
      lastTail = `,"msg":${JSON.stringify(msg)}${p[S.endSym]}`;
      lastMsg = msg;
    }
    const tail = lastTail;
    if (stream.writeLine) {
      bytes.reset();
      bytes.raw(p[S.lsCacheSym][level]!);
      bytes.raw(p[S.timeSym]());
      bytes.raw(p[S.chindingsSym]);
      const head = bytes.length;
      bytes.byte(COMMA);
      if (src.members(bytes, x)) {
        // No member written: no comma either (as `{}` adds nothing below).
        if (bytes.length === head + 1) bytes.truncate(head);
        bytes.raw(tail);
        stream.writeLine(bytes.take());
        return;
      }
    }
    const record = src.record(x);
    let json: string;
    try {
      json = JSON.stringify(record);
    } catch {
      fallback(record, msg);
      return;
    }
    const head = `${p[S.lsCacheSym][level]}${p[S.timeSym]()}${p[S.chindingsSym]}`;
    if (stream.writeParts) {
      // The record's keys between the head and the message, its braces left out (a slice of
      // the stringified record, not a copy); written into one Buffer (log-destination.ts).
      if (json.length > 2) stream.writeParts(`${head},`, json.slice(1, -1), tail);
      else stream.writeParts(head, '', tail);
      return;
    }
    const props = json.length > 2 ? `,${json.slice(1, -1)}` : '';
    stream.write(`${head}${props}${tail}`);
  };
}
