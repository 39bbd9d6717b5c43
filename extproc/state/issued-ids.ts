/**
 * Ids this process issues (governance's reservationId): a random prefix drawn once per process
 * (14 base64url characters, 84 bits) and a sequence number (8 base64url characters, 48 bits,
 * most significant first), 22 characters in all. Unique across replicas as random ids are (two
 * processes share ids only if they draw the same prefix), and the memory store can keep the
 * "settled" marker of an id it knows by its sequence number, in a slot of an array, instead of
 * the id (seq-markers.ts).
 *
 * An id maps to its sequence number one to one (8 characters of 6 bits are the 48 bits exactly),
 * so `seqOf` names an id by its number whoever made the string; it answers only for numbers
 * already issued, so a made-up id far ahead cannot make a store reserve room up to it.
 */
import { randomBytes } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const SIXTETS = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) SIXTETS[ALPHABET.charCodeAt(i)] = i;
const CODES = Buffer.from(ALPHABET, 'latin1');

export const PREFIX_CHARS = 14;
const SEQ_CHARS = 8;
export const ID_CHARS = PREFIX_CHARS + SEQ_CHARS;
/** Sequence numbers are below 2^48: exact in a double, and 8 characters of 6 bits. */
export const SEQ_LIMIT = 2 ** 48;

export class IdIssuer {
  readonly prefix: string;
  private next: number;
  /** The id being written: the prefix, then the sequence number's characters. */
  private readonly scratch = Buffer.alloc(ID_CHARS);

  constructor(prefix = randomBytes(11).toString('base64url').slice(0, PREFIX_CHARS), first = 0) {
    if (prefix.length !== PREFIX_CHARS || !isBase64url(prefix))
      throw new RangeError(`an id prefix is ${PREFIX_CHARS} base64url characters`);
    this.prefix = prefix;
    this.next = first;
    this.scratch.write(prefix, 'latin1');
  }

  /** How many sequence numbers have been issued: every number below this one. */
  get issued(): number {
    return this.next;
  }

  /**
   * A new id. Once the 2^48 numbers are spent (a century at 100,000 a second) ids are 128
   * random bits instead: as unique, only kept by the store as any id it did not issue.
   */
  issue(): string {
    if (this.next >= SEQ_LIMIT) return randomBytes(16).toString('base64url');
    return this.idOf(this.next++);
  }

  /** The id of sequence number `seq` (an integer in [0, 2^48)). */
  idOf(seq: number): string {
    const b = this.scratch;
    let s = seq;
    for (let i = ID_CHARS - 1; i >= PREFIX_CHARS; i--) {
      const d = s % 64;
      b[i] = CODES[d]!;
      s = (s - d) / 64;
    }
    return b.toString('latin1', 0, ID_CHARS);
  }

  /** Whether `id` has this issuer's shape and prefix (issued or not). */
  hasPrefix(id: string): boolean {
    return id.length === ID_CHARS && id.startsWith(this.prefix);
  }

  /** The sequence number of `id` if it is one of this issuer's ids issued so far, else -1. */
  seqOf(id: string): number {
    const s = this.numberOf(id);
    return s < this.next ? s : -1;
  }

  /** The sequence number of `id` if it has this issuer's prefix and shape, issued or not, else -1. */
  numberOf(id: string): number {
    if (id.length !== ID_CHARS || !id.startsWith(this.prefix)) return -1;
    let s = 0;
    for (let i = PREFIX_CHARS; i < ID_CHARS; i++) {
      const c = id.charCodeAt(i);
      const v = c < 128 ? SIXTETS[c]! : -1;
      if (v < 0) return -1;
      s = s * 64 + v;
    }
    return s;
  }
}

/**
 * The prefix of `id` if it has the shape of an issued id (ID_CHARS base64url characters), else
 * undefined: whose issuer it may be (another process's, as a worker's are for the primary's store).
 */
export function prefixOf(id: string): string | undefined {
  return id.length === ID_CHARS && isBase64url(id) ? id.slice(0, PREFIX_CHARS) : undefined;
}

function isBase64url(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || SIXTETS[c]! < 0) return false;
  }
  return true;
}

/** The process's issuer: what reservationId draws from and the memory store recognises. */
export const PROCESS_IDS = new IdIssuer();
