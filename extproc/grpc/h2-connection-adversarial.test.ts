/**
 * An adversarial review of h2-connection.ts (and the gRPC layer on it, transport 'own'): a
 * hostile peer's raw frames over a unix socket, for each HTTP/2 DoS class (CVE-2019-9511..9518,
 * CVE-2020-11080, CVE-2023-44487, CVE-2024-27316) and RFC 9113's error handling, then a seeded
 * fuzz of random and mutated frame sequences in random chunkings. A case the connection does not
 * yet bound is a failing test marked `todo` with the reason, so the suite stays green while it
 * says what is open.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  ErrorCode,
  H2Connection,
  type ConnectionOptions,
  type ServerStream,
  type StreamEvents,
} from './h2-connection.js';
import { encodeHeaderBlock } from './hpack.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-h2-adv-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let sockN = 0;

// Frame types and flags (RFC 9113 §6).
const DATA = 0;
const HEADERS = 1;
const PRIORITY = 2;
const RST_STREAM = 3;
const SETTINGS = 4;
const PING = 6;
const GOAWAY = 7;
const WINDOW_UPDATE = 8;
const CONTINUATION = 9;
const END_STREAM = 1;
const ACK = 1;
const END_HEADERS = 4;
const PADDED = 8;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

function frame(type: number, flags: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(id >>> 0, 5);
  payload.copy(b, 9);
  return b;
}
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
function settings(pairs: [number, number][]): Buffer {
  const p = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([k, v], i) => {
    p.writeUInt16BE(k, i * 6);
    p.writeUInt32BE(v >>> 0, i * 6 + 2);
  });
  return frame(SETTINGS, 0, 0, p);
}
const START = Buffer.concat([PREFACE, settings([])]);
const REQ_FIELDS: [string, string][] = [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':path', '/p'],
  [':authority', 'sidecar'],
  ['content-type', 'application/grpc'],
];
const REQ = encodeHeaderBlock(REQ_FIELDS);
const headersFrame = (id: number, endStream = false, block = REQ): Buffer =>
  frame(HEADERS, END_HEADERS | (endStream ? END_STREAM : 0), id, block);
const RESPONSE = encodeHeaderBlock([
  [':status', '200'],
  ['content-type', 'application/grpc'],
]);
const TRAILERS = encodeHeaderBlock([['grpc-status', '0']]);

/** What the tests read of a connection's private state (the bounds under test). */
interface Internals {
  streams: Map<number, { queue: Buffer[] | null }>;
  blocked: unknown[];
  blockBuf: Buffer | null;
  outLen: number;
  out: Buffer;
  controlBacklog: number;
  goawayReceived: boolean;
}
const internals = (c: H2Connection): Internals => c as unknown as Internals;

type Handler = (stream: ServerStream, fields: readonly string[]) => StreamEvents;

/** Holds streams open; answers nothing. */
const silent: Handler = () => ({ data: () => {}, end: () => {}, aborted: () => {} });
/** Answers after the client's END_STREAM: headers, 10 octets, trailers. */
const answer: Handler = (stream) => ({
  data: () => {},
  end: () => {
    stream.headers(RESPONSE, false);
    stream.data(Buffer.alloc(10, 1));
    stream.trailers(TRAILERS);
  },
  aborted: () => {},
});

