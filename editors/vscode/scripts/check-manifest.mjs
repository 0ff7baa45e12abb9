// Static checks of the extension's declarative parts: every JSON file parses, the grammar's
// repository references resolve, the snippets are well formed, and the settings and commands the
// client uses are declared in package.json.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const read = (file) => JSON.parse(readFileSync(join(root, file), 'utf8'));
const failures = [];
const check = (ok, message) => ok || failures.push(message);

const manifest = read('package.json');
const grammar = read('syntaxes/apt.tmLanguage.json');
const snippets = read('snippets/apt.json');
read('language-configuration.json');

// Grammar: every `#name` include names a repository entry, and every entry is used.
const repository = new Set(Object.keys(grammar.repository));
const used = new Set();
const visit = (node, where) => {
  if (Array.isArray(node)) return node.forEach((n, i) => visit(n, `${where}[${i}]`));
  if (node === null || typeof node !== 'object') return;
  if (typeof node.include === 'string' && node.include.startsWith('#')) {
    used.add(node.include.slice(1));
    check(repository.has(node.include.slice(1)), `${where}: unknown include ${node.include}`);
  }
  for (const [key, value] of Object.entries(node)) visit(value, `${where}.${key}`);
};
visit(grammar, 'grammar');
for (const name of repository) check(used.has(name), `grammar rule #${name} is never included`);
check(grammar.scopeName === 'source.apt', 'grammar scopeName must be source.apt');

// Snippets: unique prefixes, a body and a description each.
const prefixes = new Map();
for (const [name, snippet] of Object.entries(snippets)) {
  check(typeof snippet.prefix === 'string', `snippet ${name}: prefix must be a string`);
  check(Array.isArray(snippet.body) && snippet.body.length > 0, `snippet ${name}: empty body`);
  check(typeof snippet.description === 'string', `snippet ${name}: no description`);
  check(!prefixes.has(snippet.prefix), `snippet ${name}: prefix ${snippet.prefix} also used by ${prefixes.get(snippet.prefix)}`);
  prefixes.set(snippet.prefix, name);
}

// Settings and commands that the client uses are declared.
const source = readFileSync(join(root, 'src', 'extension.ts'), 'utf8');
const properties = manifest.contributes.configuration.properties;
for (const key of ['aptc.path', 'aptc.logLevel', 'aptc.trace.server']) check(key in properties, `setting ${key} not declared`);
for (const [, command] of source.matchAll(/registerCommand\('([^']+)'/g)) {
  check(manifest.contributes.commands.some((c) => c.command === command), `command ${command} not declared`);
}

if (failures.length > 0) {
  for (const failure of failures) console.error(`check-manifest: ${failure}`);
  process.exit(1);
}
console.log(`check-manifest: ok (${repository.size} grammar rules, ${prefixes.size} snippets)`);
