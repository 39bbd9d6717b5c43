import { readFile } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Logger } from 'pino';
import { backendPackagesLoaded, loadBackendPackages } from '../providers/packages.js';
import { ExtprocConfig, formatIssues, type SecretSource } from './contract.js';
import { RuntimeConfig } from './runtime.js';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Parses and validates a config document, resolving secrets from env or files. Never echoes values. */
export interface CompileOptions {
  baseDir: string;
  env: NodeJS.ProcessEnv;
  /**
   * Over xDS, secrets must arrive as values: an env or file reference would be resolved against
   * this pod's environment and disk, which the operator neither sees nor controls.
   */
  valuesOnly?: boolean;
}

export async function compileConfig(text: string, opts: CompileOptions): Promise<RuntimeConfig> {
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: false });
  } catch (err) {
    const line = (err as { linePos?: { line: number }[] }).linePos?.[0]?.line;
    throw new ConfigError(`not valid YAML or JSON${line ? ` (line ${line})` : ''}`);
  }
  if (typeof doc === 'object' && doc !== null && 'apiVersion' in doc) {
    const v = doc.apiVersion;
    if (
      typeof v === 'string' &&
      v.startsWith('sluice.dev/extproc/') &&
      v !== 'sluice.dev/extproc/v1'
    ) {
      throw new ConfigError(
        `incompatible contract version "${v}"; this extproc speaks sluice.dev/extproc/v1`,
      );
    }
  }
  const parsed = ExtprocConfig.safeParse(doc);
  if (!parsed.success) throw new ConfigError(`invalid config: ${formatIssues(parsed.error)}`);
  const credentials = new Map<string, string>();
  for (const b of parsed.data.backends) {
    if (!b.credential) continue;
    if (opts.valuesOnly && !('value' in b.credential)) {
      throw new ConfigError(
        `backend "${b.name}": over xDS a credential must be given as value, not env or file`,
      );
    }
    credentials.set(b.name, await resolveSecret(b.credential, b.name, opts));
  }
  const cfg = new RuntimeConfig(parsed.data, credentials);
  await loadConfigPackages(cfg);
  return cfg;
}

function providers(cfg: RuntimeConfig) {
  return cfg.source.config.backends.map((b) => b.provider);
}

/** Whether what `cfg`'s backends need is loaded already (see loadConfigPackages). */
export function configPackagesLoaded(cfg: RuntimeConfig): boolean {
  return backendPackagesLoaded(providers(cfg));
}

/**
 * Loads the packages `cfg`'s backends need (providers/packages.ts: the AWS signer for Bedrock,
 * jose for Vertex AI), which are imported only for a config that names such a backend. Part of
 * compiling, so a config whose packages fail to load is refused like any bad config: at start
 * the extproc does not start, on a reload the last good config stays, over xDS it is NACKed.
 */
export async function loadConfigPackages(cfg: RuntimeConfig): Promise<void> {
  try {
    await loadBackendPackages(providers(cfg));
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : 'packages failed to load');
  }
}

async function resolveSecret(
  src: SecretSource,
  owner: string,
  opts: { baseDir: string; env: NodeJS.ProcessEnv },
): Promise<string> {
  if ('value' in src) return src.value;
  if ('env' in src) {
    const v = opts.env[src.env];
    if (v === undefined || v === '') {
      throw new ConfigError(
        `backend "${owner}": credential environment variable ${src.env} is not set`,
      );
    }
    return v;
  }
  try {
    const v = (await readFile(resolve(opts.baseDir, src.file), 'utf8')).trim();
    if (v === '') throw new ConfigError(`backend "${owner}": credential file ${src.file} is empty`);
    return v;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`backend "${owner}": credential file ${src.file} cannot be read`);
  }
}

export interface ConfigSourceEvents {
  /**
   * `cfg` is the new config. An extproc that applies it later (after loading the packages it
   * needs) returns a promise of whether it did; undefined means applied at once.
   */
  onConfig(cfg: RuntimeConfig): Promise<boolean> | void;
  onRejected(reason: string): void;
}

/**
 * Watches one config file. The directory is watched, not the file: editors and Kubernetes
 * ConfigMap/Secret volumes replace files by rename or symlink swap, which a file watch misses.
 * Reloads are debounced and compared by content, so a touch without change does nothing.
 */
export class FileConfigSource {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastText: string | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly path: string,
    private readonly events: ConfigSourceEvents,
    private readonly logger: Logger,
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly debounceMs = 100,
  ) {}

  /** Loads once; throws if the first load fails, so a bad start is loud. */
  async start(watchForChanges: boolean): Promise<RuntimeConfig> {
    const text = await this.read();
    const cfg = await compileConfig(text, { baseDir: dirname(this.path), env: this.env });
    this.lastText = text;
    if (watchForChanges) {
      const file = basename(this.path);
      this.watcher = watch(
        dirname(resolve(this.path)),
        { persistent: false },
        (_event, changed) => {
          if (changed === null || changed === file || changed.startsWith('..')) this.schedule();
        },
      );
    }
    return cfg;
  }

  /** Re-reads now; resolves when the attempt is done (tests and SIGHUP use this). */
  reload(): Promise<void> {
    this.running = this.running.then(() => this.attempt());
    return this.running;
  }

  close(): void {
    this.watcher?.close();
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.reload(), this.debounceMs);
  }

  private async read(): Promise<string> {
    try {
      return await readFile(this.path, 'utf8');
    } catch {
      throw new ConfigError(`config file ${this.path} cannot be read`);
    }
  }

  private async attempt(): Promise<void> {
    try {
      const text = await this.read();
      if (text === this.lastText) return;
      const cfg = await compileConfig(text, { baseDir: dirname(this.path), env: this.env });
      this.lastText = text;
      void this.events.onConfig(cfg);
    } catch (err) {
      const reason = err instanceof ConfigError ? err.message : 'unexpected failure while loading';
      this.logger.error(
        { event: 'config_rejected', path: this.path, reason },
        'config refused; keeping the last good one',
      );
      this.events.onRejected(reason);
    }
  }
}
