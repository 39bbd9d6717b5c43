// Checks that the project's hand-written .proto declarations (proto/) are wire-compatible with
// the targeted Envoy release's API (proto/envoy-api, loaded by operator/envoy-api): every declared
// message, enum and service exists there under the same full name, in the same file, with the
// same field numbers, types, labels and oneofs. Leaving things out is allowed; getting anything
// that is declared wrong is not.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import protobuf from 'protobufjs';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const OUR_PROTO_DIR = path.join(REPO_ROOT, 'proto');

type Declaration = protobuf.Type | protobuf.Enum | protobuf.Service;

/** Every .proto file under `dir`, as sorted paths relative to it with forward slashes. */
export function listProtoFiles(dir: string): string[] {
  const found: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const child = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) walk(child);
      else if (entry.isFile() && entry.name.endsWith('.proto')) found.push(child);
    }
  };
  walk('');
  return found.sort();
}

/**
 * Loads `files` the way protoc would with `-I` for each include dir. Google's well-known types
 * come from the copies bundled in protobufjs, so no include dir has to provide them.
 */
export function loadRoot(files: readonly string[], includeDirs: readonly string[]): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (path.isAbsolute(target)) return target;
    const found = includeDirs.map((dir) => path.join(dir, target)).find((f) => existsSync(f));
    if (found === undefined) throw new Error(`${target} not found in ${includeDirs.join(', ')}`);
    return found;
  };
  root.loadSync([...files], { keepCase: true });
  root.resolveAll();
  return root;
}

function stripDot(fullName: string): string {
  return fullName.startsWith('.') ? fullName.slice(1) : fullName;
}

function typeName(field: protobuf.FieldBase): string {
  return field.resolvedType ? stripDot(field.resolvedType.fullName) : field.type;
}

function label(field: protobuf.FieldBase): string {
  if (field instanceof protobuf.MapField) return `map<${field.keyType}, ${typeName(field)}>`;
  if (field.repeated) return `repeated ${typeName(field)}`;
  if (field.options?.['proto3_optional'] === true) return `optional ${typeName(field)}`;
  return typeName(field);
}

function oneofOf(field: protobuf.FieldBase): string | undefined {
  // proto3 `optional` is modelled as a synthetic oneof; it is reported through the label.
  const oneof = field.partOf;
  return oneof && !oneof.isProto3Optional ? oneof.name : undefined;
}

/** A one-line, comparable description of a declaration's wire shape. */
export function describe(
  obj: protobuf.FieldBase | protobuf.Method | protobuf.Type | protobuf.Enum | protobuf.Service,
): string {
  if (obj instanceof protobuf.Field || obj instanceof protobuf.MapField) {
    const oneof = oneofOf(obj);
    return `${label(obj)} = ${obj.id}${oneof === undefined ? '' : ` in oneof ${oneof}`}`;
  }
  if (obj instanceof protobuf.Method) {
    const req = obj.resolvedRequestType
      ? stripDot(obj.resolvedRequestType.fullName)
      : obj.requestType;
    const res = obj.resolvedResponseType
      ? stripDot(obj.resolvedResponseType.fullName)
      : obj.responseType;
    const stream = (on: boolean | undefined): string => (on === true ? 'stream ' : '');
    return `rpc (${stream(obj.requestStream)}${req}) returns (${stream(obj.responseStream)}${res})`;
  }
  if (obj instanceof protobuf.Type) return 'message';
  if (obj instanceof protobuf.Enum) return 'enum';
  return 'service';
}

function* declarations(ns: protobuf.NamespaceBase): Generator<Declaration> {
  for (const nested of ns.nestedArray) {
    if (
      nested instanceof protobuf.Type ||
      nested instanceof protobuf.Enum ||
      nested instanceof protobuf.Service
    ) {
      yield nested;
    }
    if (nested instanceof protobuf.Namespace || nested instanceof protobuf.Type) {
      yield* declarations(nested);
    }
  }
}

