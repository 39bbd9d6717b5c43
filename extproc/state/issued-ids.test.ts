import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IdIssuer, PROCESS_IDS, prefixOf, SEQ_LIMIT } from './issued-ids.js';

const randomUUIDLike = '123e4567-e89b-12d3-a456-426614174000';

describe('IdIssuer', () => {
  it('issues distinct 22-character base64url ids under one random prefix per issuer', () => {
    const a = new IdIssuer();
    const b = new IdIssuer();
    assert.notEqual(a.prefix, b.prefix);
    const ids = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const id = a.issue();
      assert.match(id, /^[A-Za-z0-9_-]{22}$/);
      assert.ok(id.startsWith(a.prefix));
      ids.add(id);
    }
    assert.equal(ids.size, 5000);
    assert.equal(a.issued, 5000);
    assert.equal(b.seqOf(a.idOf(7)), -1, "another issuer's id");
  });

  it('maps ids and sequence numbers one to one, at every digit boundary', () => {
    const a = new IdIssuer('ABCDEFGHIJKLMN', SEQ_LIMIT - 3);
    const seqs = [0, 1, 63, 64, 4095, 4096, 2 ** 30 - 1, 2 ** 30, 2 ** 47, SEQ_LIMIT - 1];
    const ids = seqs.map((s) => a.idOf(s));
    assert.equal(new Set(ids).size, seqs.length);
    assert.equal(ids[0], 'ABCDEFGHIJKLMNAAAAAAAA');
    assert.equal(ids[1], 'ABCDEFGHIJKLMNAAAAAAAB');
    assert.equal(ids[3], 'ABCDEFGHIJKLMNAAAAAABA');
    assert.equal(ids.at(-1), 'ABCDEFGHIJKLMN________');
    // Every number below `issued` is known; SEQ_LIMIT - 3 have been "issued" here.
    seqs.forEach((s, i) => assert.equal(a.seqOf(ids[i]!), s < SEQ_LIMIT - 3 ? s : -1));
  });

  it('knows only the numbers it has issued, and only its own well-formed ids', () => {
    const a = new IdIssuer('abcdefghijklmn');
    const first = a.issue();
    assert.equal(a.seqOf(first), 0);
    assert.equal(a.seqOf(a.idOf(1)), -1, 'not issued yet');
    a.issue();
    assert.equal(a.seqOf(a.idOf(1)), 1);
    assert.equal(a.seqOf(first.slice(0, 21)), -1);
    assert.equal(a.seqOf(first + 'A'), -1);
    assert.equal(a.seqOf(first.slice(0, 21) + '='), -1);
    assert.equal(a.seqOf(first.slice(0, 21) + 'é'), -1);
    assert.equal(a.seqOf('Abcdefghijklmn' + first.slice(14)), -1, 'another prefix');
    assert.throws(() => new IdIssuer('short'), RangeError);
    assert.throws(() => new IdIssuer('abcdefghijklm='), RangeError);
  });

  it("reads another process's ids: their prefix, and their number issued or not", () => {
    const worker = new IdIssuer();
    const id = worker.issue();
    assert.equal(prefixOf(id), worker.prefix);
    const here = new IdIssuer(worker.prefix);
    assert.equal(here.seqOf(id), -1, 'issued elsewhere');
    assert.equal(here.numberOf(id), 0);
    assert.equal(here.numberOf(here.idOf(123_456_789)), 123_456_789);
    assert.equal(here.numberOf(id.slice(0, 21) + '='), -1);
    assert.equal(here.numberOf(new IdIssuer().issue()), -1, 'another prefix');
    assert.equal(prefixOf(id.slice(0, 21)), undefined);
    assert.equal(prefixOf(id.slice(0, 21) + '='), undefined);
    assert.equal(prefixOf(randomUUIDLike), undefined);
  });

  it('turns to random ids once the numbers are spent', () => {
    const a = new IdIssuer('abcdefghijklmn', SEQ_LIMIT - 1);
    assert.equal(a.issue(), 'abcdefghijklmn________');
    const ids = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const id = a.issue();
      assert.match(id, /^[A-Za-z0-9_-]{22}$/);
      ids.add(id);
    }
    assert.equal(ids.size, 100);
    assert.equal(a.issued, SEQ_LIMIT);
  });

  it('the process issuer is what reservation ids come from', async () => {
    const { reservationId } = await import('../governance/reservation.js');
    const id = reservationId();
    assert.ok(id.startsWith(PROCESS_IDS.prefix));
    assert.equal(PROCESS_IDS.seqOf(id), PROCESS_IDS.issued - 1);
  });
});