interface Server {
  path: string;
  conns: H2Connection[];
  sockets: net.Socket[];
  errors: Error[];
  opened: number;
  close(): Promise<void>;
}
const servers: Server[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

const DEFAULTS = {
  // As h2-transport-own.ts advertises.
  maxConcurrentStreams: 2 ** 31 - 1,
  initialWindowSize: 1 << 20,
  connectionWindowSize: 16 << 20,
  maxHeaderListSize: 64 << 10,
};

async function serve(handler: Handler, opts: Partial<ConnectionOptions> = {}): Promise<Server> {
  const path = join(dir, `s${sockN++}.sock`);
  const srv: Server = {
    path,
    conns: [],
    sockets: [],
    errors: [],
    opened: 0,
    close: () => Promise.resolve(),
  };
  const server = net.createServer((socket) => {
    srv.sockets.push(socket);
    srv.conns.push(
      new H2Connection(socket, {
        ...DEFAULTS,
        onStream: (s, f) => {
          srv.opened++;
          return handler(s, f);
        },
        onError: (e) => void srv.errors.push(e),
        ...opts,
      }),
    );
  });
  await new Promise<void>((r) => server.listen(path, r));
  srv.close = () =>
    new Promise<void>((r) => {
      for (const c of srv.conns) c.destroy();
      server.close(() => r());
    });
  servers.push(srv);
  return srv;
}

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** A raw HTTP/2 client: writes bytes, parses what the server sends into frames. */
class Raw {
  readonly socket: net.Socket;
  readonly frames: Frame[] = [];
  closed = false;
  received = 0;
  private pending: Buffer = Buffer.alloc(0);

  constructor(path: string, preface = true) {
    this.socket = net.connect(path);
    this.socket.on('data', (c: Buffer) => {
      this.received += c.length;
      this.pending = this.pending.length === 0 ? c : Buffer.concat([this.pending, c]);
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
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => (this.closed = true));
    if (preface) this.socket.write(START);
  }

  send(...bufs: Buffer[]): void {
    if (!this.socket.destroyed)
      this.socket.write(bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs));
  }

  goaway(): { last: number; code: number } | undefined {
    const f = this.frames.find((x) => x.type === GOAWAY);
    return f && { last: f.payload.readUInt32BE(0), code: f.payload.readUInt32BE(4) };
  }

  rsts(id?: number): number[] {
    return this.frames
      .filter((f) => f.type === RST_STREAM && (id === undefined || f.id === id))
      .map((f) => f.payload.readUInt32BE(0));
  }

  count(type: number): number {
    let n = 0;
    for (const f of this.frames) if (f.type === type) n++;
    return n;
  }

  end(): void {
    this.socket.destroy();
  }
}

async function until(cond: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const stop = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > stop) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The connection answers a PING: it still reads and is in step. */
async function stillWorks(c: Raw): Promise<void> {
  const tag = Buffer.from('alive!!!');
  c.send(frame(PING, 0, 0, tag));
  const acked = (): boolean =>
    c.frames.some((f) => f.type === PING && f.flags & ACK && f.payload.equals(tag));
  await until(() => acked() || c.goaway() !== undefined || c.closed, 3000, 'PING ACK');
  assert.equal(c.goaway(), undefined, `GOAWAY ${JSON.stringify(c.goaway())} instead of a PING ACK`);
  assert.ok(acked(), 'socket closed instead of a PING ACK');
}

/** CPU time (user + system, ms) of this process across fn: the server runs in-process. */
async function cpuMs(fn: () => Promise<void>): Promise<number> {
  const t = process.cpuUsage();
  await fn();
  const d = process.cpuUsage(t);
  return (d.user + d.system) / 1000;
}

// Every socket handler of the connection runs in this process: anything thrown out of one
// lands here and fails the test that was running.
const uncaught: unknown[] = [];
process.on('uncaughtException', (err) => void uncaught.push(err));
after(() => assert.deepEqual(uncaught, [], 'an exception escaped a socket handler'));

describe('HTTP/2 DoS classes against H2Connection (raw frames)', { timeout: 15_000 }, () => {
  it('ping flood from a peer that does not read (CVE-2019-9512): socket destroyed, output bounded', async () => {
    const srv = await serve(silent);
    const c = new Raw(srv.path);
    c.socket.pause();
    const batch = Buffer.concat(
      Array.from({ length: 1000 }, () => frame(PING, 0, 0, Buffer.alloc(8))),
    );
    let maxBuffered = 0;
    let sent = 0;
    await until(() => srv.sockets.length === 1);
    const s = srv.sockets[0]!;
    while (!s.destroyed && sent < 64 << 20) {
      c.send(batch);
      sent += batch.length;
      await new Promise((r) => setImmediate(r));
      maxBuffered = Math.max(maxBuffered, s.writableLength);
    }
    assert.ok(s.destroyed, `still open after ${sent} octets of PINGs`);
    // BACKED_UP + CONTROL_LIMIT (64 KiB each) plus one read's answers.
    assert.ok(maxBuffered < 1 << 20, `server buffered ${maxBuffered} octets of PING ACKs`);
    c.end();
  });

  it('settings flood from a peer that does not read (CVE-2019-9515): socket destroyed', async () => {
    const srv = await serve(silent);
    const c = new Raw(srv.path);
    c.socket.pause();
    const batch = Buffer.concat(Array.from({ length: 2000 }, () => settings([])));
    let sent = 0;
    await until(() => srv.sockets.length === 1);
    const s = srv.sockets[0]!;
    let maxBuffered = 0;
    while (!s.destroyed && sent < 64 << 20) {
      c.send(batch);
      sent += batch.length;
      await new Promise((r) => setImmediate(r));
      maxBuffered = Math.max(maxBuffered, s.writableLength);
    }
    assert.ok(s.destroyed, `still open after ${sent} octets of SETTINGS`);
    assert.ok(maxBuffered < 1 << 20, `server buffered ${maxBuffered} octets of SETTINGS ACKs`);
    c.end();
  });

  it(
    'large SETTINGS frames of INITIAL_WINDOW_SIZE entries with many open streams (CVE-2020-11080 class): CPU bounded',
    {
      todo:
        'onSettings (h2-connection.ts, case SETTINGS_INITIAL_WINDOW_SIZE) walks every open stream per entry: ' +
        'a 16 KiB frame holds 2,730 entries, so with N open streams one frame costs 2,730 x N steps ' +
        '(nghttp2 caps a SETTINGS frame at 32 entries, nghttp2_option_set_max_settings, and answers more with ' +
        "ENHANCE_YOUR_CALM); the own transport advertises 2^31-1 concurrent streams, so N is the peer's to choose",
    },
    async () => {
      const srv = await serve(silent);
      const c = new Raw(srv.path);
      const N = 5000;
      const opens: Buffer[] = [];
      for (let i = 0; i < N; i++) opens.push(headersFrame(1 + 2 * i));
      c.send(...opens);
      await until(() => srv.opened === N, 5000, 'streams');
      const entries: [number, number][] = [];
      for (let i = 0; i < 2730; i++) entries.push([4, 65_535 + (i & 1)]);
      const big = settings(entries);
      const FRAMES = 10;
      const acksBefore = c.frames.filter((f) => f.type === SETTINGS && f.flags & ACK).length;
      const ms = await cpuMs(async () => {
        for (let i = 0; i < FRAMES; i++) c.send(big);
        await until(
          () =>
            c.frames.filter((f) => f.type === SETTINGS && f.flags & ACK).length >=
            acksBefore + FRAMES,
          10_000,
          'SETTINGS ACKs',
        );
      });
      const perFrame = ms / FRAMES;
      c.end();
      // 16 KiB of any other frame costs well under a millisecond here.
      assert.ok(
        perFrame < 2 || c.goaway()?.code === ErrorCode.ENHANCE_YOUR_CALM,
        `${perFrame.toFixed(1)} ms CPU per 16 KiB SETTINGS frame with ${N} open streams`,
      );
    },
  );

  it('rapid reset (CVE-2023-44487): HEADERS + RST_STREAM pairs end in GOAWAY ENHANCE_YOUR_CALM', async () => {
    const srv = await serve(silent);
    const c = new Raw(srv.path);
    const pairs: Buffer[] = [];
    for (let i = 0; i < 3000; i++) {
      const id = 1 + 2 * i;
      pairs.push(headersFrame(id), frame(RST_STREAM, 0, id, u32(ErrorCode.CANCEL)));
    }
    c.send(...pairs);
    await until(() => c.goaway() !== undefined, 5000, 'GOAWAY');
    assert.equal(c.goaway()!.code, ErrorCode.ENHANCE_YOUR_CALM);
    // The burst (1,000) plus what the bucket refilled meanwhile; not the 3,000 offered.
    assert.ok(srv.opened <= 1100, `${srv.opened} streams handed to the owner`);
    assert.equal(internals(srv.conns[0]!).streams.size, 0);
    await until(() => c.closed, 3000, 'socket closed');
  });

  it('"made you reset": HEADERS + WINDOW_UPDATE 0 pairs (the server resets) are bounded as well', async () => {
    const srv = await serve(silent);
    const c = new Raw(srv.path);
    const pairs: Buffer[] = [];
    for (let i = 0; i < 3000; i++) {
      const id = 1 + 2 * i;
      pairs.push(headersFrame(id), frame(WINDOW_UPDATE, 0, id, u32(0)));
    }
    c.send(...pairs);
    await until(() => c.goaway() !== undefined, 5000, 'GOAWAY');
    assert.equal(c.goaway()!.code, ErrorCode.ENHANCE_YOUR_CALM);
    assert.ok(c.rsts().length <= 1100, `${c.rsts().length} RST_STREAMs sent`);
    assert.ok(c.rsts().every((code) => code === ErrorCode.PROTOCOL_ERROR));
  });

  it('reset flood (CVE-2019-9514): malformed requests each answered with RST_STREAM, bounded', async () => {
    const srv = await serve(silent);
    const c = new Raw(srv.path);
    // encodeHeaderBlock refuses uppercase names: a literal without indexing, new name, by hand.
    const bad = Buffer.concat([
      REQ,
      Buffer.from([0x00, 10]),
      Buffer.from('Upper-Case'),
      Buffer.from([1, 0x78]),
    ]);
    const frames: Buffer[] = [];
    for (let i = 0; i < 2000; i++) frames.push(headersFrame(1 + 2 * i, true, bad));
    c.send(...frames);
    await until(() => c.goaway() !== undefined, 5000, 'GOAWAY');
    assert.equal(c.goaway()!.code, ErrorCode.ENHANCE_YOUR_CALM);
    assert.equal(srv.opened, 0);
    assert.ok(c.rsts().length <= 1100);
  });

  it('CONTINUATION flood (CVE-2024-27316): endless empty CONTINUATIONs end in GOAWAY', async () => {
    const srv = await serve(silent);
    const c = new Raw(srv.path);
    const frames = [frame(HEADERS, 0, 1, REQ.subarray(0, 3))];
    for (let i = 0; i < 10_000; i++) frames.push(frame(CONTINUATION, 0, 1));
    c.send(...frames);
    await until(() => c.goaway() !== undefined, 5000, 'GOAWAY');
    assert.equal(c.goaway()!.code, ErrorCode.ENHANCE_YOUR_CALM);
    assert.equal(internals(srv.conns[0]!).blockBuf, null);
    assert.equal(srv.opened, 0);
  });

  it('CONTINUATION flood with full frames: the held block stays under the list-size bound', async () => {
    const srv = await serve(silent);
    const c = new Raw(srv.path);
    const frames = [frame(HEADERS, 0, 1, Buffer.alloc(16_384, 0x40))];
    for (let i = 0; i < 100; i++)
      frames.push(frame(CONTINUATION, 0, 1, Buffer.alloc(16_384, 0x40)));
    let maxHeld = 0;
    const conn = (): H2Connection | undefined => srv.conns[0];
    c.send(...frames);
    await until(
      () => {
        const b = conn() && internals(conn()!).blockBuf;
        if (b) maxHeld = Math.max(maxHeld, b.length);
        return c.goaway() !== undefined;
      },
      5000,
      'GOAWAY',
    );
    assert.equal(c.goaway()!.code, ErrorCode.ENHANCE_YOUR_CALM);
    assert.ok(maxHeld <= DEFAULTS.maxHeaderListSize + 16 * 1024, `held ${maxHeld}`);
  });

  it('0-length header fields (CVE-2019-9516): a block of empty names is refused, nothing kept', async () => {
    const srv = await serve(silent);
    const c = new Raw(srv.path);
    // Literal with incremental indexing, new name, empty name and value: 2 octets + the 0x40.
    const empties = Buffer.alloc(3 * 5000);
    for (let i = 0; i < 5000; i++) empties[i * 3] = 0x40;
    // Split over HEADERS + CONTINUATIONs.
    const block = Buffer.concat([REQ, empties]);
    const frames: Buffer[] = [];
    for (let at = 0; at < block.length; at += 16_000) {
      const part = block.subarray(at, at + 16_000);
      const last = at + 16_000 >= block.length;
      // END_STREAM belongs on the HEADERS frame.
      const flags = (last ? END_HEADERS : 0) | (at === 0 ? END_STREAM : 0);
      frames.push(frame(at === 0 ? HEADERS : CONTINUATION, flags, 1, part));
    }
    c.send(...frames);
    await until(() => c.rsts(1).length > 0 || c.goaway() !== undefined, 3000, 'an answer');
    assert.equal(c.goaway(), undefined);
    assert.deepEqual(c.rsts(1), [ErrorCode.PROTOCOL_ERROR]);
    assert.equal(srv.opened, 0);
    await stillWorks(c);
  });

  it('empty DATA frames flood (CVE-2019-9518): linear cost, no allocation kept, connection usable', async () => {
    const srv = await serve(silent);
    const c = new Raw(srv.path);
    c.send(headersFrame(1));
    await until(() => srv.opened === 1);
    const batch = Buffer.concat(Array.from({ length: 10_000 }, () => frame(DATA, 0, 1)));
    const N = 30;
    const ms = await cpuMs(async () => {
      for (let i = 0; i < N; i++) c.send(batch);
      await stillWorks(c);
    });
    const nsPerFrame = (ms * 1e6) / (N * 10_000);
    assert.ok(nsPerFrame < 2000, `${nsPerFrame.toFixed(0)} ns CPU per empty DATA frame`);
    assert.equal(internals(srv.conns[0]!).streams.size, 1);
    c.end();
  });

  it('data dribble (CVE-2019-9511): a 1-octet window costs one small frame per WINDOW_UPDATE, no more', async () => {
    const srv = await serve((stream) => ({
      data: () => {},
      end: () => {
        stream.headers(RESPONSE, false);
        stream.data(Buffer.alloc(1 << 20, 7));
        stream.trailers(TRAILERS);
      },
      aborted: () => {},
    }));
    const c = new Raw(srv.path, false);
    c.send(PREFACE, settings([[4, 1]]), headersFrame(1, true));
    await until(() => c.frames.some((f) => f.type === DATA));
    const updates = Buffer.concat(
      Array.from({ length: 500 }, () => frame(WINDOW_UPDATE, 0, 1, u32(1))),
    );
    c.send(updates);
    await until(() => c.frames.filter((f) => f.type === DATA).length >= 501, 3000, 'DATA');
    await tick();
    const data = c.frames.filter((f) => f.type === DATA);
    assert.equal(data.length, 501);
    assert.ok(data.every((f) => f.payload.length === 1));
    // The rest stays queued as the one buffer the owner gave (no copy per frame).
    const q = internals(srv.conns[0]!).streams.get(1)!.queue!;
    assert.equal(q.length, 1);
    c.end();
  });

  it(
    'internal data buffering (CVE-2019-9517): a peer that never opens its window cannot grow the send queue without bound',
    {
      todo:
        "H2Stream.data (h2-connection.ts) queues whatever the owner writes while the peer's window is 0, with no " +
        'bound and no backpressure signal (OwnSink.sendData in h2-transport-own.ts returns true always); a ' +
        'client with SETTINGS_INITIAL_WINDOW_SIZE 0 that keeps sending requests (credited back as read) makes ' +
        'every answer pile up in memory; OUTBOUND_LIMIT only sees socket.writableLength, not stream queues',
    },
    async () => {
      // The owner answers each DATA chunk with 1 KiB, as an ext_proc handler answers each message.
      const srv = await serve((stream) => {
        stream.headers(RESPONSE, false);
        return { data: () => stream.data(Buffer.alloc(1024)), end: () => {}, aborted: () => {} };
      });
      const c = new Raw(srv.path, false);
      c.send(PREFACE, settings([[4, 0]]), headersFrame(1));
      await until(() => srv.opened === 1);
      // 20,000 DATA frames of 10 octets: 200 KB in, 20 MB of answers owed.
      const batch = Buffer.concat(
        Array.from({ length: 1000 }, () => frame(DATA, 0, 1, Buffer.alloc(10))),
      );
      for (let i = 0; i < 20; i++) c.send(batch);
      await stillWorks(c);
      const s = internals(srv.conns[0]!).streams.get(1);
      const queued = (s?.queue ?? []).reduce((n, b) => n + b.length, 0);
      c.end();
      assert.ok(
        queued <= 4 << 20 || c.goaway() !== undefined || s === undefined,
        `${queued} octets queued for a peer whose window is 0`,
      );
    },
  );

  it('frame length over SETTINGS_MAX_FRAME_SIZE, announced one octet at a time: GOAWAY FRAME_SIZE_ERROR, nothing allocated for it', async () => {
    const srv = await serve(silent);
    const c = new Raw(srv.path);
    const head = frame(DATA, 0, 1).subarray(0, 9);
    head.writeUIntBE(0xffffff, 0, 3);
    for (const b of head) {
      c.send(Buffer.of(b));
      await tick(2);
    }
    await until(() => c.goaway() !== undefined);
    assert.equal(c.goaway()!.code, ErrorCode.FRAME_SIZE_ERROR);
  });

  it('window overflow: connection GOAWAY FLOW_CONTROL_ERROR, stream RST FLOW_CONTROL_ERROR', async () => {
    const srv = await serve(silent);
    const c = new Raw(srv.path);
    c.send(headersFrame(1), frame(WINDOW_UPDATE, 0, 1, u32(0x7fffffff)));
    await until(() => c.rsts(1).length > 0);
    assert.deepEqual(c.rsts(1), [ErrorCode.FLOW_CONTROL_ERROR]);
    c.send(frame(WINDOW_UPDATE, 0, 0, u32(0x7fffffff)));
    await until(() => c.goaway() !== undefined);
    assert.equal(c.goaway()!.code, ErrorCode.FLOW_CONTROL_ERROR);
  });

  it('SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 is FLOW_CONTROL_ERROR; MAX_FRAME_SIZE out of range is PROTOCOL_ERROR', async () => {
    const srv = await serve(silent);
    const a = new Raw(srv.path);
    a.send(settings([[4, 0x80000000]]));
    await until(() => a.goaway() !== undefined);
    assert.equal(a.goaway()!.code, ErrorCode.FLOW_CONTROL_ERROR);
    const b = new Raw(srv.path);
    b.send(settings([[5, 16_383]]));
    await until(() => b.goaway() !== undefined);
    assert.equal(b.goaway()!.code, ErrorCode.PROTOCOL_ERROR);
  });

  it('padding: DATA padded to its whole length and HEADERS padded past its end are PROTOCOL_ERROR', async () => {
    const srv = await serve(silent);
    const a = new Raw(srv.path);
    a.send(headersFrame(1), frame(DATA, PADDED, 1, Buffer.from([4, 0, 0, 0])));
    await until(() => a.goaway() !== undefined);
    assert.equal(a.goaway()!.code, ErrorCode.PROTOCOL_ERROR);
    const b = new Raw(srv.path);
    b.send(frame(HEADERS, END_HEADERS | PADDED, 1, Buffer.concat([Buffer.of(250), REQ])));
    await until(() => b.goaway() !== undefined);
    assert.equal(b.goaway()!.code, ErrorCode.PROTOCOL_ERROR);
    // Padding exactly to the end is fine.
    const c = new Raw(srv.path);
    c.send(headersFrame(1), frame(DATA, PADDED | END_STREAM, 1, Buffer.from([3, 0, 0, 0])));
    await stillWorks(c);
    assert.equal(c.goaway(), undefined);
  });

  it('a GOAWAY from the client: open streams finish, new ones are refused, the socket then ends', async () => {
    const srv = await serve(answer);
    const c = new Raw(srv.path);
    c.send(headersFrame(1), frame(GOAWAY, 0, 0, Buffer.concat([u32(0), u32(0)])), headersFrame(3));
    await until(() => c.rsts(3).length > 0);
    assert.deepEqual(c.rsts(3), [ErrorCode.REFUSED_STREAM]);
    assert.equal(c.closed, false);
    c.send(frame(DATA, END_STREAM, 1));
    await until(() => c.closed, 3000, 'socket end');
    assert.ok(c.frames.some((f) => f.type === HEADERS && f.id === 1 && f.flags & END_STREAM));
  });

  it('maxConcurrentStreams is enforced with REFUSED_STREAM, the stream map stays at the limit', async () => {
    const srv = await serve(silent, { maxConcurrentStreams: 10 });
    const c = new Raw(srv.path);
    const frames: Buffer[] = [];
    for (let i = 0; i < 50; i++) frames.push(headersFrame(1 + 2 * i));
    c.send(...frames);
    await until(() => c.rsts().length === 40);
    assert.ok(c.rsts().every((x) => x === ErrorCode.REFUSED_STREAM));
    assert.equal(internals(srv.conns[0]!).streams.size, 10);
    assert.equal(srv.opened, 10);
    await stillWorks(c);
  });

  it(
    'a complete request answered at once (trailers-only in onStream) gets no RST_STREAM after it',
    {
      todo:
        "headerBlock (h2-connection.ts) calls onStream before it applies the HEADERS frame's END_STREAM " +
        '(remoteEnd after onStream returns); an owner that answers inside onStream (h2-server.ts does for 415, ' +
        'UNIMPLEMENTED) goes through localSent, which sees the remote side open and adds RST_STREAM(NO_ERROR): ' +
        'a frame on a stream that is closed once both END_STREAMs are counted (RFC 9113 §5.1), one spurious ' +
        'frame per such answer, and the stream is remembered as reset by us instead of closed',
    },
    async () => {
      const srv = await serve((stream) => {
        stream.headers(encodeHeaderBlock([[':status', '415']]), true);
        return { data: () => {}, end: () => {}, aborted: () => {} };
      });
      const c = new Raw(srv.path);
      c.send(headersFrame(1, true));
      await until(() => c.frames.some((f) => f.type === HEADERS && f.id === 1));
      await stillWorks(c);
      assert.deepEqual(c.rsts(1), []);
    },
  );

  it('a slow header (HEADERS without END_HEADERS, then silence) holds at most one block per connection', async () => {
    const srv = await serve(silent);
    const c = new Raw(srv.path);
    c.send(frame(HEADERS, 0, 1, Buffer.alloc(16_384, 0x40)));
    await until(() => srv.conns[0] !== undefined && internals(srv.conns[0]).blockBuf !== null);
    assert.ok(internals(srv.conns[0]!).blockBuf!.length <= 16_384);
    // Anything but its CONTINUATION is a connection error.
    c.send(frame(PING, 0, 0, Buffer.alloc(8)));
    await until(() => c.goaway() !== undefined);
    assert.equal(c.goaway()!.code, ErrorCode.PROTOCOL_ERROR);
  });

  it('an owner whose handler throws: GOAWAY INTERNAL_ERROR, nothing escapes the socket handler', async () => {
    const srv = await serve(() => {
      throw new Error('owner bug');
    });
    const c = new Raw(srv.path);
    c.send(headersFrame(1));
    await until(() => c.goaway() !== undefined);
    assert.equal(c.goaway()!.code, ErrorCode.INTERNAL_ERROR);
  });

  it(
    'late DATA on a stream we ended early is ignored even after 128 other streams closed meanwhile',
    {
      todo:
        'RECENT = 128 (h2-connection.ts): a stream we reset (or answered before the client finished, ' +
        'localSent -> RST_STREAM NO_ERROR, e.g. a deadline) is forgotten after 128 more closes, and DATA the ' +
        'client had in flight for it is then a connection error STREAM_CLOSED (onDataFrame: not idle, not ' +
        'remembered as RESET_BY_US) that kills every other stream on the connection; Envoy multiplexes its ' +
        'ext_proc streams on one connection, so at a few thousand streams/s 128 closes is a few ms of race. ' +
        'nghttp2 ignores DATA on closed streams (only counts it against the connection window)',
    },
    async () => {
      // Stream 1 is answered at once (before the client's END_STREAM); the rest complete normally.
      const srv = await serve((stream, fields) => {
        if (fields.includes('/early')) {
          stream.headers(RESPONSE, false);
          stream.trailers(TRAILERS);
          return { data: () => {}, end: () => {}, aborted: () => {} };
        }
        return answer(stream, fields);
      });
      const early = encodeHeaderBlock(
        REQ_FIELDS.map(([n, v]): [string, string] => [n, n === ':path' ? '/early' : v]),
      );
      const c = new Raw(srv.path);
      c.send(headersFrame(1, false, early));
      await until(() => c.rsts(1).length > 0);
      assert.deepEqual(c.rsts(1), [ErrorCode.NO_ERROR]);
      const frames: Buffer[] = [];
      for (let i = 1; i <= 200; i++) frames.push(headersFrame(1 + 2 * i, true));
      c.send(...frames);
      await until(
        () => c.frames.filter((f) => f.type === HEADERS && f.flags & END_STREAM).length >= 201,
      );
      // DATA the client sent before our RST_STREAM reached it.
      c.send(frame(DATA, 0, 1, Buffer.alloc(100)));
      await stillWorks(c);
      assert.equal(c.goaway(), undefined);
    },
  );

  it(
    'a flood of empty SETTINGS or connection WINDOW_UPDATEs with many window-blocked streams: CPU bounded',
    {
      todo:
        'onSettings ends with pumpAll() whenever any stream is blocked, and onWindowUpdate(0) too, even when ' +
        'nothing changed that could unblock one (an empty SETTINGS; a connection WINDOW_UPDATE while streams are ' +
        'blocked on their own windows): each 9- or 13-octet frame walks every blocked stream and allocates a new ' +
        'list; pumpAll is only useful after INITIAL_WINDOW_SIZE grew or the connection window was <= 0',
    },
    async () => {
      const srv = await serve((stream) => {
        stream.headers(RESPONSE, false);
        stream.data(Buffer.alloc(16));
        return { data: () => {}, end: () => {}, aborted: () => {} };
      });
      const c = new Raw(srv.path, false);
      c.send(PREFACE, settings([[4, 0]]));
      const N = 5000;
      const opens: Buffer[] = [];
      for (let i = 0; i < N; i++) opens.push(headersFrame(1 + 2 * i));
      c.send(...opens);
      await until(() => srv.opened === N, 5000, 'streams');
      assert.equal(internals(srv.conns[0]!).blocked.length, N);
      const flood = Buffer.concat(
        Array.from({ length: 20_000 }, (_, i) =>
          i & 1 ? settings([]) : frame(WINDOW_UPDATE, 0, 0, u32(1)),
        ),
      );
      const ms = await cpuMs(async () => {
        c.send(flood);
        await stillWorks(c);
      });
      c.end();
      const usPerFrame = (ms * 1000) / 20_000;
      assert.ok(
        usPerFrame < 2,
        `${usPerFrame.toFixed(1)} µs CPU per frame with ${N} blocked streams`,
      );
    },
  );

  it('node:http2 still gets answers on a connection after the floods above (sanity)', async () => {
    const srv = await serve(answer);
    const session = http2.connect('http://sidecar', {
      createConnection: () => net.connect(srv.path),
    });
    const req = session.request({ ':method': 'POST', ':path': '/p' });
    req.end();
    const body: Buffer[] = [];
    req.on('data', (d: Buffer) => body.push(d));
    await new Promise((r) => req.on('end', r));
    assert.equal(Buffer.concat(body).length, 10);
    session.close();
  });
});

// ---- randomized ----

/** mulberry32: a small seeded PRNG, so a failing case reproduces from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The bytes a node:http2 (nghttp2) client writes for a session of a few requests with varied
 *  headers: a real encoder's HPACK (dynamic table, Huffman), then mutated by the fuzz. */
async function captureNghttp2Session(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const path = join(dir, `cap${sockN++}.sock`);
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.on('data', (c: Buffer) => chunks.push(c));
    // Our SETTINGS and ACKs so the client sends its requests.
    socket.write(settings([]));
    socket.on('data', () => socket.write(frame(SETTINGS, ACK, 0)));
  });
  await new Promise<void>((r) => server.listen(path, r));
  const session = http2.connect('http://sidecar', { createConnection: () => net.connect(path) });
  session.on('error', () => {});
  for (let i = 0; i < 6; i++) {
    const req = session.request({
      ':method': 'POST',
      ':path':
        i % 2
          ? '/envoy.service.ext_proc.v3.ExternalProcessor/Process'
          : '/grpc.health.v1.Health/Check',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': `${100 + i}m`,
      'x-request-id': `0b5e1c2d-${i}-4a7b-9c3d-${'f'.repeat(i)}`,
      'x-custom-bin': Buffer.from([i, 255, 0]).toString('base64'),
    });
    req.on('error', () => {});
    req.end(Buffer.from([0, 0, 0, 0, 2, 0x0a, 0x00]));
  }
  await until(() => chunks.reduce((n, c) => n + c.length, 0) > 600, 3000, 'capture');
  await tick(50);
  session.destroy();
  server.close();
  return Buffer.concat(chunks);
}

