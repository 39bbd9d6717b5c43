/**
 * Where consumer Secrets live for `sluice keys`: a local YAML file of Secret manifests (what
 * `sluice run -f` reads) or a cluster (cluster.ts). Both keep the Secret format of
 * operator/api/consumer-secret.ts; the file keeps the other documents and their comments.
 */
import { randomBytes } from 'node:crypto';
import { readFile, realpath, rename, stat, unlink, open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Document, parseAllDocuments, type EmptyStream } from 'yaml';
import { CONSUMER_LABEL } from '../api/consumer-secret.js';
import { manifest, type KeySecret } from './format.js';

/** A failure with a message fit for the user as it is: one line, no key and no digest. */
export class KeysError extends Error {}

export interface KeyTarget {
  /** Names the target in messages: the file's path, or the cluster's API server. */
  readonly where: string;
  /**
   * The consumer Secrets (labelled `sluice.dev/consumer`) in `namespace`. A missing file is an
   * error unless `missingIsEmpty`: `create` is the one command that makes the file.
   */
  list(namespace: string, opts?: { missingIsEmpty?: boolean }): Promise<KeySecret[]>;
  create(secret: KeySecret): Promise<void>;
  remove(secrets: readonly KeySecret[]): Promise<void>;
}

interface Loaded {
  /** The file as parsed, every document kept as it was, comments included. */
  docs: Document[];
  /** The consumer Secrets among them, with the index of their document. */
  secrets: { index: number; secret: KeySecret }[];
  /** A comment in a file that holds no document yet. */
  streamComment: string | undefined;
  /** undefined: there is no file yet. */
  mode: number | undefined;
  /** The file written, symlinks resolved, so an atomic rename replaces the target. */
  path: string;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export class FileTarget implements KeyTarget {
  constructor(private readonly file: string) {}

  get where(): string {
    return this.file;
  }

  async list(namespace: string, opts: { missingIsEmpty?: boolean } = {}): Promise<KeySecret[]> {
    const loaded = await this.load(opts.missingIsEmpty !== true);
    return loaded.secrets.filter((s) => s.secret.namespace === namespace).map((s) => s.secret);
  }

  async create(secret: KeySecret): Promise<void> {
    const loaded = await this.load(false);
    const clash = loaded.docs.some((d) => {
      const m = metaOf(d.toJS());
      return m?.name === secret.name && m.namespace === secret.namespace;
    });
    if (clash) {
      throw new KeysError(
        `Secret ${secret.namespace}/${secret.name} already exists in ${this.file}; run the command again for a new key id`,
      );
    }
    const doc = new Document(manifest(secret));
    if (loaded.docs.length === 0 && loaded.streamComment !== undefined) {
      doc.commentBefore = loaded.streamComment;
    }
    await this.write(loaded, [...loaded.docs, doc]);
  }

  async remove(secrets: readonly KeySecret[]): Promise<void> {
    const loaded = await this.load(true);
    const drop = new Set<number>();
    for (const s of secrets) {
      const hit = loaded.secrets.find(
        (x) => x.secret.namespace === s.namespace && x.secret.name === s.name,
      );
      if (!hit) {
        throw new KeysError(`Secret ${s.namespace}/${s.name} is no longer in ${this.file}`);
      }
      drop.add(hit.index);
    }
    await this.write(
      loaded,
      loaded.docs.filter((_, i) => !drop.has(i)),
    );
  }

  private async load(mustExist: boolean): Promise<Loaded> {
    let path = this.file;
    let text: string;
    let mode: number | undefined;
    try {
      path = await realpath(this.file);
      text = await readFile(path, 'utf8');
      mode = (await stat(path)).mode & 0o777;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') {
        throw new KeysError(`${this.file} cannot be read (${code ?? 'unknown error'})`);
      }
      if (mustExist) throw new KeysError(`${this.file} does not exist`);
      return { docs: [], secrets: [], streamComment: undefined, mode: undefined, path };
    }
    const parsed = parseAllDocuments(text);
    const stream: EmptyStream | undefined = 'empty' in parsed ? parsed : undefined;
    const docs: Document[] = stream ? [] : [...parsed];
    const errors = stream ? stream.errors : docs.flatMap((d) => d.errors);
    if (errors.length > 0) {
      // Only the first line: the rest quotes the file, which may hold credentials.
      const first = errors[0]!.message.split('\n')[0]!.replace(/:$/, '');
      throw new KeysError(`${this.file} is not valid YAML: ${first}`);
    }
    const streamComment = stream?.comment || undefined;
    const secrets: Loaded['secrets'] = [];
    docs.forEach((doc, index) => {
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) return;
      const secret = readSecretDoc(value, `${this.file}: document ${index + 1}`);
      if (secret.labels[CONSUMER_LABEL] !== undefined) secrets.push({ index, secret });
    });
    return { docs, secrets, streamComment, mode, path };
  }

  /** Writes a temporary file beside the target and renames it over: all or nothing. */
  private async write(loaded: Loaded, docs: Document[]): Promise<void> {
    const text = docs
      .map((d, i) => {
        const s = d.toString();
        return i > 0 && !s.startsWith('---') ? `---\n${s}` : s;
      })
      .join('');
    const dir = dirname(loaded.path);
    const tmp = join(dir, `.${basename(loaded.path)}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      // 0600 for a new file: such bundles usually hold provider credentials too.
      const handle = await open(tmp, 'wx', loaded.mode ?? 0o600);
      try {
        await handle.writeFile(text, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, loaded.path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      const code = (err as NodeJS.ErrnoException).code;
      throw new KeysError(`${this.file} cannot be written (${code ?? 'unknown error'})`);
    }
  }
}

function metaOf(v: unknown): { name: unknown; namespace: string } | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const m = (v as { metadata?: unknown }).metadata;
  if (typeof m !== 'object' || m === null) return undefined;
  const meta = m as { name?: unknown; namespace?: unknown };
  return {
    name: meta.name,
    namespace:
      typeof meta.namespace === 'string' && meta.namespace !== '' ? meta.namespace : 'default',
  };
}

/**
 * One document of the file as a Secret, or a refusal naming what it is instead. Anything but a
 * v1 Secret makes the whole file someone else's, which `sluice keys` must not rewrite.
 */
function readSecretDoc(v: unknown, where: string): KeySecret {
  const obj = typeof v === 'object' && v !== null && !Array.isArray(v) ? v : undefined;
  const o = obj as Record<string, unknown> | undefined;
  if (o?.apiVersion !== 'v1' || o.kind !== 'Secret') {
    const what =
      typeof o?.kind === 'string' ? `a ${o.kind}` : o === undefined ? 'not a mapping' : 'no kind';
    throw new KeysError(
      `${where} is ${what}, not a v1 Secret; sluice keys only edits files of Secrets`,
    );
  }
  const meta = metaOf(o);
  if (typeof meta?.name !== 'string' || meta.name === '') {
    throw new KeysError(`${where} is a Secret without metadata.name`);
  }
  const m = o.metadata as Record<string, unknown>;
  const data: Record<string, string> = {};
  const secret: KeySecret = {
    namespace: meta.namespace,
    name: meta.name,
    labels: stringMap(m.labels, `${where} metadata.labels`),
    annotations: stringMap(m.annotations, `${where} metadata.annotations`),
    data,
  };
  for (const [k, raw] of Object.entries(stringMap(o.data, `${where} data`))) {
    const compact = raw.replace(/\s+/g, '');
    if (compact.length % 4 === 0 && BASE64.test(compact)) {
      data[k] = Buffer.from(compact, 'base64').toString('utf8');
    } else {
      // The loader refuses such a Secret too: listed as invalid, never read as a wrong digest.
      secret.problem ??= `data.${k} is not base64; use stringData for plain text`;
    }
  }
  // As the apiserver does on write: stringData is merged over data.
  Object.assign(data, stringMap(o.stringData, `${where} stringData`));
  return secret;
}

function stringMap(v: unknown, field: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new KeysError(`${field} is not a map`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw new KeysError(`${field}.${k} is not a string`);
    out[k] = x;
  }
  return out;
}
