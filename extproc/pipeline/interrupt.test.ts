import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { ExtProcStream, type DuplexCall, type ProcessingRequest } from '../stream.js';
import type { WireResponse } from '../wire/messages.js';
import { interruptible } from './interrupt.js';
import { CONTINUE, type Outcome, type Verdict } from './mutation.js';
import type { EndReason, PhaseHandler } from './phase.js';

class FakeCall extends EventEmitter implements DuplexCall {
  written: WireResponse[] = [];
  ended = 0;
  write(msg: WireResponse) {
    this.written.push(msg);
    return true;
  }
  end() {
    this.ended++;
  }
}

const VERDICT: Verdict = {
  status: 501,
  headers: [['content-type', 'application/json']],
  body: '{"error":{}}',
  details: 'sluice_unsupported_backend',
};

class Handler implements PhaseHandler {
  finished: EndReason[] = [];
  constructor(private readonly refuse = false) {}
  requestHeaders(): Outcome {
    if (this.refuse) throw new Error('refused');
    return CONTINUE;
  }
  requestBody(): Outcome {
    return CONTINUE;
  }
  requestTrailers(): Outcome {
    return CONTINUE;
  }
  responseHeaders(): Outcome {
    return CONTINUE;
  }
  responseBody(): Outcome {
    return CONTINUE;
  }
  responseTrailers(): Outcome {
    return CONTINUE;
  }
  fail(): Outcome {
    return { kind: 'respond', verdict: VERDICT };
  }
  finish(reason: EndReason): void {
    this.finished.push(reason);
  }
}

function started(refuse = false) {
  const inner = new FakeCall();
  const wire = interruptible(inner);
  const handler = new Handler(refuse);
  new ExtProcStream(
    wire.call,
    handler,
    { phase: () => undefined, opened: () => undefined, closed: () => undefined },
    pino({ level: 'silent' }),
    () => 0,
  ).start();
  const send = (msg: ProcessingRequest) => inner.emit('data', msg);
  return { inner, wire, handler, send };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('interrupt: an immediate response the router phase sends unasked', () => {
  it('is written once, as an immediate_response, and ends our side', async () => {
    const { inner, wire, handler, send } = started();
    send({ request: 'request_headers', request_headers: {} });
    await settle();
    assert.deepEqual(inner.written, [{ request_headers: {} }]);
    assert.equal(wire.interrupt(VERDICT), true);
    const written: WireResponse[] = inner.written;
    const ir = written[1]!['immediate_response'] as Record<string, unknown>;
    assert.deepEqual(ir['status'], { code: 501 });
    assert.equal(ir['details'], 'sluice_unsupported_backend');
    assert.equal(ir['body']?.toString(), '{"error":{}}');
    assert.equal(inner.ended, 1);
    assert.equal(wire.interrupt(VERDICT), false, 'only once');
    // An answer the state machine still makes goes nowhere; Envoy has stopped reading.
    send({ request: 'response_headers', response_headers: {} });
    await settle();
    assert.equal(written.length, 2);
    // Envoy half-closes after the reply: the handler finishes once, our side is not ended twice.
    inner.emit('end');
    await settle();
    assert.deepEqual(handler.finished, ['aborted']);
    assert.equal(inner.ended, 1);
  });

  it('writes nothing once Envoy ended or reset the stream', async () => {
    for (const event of ['end', 'cancelled'] as const) {
      const { inner, wire } = started();
      inner.emit(event);
      await settle();
      assert.equal(wire.interrupt(VERDICT), false, event);
      assert.deepEqual(inner.written, []);
    }
  });

  it('writes nothing after the stream answered with its own immediate response', async () => {
    const { inner, wire, send } = started(true);
    send({ request: 'request_headers', request_headers: {} });
    await settle();
    assert.ok('immediate_response' in inner.written[0]!);
    assert.equal(wire.interrupt(VERDICT), false);
    assert.equal(inner.written.length, 1);
  });
});
