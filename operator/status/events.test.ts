import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Condition } from '../api/types.js';
import { eventsFor } from './events.js';

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
