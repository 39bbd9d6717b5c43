/** Anthropic Messages callers to Anthropic: the model override and the gateway's output cap. */
import { versionedPath } from './paths.js';
import { withOutputTokenCap } from './output-cap.js';
import type { Translator } from './translator.js';

export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';

export const anthropicToAnthropic: Translator = {
  from: 'anthropic',
  to: 'anthropic',
  operations: ['messages'],
  request(req, backend) {
    let body: Record<string, unknown> | undefined;
    const edit = (): Record<string, unknown> => (body ??= { ...req.body });
    if (backend.modelOverride && backend.modelOverride !== req.model)
      edit().model = backend.modelOverride;
    if (req.outputTokenCap !== undefined) {
      const capped = withOutputTokenCap(
        req.operation,
        backend.provider,
        body ?? req.body,
        req.outputTokenCap,
      );
      if (capped) body = capped;
    }
    return {
      path: versionedPath(backend, '/messages'),
      headers: [],
      defaultHeaders: [
        ['anthropic-version', backend.anthropic?.version ?? DEFAULT_ANTHROPIC_VERSION],
      ],
      body: body === undefined ? undefined : Buffer.from(JSON.stringify(body), 'utf8'),
    };
  },
  response: () => undefined,
};