interface Tally {
  aborted: number;
  ended: number;
  violations: string[];
}

/** An owner that does random things with its streams, and checks the events it is told. */
function randomOwner(rand: () => number, tally: Tally): Handler {
  return (stream) => {
    let aborted = false;
    let localDone = false;
    const act = (): void => {
      const r = rand();
      if (r < 0.2) {
        stream.headers(RESPONSE, false);
        stream.data(Buffer.alloc(Math.floor(rand() * 40_000)));
      } else if (r < 0.35) {
        localDone = true;
        stream.trailers(TRAILERS);
      } else if (r < 0.45) {
        localDone = true;
        stream.reset(ErrorCode.CANCEL);
      } else if (r < 0.5) {
        localDone = true;
        stream.headers(TRAILERS, true);
      }
    };
    act();
    return {
      data: (chunk) => {
        if (aborted) tally.violations.push('data after aborted');
        if (!Buffer.isBuffer(chunk) || chunk.length === 0) tally.violations.push('empty data');
        if (rand() < 0.1) act();
      },
      end: () => {
        if (aborted) tally.violations.push('end after aborted');
        tally.ended++;
        act();
      },
      aborted: () => {
        if (aborted) tally.violations.push('aborted twice');
        if (localDone) tally.violations.push('aborted after our side ended');
        aborted = true;
        tally.aborted++;
      },
    };
  };
}

