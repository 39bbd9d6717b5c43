/**
 * The consumer Secret: how one virtual key of a consumer is kept in Kubernetes. `sluice keys`
 * writes this format and the operator's sources read it; both take the names from here.
 *
 *   metadata.labels
 *     sluice.dev/consumer: <consumer>      required: which consumer the key belongs to
 *     sluice.dev/team: <team>              optional: every Secret of a consumer must agree
 *     sluice.dev/key-id: <id>              optional: names the key in listings
 *   metadata.annotations
 *     sluice.dev/expires-at: <RFC 3339>    optional: the key is refused from then on
 *   data (exactly one of)
 *     keyHash: lowercase hex sha256 of the key (what `sluice keys create` writes)
 *     key:     the key itself, for hand-made Secrets; hashed, trimmed, as soon as it is read
 *
 * A Secret with both keyHash and key is refused whole rather than guessed at: the two could
 * disagree, and either guess would leave a key working that someone meant to replace.
 *
 * Several Secrets with the same consumer label are several keys of that consumer (rotation).
 * Which Secrets count is the operator's choice (its consumer namespaces), not the Secret's: a
 * tenant who may create Secrets somewhere must not thereby be able to mint a consumer.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { ConsumerKey, ObjectMeta } from './types.js';

export const CONSUMER_LABEL = 'sluice.dev/consumer';
export const TEAM_LABEL = 'sluice.dev/team';
export const KEY_ID_LABEL = 'sluice.dev/key-id';
export const EXPIRES_AT_ANNOTATION = 'sluice.dev/expires-at';
export const KEY_HASH_FIELD = 'keyHash';
export const RAW_KEY_FIELD = 'key';

// A label value that is not empty; it becomes a contract name, whose syntax is wider.
const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
// The contract's own date-time check, which also refuses days a month does not have (Date.parse
// reads 02-30 as March 2nd). RFC 3339 allows lower-case t and z and a space; it gets them upper.
const DATE_TIME = z.iso.datetime({ offset: true });

export type ConsumerSecretResult = { ok: true; key: ConsumerKey } | { ok: false; message: string };

export function isConsumerSecret(meta: Pick<ObjectMeta, 'labels'>): boolean {
  return meta.labels?.[CONSUMER_LABEL] !== undefined;
}

/** The lowercase hex sha256 of a key, as the extproc computes it for a presented key. */
export function keyDigest(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/**
 * One consumer Secret → its key. `data` holds decoded values. Messages name fields and labels,
 * never a data value.
 */
export function readConsumerSecret(
  meta: Pick<ObjectMeta, 'namespace' | 'name' | 'labels' | 'annotations'>,
  data: Readonly<Record<string, string>>,
): ConsumerSecretResult {
  const fail = (message: string): ConsumerSecretResult => ({ ok: false, message });
  const consumer = meta.labels?.[CONSUMER_LABEL];
  if (consumer === undefined) return fail(`no ${CONSUMER_LABEL} label`);
  if (consumer.length > 63 || !NAME.test(consumer)) {
    return fail(`label ${CONSUMER_LABEL} must be a non-empty label value`);
  }
  const team = meta.labels?.[TEAM_LABEL];
  if (team !== undefined && (team.length > 63 || !NAME.test(team))) {
    return fail(`label ${TEAM_LABEL} must be a non-empty label value`);
  }
  const keyId = meta.labels?.[KEY_ID_LABEL];

  const hashed = data[KEY_HASH_FIELD];
  const raw = data[RAW_KEY_FIELD];
  if (hashed !== undefined && raw !== undefined) {
    return fail(`data has both ${KEY_HASH_FIELD} and ${RAW_KEY_FIELD}; keep exactly one`);
  }
  let keyHash: string;
  if (hashed !== undefined) {
    const h = hashed.trim();
    if (!SHA256_HEX.test(h)) {
      return fail(`data.${KEY_HASH_FIELD} must be a hex sha256 digest (64 hex digits)`);
    }
    keyHash = h.toLowerCase();
  } else if (raw !== undefined) {
    // Trimmed as credentials are everywhere else: a trailing newline from `echo` is never
    // part of what a client sends, and the extproc hashes what it is sent.
    const k = raw.trim();
    if (k === '') return fail(`data.${RAW_KEY_FIELD} is empty`);
    keyHash = keyDigest(k);
  } else {
    return fail(`data needs ${KEY_HASH_FIELD} (a sha256 digest) or ${RAW_KEY_FIELD}`);
  }

  const key: ConsumerKey = { namespace: meta.namespace, secret: meta.name, consumer, keyHash };
  if (team !== undefined) key.team = team;
  if (keyId !== undefined && keyId !== '') key.keyId = keyId;
  const expires = meta.annotations?.[EXPIRES_AT_ANNOTATION];
  if (expires !== undefined) {
    const t = expires.trim().toUpperCase();
    const normal = t.length > 10 && t[10] === ' ' ? `${t.slice(0, 10)}T${t.slice(11)}` : t;
    const ms = DATE_TIME.safeParse(normal).success ? Date.parse(normal) : NaN;
    if (Number.isNaN(ms)) {
      return fail(`annotation ${EXPIRES_AT_ANNOTATION} must be an RFC 3339 date-time`);
    }
    key.expiresAt = new Date(ms).toISOString();
  }
  return { ok: true, key };
}

/** The contract's bound on the keys of one consumer. */
export const MAX_KEYS_PER_CONSUMER = 64;

export interface ConsumerProblem {
  consumer: string;
  /** `namespace/name` of the Secrets concerned, sorted. */
  secrets: string[];
  message: string;
}

/** One consumer as its Secrets define it, when they agree. */
export interface ConsumerGroup {
  name: string;
  /** The team its Secrets agree on; '' for none. */
  team: string;
  /** Every key of its Secrets, by Secret. */
  keys: ConsumerKey[];
  /** The keys no other consumer also holds: the only ones that may be used. */
  own: ConsumerKey[];
}

/**
 * Consumer keys (one per Secret) → consumers, sorted by name, and what is wrong between Secrets.
 * Left out whole, each with a problem, fail-closed: a consumer whose Secrets disagree on the team
 * (which team's budget and access would apply is a guess), one with more keys than the contract
 * holds; and a key digest found under two consumers is left out of both (which consumer a caller
 * is would be a guess). These rules are the consumer Secret format's, not the compilation's: a source
 * reports the problems as it reads the Secrets, the compilation builds the groups.
 */
export function groupConsumerKeys(keys: readonly ConsumerKey[]): {
  consumers: ConsumerGroup[];
  problems: ConsumerProblem[];
} {
  const problems: ConsumerProblem[] = [];
  const ordered = [...keys].sort(
    (a, b) => cmp(a.consumer, b.consumer) || cmp(secretKey(a), secretKey(b)),
  );
  const owners = new Map<string, Set<string>>();
  for (const k of ordered) {
    const set = owners.get(k.keyHash) ?? new Set<string>();
    set.add(k.consumer);
    owners.set(k.keyHash, set);
  }
  const groups = new Map<string, ConsumerKey[]>();
  for (const k of ordered) {
    const list = groups.get(k.consumer) ?? [];
    list.push(k);
    groups.set(k.consumer, list);
  }

  const consumers: ConsumerGroup[] = [];
  for (const [name, group] of groups) {
    const secrets = group.map(secretKey);
    const teams = [...new Set(group.map((k) => k.team ?? ''))];
    if (teams.length > 1) {
      const described = teams.map((t) => (t === '' ? '(none)' : `"${t}"`)).join(', ');
      problems.push({
        consumer: name,
        secrets,
        message: `the Secrets of consumer "${name}" disagree on the team (${described}); none of its keys is used`,
      });
      continue;
    }
    const shared = group.filter((k) => owners.get(k.keyHash)!.size > 1);
    if (shared.length > 0) {
      problems.push({
        consumer: name,
        secrets: shared.map(secretKey),
        message: `a key of consumer "${name}" is also a key of another consumer; it is used by neither`,
      });
    }
    const own = group.filter((k) => owners.get(k.keyHash)!.size === 1);
    const digests = new Set(own.map((k) => k.keyHash));
    if (digests.size > MAX_KEYS_PER_CONSUMER) {
      problems.push({
        consumer: name,
        secrets,
        message: `consumer "${name}" has ${digests.size} keys, more than ${MAX_KEYS_PER_CONSUMER}; none of its keys is used`,
      });
      continue;
    }
    consumers.push({ name, team: teams[0]!, keys: group, own });
  }
  return { consumers, problems };
}

function secretKey(k: ConsumerKey): string {
  return `${k.namespace}/${k.secret}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
