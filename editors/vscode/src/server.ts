// What the client shows and passes about the language server, apart from VS Code so that it can be
// unit-tested without it: the status bar item for each state of the server, and the server's
// environment (the `aptc.logLevel` setting as `APTC_LOG`).

/** The states of the server the status bar shows. */
export type ServerState = 'starting' | 'running' | 'stopped' | 'error';

/** The levels of `aptc.logLevel`, as `tracing` filters (`off` silences the server). */
export const LOG_LEVELS = ['off', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What the status bar item says and does. */
export interface Status {
  text: string;
  tooltip: string;
  /** The command a click runs. */
  command: string;
  /** Shown as an error (the theme's error colours). */
  error: boolean;
}

/**
 * The status bar item for a state. A stopped or failed server is one click from a restart; a
 * running or starting one from its output (where its logs and the protocol trace are).
 */
export function statusOf(state: ServerState, detail?: string): Status {
  const more = detail === undefined || detail === '' ? '' : `: ${detail}`;
  switch (state) {
    case 'starting':
      return { text: '$(sync~spin) aptc', tooltip: 'aptc language server: starting', command: 'aptc.showOutput', error: false };
    case 'running':
      return { text: '$(check) aptc', tooltip: 'aptc language server: running', command: 'aptc.showOutput', error: false };
    case 'stopped':
      return {
        text: '$(circle-slash) aptc',
        tooltip: `aptc language server: stopped${more}. Click to restart.`,
        command: 'aptc.restartServer',
        error: false,
      };
    case 'error':
      return {
        text: '$(error) aptc',
        tooltip: `aptc language server: failed${more}. Click to restart.`,
        command: 'aptc.restartServer',
        error: true,
      };
  }
}

/**
 * The state after the client reports that the server stopped: stopped when we asked it to (a
 * restart, a changed setting, VS Code closing), an error otherwise (it crashed more often than the
 * client restarts it, or never started).
 */
export function stoppedState(requested: boolean): ServerState {
  return requested ? 'stopped' : 'error';
}

/**
 * The server's environment: ours, with `APTC_LOG` set from `aptc.logLevel` (an unknown or missing
 * level leaves `APTC_LOG` as it is, so that a user's own filter in the environment still works).
 */
export function serverEnvironment(
  level: string | undefined,
  base: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  const env = { ...base };
  if ((LOG_LEVELS as readonly string[]).includes(level ?? '')) {
    env.APTC_LOG = level;
  }
  return env;
}