/** A random frame: mostly well-formed ones of each type, some random, some mutated. */
function randomFrames(rand: () => number, capture: Buffer, gentle: boolean): Buffer[] {
  const int = (n: number): number => Math.floor(rand() * n);
  const out: Buffer[] = [];
  // Gentle ones start above the captured session's stream ids.
  let nextId = gentle ? 101 : 1;
  const open: number[] = [];
  const anyId = (): number => {
    if (gentle) return open.length > 0 ? open[int(open.length)]! : 0;
    const r = rand();
    if (r < 0.6 && open.length > 0) return open[int(open.length)]!;
    if (r < 0.75) return 0;
    if (r < 0.9) return nextId + 2 * int(3);
    return int(2 ** 31);
  };
  const randomBlock = (): Buffer => {
    const r = gentle ? rand() * 0.6 : rand();
    if (r < 0.6) {
      const fields: [string, string][] = REQ_FIELDS.slice();
      for (let i = int(5); i > 0; i--) fields.push([`x-f${int(50)}`, 'v'.repeat(int(300))]);
      if (rand() < 0.1) fields.push(['te', rand() < 0.5 ? 'trailers' : 'gzip']);
      if (rand() < 0.1) fields.push(['content-length', String(int(20))]);
      if (rand() < 0.1) fields.splice(int(fields.length), 1);
      if (rand() < 0.05) fields.push([':status', '200']);
      return encodeHeaderBlock(fields);
    }
    if (r < 0.8) {
      // Indexed and literal HPACK ops at random: exercises the dynamic table and size updates.
      const b = Buffer.alloc(int(60));
      for (let i = 0; i < b.length; i++) b[i] = int(256);
      return b;
    }
    return encodeHeaderBlock([['x-big', 'a'.repeat(int(70_000))]]);
  };
  const n = 5 + int(40);
  for (let k = 0; k < n; k++) {
    // Gentle sequences: well-formed frames only, on the streams they opened.
    const r = gentle ? rand() * 0.84 : rand();
    if (r < 0.25) {
      // HEADERS (+ CONTINUATIONs), new stream or trailers on an open one.
      const id = gentle || rand() < 0.8 ? nextId : anyId();
      if (id === nextId) {
        nextId += 2;
        open.push(id);
      }
      let block = randomBlock();
      let flags = (rand() < 0.5 ? END_STREAM : 0) | (rand() < 0.1 ? 0x20 : 0);
      if (flags & 0x20) block = Buffer.concat([u32(int(20)), Buffer.of(int(256)), block]);
      if (rand() < 0.1) {
        flags |= PADDED;
        const pad = int(20);
        block = Buffer.concat([Buffer.of(pad), block, Buffer.alloc(pad)]);
      }
      // Padding and priority belong to the HEADERS frame alone: a gentle one is not split then.
      let cut =
        rand() < 0.3 && !(gentle && flags & (PADDED | 0x20))
          ? 1 + int(Math.max(1, block.length))
          : 16_384;
      // A gentle block keeps within MAX_CONTINUATIONS (64).
      if (gentle) cut = Math.max(cut, Math.ceil(block.length / 60));
      const pieces: Buffer[] = [];
      for (let at = 0; at < block.length || at === 0; at += cut)
        pieces.push(block.subarray(at, at + cut));
      if (flags & END_STREAM && gentle) open.splice(open.indexOf(id), 1);
      pieces.forEach((p, i) => {
        const last = i === pieces.length - 1 && (gentle || rand() < 0.97);
        out.push(
          frame(
            i === 0 ? HEADERS : CONTINUATION,
            (i === 0 ? flags : 0) | (last ? END_HEADERS : 0),
            id,
            p,
          ),
        );
      });
    } else if (r < 0.5) {
      const len = rand() < 0.9 ? int(200) : int(16_385);
      const payload = Buffer.alloc(len, int(256));
      if (gentle && open.length === 0) continue;
      const id = anyId();
      let flags = rand() < 0.3 ? END_STREAM : 0;
      if (gentle && flags & END_STREAM) open.splice(open.indexOf(id), 1);
      if (rand() < 0.1 && len > 0) {
        flags |= PADDED;
        payload[0] = gentle ? int(len) : int(len + 2);
      }
      out.push(frame(DATA, flags, id, payload));
    } else if (r < 0.58) {
      if (gentle && open.length === 0) continue;
      const id = anyId();
      if (gentle) open.splice(open.indexOf(id), 1);
      out.push(frame(RST_STREAM, 0, id, u32(int(14))));
    } else if (r < 0.66) {
      const inc = gentle
        ? 1 + int(100_000)
        : rand() < 0.1
          ? 0
          : rand() < 0.1
            ? 2 ** 31 - 1
            : int(100_000);
      out.push(frame(WINDOW_UPDATE, 0, anyId(), u32(inc)));
    } else if (r < 0.73) {
      const pairs: [number, number][] = [];
      for (let i = int(4); i > 0; i--) {
        const key = gentle ? [1, 3, 4, 6][int(4)]! : 1 + int(7);
        const value = gentle
          ? [0, 1, 100, 4096, 16_384, 65_535, 1 << 20][int(7)]!
          : [0, 1, 2, 16_384, 65_535, 2 ** 31 - 1, 2 ** 31, 2 ** 24, int(2 ** 32)][int(9)]!;
        pairs.push([key, value]);
      }
      out.push(rand() < 0.1 && !gentle ? frame(SETTINGS, ACK, 0) : settings(pairs));
    } else if (r < 0.78) {
      const odd = !gentle && rand() < 0.1;
      out.push(frame(PING, rand() < 0.3 ? ACK : 0, odd ? 1 : 0, Buffer.alloc(odd ? int(12) : 8)));
    } else if (r < 0.82) {
      const prio = Buffer.alloc(gentle || rand() < 0.9 ? 5 : int(8));
      if (gentle) prio.writeUInt32BE(nextId + 100);
      out.push(frame(PRIORITY, 0, gentle ? nextId + 2 : anyId(), prio));
    } else if (r < 0.84) {
      out.push(
        frame(
          GOAWAY,
          0,
          gentle || rand() < 0.9 ? 0 : 1,
          Buffer.concat([u32(int(100)), u32(int(14))]),
        ),
      );
    } else if (r < 0.88) {
      // Stray CONTINUATION, unknown types, PUSH_PROMISE.
      out.push(
        frame([CONTINUATION, 5, 10, 0xfa, 0x10][int(5)]!, int(256), anyId(), Buffer.alloc(int(30))),
      );
    } else if (r < 0.92) {
      // A slice of the nghttp2 session (its HPACK state is not ours: often a COMPRESSION_ERROR).
      const at = int(capture.length);
      out.push(capture.subarray(at, at + int(300)));
    } else {
      // A well-formed frame with a few octets flipped (header included).
      const f = frame(int(11), int(256), anyId(), Buffer.alloc(int(40), int(256)));
      for (let i = 1 + int(3); i > 0; i--) f[int(f.length)] = int(256);
      out.push(f);
    }
  }
  return out;
}

