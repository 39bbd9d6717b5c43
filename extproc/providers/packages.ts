/**
 * The packages a config's backends need beyond the extproc's own code, loaded before the config
 * is applied. They are imported only here, when a config names such a backend (issue 16: an
 * extproc without them keeps ~7 MiB less V8 heap, which every full collection would mark):
 * - `aws-bedrock`: the AWS SDK's SigV4 signer and credential providers, and its event-stream
 *   codec for ConverseStream;
 * - `gcp-vertex`: jose, which signs a service account's token request.
 * Once loaded they stay for the process's life: a later config without them keeps them.
 */
import { loadAwsSigning } from './aws-sigv4.js';
import { loadEventStreamCodec } from './bedrock-converse.js';
import { loadJose } from './gcp-oauth.js';
import type { Provider } from './provider.js';

const LOADERS: Partial<Record<Provider, readonly (() => Promise<unknown>)[]>> = {
  'aws-bedrock': [loadAwsSigning, loadEventStreamCodec],
  'gcp-vertex': [loadJose],
};

const loaded = new Set<Provider>();

/** True when every package `providers` need is loaded already (then nothing waits). */
export function backendPackagesLoaded(providers: Iterable<Provider>): boolean {
  for (const p of providers) if (LOADERS[p] && !loaded.has(p)) return false;
  return true;
}

/**
 * Loads what `providers` need; rejects, naming the provider, if a package fails to load (the
 * caller refuses the config: a backend that cannot sign must not be routed to).
 */
export async function loadBackendPackages(providers: Iterable<Provider>): Promise<void> {
  const wanted = [...new Set(providers)].filter((p) => LOADERS[p] && !loaded.has(p));
  await Promise.all(
    wanted.map(async (p) => {
      try {
        await Promise.all(LOADERS[p]!.map((load) => load()));
      } catch (err) {
        throw new Error(
          `the packages ${p} backends need failed to load: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        );
      }
      loaded.add(p);
    }),
  );
}
