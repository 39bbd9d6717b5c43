import type { Translation } from './index.js';

/**
 * The extproc document with every credential replaced by `<redacted:namespace/secret/key>`: what
 * `sluice render` prints and golden files hold. Never print or store the unredacted document.
 */
export function redacted(t: Translation): Translation['extproc'] {
  const refs = new Map<string, string>();
  const hashKeys = new Map<string, string>();
  for (const r of t.ir.routes) {
    if (r.hashKeyRef) {
      const { namespace, secret, key } = r.hashKeyRef;
      hashKeys.set(r.key, `<redacted:${namespace}/${secret}/${key}>`);
    }
    for (const b of r.backends) {
      if (b.credential) {
        const { namespace, secret, key } = b.credential.ref;
        refs.set(b.id, `<redacted:${namespace}/${secret}/${key}>`);
      }
    }
  }
  return {
    ...t.extproc,
    backends: t.extproc.backends.map((b) =>
      b.credential ? { ...b, credential: { value: refs.get(b.name) ?? '<redacted>' } } : b,
    ),
    // The masking hash key is a secret too.
    routes: t.extproc.routes.map((r) =>
      r.policy?.masking?.hashKey
        ? {
            ...r,
            policy: {
              ...r.policy,
              masking: {
                ...r.policy.masking,
                hashKey: { value: hashKeys.get(r.name) ?? '<redacted>' },
              },
            },
          }
        : r,
    ),
  };
}