export interface CompareOptions {
  /** Our include dir, to name the file a top-level declaration sits in. */
  readonly ourIncludeDir?: string;
  /** Top-level official declarations → their file; with ourIncludeDir, files must match. */
  readonly officialFiles?: ReadonlyMap<string, string>;
}

/**
 * Every way in which `ours` differs from `official` on the wire, as readable lines; empty when
 * compatible. Declarations that `ours` leaves out are not reported.
 */
export function compareRoots(
  ours: protobuf.Root,
  official: protobuf.Root,
  options: CompareOptions = {},
): string[] {
  const problems: string[] = [];
  const lookup = (fullName: string): protobuf.ReflectionObject | null => {
    try {
      return official.lookup(fullName);
    } catch {
      return null;
    }
  };

  for (const decl of declarations(ours)) {
    const name = stripDot(decl.fullName);
    if (name.startsWith('google.protobuf.')) continue; // protobufjs' bundled well-known types
    const theirs = lookup(decl.fullName);

    if (theirs === null || stripDot(theirs.fullName) !== name) {
      problems.push(`${name}: ${describe(decl)} not in the official API`);
      continue;
    }

    if (!(
      (decl instanceof protobuf.Type && theirs instanceof protobuf.Type) ||
      (decl instanceof protobuf.Enum && theirs instanceof protobuf.Enum) ||
      (decl instanceof protobuf.Service && theirs instanceof protobuf.Service)
    )) {
      problems.push(`${name}: declared as a ${describe(decl)}, officially something else`);
      continue;
    }

    const { ourIncludeDir, officialFiles } = options;
    if (!(decl.parent instanceof protobuf.Type) && ourIncludeDir && officialFiles) {
      const ourFile = decl.filename
        ? path.relative(ourIncludeDir, decl.filename).split(path.sep).join('/')
        : undefined;
      const theirFile = officialFiles.get(name);
      if (ourFile !== theirFile) {
        problems.push(`${name}: declared in ${ourFile}, officially in ${theirFile}`);
      }
    }

    if (decl instanceof protobuf.Type && theirs instanceof protobuf.Type) {
      for (const field of decl.fieldsArray) {
        const fieldName = `${name}.${field.name}`;
        const other = theirs.fields[field.name];
        if (other === undefined) {
          const byNumber = theirs.fieldsById[field.id];
          const hint =
            byNumber === undefined ? '' : ` (official field ${field.id} is "${byNumber.name}")`;
          problems.push(`${fieldName}: field not in the official message${hint}`);
          continue;
        }
        const mine = describe(field);
        const official = describe(other);
        if (mine !== official) {
          problems.push(`${fieldName}: declared "${mine}", officially "${official}"`);
        }
      }
    } else if (decl instanceof protobuf.Enum && theirs instanceof protobuf.Enum) {
      for (const [valueName, value] of Object.entries(decl.values)) {
        const fullValueName = `${name}.${valueName}`;
        const other = theirs.values[valueName];
        if (other === undefined) {
          const sameNumber = Object.entries(theirs.values).find(([, v]) => v === value)?.[0];
          const hint = sameNumber === undefined ? '' : ` (official ${value} is "${sameNumber}")`;
          problems.push(`${fullValueName}: enum value not in the official enum${hint}`);
          continue;
        }
        if (other !== value) {
          problems.push(`${fullValueName}: declared = ${value}, officially = ${other}`);
        }
      }
    } else if (decl instanceof protobuf.Service && theirs instanceof protobuf.Service) {
      for (const method of decl.methodsArray) {
        const methodName = `${name}.${method.name}`;
        const other = theirs.methods[method.name];
        if (other === undefined) {
          problems.push(`${methodName}: method not in the official service`);
          continue;
        }
        const mine = describe(method);
        const official = describe(other);
        if (mine !== official) {
          problems.push(`${methodName}: declared "${mine}", officially "${official}"`);
        }
      }
    }
  }
  return problems;
}
