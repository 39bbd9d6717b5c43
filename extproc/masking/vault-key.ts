/**
 * The vault key file (`--vault-key-file`, env SLUICE_VAULT_KEY_FILE): 32 bytes, written raw,
 * as 64 hex digits, or as base64 (`openssl rand -base64 32`, the usual content of a Secret).
 * Errors name the file and what was wrong, never its content.
 */
import { readFile } from 'node:fs/promises';

const HEX = /^[0-9a-fA-F]{64}$/;
const BASE64 = /^[A-Za-z0-9+/_-]{43}=?$/;

/** Random bytes are almost never all printable; a printable file is text, and must be hex or base64. */
function printable(b: Buffer): boolean {
  for (const c of b) if (c < 0x20 || c > 0x7e) return false;
  return true;
}

export function parseVaultKey(raw: Buffer, source: string): Buffer {
  if (raw.length === 32 && !printable(raw)) return Buffer.from(raw);
  const text = raw.toString('latin1').trim();
  if (HEX.test(text)) return Buffer.from(text, 'hex');
  if (BASE64.test(text)) {
    const key = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (key.length === 32) return key;
  }
  throw new Error(
    `the vault key in ${source} must be 32 bytes: raw, 64 hex digits, or base64 (openssl rand -base64 32)`,
  );
}

export async function loadVaultKey(path: string): Promise<Buffer> {
  let raw: Buffer;
  try {
    raw = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new Error(`cannot read the vault key file ${path} (${code})`, { cause: err });
  }
  return parseVaultKey(raw, path);
}
