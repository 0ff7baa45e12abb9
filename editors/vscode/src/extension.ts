// The aptc extension: starts `aptc lsp` (the language server of the .apt policy language) over
// stdio and restarts it when its path changes. Highlighting, snippets and the language
// configuration are declarative (see package.json); this file is only the client.

import * as vscode from 'vscode';
import {
  Executable,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  ServerOptions,
} from 'vscode-languageclient/node';

import { resolveServerPath } from './serverPath';

// The client id makes vscode-languageclient read the `aptc.trace.server` setting.
const CLIENT_ID = 'aptc';
const CLIENT_NAME = 'aptc language server';

let client: LanguageClient | undefined;
let outputChannel: vscode.OutputChannel | undefined;

function serverExecutable(): Executable {
  const config = vscode.workspace.getConfiguration('aptc');
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const command = resolveServerPath(config.get<string>('path'), root);
  return { command, args: ['lsp'], options: { cwd: root } };
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
  try {
    await starting.start();
  } catch (error) {
    if (client === starting) {
      client = undefined;
    }
    const message = error instanceof Error ? error.message : String(error);
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
  client = undefined;
  if (running !== undefined) {
    try {
      await running.stop();
    } catch {
      // The server may already be gone; nothing to do.
    }
  }
}

async function restartClient(): Promise<void> {
  await stopClient();
  await startClient();
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  outputChannel = vscode.window.createOutputChannel(CLIENT_NAME);
  context.subscriptions.push(
    outputChannel,
    vscode.commands.registerCommand('aptc.restartServer', restartClient),
    vscode.commands.registerCommand('aptc.showOutput', () => outputChannel?.show(true)),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration('aptc.path')) {
        await restartClient();
      }
    }),
  );
  await startClient();
}

export async function deactivate(): Promise<void> {
  await stopClient();
}
