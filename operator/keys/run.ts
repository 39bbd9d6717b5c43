/**
 * `sluice keys create|list|revoke` on a target (a YAML file or a cluster). The raw key exists
 * only in `create`'s output: the Secret holds its sha256 digest, and nothing here ever prints a
 * digest or a hand-made Secret's raw key.
 */
import { randomBytes } from 'node:crypto';
import { MAX_KEYS_PER_CONSUMER } from '../api/consumer-secret.js';
import {
  consumerOf,
  describeKey,
  expiryMs,
  formatTable,
  keyIdOf,
  keySecret,
  newKey,
  newKeyId,
  rfc3339,
  sortRows,
  teamOf,
  type KeySecret,
  type Random,
} from './format.js';
import { KeysError, type KeyTarget } from './target.js';

export type KeysOptions =
  | {
      command: 'create';
      consumer: string;
      team?: string | undefined;
      /** As given: `30d`, `12h`, … or RFC 3339 (form already checked). */
      expires?: string | undefined;
      namespace: string;
      json: boolean;
    }
  | { command: 'list'; consumer?: string | undefined; namespace: string; json: boolean }
  | {
      command: 'revoke';
      /** Exactly one of `id`, or `consumer` (with --all). */
      id?: string | undefined;
      consumer?: string | undefined;
      namespace: string;
    };

export interface KeysDeps {
  target: KeyTarget;
  out: (s: string) => void;
  err: (s: string) => void;
  /** Wall-clock ms: creation time, relative expiry, and what counts as expired. */
  now: () => number;
  random?: Random;
}

/** Exit status: 0 done, 1 the target refused or failed, 2 a flag value that cannot work. */
export async function run(o: KeysOptions, deps: KeysDeps): Promise<number> {
  try {
    switch (o.command) {
      case 'create':
        return await create(o, deps);
      case 'list':
        return await list(o, deps);
      case 'revoke':
        return await revoke(o, deps);
    }
  } catch (err) {
    if (err instanceof KeysError) {
      deps.err(`sluice keys ${o.command}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

async function create(o: Extract<KeysOptions, { command: 'create' }>, d: KeysDeps) {
  const random = d.random ?? randomBytes;
  const now = d.now();
  let expiresAtMs: number | undefined;
  if (o.expires !== undefined) {
    expiresAtMs = expiryMs(o.expires, now);
    if (expiresAtMs <= now) {
      d.err(`sluice keys create: --expires ${o.expires} is not in the future\n`);
      return 2;
    }
  }
  const existing = await d.target.list(o.namespace, { missingIsEmpty: true });
  const own = existing.filter((s) => consumerOf(s) === o.consumer);
  const team = teamFor(o.consumer, o.team, own);
  if (own.length >= MAX_KEYS_PER_CONSUMER) {
    throw new KeysError(
      `consumer "${o.consumer}" already has ${own.length} keys, the most the gateway takes for one consumer; revoke one first`,
    );
  }
  const id = newKeyId(random);
  const taken = existing.filter((s) => keyIdOf(s) === id);
  if (taken.length > 0) {
    throw new KeysError(
      `key id ${id} is already used by Secret ${taken[0]!.namespace}/${taken[0]!.name}; run the command again for another id`,
    );
  }
  const key = newKey(random);
  const secret = keySecret(
    { consumer: o.consumer, team, id, namespace: o.namespace, createdAtMs: now, expiresAtMs },
    key,
  );
  await d.target.create(secret);
  if (o.json) {
    d.out(
      `${JSON.stringify(
        {
          key,
          keyId: id,
          consumer: o.consumer,
          team: team ?? null,
          namespace: o.namespace,
          secret: secret.name,
          createdAt: rfc3339(now),
          expiresAt: expiresAtMs === undefined ? null : rfc3339(expiresAtMs),
        },
        null,
        2,
      )}\n`,
    );
  } else {
    d.out(`${key}\n`);
  }
  d.err(
    `Created key ${id} for consumer ${o.consumer}${team ? ` (team ${team})` : ''}: Secret ` +
      `${o.namespace}/${secret.name} in ${d.target.where}.\n` +
      'This is the only time the key is shown; it cannot be shown again. Store it now.\n',
  );
  return 0;
}

/**
 * The team of the consumer's new key. The operator refuses a consumer whose Secrets disagree on
 * the team, so a new key joins the team its other keys name (taken from them when --team is not
 * given) or the command refuses.
 */
function teamFor(consumer: string, asked: string | undefined, own: KeySecret[]) {
  const teams = [...new Set(own.map((s) => teamOf(s) ?? ''))];
  const show = (t: string) => (t === '' ? 'no team' : `team "${t}"`);
  if (teams.length > 1) {
    throw new KeysError(
      `the keys of consumer "${consumer}" already disagree on the team (${teams.map(show).join(', ')}), so the gateway uses none of them; fix or revoke them first`,
    );
  }
  const current = teams[0];
  if (current === undefined) return asked;
  if (asked !== undefined && asked !== current) {
    throw new KeysError(
      `consumer "${consumer}" has keys with ${show(current)}; every key of a consumer must name the same team (revoke them with --consumer ${consumer} --all to change it)`,
    );
  }
  return current === '' ? undefined : current;
}

async function list(o: Extract<KeysOptions, { command: 'list' }>, d: KeysDeps) {
  const secrets = await d.target.list(o.namespace);
  const now = d.now();
  const rows = sortRows(
    secrets
      .filter((s) => o.consumer === undefined || consumerOf(s) === o.consumer)
      .map((s) => describeKey(s, now)),
  );
  if (o.json) {
    d.out(`${JSON.stringify({ namespace: o.namespace, keys: rows }, null, 2)}\n`);
  } else if (rows.length === 0) {
    const whose = o.consumer === undefined ? '' : ` of consumer ${o.consumer}`;
    d.out(`No keys${whose} in namespace ${o.namespace} (${d.target.where}).\n`);
  } else {
    d.out(formatTable(rows));
  }
  return 0;
}

async function revoke(o: Extract<KeysOptions, { command: 'revoke' }>, d: KeysDeps) {
  const secrets = await d.target.list(o.namespace);
  let chosen: KeySecret[];
  if (o.id !== undefined) {
    chosen = secrets.filter((s) => keyIdOf(s) === o.id);
    if (chosen.length === 0) {
      throw new KeysError(`no key with id ${o.id} in namespace ${o.namespace} (${d.target.where})`);
    }
    if (chosen.length > 1) {
      // Someone copied a Secret by hand: deleting either could revoke the key still in use.
      const names = chosen.map((s) => `${s.namespace}/${s.name}`).join(', ');
      throw new KeysError(
        `key id ${o.id} is on ${chosen.length} Secrets (${names}); delete the one you mean by name`,
      );
    }
  } else {
    chosen = secrets.filter((s) => consumerOf(s) === o.consumer);
    if (chosen.length === 0) {
      throw new KeysError(
        `consumer "${o.consumer}" has no keys in namespace ${o.namespace} (${d.target.where})`,
      );
    }
  }
  await d.target.remove(chosen);
  for (const s of chosen) {
    d.out(
      `Revoked key ${keyIdOf(s) ?? '(no id)'} of consumer ${consumerOf(s)} (Secret ${s.namespace}/${s.name}).\n`,
    );
  }
  return 0;
}
