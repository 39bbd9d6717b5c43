/**
 * A compiled config as it crosses from the primary to a worker: the validated contract document
 * (plain JSON: the contract has no transforms) and the credentials the primary resolved (a
 * worker must not resolve env or file references again: a file could have changed in between,
 * and over xDS they are values anyway). The worker validates the document once more, so a config
 * it runs has always passed the contract in its own process.
 */
import { ExtprocConfig, formatIssues } from '../config/contract.js';
import { ConfigError } from '../config/load.js';
import { RuntimeConfig } from '../config/runtime.js';

export interface ConfigWire {
  config: unknown;
  credentials: [string, string][];
}

export function configWire(cfg: RuntimeConfig): ConfigWire {
  return { config: cfg.source.config, credentials: [...cfg.source.credentials] };
}

export function fromWire(w: ConfigWire): RuntimeConfig {
  const parsed = ExtprocConfig.safeParse(w.config);
  if (!parsed.success) throw new ConfigError(`invalid config: ${formatIssues(parsed.error)}`);
  return new RuntimeConfig(parsed.data, new Map(w.credentials));
}
