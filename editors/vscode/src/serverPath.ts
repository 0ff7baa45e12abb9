// Where the language server is: the `aptc.path` setting, resolved. Kept apart from the client so
// that it can be unit-tested without VS Code.

import * as os from 'os';
import * as path from 'path';

/**
 * The configured `aptc.path`, with `${workspaceFolder}`, `${userHome}`, `~` and paths relative to
 * the workspace resolved.
 */
export function resolveServerPath(
  configured: string | undefined,
  workspaceRoot: string | undefined,
  home: string = os.homedir(),
): string {
  let command = (configured ?? '').trim();
  if (command === '') {
    return 'aptc';
  }
  command = command.replace(/\$\{userHome\}/g, home);
  if (workspaceRoot !== undefined) {
    command = command.replace(/\$\{workspaceFolder\}/g, workspaceRoot);
  }
  if (command === '~' || command.startsWith('~/')) {
    command = path.join(home, command.slice(1));
  }
  // A bare name (`aptc`) is looked up on PATH; anything with a separator is a path.
  const isBareName = !command.includes('/') && !command.includes('\\');
  if (!isBareName && !path.isAbsolute(command) && workspaceRoot !== undefined) {
    command = path.join(workspaceRoot, command);
  }
  return command;
}
