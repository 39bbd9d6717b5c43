/**
 * A Map for entries that come and go with requests or streams (a stream by its id, a request's
 * state by its id, a reservation until it settles), held by something that lives as long as the
 * process or a connection.
 *
 * Why not a plain Map there: V8 keeps a Map's entries in a table it re-allocates as entries are
 * added and deleted (to grow, to shrink, and to drop deleted slots), and once the Map has outlived
 * a young-generation collection, that table is allocated in the old generation each time
 * (`OrderedHashTable::Rehash` allocates the new table in the old one's generation). A promoted Map
 * with a few entries at a time, added and deleted, made ~77 B of old-generation garbage per
 * add-and-delete (measured: node 20, no collection in between); the extproc makes a few of those
 * per request on each of its long-lived Maps, and old-generation garbage is what sets how often
 * full collections (the longest pauses) run (issue 16).
 *
 * So whenever the last entry is deleted, the Map is replaced by a new, young one: its tables are
 * allocated in the young generation and die there, until the Map itself survives a collection
 * while holding entries (a busy process; then it is replaced the next time it empties). Measured
 * the same way: 0.1 B per add-and-delete.
 *
 * Iterating while deleting is as with a Map: an iteration already under way goes on over the Map
 * it began with; an entry set after that Map emptied is in the new one, which it does not see.
 */
export class TransientMap<K, V> {
  private m = new Map<K, V>();

  get size(): number {
    return this.m.size;
  }

  get(key: K): V | undefined {
    return this.m.get(key);
  }

  has(key: K): boolean {
    return this.m.has(key);
  }

  set(key: K, value: V): this {
    this.m.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    const m = this.m;
    if (!m.delete(key)) return false;
    if (m.size === 0) this.m = new Map();
    return true;
  }

  clear(): void {
    this.m = new Map();
  }

  keys(): IterableIterator<K> {
    return this.m.keys();
  }

  values(): IterableIterator<V> {
    return this.m.values();
  }

  entries(): IterableIterator<[K, V]> {
    return this.m.entries();
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.m.entries();
  }
}
