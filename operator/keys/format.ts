/**
 * Virtual keys as `sluice keys` makes and reads them: the key and its id, the consumer Secret
 * that holds the key's digest (format in operator/api/consumer-secret.ts, which the operator
 * reads), and the rows `sluice keys list` shows. Nothing here touches a file or a cluster.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import {
  CONSUMER_LABEL,
  EXPIRES_AT_ANNOTATION,
  KEY_HASH_FIELD,
  KEY_ID_LABEL,
  RAW_KEY_FIELD,
  TEAM_LABEL,
  keyDigest,
  readConsumerSecret,
} from '../api/consumer-secret.js';

/** When `sluice keys create` made the Secret; shown by `list`, not read by the operator. */
export const CREATED_AT_ANNOTATION = 'sluice.dev/created-at';

/** Secret scanners (and the gateway's own SECRET detector) recognise keys by this prefix. */
export const KEY_PREFIX = 'sk-sluice-';

/** 32 random bytes in base62: always 43 characters, since 62^43 > 2^256. */
const KEY_BODY_LENGTH = 43;
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
// Lowercase base32: 5 bytes are exactly 8 characters, valid in a label value and a DNS name.
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

export type Random = (bytes: number) => Buffer;

/** A label value (so also a contract name): 1–63 of letters, digits, `-_.`, alphanumeric ends. */
const LABEL_VALUE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

export const labelValue = (flag: string, missing = `${flag} needs a value`) =>
  z
    .string({ message: missing })
    .max(63, `${flag} must be at most 63 characters`)
    .regex(
      LABEL_VALUE,
      `${flag} must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit`,
    );

export const keyIdValue = z
  .string()
  .regex(/^[a-z2-7]{8}$/, '--id must be a key id as `sluice keys list` shows it (8 characters)');

/**
 * `30d`, `12h`, `90m`, `2w`, or an RFC 3339 date-time. Checked here for form only; whether it is
 * still in the future is decided with the command's clock.
 */
export const expiresValue = z
  .string()
  .refine(
    (s) => RELATIVE.test(s) || DATE_TIME.safeParse(normalDateTime(s)).success,
    '--expires must be a duration such as 30d, 12h, 90m or 2w, or an RFC 3339 date-time',
  );

const RELATIVE = /^([1-9][0-9]{0,5})([mhdw])$/;
const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const DATE_TIME = z.iso.datetime({ offset: true });

// RFC 3339 allows lower-case t and z and a space between date and time; the check wants neither.
function normalDateTime(s: string): string {
  const t = s.trim().toUpperCase();
  return t.length > 10 && t[10] === ' ' ? `${t.slice(0, 10)}T${t.slice(11)}` : t;
}

/** The instant `--expires` names, in ms. The form was checked by `expiresValue`. */
export function expiryMs(value: string, nowMs: number): number {
  const m = RELATIVE.exec(value);
  if (m) return nowMs + Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  return Date.parse(normalDateTime(value));
}

/** RFC 3339 in UTC without fractions, the way kubectl shows times. */
export function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

export function newKey(random: Random = randomBytes): string {
  let n = BigInt(`0x${random(32).toString('hex')}`);
  let body = '';
  while (n > 0n) {
    body = BASE62[Number(n % 62n)]! + body;
    n /= 62n;
  }
  return KEY_PREFIX + body.padStart(KEY_BODY_LENGTH, '0');
}

export function newKeyId(random: Random = randomBytes): string {
  let n = BigInt(`0x${random(5).toString('hex')}`);
  let id = '';
  for (let i = 0; i < 8; i++) {
    id = BASE32[Number(n & 31n)]! + id;
    n >>= 5n;
  }
  return id;
}

/**
 * `sluice-key-<consumer>-<id>`: the consumer lower-cased, other characters than letters, digits
 * and '-' turned into '-', cut so the whole name is a DNS label (63). The labels, not the name,
 * say whose key it is, so a shortened consumer loses nothing.
 */
export function secretName(consumer: string, id: string): string {
  const room = 63 - 'sluice-key-'.length - 1 - id.length;
  const part = consumer
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, room)
    .replace(/^-+|-+$/g, '');
  return part === '' ? `sluice-key-${id}` : `sluice-key-${part}-${id}`;
}

/** A Secret as `sluice keys` handles it; `data` holds decoded values. */
export interface KeySecret {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  data: Record<string, string>;
  /** Why the Secret cannot be read at all (e.g. data that is not base64). */
  problem?: string;
}

