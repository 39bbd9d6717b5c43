/**
 * Hand-built HTTP/2 frames and a frame parser for the tests of h2-connection.ts (and the ones
 * that speak raw HTTP/2 to it): the wire format of RFC 9113 §4.1 and §6, nothing of the
 * implementation under test, so a test's bytes are what a peer would send.
 */

/** Frame types (RFC 9113 §6). */
export const FrameType = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;

/** Frame flags (RFC 9113 §6): END_STREAM and ACK share a bit, on different frame types. */
export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** The client connection preface (RFC 9113 §3.4). */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** One frame: the 9-octet header (RFC 9113 §4.1) and its payload. */
export function frame(
  type: number,
  flags: number,
  id: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const b = Buffer.allocUnsafe(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(id >>> 0, 5);
  payload.copy(b, 9);
  return b;
}

/** A 32-bit big-endian value (a WINDOW_UPDATE increment, an error code, a stream id). */
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** A SETTINGS frame of (identifier, value) pairs (RFC 9113 §6.5.1). */
export function settings(pairs: readonly (readonly [number, number])[] = []): Buffer {
  const p = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([k, v], i) => {
    p.writeUInt16BE(k, i * 6);
    p.writeUInt32BE(v >>> 0, i * 6 + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, p);
}

/** The preface and an empty SETTINGS frame: what a client sends first. */
export const START = Buffer.concat([PREFACE, settings()]);

/** A WINDOW_UPDATE frame (RFC 9113 §6.9). */
export const windowUpdate = (id: number, increment: number): Buffer =>
  frame(FrameType.WINDOW_UPDATE, 0, id, u32(increment));

/** A PRIORITY frame: depends on `dependency`, weight 16 (RFC 9113 §6.3). */
export const priority = (id: number, dependency = 0): Buffer =>
  frame(FrameType.PRIORITY, 0, id, Buffer.concat([u32(dependency), Buffer.of(15)]));

/** A header block of HPACK literals without indexing, new names, raw strings (RFC 7541 §6.2.2):
 *  any octets, uppercase and invalid ones included, and no HPACK state on either side. */
export function literalBlock(fields: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  const int = (n: number): void => {
    if (n < 127) return void out.push(n);
    out.push(127);
    n -= 127;
    while (n >= 128) {
      out.push((n & 127) | 128);
      n >>>= 7;
    }
    out.push(n);
  };
  for (const [name, value] of fields) {
    out.push(0);
    for (const str of [name, value]) {
      int(str.length);
      for (const ch of Buffer.from(str, 'latin1')) out.push(ch);
    }
  }
  return Buffer.from(out);
}

/** A frame as received. */
export interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** Parses what a server sends into frames, across any chunking. */
export class FrameReader {
  readonly frames: Frame[] = [];
  /** Octets received. */
  received = 0;
  /** Set by the reader's owner once the socket closed. */
  closed = false;
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.received += chunk.length;
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 9) {
      const len = this.pending.readUIntBE(0, 3);
      if (this.pending.length < 9 + len) break;
      this.frames.push({
        type: this.pending[3]!,
        flags: this.pending[4]!,
        id: this.pending.readUInt32BE(5) & 0x7fffffff,
        payload: this.pending.subarray(9, 9 + len),
      });
      this.pending = this.pending.subarray(9 + len);
    }
  }
}

/** Resolves once cond() holds; rejects after ms (polls every 2 ms). */
export async function until(cond: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const stop = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > stop) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