describe('randomized frame sequences', { timeout: 20_000 }, () => {
  it('never throw, stay bounded, and end either working or with a GOAWAY', async () => {
    const { setFlagsFromString } = await import('node:v8');
    const { runInNewContext } = await import('node:vm');
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const capture = await captureNghttp2Session();
    const base = Number(process.env.H2_FUZZ_SEED ?? 0x51c3);
    const CASES = Number(process.env.H2_FUZZ_CASES ?? 600);
    const stop = Date.now() + 9000;
    let heapAfterWarmup = 0;
    let ran = 0;
    const outcomes = { working: 0, goaway: 0, clientGoaway: 0 };
    for (let i = 0; i < CASES && Date.now() < stop; i++) {
      const seed = (base + i) >>> 0;
      const rand = prng(seed);
      const gentle = i % 2 === 0;
      const tally: Tally = { aborted: 0, ended: 0, violations: [] };
      const srv = await serve(randomOwner(prng(seed ^ 0xabcdef), tally));
      try {
        const bytes = Buffer.concat([
          rand() < 0.03 && !gentle ? Buffer.from('PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n') : START,
          // The whole nghttp2 session first (its preface is ours): its HPACK state is then ours.
          ...(rand() < 0.2 ? [capture.subarray(PREFACE.length)] : []),
          ...randomFrames(rand, capture, gentle),
        ]);
        const c = new Raw(srv.path, false);
        // Random chunking, some writes a turn apart.
        for (let at = 0; at < bytes.length;) {
          const k = 1 + Math.floor(rand() * (rand() < 0.3 ? 8 : 4000));
          c.send(bytes.subarray(at, at + k));
          at += k;
          if (rand() < 0.2) await new Promise((r) => setImmediate(r));
        }
        const tag = Buffer.from([seed >>> 24, seed >>> 16, seed >>> 8, seed, 1, 2, 3, 4]);
        const acked = (): boolean =>
          c.frames.some((f) => f.type === PING && f.flags & ACK && f.payload.equals(tag));
        c.send(frame(PING, 0, 0, tag));
        const settled = (): boolean => acked() || c.goaway() !== undefined || c.closed;
        await until(settled, 300, 'an answer').catch(() => undefined);
        if (!settled()) {
          // Stuck inside a frame whose length a mutation raised, or a header block: zeros
          // complete it, then read as DATA on stream 0, which must end the connection.
          c.send(Buffer.alloc(16_384 + 9 + 9));
          await until(() => c.goaway() !== undefined || c.closed, 3000, 'GOAWAY after zeros');
        }
        const conn = srv.conns[0]!;
        const inside = internals(conn);
        assert.deepEqual(tally.violations, [], 'StreamEvents contract');
        const headersSent = bytes.length; // a crude but safe upper bound on streams opened
        assert.ok(inside.streams.size <= headersSent);
        assert.ok((inside.blockBuf?.length ?? 0) <= DEFAULTS.maxHeaderListSize + 16 * 1024);
        assert.ok(inside.out.length <= 1 << 20, `out buffer ${inside.out.length}`);
        if (c.goaway() !== undefined) {
          outcomes.goaway++;
          if (process.env.H2_FUZZ_DEBUG && gentle)
            console.log(srv.errors.map((e) => e.message).join('; '));
          await until(() => c.closed, 3000, 'socket closed after GOAWAY');
          await until(() => conn.closed && inside.streams.size === 0, 2000, 'streams dropped');
        } else if (acked()) {
          outcomes.working++;
        } else if (inside.goawayReceived) {
          // The client's GOAWAY and no stream left: the socket ends without a GOAWAY of ours.
          outcomes.clientGoaway++;
        } else {
          assert.fail(
            `socket closed without a GOAWAY (server: ${srv.errors.map((e) => e.message).join('; ') || 'no error'})`,
          );
        }
        c.end();
        await until(() => srv.sockets.every((s) => s.destroyed), 2000, 'server socket closed');
      } catch (err) {
        console.error(
          `h2 fuzz: failing seed ${seed} (H2_FUZZ_SEED=${seed} H2_FUZZ_CASES=1 reproduces)`,
        );
        throw err;
      } finally {
        await srv.close();
        servers.splice(servers.indexOf(srv), 1);
      }
      ran++;
      if (i === 20) {
        gc();
        heapAfterWarmup = process.memoryUsage().heapUsed;
      }
    }
    gc();
    const growth = process.memoryUsage().heapUsed - heapAfterWarmup;
    console.log(
      `h2 fuzz: ${ran} cases from seed ${base}: ${outcomes.working} still working, ${outcomes.goaway} GOAWAY, ${outcomes.clientGoaway} closed after the client's GOAWAY; heap +${(growth / 1024).toFixed(0)} KiB after warm-up`,
    );
    assert.ok(ran >= 50, `only ${ran} cases in the time`);
    assert.ok(growth < 8 << 20, `heap grew ${growth} octets over ${ran} connections`);
  });
});
