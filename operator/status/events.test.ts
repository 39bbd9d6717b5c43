import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Condition } from '../api/types.js';
import { pino } from 'pino';
import { EventRecorder, eventsFor } from './events.js';

const c = (type: string, status: Condition['status'], reason: string, message = ''): Condition => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime: '2026-01-01T00:00:00Z',
});

it('records Events on transitions only: False is a Warning, True after False is Normal', () => {
  const nacked = [c('Accepted', 'True', 'Accepted'), c('Programmed', 'False', 'NACKed', 'no TLS')];
  assert.deepEqual(eventsFor([c('Programmed', 'True', 'Programmed')], nacked), [
    { type: 'Warning', reason: 'NACKed', message: 'Programmed: no TLS' },
  ]);
  // The same state again: nothing new to tell.
  assert.deepEqual(eventsFor(nacked, nacked), []);
  // A new reason while False is news.
  const incomplete = [c('Programmed', 'False', 'Incomplete', 'no extproc')];
  assert.equal(eventsFor(nacked, incomplete)[0]?.reason, 'Incomplete');
  assert.deepEqual(eventsFor(nacked, [c('Programmed', 'True', 'Programmed', 'ok')]), [
    { type: 'Normal', reason: 'Programmed', message: 'Programmed: ok' },
  ]);
  // Pending and first Accepted=True are routine.
  assert.deepEqual(eventsFor(undefined, [c('Accepted', 'True', 'Accepted')]), []);
  assert.deepEqual(eventsFor(nacked, [c('Programmed', 'Unknown', 'Pending')]), []);
  assert.equal(
    eventsFor(undefined, [c('Accepted', 'False', 'SecretNotFound', 'x')])[0]?.type,
    'Warning',
  );
});

it('records at most maxPerMinute Events a minute, so one NACK on thousands of routes is not a flood', async () => {
  let created = 0;
  let clock = 0;
  const rec = new EventRecorder({
    api: { create: () => Promise.resolve(void created++) },
    instance: 'a',
    logger: pino({ level: 'silent' }),
    now: () => clock,
    maxPerMinute: 3,
  });
  const warning = [{ type: 'Warning' as const, reason: 'NACKed', message: 'm' }];
  for (let i = 0; i < 5; i++)
    rec.record({ kind: 'AIRoute', name: `r${i}`, namespace: 'ns' }, warning);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual([created, rec.dropped], [3, 2]);
  clock += 60_000;
  rec.record({ kind: 'AIRoute', name: 'later', namespace: 'ns' }, warning);
  await new Promise((r) => setImmediate(r));
  assert.equal(created, 4);
});
