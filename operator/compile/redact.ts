import type { Compilation } from './index.js';
import type { CredentialRef, IR, IRRoute } from './ir.js';

/** Stands in for a virtual key digest: a digest of a short hand-made key can be brute-forced. */
export const REDACTED_KEY_HASH = '<redacted:sha256>';

/**
 * The extproc document with every credential replaced by `<redacted:namespace/secret/key>` and
 * every virtual key digest by REDACTED_KEY_HASH: what `sluice render` prints and golden files
 * hold. Never print or store the unredacted document.
 */
export function redacted(t: Compilation): Compilation['extproc'] {
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
  const out: Compilation['extproc'] = {
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
  if (t.extproc.consumers) {
    out.consumers = t.extproc.consumers.map((c) =>
      c.keyHashes ? { ...c, keyHashes: c.keyHashes.map(() => REDACTED_KEY_HASH) } : c,
    );
  }
  return out;
}

/**
 * The IR with the same values redacted as in `redacted`: backend credentials and masking hash
 * keys by `<redacted:namespace/secret/key>`, virtual key digests by REDACTED_KEY_HASH. What the
 * IR golden files hold.
 */
export function redactedIR(ir: IR): IR {
  const ref = ({ namespace, secret, key }: CredentialRef) =>
    `<redacted:${namespace}/${secret}/${key}>`;
  const out: IR = {
    ...ir,
    routes: ir.routes.map((r) => {
      const route: IRRoute = {
        ...r,
        backends: r.backends.map((b) =>
          b.credential
            ? { ...b, credential: { ref: b.credential.ref, value: ref(b.credential.ref) } }
            : b,
        ),
      };
      if (r.policy?.masking?.hashKey) {
        route.policy = {
          ...r.policy,
          masking: {
            ...r.policy.masking,
            hashKey: { value: r.hashKeyRef ? ref(r.hashKeyRef) : '<redacted>' },
          },
        };
      }
      return route;
    }),
  };
  if (ir.governance) {
    out.governance = {
      ...ir.governance,
      consumers: ir.governance.consumers.map((c) =>
        c.keyHashes ? { ...c, keyHashes: c.keyHashes.map(() => REDACTED_KEY_HASH) } : c,
      ),
    };
  }
  return out;
}
