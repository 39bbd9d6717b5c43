/**
 * Test doubles for the cluster source: an apiserver collection that lists what it holds (in two
 * pages) and streams what a test pushes, and the AIRoute objects the tests watch.
 */
import type { ListPage, ListWatcher, WatchEvent } from '../reflector.js';

/** Polls `cond` until it holds; fails naming `what` after `ms`. */
export async function until(what: string, cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A fake apiserver collection: lists what it holds, streams what tests push. */
export class FakeCollection implements ListWatcher {
  items = new Map<string, Record<string, unknown>>();
  rv = 1;
  lists = 0;
  listError: Error | undefined;
  watches: { from: string; push(e: WatchEvent): void; end(err?: unknown): void }[] = [];

  list(token: string | undefined): Promise<ListPage> {
    this.lists++;
    if (this.listError) {
      const e = this.listError;
      this.listError = undefined;
      return Promise.reject(e);
    }
    // Two pages, to exercise continue tokens.
    const all = [...this.items.values()];
    const half = Math.ceil(all.length / 2);
    const page = token === undefined ? all.slice(0, half) : all.slice(half);
    return Promise.resolve({
      items: page,
      resourceVersion: String(this.rv),
      continue: token === undefined && all.length > half ? 'next' : undefined,
    });
  }

  watch(
    from: string,
    onEvent: (e: WatchEvent) => void,
    done: (err: unknown) => void,
  ): Promise<() => void> {
    let open = true;
    const w = {
      from,
      push: (e: WatchEvent) => open && onEvent(e),
      end: (err?: unknown) => {
        if (!open) return;
        open = false;
        done(err ?? null);
      },
    };
    this.watches.push(w);
    return Promise.resolve(() => w.end());
  }

  put(obj: Record<string, unknown>, type: 'ADDED' | 'MODIFIED' = 'MODIFIED'): void {
    const meta = obj.metadata as Record<string, unknown>;
    meta.resourceVersion = String(++this.rv);
    this.items.set(`${meta.namespace as string}/${meta.name as string}`, obj);
    this.current?.push({ type, object: obj });
  }

  remove(ns: string, name: string): void {
    const obj = this.items.get(`${ns}/${name}`);
    this.items.delete(`${ns}/${name}`);
    this.rv++;
    if (obj) this.current?.push({ type: 'DELETED', object: obj });
  }

  get current() {
    return this.watches.at(-1);
  }
}

/** An AIRoute as the apiserver serves it: an OpenAI backend with a Secret, or a Service backend. */
export function routeObject(ns: string, name: string, secret?: string, service?: string) {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: ns, generation: 1 },
    spec: {
      models: [{ exact: name }],
      backends: [
        service
          ? {
              name: 'b',
              provider: 'openai-compatible',
              endpoint: { service: { name: service, port: 80 } },
            }
          : {
              name: 'b',
              provider: 'openai',
              endpoint: { url: 'https://api.openai.com' },
              credential: { secretRef: { name: secret } },
            },
      ],
    },
  };
}
