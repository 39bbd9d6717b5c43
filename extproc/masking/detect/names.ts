// The dictionaries the PERSON detector reads: people's names from @cspell/dict-people-names (a
// maintained list of ~39,000 given names and surnames, shipped inside the npm package and read
// from disk once, never fetched), and the words that are names in that list but in prose are
// mostly something else.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

let names: ReadonlySet<string> | undefined;

/** Lower-cased names of people; loaded on first use (about 10 ms, 2 MB). */
export function personNames(): ReadonlySet<string> {
  if (names === undefined) {
    // The package exports only its cspell config; the word list sits beside it.
    const ext = createRequire(import.meta.url).resolve('@cspell/dict-people-names');
    const text = readFileSync(join(dirname(ext), 'dict', 'people-names.txt'), 'utf8');
    const set = new Set<string>();
    for (const line of text.split('\n')) {
      const w = line.trim();
      if (w.length < 2 || w.startsWith('#')) continue;
      set.add(w.toLowerCase());
    }
    for (const w of NOT_NAMES) set.delete(w);
    names = set;
  }
  return names;
}

// In the name list, but written capitalised in prose mostly as something else: calendar words,
// greetings and sentence openers, places, brands, and words of addresses and forms. Measured on
// the labelled sets and the project's own prose; a name lost here is still found after a title
// or a cue ("my name is May").
const NOT_NAMES = (
  'january february march april may june july august september october november december ' +
  'monday tuesday wednesday thursday friday saturday sunday jan feb mar apr jun jul aug sep ' +
  'sept oct nov dec mon tue wed thu fri sat sun ' +
  'will can may might must shall hope grace faith joy love dawn summer winter autumn spring ' +
  'god lord king queen prince princess bishop father mother brother sister son daughter ' +
  'hi hello hey dear thanks thank yes no ok okay please sorry well so then now here there ' +
  'the a an and or but if this that these those what when where why how who which ' +
  'north south east west new old great little big long young street road lane park hill ' +
  'lake river bay mount port field wood woods ford bridge church hall court rose lily ' +
  'apple amazon google windows jordan paris london berlin florence victoria georgia ' +
  'virginia carolina dakota washington lincoln jackson houston austin dallas phoenix ' +
  'orlando denver chester lancaster york boston sydney china india israel chad ' +
  'bill page mark art rich sky star gay bob guy major general private ' +
  'name address phone mobile desk fax date email mail website info personal customer ' +
  'user bot admin office home work team group company bank union city state county ' +
  'black white green brown gray grey red gold silver ' +
  'helm service azure true false running converse claude gemini lua kind roles role node ' +
  'deno bun rust go java ruby perl swift julia dart elixir envoy kong istio redis postgres ' +
  'mongo kafka spark hadoop jenkins docker ubuntu debian fedora mint arch alpine chrome ' +
  'safari opera edge siri alexa cortana bard llama mistral grok sonnet haiku opus ' +
  'just then so how nice good well first last check read keep call show tell fix test close ' +
  'every many most few both such lease warning gen real'
).split(' ');
