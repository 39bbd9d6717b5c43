/** The extproc's config as an xDS resource (proto/sluice/extproc/v1/config.proto). */
import { EXTPROC_CONFIG } from './type-urls.js';

/** The one name the resource has in a snapshot. */
export const EXTPROC_RESOURCE_NAME = 'extproc';

/**
 * Wraps a compiled contract document (sluice.dev/extproc/v1) for `buildSnapshot`, keyed by
 * EXTPROC_CONFIG: `{ [EXTPROC_CONFIG]: { [EXTPROC_RESOURCE_NAME]: extprocConfigResource(doc) } }`.
 * The document goes as JSON text so the extproc validates it with the same schema as a file.
 */
export function extprocConfigResource(doc: { version?: string }): Record<string, unknown> {
  return { '@type': EXTPROC_CONFIG, version: doc.version ?? '', json: JSON.stringify(doc) };
}
