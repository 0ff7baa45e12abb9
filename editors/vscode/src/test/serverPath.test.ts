import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';

import { resolveServerPath } from '../serverPath';

const root = path.join(path.sep, 'work', 'policy');
const home = path.join(path.sep, 'home', 'me');

test('a bare name stays a bare name, looked up on PATH', () => {
  assert.equal(resolveServerPath('aptc', root, home), 'aptc');
  assert.equal(resolveServerPath('  aptc-dev ', root, home), 'aptc-dev');
});

test('an empty or missing setting means aptc', () => {
  assert.equal(resolveServerPath(undefined, root, home), 'aptc');
  assert.equal(resolveServerPath('   ', root, home), 'aptc');
});

test('~ and ${userHome} are the home directory', () => {
  assert.equal(resolveServerPath('~/bin/aptc', root, home), path.join(home, 'bin', 'aptc'));
  assert.equal(resolveServerPath('${userHome}/bin/aptc', root, home), path.join(home, 'bin', 'aptc'));
});

test('relative paths and ${workspaceFolder} are in the workspace', () => {
  assert.equal(resolveServerPath('target/release/aptc', root, home), path.join(root, 'target', 'release', 'aptc'));
  assert.equal(resolveServerPath('./aptc', root, home), path.join(root, 'aptc'));
  assert.equal(resolveServerPath('${workspaceFolder}/target/debug/aptc', root, home), path.join(root, 'target', 'debug', 'aptc'));
});

test('absolute paths are kept, and relative ones without a workspace too', () => {
  assert.equal(resolveServerPath('/usr/local/bin/aptc', root, home), '/usr/local/bin/aptc');
  assert.equal(resolveServerPath('bin/aptc', undefined, home), 'bin/aptc');
});
