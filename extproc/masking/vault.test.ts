import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { MemoryVault, RequestVault } from './vault.js';

describe('MemoryVault', () => {
  it('numbers per type and keeps a value on its placeholder for the session', () => {
    const v = new MemoryVault();
    assert.deepEqual(
      v.put('s1', [
        { type: 'EMAIL', value: 'a@x.example' },
        { type: 'PHONE', value: '+1 415 555 0132' },
        { type: 'EMAIL', value: 'b@x.example' },
        { type: 'EMAIL', value: 'a@x.example' },
      ]),
      ['[EMAIL_1]', '[PHONE_1]', '[EMAIL_2]', '[EMAIL_1]'],
    );
    assert.deepEqual(v.put('s1', [{ type: 'EMAIL', value: 'b@x.example' }]), ['[EMAIL_2]']);
    assert.deepEqual(v.put('s2', [{ type: 'EMAIL', value: 'b@x.example' }]), ['[EMAIL_1]']);
    const l = v.get('s1');
    assert.equal(l.get('[EMAIL_2]'), 'b@x.example');
    assert.equal(l.get('[PHONE_1]'), '+1 415 555 0132');
    assert.equal(l.get('[EMAIL_9]'), undefined);
    assert.equal(v.get('nobody').size, 0);
  });

  it('keeps no value or session id in clear', () => {
    const v = new MemoryVault();
    v.put('session-visible-id', [{ type: 'EMAIL', value: 'hidden.person@example.com' }]);
    const dump = inspect(v, { depth: 10, maxArrayLength: 1000, maxStringLength: 100000 });
    assert.ok(!dump.includes('hidden.person'));
    assert.ok(!dump.includes('session-visible-id'));
    assert.ok(!dump.includes(Buffer.from('hidden.person').toString('hex')));
  });

  it('forgets sessions after the TTL, the least recently used beyond the bound, and old entries', () => {
    let now = 0;
    const v = new MemoryVault({
      ttlMs: 1000,
      maxSessions: 2,
      maxEntriesPerSession: 2,
      now: () => now,
    });
    v.put('a', [{ type: 'EMAIL', value: '1@x.example' }]);
    now = 500;
    v.put('b', [{ type: 'EMAIL', value: '2@x.example' }]);
    now = 1200;
    assert.equal(v.get('a').size, 0, 'expired');
    assert.equal(v.get('b').size, 1);
    v.put('c', [{ type: 'EMAIL', value: '3@x.example' }]);
    v.put('d', [{ type: 'EMAIL', value: '4@x.example' }]);
    assert.equal(v.size, 2);
    assert.equal(v.get('b').size, 0, 'least recently used dropped');
    v.put('d', [
      { type: 'EMAIL', value: '5@x.example' },
      { type: 'EMAIL', value: '6@x.example' },
    ]);
    const d = v.get('d');
    assert.equal(d.size, 2);
    assert.equal(d.get('[EMAIL_1]'), undefined, 'the oldest entry went');
    assert.equal(d.get('[EMAIL_3]'), '6@x.example', 'numbers are not reused');
  });

  it('accepts a configured key, and refuses a wrong-sized one', () => {
    assert.throws(() => new MemoryVault({ key: Buffer.alloc(16) }), /32 bytes/);
    const key = Buffer.alloc(32, 7);
    const v = new MemoryVault({ key });
    v.put('s', [{ type: 'EMAIL', value: 'a@x.example' }]);
    assert.equal(v.get('s').get('[EMAIL_1]'), 'a@x.example');
  });
});

describe('RequestVault', () => {
  it('numbers within one request', () => {
    const v = new RequestVault();
    assert.deepEqual(
      v.put([
        { type: 'IBAN', value: 'x' },
        { type: 'IBAN', value: 'y' },
        { type: 'IBAN', value: 'x' },
      ]),
      ['[IBAN_1]', '[IBAN_2]', '[IBAN_1]'],
    );
    assert.equal(v.get('[IBAN_2]'), 'y');
  });
});
