// The aptc extension: starts `aptc lsp` (the language server of the .apt policy language) over
// stdio, shows its state in the status bar, and restarts it when its path or log level changes.
// Highlighting, snippets and the language configuration are declarative (see package.json); this
// file is only the client.

import * as vscode from 'vscode';
import {
  Executable,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  ServerOptions,
  State,
} from 'vscode-languageclient/node';

import { ServerState, serverEnvironment, statusOf, stoppedState } from './server';
import { resolveServerPath } from './serverPath';

// The client id makes vscode-languageclient read the `aptc.trace.server` setting.
const CLIENT_ID = 'aptc';
const CLIENT_NAME = 'aptc language server';

let client: LanguageClient | undefined;
let outputChannel: vscode.OutputChannel | undefined;
let statusItem: vscode.StatusBarItem | undefined;
/** Set while we stop the server ourselves, so that its stopping is not shown as a failure. */
let stopping = false;

function showState(state: ServerState, detail?: string): void {
  if (statusItem === undefined) {
    return;
  }
  const status = statusOf(state, detail);
  statusItem.text = status.text;
  statusItem.tooltip = status.tooltip;
  statusItem.command = status.command;
  statusItem.backgroundColor = status.error ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
  statusItem.show();
}

function serverExecutable(): Executable {
  const config = vscode.workspace.getConfiguration('aptc');
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const command = resolveServerPath(config.get<string>('path'), root);
  const env = serverEnvironment(config.get<string>('logLevel'));
  return { command, args: ['lsp'], options: { cwd: root, env } };
}

function clientOptions(): LanguageClientOptions {
  return {
    documentSelector: [
      { scheme: 'file', language: 'apt' },
      { scheme: 'untitled', language: 'apt' },
    ],
    synchronize: {
      // `.apt` files that are not open still matter (imports, other namespaces), and so do the
      // YAML files named by `users from`.
      fileEvents: vscode.workspace.createFileSystemWatcher('**/*.{apt,yaml,yml}'),
    },
    outputChannel,
    revealOutputChannelOn: RevealOutputChannelOn.Never,
  };
}

async function startClient(): Promise<void> {
  const executable = serverExecutable();
  const serverOptions: ServerOptions = { run: executable, debug: executable };
  const starting = new LanguageClient(CLIENT_ID, CLIENT_NAME, serverOptions, clientOptions());
  client = starting;
  showState('starting');
  starting.onDidChangeState((event) => {
    if (client !== starting) {
      return;
    }
    if (event.newState === State.Running) {
      showState('running');
    } else if (event.newState === State.Starting) {
      showState('starting');
    } else {
      showState(stoppedState(stopping), stopping ? undefined : 'the server exited; see its output');
    }
  });
  try {
    await starting.start();
  } catch (error) {
    if (client === starting) {
      client = undefined;
    }
    const message = error instanceof Error ? error.message : String(error);
    showState('error', message);
    const choice = await vscode.window.showErrorMessage(
      `Could not start the aptc language server (\`${executable.command} lsp\`): ${message}. ` +
        'Install aptc or set "aptc.path".',
      'Open Settings',
      'Show Output',
    );
    if (choice === 'Open Settings') {
      await vscode.commands.executeCommand('workbench.action.openSettings', 'aptc.path');
    } else if (choice === 'Show Output') {
      outputChannel?.show(true);
    }
  }
}

async function stopClient(): Promise<void> {
  const running = client;
  if (running === undefined) {
    return;
  }
  stopping = true;
  try {
    await running.stop();
  } catch {
    // The server may already be gone; nothing to do.
  } finally {
    stopping = false;
    client = undefined;
    showState('stopped');
  }
}

async function restartClient(): Promise<void> {
  await stopClient();
  await startClient();
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  outputChannel = vscode.window.createOutputChannel(CLIENT_NAME);
  statusItem = vscode.window.createStatusBarItem('aptc.server', vscode.StatusBarAlignment.Left, 0);
  statusItem.name = CLIENT_NAME;
  context.subscriptions.push(
    outputChannel,
    statusItem,
    vscode.commands.registerCommand('aptc.restartServer', restartClient),
    vscode.commands.registerCommand('aptc.showOutput', () => outputChannel?.show(true)),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration('aptc.path') || event.affectsConfiguration('aptc.logLevel')) {
        await restartClient();
      }
    }),
  );
  await startClient();
}

export async function deactivate(): Promise<void> {
  await stopClient();
}
