import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadVaultKey, parseVaultKey } from './vault-key.js';

describe('vault key file', () => {
  const key = randomBytes(32);

  it('reads raw bytes, hex and base64 (standard or URL-safe, newline tolerated)', () => {
    const raw = Buffer.from(key);
    raw[0] = 0; // random bytes that happen to be all printable would be read as text
    assert.deepEqual(parseVaultKey(raw, 'f'), raw);
    assert.deepEqual(parseVaultKey(Buffer.from(`${key.toString('hex')}\n`), 'f'), key);
    assert.deepEqual(parseVaultKey(Buffer.from(`${key.toString('base64')}\n`), 'f'), key);
    assert.deepEqual(parseVaultKey(Buffer.from(key.toString('base64url')), 'f'), key);
  });

  it('refuses other sizes without echoing the content', () => {
    for (const bad of [
      Buffer.from('short-secret-value'),
      // 32 characters of text are not 32 raw bytes of key.
      Buffer.from(randomBytes(16).toString('hex')),
      Buffer.from('a-32-character-password-12345678'),
      Buffer.from(randomBytes(48).toString('base64')),
      randomBytes(31),
    ]) {
      assert.throws(
        () => parseVaultKey(bad, '/etc/sluice/vault.key'),
        (err: Error) =>
          /vault key in \/etc\/sluice\/vault.key must be 32 bytes/.test(err.message) &&
          !err.message.includes(bad.toString('latin1').trim()),
      );
    }
  });

  it('names the file and the reason when it cannot be read', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-key-'));
    try {
      const path = join(dir, 'key');
      await assert.rejects(loadVaultKey(path), /cannot read the vault key file .*key \(ENOENT\)/);
      await writeFile(path, key.toString('base64'));
      assert.deepEqual(await loadVaultKey(path), key);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
