// Packages the extension into dist/NAME-VERSION.vsix. `vsce` runs the `vscode:prepublish`
// script first, which bundles src/ (with vscode-languageclient) into dist/extension.js, so the
// package needs no node_modules (--no-dependencies).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const out = join('dist', `${manifest.name}-${manifest.version}.vsix`);
mkdirSync(join(root, 'dist'), { recursive: true });

const vsce = join(root, 'node_modules', '@vscode', 'vsce', 'vsce');
execFileSync(process.execPath, [vsce, 'package', '--no-dependencies', '--skip-license', '--out', out], {
  cwd: root,
  stdio: 'inherit',
});
console.log(`packaged ${out} (${statSync(join(root, out)).size} bytes)`);
