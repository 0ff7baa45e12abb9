import * as assert from 'node:assert/strict';
import { test } from 'node:test';

import { LOG_LEVELS, ServerState, serverEnvironment, statusOf, stoppedState } from '../server';

test('aptc.logLevel becomes APTC_LOG, the rest of the environment is kept', () => {
  const env = serverEnvironment('debug', { PATH: '/bin', APTC_LOG: 'warn' });
  assert.deepEqual(env, { PATH: '/bin', APTC_LOG: 'debug' });
  for (const level of LOG_LEVELS) {
    assert.equal(serverEnvironment(level, {}).APTC_LOG, level);
  }
});

test('no or an unknown level leaves APTC_LOG alone', () => {
  assert.deepEqual(serverEnvironment(undefined, { APTC_LOG: 'aptc_lsp=trace' }), { APTC_LOG: 'aptc_lsp=trace' });
  assert.deepEqual(serverEnvironment('loud', {}), {});
});

test('the environment passed in is not changed', () => {
  const base = { PATH: '/bin' };
  serverEnvironment('info', base);
  assert.deepEqual(base, { PATH: '/bin' });
});

test('each state has its own text; stopped and failed servers restart on a click', () => {
  const states: ServerState[] = ['starting', 'running', 'stopped', 'error'];
  const texts = new Set(states.map((state) => statusOf(state).text));
  assert.equal(texts.size, states.length);
  assert.equal(statusOf('running').command, 'aptc.showOutput');
  assert.equal(statusOf('starting').command, 'aptc.showOutput');
  assert.equal(statusOf('stopped').command, 'aptc.restartServer');
  assert.equal(statusOf('error').command, 'aptc.restartServer');
  assert.equal(statusOf('error').error, true);
  assert.equal(statusOf('running').error, false);
});

test('the reason of a failure is in the tooltip', () => {
  assert.match(statusOf('error', 'spawn aptc ENOENT').tooltip, /failed: spawn aptc ENOENT\. Click to restart/);
  assert.equal(statusOf('error', '').tooltip, 'aptc language server: failed. Click to restart.');
});

test('a stop nobody asked for is an error', () => {
  assert.equal(stoppedState(true), 'stopped');
  assert.equal(stoppedState(false), 'error');
});
