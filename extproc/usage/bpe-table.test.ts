import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import {
  BpeFileError,
  parseTiktoken,
  rankOfAscii,
  rankOfBytes,
  rankOfChars,
  tableBytes,
} from './bpe-table.js';

const req = createRequire(import.meta.url);

test('the o200k .tiktoken file holds exactly the package table: every token, every rank', () => {
  const t = parseTiktoken(readFileSync(req.resolve('gpt-tokenizer/data/o200k_base.tiktoken')));
  // The package's JavaScript table (what estimation used before): a string per token, or its
  // bytes when they are not UTF-8.
  const js = (req('gpt-tokenizer/bpeRanks/o200k_base') as { default: (string | number[])[] })
    .default;
  let tokens = 0;
  for (let rank = 0; rank < js.length; rank++) {
    const tok = js[rank];
    if (tok === undefined) continue;
    const bytes = typeof tok === 'string' ? Buffer.from(tok, 'utf8') : Uint8Array.from(tok);
    tokens++;
    assert.equal(rankOfBytes(t, bytes), rank, `rank ${rank}`);
    if (bytes.length <= 64) {
      const latin1 = Buffer.from(bytes).toString('latin1');
      assert.equal(rankOfChars(t, `xx${latin1}y`, 2, 2 + latin1.length), rank);
      // Looked up straight from ASCII text when its bytes are ASCII; refused otherwise.
      const ascii = bytes.every((b) => b < 0x80);
      assert.equal(rankOfAscii(t, `xx${latin1}y`, 2, 2 + latin1.length), ascii ? rank : -2);
    }
  }
  assert.equal(t.size, tokens);
  assert.ok(tableBytes(t) < 6 * 1024 * 1024, `${tableBytes(t)} bytes`);
  assert.equal(rankOfBytes(t, Buffer.from('not one token, surely', 'utf8')), -1);
  assert.equal(rankOfChars(t, '\u00ff\u00fe', 0, 2), -1);
  assert.equal(rankOfAscii(t, 'xnot one token, surelyx', 1, 22), -1);
  assert.equal(rankOfAscii(t, 'qz', 0, 2), rankOfChars(t, 'qz', 0, 2));
  assert.equal(rankOfAscii(t, 'caf\u00e9', 0, 4), -2);
  assert.equal(rankOfAscii(t, 'a\u00e9', 0, 2), -2);
});

test('parseTiktoken: CRLF and blank lines, padding, any rank order; lookups by bytes and chars', () => {
  const b64 = (s: string): string => Buffer.from(s, 'latin1').toString('base64');
  const file = `${b64('a')} 7\r\n\n${b64('ab')} 3\n${b64('abc')} 12\n${b64('\u00ff\u00fe\u00fd')} 0`;
  const t = parseTiktoken(Buffer.from(file));
  assert.equal(t.size, 4);
  assert.equal(rankOfChars(t, 'xabcx', 1, 4), 12);
  assert.equal(rankOfChars(t, 'ab', 0, 2), 3);
  assert.equal(rankOfChars(t, 'ab', 0, 1), 7);
  assert.equal(rankOfChars(t, '\u00ff\u00fe\u00fd', 0, 3), 0);
  assert.equal(rankOfChars(t, 'abd', 0, 3), -1);
  assert.equal(rankOfChars(t, 'ba', 0, 2), -1);
  assert.equal(rankOfBytes(t, Buffer.from('abc')), 12);
});

test('parseTiktoken refuses a malformed file with the line', () => {
  const bad: [string, RegExp][] = [
    ['YQ==\n', /line 1: no "bytes rank"/],
    ['YQ== 1\nYg== x\n', /line 2: rank is not a number/],
    ['Y*== 1\n', /line 1: not base64/],
    ['YQ== \n', /line 1: no rank/],
    ['YQ== 1\nYQ== 2\n', /repeats rank 1/],
    ['== 1\n', /line 1: (empty token|no "bytes rank")/],
    ['YQ== 99999999999\n', /rank out of range/],
  ];
  for (const [file, message] of bad) {
    assert.throws(
      () => parseTiktoken(Buffer.from(file)),
      (err: unknown) => {
        assert.ok(err instanceof BpeFileError);
        assert.match(err.message, message);
        return true;
      },
    );
  }
});
