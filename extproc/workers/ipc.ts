/**
 * Calls between the primary process and its workers over Node's IPC channel (process.send /
 * cluster worker.send; JSON serialization). One small request/reply protocol with ids, so a
 * worker's budget reservation, a vault lookup or the primary's metrics scrape is an awaited
 * call, and a one-way `notify` for pushes (a new config, "drain now").
 *
 * Messages carry `sluice: 1`, so prom-client's own cluster messages and anything else on the
 * channel are left alone. Errors travel as name + message only (never a stack), and a call
 * whose peer goes away or does not answer in time rejects with IpcError, saying whether the
 * request may have reached the peer (`sent`), which a state store needs to decide whether a
 * reservation may still be applied.
 *
 * Messages leave in batches: what a peer sends during one turn of its event loop goes as one
 * channel message at the end of it (setImmediate). Node writes each channel message with a
 * syscall of its own and parses it apart on the other side; a worker under load makes several
 * calls per turn (a reservation, a settlement, a vault lookup for each request), and the
 * primary answers all its workers. Per message that was ~57% of the primary's CPU (issue 16).
 */
import { TransientMap } from '../shared/transient-map.js';

export interface IpcChannel {
  /**
   * Returns false when the channel is closed (nothing was sent). A message handed over is
   * delivered in order even when the channel is backed up.
   */
  send(msg: unknown): boolean;
  onMessage(fn: (msg: unknown) => void): void;
  /** The peer went away (process exited, channel closed). */
  onClose(fn: () => void): void;
}

type Handler = (args: never) => unknown;

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  timer: NodeJS.Timeout;
}

interface CallMsg {
  sluice: 1;
  kind: 'call';
  id: number;
  op: string;
  args: unknown;
}
interface ReplyMsg {
  sluice: 1;
  kind: 'reply';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: { name: string; message: string; data?: unknown };
}
interface NotifyMsg {
  sluice: 1;
  kind: 'notify';
  op: string;
  args: unknown;
}
/** Messages one peer sent in one turn of its event loop, in order. */
interface BatchMsg {
  sluice: 1;
  kind: 'batch';
  /** Checked one by one on arrival, as any message. */
  msgs: unknown[];
}
type Msg = CallMsg | ReplyMsg | NotifyMsg;

/** A call failed on the channel itself (not in the peer's handler). */
export class IpcError extends Error {
  override readonly name = 'IpcError';
  /** Whether the request left this process (it may have been handled). */
  readonly sent: boolean;
  constructor(message: string, sent: boolean) {
    super(message);
    this.sent = sent;
  }
}

/** The peer's handler threw: its error's name and message, and any data it attached. */
export class RemoteError extends Error {
  readonly data: unknown;
  constructor(name: string, message: string, data?: unknown) {
    super(message);
    this.name = name;
    this.data = data;
  }
}

/** An error a handler throws to send structured data along (e.g. StoreUnavailable's flag). */
export interface IpcErrorData {
  ipcData?: unknown;
}

function isMsg(m: unknown): m is Msg | BatchMsg {
  return typeof m === 'object' && m !== null && (m as { sluice?: unknown }).sluice === 1;
}

export class IpcPeer {
  private readonly handlers = new Map<string, Handler>();
  private readonly notifications = new Map<string, Handler>();
  /** Calls awaiting their answer: a TransientMap (shared/transient-map.ts). */
  private readonly pending = new TransientMap<number, Pending>();
  private nextId = 1;
  private closed = false;
  /** Messages waiting for the end of this turn of the event loop. */
  private outbox: Msg[] = [];
  private flushing: NodeJS.Immediate | undefined;

  constructor(
    private readonly channel: IpcChannel,
    private readonly defaultTimeoutMs = 5000,
  ) {
    channel.onMessage((m) => {
      if (!isMsg(m)) return;
      if (m.kind !== 'batch') {
        this.receive(m);
        return;
      }
      for (const one of m.msgs) if (isMsg(one) && one.kind !== 'batch') this.receive(one);
    });
    channel.onClose(() => this.close('the peer process is gone'));
  }

  /** Serves `op`; what the handler returns (or resolves to) is the reply. */
  handle<A, R>(op: string, fn: (args: A) => R | Promise<R>): void {
    this.handlers.set(op, fn);
  }

  onNotify<A>(op: string, fn: (args: A) => void): void {
    this.notifications.set(op, fn);
  }

