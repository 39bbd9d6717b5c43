import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { SluiceError } from './errors.js';
import type { Outcome } from './wire/mutation.js';
import type { EndReason, PhaseHandler } from './pipeline/phase.js';
import { ExtProcStream, type DuplexCall, type ProcessingRequest } from './stream.js';
import { MutationAnswer, type WireResponse } from './wire/messages.js';

class FakeCall extends EventEmitter implements DuplexCall {
  written: WireResponse[] = [];
  ended = 0;
  write(msg: WireResponse | MutationAnswer) {
    // As trees, which the tests read (the server encodes either: wire/encode.ts).
    this.written.push(msg instanceof MutationAnswer ? msg.toWire() : msg);
    return true;
  }
  end() {
    this.ended++;
  }
  send(msg: ProcessingRequest) {
    this.emit('data', msg);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean): Promise<void> {
  const end = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(2);
  }
}

/** A promise the test resolves when it wants a handler to finish: ordering without timing. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

class Recorder implements PhaseHandler {
  calls: string[] = [];
  finished: EndReason[] = [];
  constructor(
    private readonly gates: Partial<Record<string, Promise<void>>> = {},
    private readonly throwOn?: string,
  ) {}
  private async step(name: string): Promise<Outcome> {
    this.calls.push(`start ${name}`);
    await this.gates[name];
    if (this.throwOn === name) throw new SluiceError('invalid_json', 'bad');
    this.calls.push(`end ${name}`);
    return { kind: 'continue' };
  }
  requestHeaders() {
    return this.step('request_headers');
  }
  requestBody() {
    return this.step('request_body');
  }
  requestTrailers(): Outcome {
    return { kind: 'continue' };
  }
  responseHeaders() {
    return this.step('response_headers');
  }
  responseBody() {
    return this.step('response_body');
  }
  responseTrailers(): Outcome {
    return { kind: 'continue' };
  }
  fail(err: unknown): Outcome {
    return {
      kind: 'respond',
      verdict: {
        status: err instanceof SluiceError ? err.status : 500,
        headers: [],
        body: '',
        details: 'x',
      },
    };
  }
  finish(reason: EndReason) {
    this.finished.push(reason);
  }
}

function start(handler: PhaseHandler) {
  const call = new FakeCall();
  const log = pino({ level: 'silent' });
  const opened: string[] = [];
  new ExtProcStream(
    call,
    handler,
    { phase: () => undefined, opened: () => opened.push('o'), closed: () => opened.push('c') },
    log,
    () => 0,
  ).start();
  return { call, opened };
}

const oneofs = (w: WireResponse[]) => w.map((m) => Object.keys(m)[0]);

describe('ext_proc stream state machine', () => {
  it('answers each message once, in order per direction, with the matching oneof', async () => {
    const g = gate();
    const h = new Recorder({ request_headers: g.wait });
    const { call } = start(h);
    call.send({ request: 'request_headers', request_headers: {} });
    call.send({
      request: 'request_body',
      request_body: { body: Buffer.from('{}'), end_of_stream: true },
    });
    await until(() => h.calls.length === 1);
    g.open();
    await until(() => call.written.length === 2);
    assert.deepEqual(oneofs(call.written), ['request_headers', 'request_body']);
    assert.deepEqual(h.calls, [
      'start request_headers',
      'end request_headers',
      'start request_body',
      'end request_body',
    ]);
  });

  it('does not hold response messages behind an unanswered request message', async () => {
    const g = gate();
    const h = new Recorder({ request_body: g.wait });
    const { call } = start(h);
    call.send({ request: 'request_body', request_body: {} });
    call.send({ request: 'response_headers', response_headers: {} });
    await until(() => call.written.length === 1);
    assert.deepEqual(oneofs(call.written), ['response_headers']);
    g.open();
    await until(() => call.written.length === 2);
    assert.deepEqual(oneofs(call.written), ['response_headers', 'request_body']);
  });

  it('turns a handler error into one immediate response and answers nothing after it', async () => {
    const h = new Recorder({}, 'request_body');
    const { call } = start(h);
    call.send({ request: 'request_headers', request_headers: {} });
    call.send({ request: 'request_body', request_body: {} });
    await until(() => h.finished.length === 1);
    call.send({ request: 'response_headers', response_headers: {} });
    await sleep(10);
    assert.deepEqual(oneofs(call.written), ['request_headers', 'immediate_response']);
    assert.deepEqual(h.finished, ['complete']);
  });

  it('ends its side after answering when Envoy half-closes, and finishes once', async () => {
    const g = gate();
    const h = new Recorder({ response_body: g.wait });
    const { call, opened } = start(h);
    call.send({ request: 'response_body', response_body: {} });
    call.emit('end');
    await sleep(5);
    assert.equal(call.ended, 0, 'nothing is closed while an answer is pending');
    g.open();
    await until(() => call.ended === 1);
    assert.deepEqual(oneofs(call.written), ['response_body']);
    call.emit('cancelled');
    assert.deepEqual(h.finished, ['aborted']);
    assert.deepEqual(opened, ['o', 'c']);
  });

  it('stops writing once Envoy cancels the stream', async () => {
    const g = gate();
    const h = new Recorder({ request_body: g.wait });
    const { call } = start(h);
    call.send({ request: 'request_headers', request_headers: {} });
    call.send({ request: 'request_body', request_body: {} });
    await until(() => h.calls.includes('start request_body'));
    call.emit('cancelled');
    g.open();
    await until(() => h.calls.includes('end request_body'));
    call.send({ request: 'response_headers', response_headers: {} });
    await sleep(5);
    assert.deepEqual(
      oneofs(call.written),
      ['request_headers'],
      'nothing is written after the cancel',
    );
    assert.ok(!h.calls.includes('start response_headers'), 'nothing is processed after the cancel');
    assert.deepEqual(h.finished, ['aborted']);
  });

  it('sends no answers in observability mode', async () => {
    const h = new Recorder();
    const { call } = start(h);
    call.send({ request: 'request_headers', request_headers: {}, observability_mode: true });
    await until(() => h.calls.length === 2);
    await sleep(5);
    assert.deepEqual(call.written, []);
  });
});

describe('ext_proc stream: closing early', () => {
  function startWith(h: PhaseHandler, opts: { endAfterRequestHeaders?: boolean } = {}) {
    const call = new FakeCall();
    const log = pino({ level: 'silent' });
    new ExtProcStream(
      call,
      h,
      { phase: () => undefined, opened: () => undefined, closed: () => undefined },
      log,
      () => 0,
      opts,
    ).start();
    return call;
  }

  it('ends the stream after answering the last response message, before Envoy resets it', async () => {
    const h = new Recorder();
    const call = startWith(h);
    call.send({ request: 'request_headers', request_headers: {} });
    call.send({ request: 'response_headers', response_headers: {} });
    call.send({
      request: 'response_body',
      response_body: { body: Buffer.from('x'), end_of_stream: false },
    });
    await until(() => call.written.length === 3);
    assert.equal(call.ended, 0, 'more response body is expected');
    call.send({
      request: 'response_body',
      response_body: { body: Buffer.from('y'), end_of_stream: true },
    });
    await until(() => call.ended === 1);
    assert.deepEqual(oneofs(call.written), [
      'request_headers',
      'response_headers',
      'response_body',
      'response_body',
    ]);
    assert.deepEqual(h.finished, ['complete']);
    call.emit('end');
    call.emit('cancelled');
    await sleep(5);
    assert.equal(call.ended, 1, 'ended once');
  });

  it('ends an upstream-filter stream right after its request headers answer', async () => {
    const h = new Recorder();
    const call = startWith(h, { endAfterRequestHeaders: true });
    call.send({ request: 'request_headers', request_headers: {} });
    await until(() => call.ended === 1);
    assert.deepEqual(oneofs(call.written), ['request_headers']);
  });

  it('ends the stream after an immediate response', async () => {
    const h = new Recorder({}, 'request_headers');
    const call = startWith(h);
    call.send({ request: 'request_headers', request_headers: {} });
    await until(() => call.ended === 1);
    assert.deepEqual(oneofs(call.written), ['immediate_response']);
  });

  it('waits for a pending request answer before ending on the last response message', async () => {
    const g = gate();
    const h = new Recorder({ request_body: g.wait });
    const call = startWith(h);
    call.send({ request: 'request_body', request_body: {} });
    call.send({ request: 'response_headers', response_headers: { end_of_stream: true } });
    await until(() => call.written.length === 1);
    await sleep(5);
    assert.equal(call.ended, 0);
    g.open();
    await until(() => call.ended === 1);
    assert.deepEqual(oneofs(call.written), ['response_headers', 'request_body']);
  });

  it('answers a phase that answers synchronously before the message handler returns', () => {
    // No promise per message when the direction is idle and the phase needs none (the hot path).
    const sync: PhaseHandler = {
      requestHeaders: () => ({ kind: 'continue' }),
      requestBody: () => ({ kind: 'continue' }),
      requestTrailers: () => ({ kind: 'continue' }),
      responseHeaders: () => ({ kind: 'continue' }),
      responseBody: () => ({ kind: 'continue' }),
      responseTrailers: () => ({ kind: 'continue' }),
      fail: () => ({ kind: 'continue' }),
      finish: () => undefined,
    };
    const { call } = start(sync);
    call.send({ request: 'request_headers', request_headers: {} });
    assert.deepEqual(oneofs(call.written), ['request_headers']);
    call.send({ request: 'response_headers', response_headers: { end_of_stream: true } });
    assert.deepEqual(oneofs(call.written), ['request_headers', 'response_headers']);
    assert.equal(call.ended, 1, 'the last message ends the stream at once');
  });

  it('answers a message after an asynchronous one of its direction, and a synchronous throw with fail()', async () => {
    const g = gate();
    const calls: string[] = [];
    const h: PhaseHandler = {
      requestHeaders: async () => {
        await g.wait;
        calls.push('headers');
        return { kind: 'continue' };
      },
      requestBody: () => {
        calls.push('body');
        throw new SluiceError('invalid_json', 'bad');
      },
      requestTrailers: () => ({ kind: 'continue' }),
      responseHeaders: () => ({ kind: 'continue' }),
      responseBody: () => ({ kind: 'continue' }),
      responseTrailers: () => ({ kind: 'continue' }),
      fail: (err) => ({
        kind: 'respond',
        verdict: { status: (err as SluiceError).status, headers: [], body: '', details: 'x' },
      }),
      finish: () => undefined,
    };
    const { call } = start(h);
    call.send({ request: 'request_headers', request_headers: {} });
    call.send({ request: 'request_body', request_body: {} });
    assert.deepEqual(call.written, []);
    g.open();
    await until(() => call.ended === 1);
    assert.deepEqual(calls, ['headers', 'body']);
    assert.deepEqual(oneofs(call.written), ['request_headers', 'immediate_response']);
  });
});