export interface NewKey {
  consumer: string;
  team: string | undefined;
  id: string;
  namespace: string;
  createdAtMs: number;
  expiresAtMs: number | undefined;
}

/** The Secret for a new key: only the key's digest is stored. */
export function keySecret(k: NewKey, key: string): KeySecret {
  const labels: Record<string, string> = { [CONSUMER_LABEL]: k.consumer };
  if (k.team !== undefined) labels[TEAM_LABEL] = k.team;
  labels[KEY_ID_LABEL] = k.id;
  const annotations: Record<string, string> = { [CREATED_AT_ANNOTATION]: rfc3339(k.createdAtMs) };
  if (k.expiresAtMs !== undefined) annotations[EXPIRES_AT_ANNOTATION] = rfc3339(k.expiresAtMs);
  return {
    namespace: k.namespace,
    name: secretName(k.consumer, k.id),
    labels,
    annotations,
    data: { [KEY_HASH_FIELD]: keyDigest(key) },
  };
}

/** The Secret as a v1 manifest, its data base64-encoded as the apiserver stores it. */
export function manifest(s: KeySecret): Record<string, unknown> {
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(s.data)) data[k] = Buffer.from(v, 'utf8').toString('base64');
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: s.name,
      namespace: s.namespace,
      labels: s.labels,
      annotations: s.annotations,
    },
    type: 'Opaque',
    data,
  };
}

export function consumerOf(s: KeySecret): string | undefined {
  return s.labels[CONSUMER_LABEL];
}

export function keyIdOf(s: KeySecret): string | undefined {
  const id = s.labels[KEY_ID_LABEL];
  return id === undefined || id === '' ? undefined : id;
}

export function teamOf(s: KeySecret): string | undefined {
  return s.labels[TEAM_LABEL];
}

/** One row of `sluice keys list`: never the key, never its digest. */
export interface KeyRow {
  consumer: string;
  team: string | undefined;
  keyId: string | undefined;
  namespace: string;
  secret: string;
  createdAt: string | undefined;
  expiresAt: string | undefined;
  expired: boolean;
  /** `hash`: only the digest is stored; `raw key`: a hand-made Secret holding the key itself. */
  source: 'hash' | 'raw key' | 'invalid';
  /** Why the operator refuses this Secret (then `source` is `invalid`). */
  problem?: string;
}

export function describeKey(s: KeySecret, nowMs: number): KeyRow {
  const r = readConsumerSecret(
    { namespace: s.namespace, name: s.name, labels: s.labels, annotations: s.annotations },
    s.data,
  );
  const created = s.annotations[CREATED_AT_ANNOTATION];
  const createdMs = created === undefined ? NaN : Date.parse(normalDateTime(created));
  const row: KeyRow = {
    consumer: consumerOf(s) ?? '',
    team: teamOf(s),
    keyId: keyIdOf(s),
    namespace: s.namespace,
    secret: s.name,
    createdAt: Number.isNaN(createdMs) ? undefined : rfc3339(createdMs),
    expiresAt: undefined,
    expired: false,
    source: s.data[RAW_KEY_FIELD] !== undefined ? 'raw key' : 'hash',
  };
  const problem = s.problem ?? (r.ok ? undefined : r.message);
  if (problem !== undefined || !r.ok) {
    row.source = 'invalid';
    row.problem = problem;
    return row;
  }
  if (r.key.expiresAt !== undefined) {
    const ms = Date.parse(r.key.expiresAt);
    row.expiresAt = rfc3339(ms);
    row.expired = nowMs >= ms;
  }
  return row;
}

export function sortRows(rows: KeyRow[]): KeyRow[] {
  const by = (a: string | undefined, b: string | undefined) =>
    (a ?? '') < (b ?? '') ? -1 : (a ?? '') > (b ?? '') ? 1 : 0;
  return rows.sort(
    (a, b) => by(a.consumer, b.consumer) || by(a.createdAt, b.createdAt) || by(a.secret, b.secret),
  );
}

export function formatTable(rows: readonly KeyRow[]): string {
  const header = ['CONSUMER', 'TEAM', 'KEY ID', 'CREATED', 'EXPIRES', 'SOURCE'];
  const cells = rows.map((r) => [
    r.consumer,
    r.team ?? '-',
    r.keyId ?? '-',
    r.createdAt ?? '-',
    r.expiresAt === undefined ? 'never' : r.expired ? `${r.expiresAt} (expired)` : r.expiresAt,
    r.problem === undefined ? r.source : `invalid: ${r.problem}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    c
      .map((v, i) => (i === c.length - 1 ? v : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...cells.map(line)].join('\n') + '\n';
}