  call<R>(op: string, args: unknown, timeoutMs = this.defaultTimeoutMs): Promise<R> {
    if (this.closed) return Promise.reject(new IpcError('IPC channel closed', false));
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new IpcError(`no answer to ${op} within ${timeoutMs} ms`, true));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve, reject, timer });
      this.post({ sluice: 1, kind: 'call', id, op, args } satisfies CallMsg);
    });
  }

  /** Sends at once (with whatever is waiting before it); false when the channel is closed. */
  notify(op: string, args: unknown): boolean {
    if (this.closed) return false;
    this.outbox.push({ sluice: 1, kind: 'notify', op, args } satisfies NotifyMsg);
    return this.flush();
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Rejects every pending call; later calls reject at once. */
  close(reason = 'IPC channel closed'): void {
    if (this.closed) return;
    this.closed = true;
    if (this.flushing) clearImmediate(this.flushing);
    this.flushing = undefined;
    this.unsent(this.outbox.splice(0), reason);
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new IpcError(reason, true));
      this.pending.delete(id);
    }
  }

  private receive(m: Msg): void {
    if (m.kind === 'reply') {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.ok) p.resolve(m.value);
      else
        p.reject(new RemoteError(m.error?.name ?? 'Error', m.error?.message ?? '', m.error?.data));
      return;
    }
    if (m.kind === 'notify') {
      const fn = this.notifications.get(m.op);
      if (fn) fn(m.args as never);
      return;
    }
    const fn = this.handlers.get(m.op);
    if (!fn) {
      this.reply({ sluice: 1, kind: 'reply', id: m.id, ok: false, error: unknown(m.op) });
      return;
    }
    let out: unknown;
    try {
      out = fn(m.args as never);
    } catch (err) {
      this.reply(failure(m.id, err));
      return;
    }
    if (out instanceof Promise) {
      out.then(
        (value: unknown) => this.reply({ sluice: 1, kind: 'reply', id: m.id, ok: true, value }),
        (err: unknown) => this.reply(failure(m.id, err)),
      );
    } else {
      this.reply({ sluice: 1, kind: 'reply', id: m.id, ok: true, value: out });
    }
  }

  private reply(r: ReplyMsg): void {
    // If the caller is gone, its call rejects on its own side.
    if (!this.closed) this.post(r);
  }

  /** Queues a message for the end of this turn of the event loop. */
  private post(m: Msg): void {
    this.outbox.push(m);
    this.flushing ??= setImmediate(() => {
      this.flushing = undefined;
      this.flush();
    });
  }

  /** Sends what is waiting as one channel message; false (calls rejected) when it cannot. */
  private flush(): boolean {
    const msgs = this.outbox;
    if (msgs.length === 0) return true;
    this.outbox = [];
    let sent: boolean;
    try {
      sent = this.channel.send(
        msgs.length === 1 ? msgs[0] : ({ sluice: 1, kind: 'batch', msgs } satisfies BatchMsg),
      );
    } catch {
      sent = false;
    }
    if (!sent) this.unsent(msgs, 'IPC channel closed');
    return sent;
  }

  /** The calls among `msgs` never left this process: they reject as not sent. */
  private unsent(msgs: Msg[], reason: string): void {
    for (const m of msgs) {
      if (m.kind !== 'call') continue;
      const p = this.pending.get(m.id);
      if (!p) continue;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      p.reject(new IpcError(reason, false));
    }
  }
}

function unknown(op: string): ReplyMsg['error'] {
  return { name: 'IpcError', message: `no handler for ${op}` };
}

function failure(id: number, err: unknown): ReplyMsg {
  const e = err instanceof Error ? err : new Error('non-error thrown');
  const data = (err as IpcErrorData | undefined)?.ipcData;
  return {
    sluice: 1,
    kind: 'reply',
    id,
    ok: false,
    error: { name: e.name, message: e.message, ...(data !== undefined && { data }) },
  };
}

/** The channel of a cluster worker (or any forked child) to its parent. */
export function processChannel(
  proc: Pick<NodeJS.Process, 'connected' | 'send' | 'on' | 'once'> = process,
): IpcChannel {
  return {
    // process.send's own false means "backed up", not "not sent": the message is queued and
    // will be delivered, so a call it carried may be applied.
    send: (msg) => {
      if (!proc.connected || !proc.send) return false;
      proc.send(msg);
      return true;
    },
    onMessage: (fn) => void proc.on('message', fn),
    onClose: (fn) => void proc.once('disconnect', fn),
  };
}

/** Two channels joined back to back in one process: for tests, and a one-process primary. */
export function channelPair(): [IpcChannel, IpcChannel] {
  type Side = { listeners: ((m: unknown) => void)[]; closers: (() => void)[]; open: boolean };
  const a: Side = { listeners: [], closers: [], open: true };
  const b: Side = { listeners: [], closers: [], open: true };
  const make = (self: Side, other: Side): IpcChannel => ({
    send(msg) {
      if (!self.open || !other.open) return false;
      // A copy through JSON, as the real channel serializes, and asynchronous like it.
      const copy = JSON.parse(JSON.stringify(msg)) as unknown;
      setImmediate(() => {
        if (other.open) for (const l of other.listeners) l(copy);
      });
      return true;
    },
    onMessage: (fn) => void self.listeners.push(fn),
    onClose: (fn) => void self.closers.push(fn),
  });
  const close = (): void => {
    for (const s of [a, b]) {
      if (!s.open) continue;
      s.open = false;
      for (const c of s.closers) c();
    }
  };
  const ca = make(a, b);
  const cb = make(b, a);
  return [Object.assign(ca, { close }), Object.assign(cb, { close })];
}
