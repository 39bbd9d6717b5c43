import { MemoryStore } from './memory.js';
import { storeSuite } from './testing/store-suite.js';

storeSuite('memory', { store: () => new MemoryStore() });
