-- End-to-end test of `aptc lsp` in a real editor: Neovim's built-in LSP client (0.7 API, so it
-- runs on Debian's neovim package) against the real aptc binary, set up with the runtime files
-- of editors/neovim as a user installs them (init.example.lua; see below).
--
--   APTC_BIN=target/debug/aptc nvim --headless -u NONE -i NONE -n \
--     -c "luafile editors/neovim/test/lsp_e2e.lua"
--
-- (tools/editors-test.sh nvim builds aptc and runs it like this, under a timeout.)
--
-- It copies examples/quickstart into a temporary directory (the repository is not touched),
-- starts `aptc lsp` with that copy as the root, opens hello.apt, and checks, with what Neovim
-- itself received and stored:
--   1. the clean file gets an (empty) publishDiagnostics;
--   2. an edit in the buffer (a claim's contract misspelled), sent as didChange, gets an APT0201
--      diagnostic on the edited line into vim.diagnostic;
--   3. completion after a freshly typed `labels.` offers the label keys (env, replicas), and
--      accepting `env` applies the item's textEdit;
--   4. hover on the accepted `labels.env`, and on `labels.replicas`, shows the label's declaration;
--   5. the server shuts down cleanly (exit code 0) when the client stops it.
-- Exits with `cquit 0` on success, prints the failure and exits with `cquit 1` otherwise.

local TIMEOUT_MS = 10000

local function say(fmt, ...)
  io.stdout:write('[lsp-e2e] ' .. string.format(fmt, ...) .. '\n')
  io.stdout:flush()
end

local function first_line(text)
  return (tostring(text):gsub('\n.*', ''))
end

-- The repository: APTC_REPO, or three directories up from this file.
local function repository()
  local from_env = os.getenv('APTC_REPO')
  if from_env and from_env ~= '' then
    return vim.fn.fnamemodify(from_env, ':p'):gsub('/$', '')
  end
  local source = debug.getinfo(1, 'S').source:gsub('^@', '')
  return vim.fn.fnamemodify(source, ':p:h:h:h:h')
end

local temp_dir = nil
local client_id = nil
local server_exit = nil -- { code, signal } once the server process has exited

-- Every publishDiagnostics Neovim received, per URI, in order.
local published = {}

local function publishes_for(uri)
  return published[uri] or {}
end

local function main()
  local root = repository()
  local aptc = os.getenv('APTC_BIN')
  if not aptc or aptc == '' then
    aptc = root .. '/target/debug/aptc'
  end
  aptc = vim.fn.fnamemodify(aptc, ':p')
  assert(vim.fn.executable(aptc) == 1, 'APTC_BIN is not an executable: ' .. aptc)
  local version = vim.version()
  say('Neovim %d.%d.%d, aptc: %s', version.major, version.minor, version.patch, aptc)

  -- A copy of the quickstart, so that nothing in the repository changes.
  temp_dir = vim.fn.tempname()
  vim.fn.mkdir(temp_dir, 'p')
  local copy = vim.fn.system({ 'cp', '-R', root .. '/examples/quickstart', temp_dir .. '/quickstart' })
  assert(vim.v.shell_error == 0, 'copying examples/quickstart failed: ' .. copy)
  local workspace = vim.loop.fs_realpath(temp_dir .. '/quickstart')
  local file = workspace .. '/hello.apt'
  local uri = vim.uri_from_fname(file)
  say('workspace: %s (a copy of examples/quickstart)', workspace)

  -- The runtime files as a user installs them: init.example.lua (which adds editors/neovim to
  -- 'runtimepath' and starts the client for apt buffers), then what Neovim does after a user's
  -- init.lua, `filetype plugin on` (ftdetect/apt.vim, ftplugin/apt.lua). The client's config
  -- is watched through vim.lsp.start_client, which every Neovim up to 0.10 goes through.
  local on_publish = vim.lsp.handlers['textDocument/publishDiagnostics']
  local start_client = vim.lsp.start_client
  vim.lsp.start_client = function(config)
    config.root_dir = workspace
    config.handlers = config.handlers or {}
    config.handlers['textDocument/publishDiagnostics'] = function(err, result, ctx, handler_config)
      if result and result.uri then
        published[result.uri] = published[result.uri] or {}
        table.insert(published[result.uri], result.diagnostics or {})
      end
      return on_publish(err, result, ctx, handler_config)
    end
    config.on_exit = function(code, signal)
      server_exit = { code = code, signal = signal }
    end
    client_id = start_client(config)
    return client_id
  end
  vim.g.aptc_repo = root
  vim.g.aptc_cmd = { aptc, 'lsp' }
  vim.cmd('source ' .. vim.fn.fnameescape(root .. '/editors/neovim/init.example.lua'))
  vim.cmd('filetype plugin on')

  vim.cmd('edit ' .. vim.fn.fnameescape(file))
  local buf = vim.api.nvim_get_current_buf()
  assert(vim.bo[buf].filetype == 'apt', 'filetype is "' .. vim.bo[buf].filetype .. '", expected "apt"')
  assert(client_id, 'init.example.lua started no client')
  assert(vim.bo[buf].shiftwidth == 4, 'ftplugin/apt.lua did not run')
  assert(vim.lsp.buf_is_attached(buf, client_id), 'the client is not attached to hello.apt')
  say('opened hello.apt: filetype apt, client attached')

  -- 1. The server initializes, gets didOpen and publishes the (clean) diagnostics of hello.apt.
  local ok = vim.wait(TIMEOUT_MS, function()
    return #publishes_for(uri) > 0 or server_exit ~= nil
  end, 20)
  assert(server_exit == nil, 'the server exited: code ' .. tostring(server_exit and server_exit.code))
  assert(ok, 'no publishDiagnostics for hello.apt within ' .. TIMEOUT_MS .. ' ms')
  local client = vim.lsp.get_client_by_id(client_id)
  assert(client.initialized, 'the client is not initialized')
  local initial = publishes_for(uri)[1]
  assert(#initial == 0, 'the unchanged quickstart has diagnostics: ' .. vim.inspect(initial))
  say('diagnostics: the unchanged hello.apt is clean (0 diagnostics published)')

  -- 2. Misspell the contract of claim ada_dev by editing the buffer (an incremental didChange).
  local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  local edit_row = nil
  local in_claim = false
  for i, line in ipairs(lines) do
    if line:match('^claim ada_dev') then
      in_claim = true
    elseif in_claim and line:match('^%s+contract hello%s*$') then
      edit_row = i - 1
      break
    end
  end
  assert(edit_row, 'no "contract hello" line in claim ada_dev of hello.apt')
  local col = lines[edit_row + 1]:find('hello', 1, true) - 1
  vim.api.nvim_buf_set_text(buf, edit_row, col, edit_row, col + #'hello', { 'helo' })
  say('edit: line %d is now "%s"', edit_row + 1, vim.trim(vim.api.nvim_buf_get_lines(buf, edit_row, edit_row + 1, false)[1]))

  local function find_code(code)
    for _, d in ipairs(vim.diagnostic.get(buf)) do
      local lsp_code = d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code)
      if tostring(lsp_code) == code or tostring(d.message):find(code, 1, true) then
        return d
      end
    end
  end
  local started = vim.loop.hrtime()
  ok = vim.wait(TIMEOUT_MS, function()
    return find_code('APT0201') ~= nil or server_exit ~= nil
  end, 20)
  assert(server_exit == nil, 'the server exited: code ' .. tostring(server_exit and server_exit.code))
  assert(ok, 'no APT0201 diagnostic within ' .. TIMEOUT_MS .. ' ms; vim.diagnostic.get: ' .. vim.inspect(vim.diagnostic.get(buf)))
  local d = find_code('APT0201')
  say('diagnostics: %s at %d:%d after %d ms: %s (source %s)', d.code, d.lnum + 1, d.col + 1,
    (vim.loop.hrtime() - started) / 1e6, first_line(d.message), tostring(d.source))
  assert(d.lnum == edit_row, 'the APT0201 diagnostic is on line ' .. (d.lnum + 1) .. ', expected ' .. (edit_row + 1))
  assert(d.severity == vim.diagnostic.severity.ERROR, 'the APT0201 diagnostic is not an error')
  assert(d.message:find('helo', 1, true), 'the APT0201 message does not name `helo`: ' .. d.message)

  -- 3. Type a new line `        probe = labels.` in the values block and complete after the dot.
  local values_row = nil
  for i, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    if line:match('replicaCount = labels%.replicas') then
      values_row = i - 1
      break
    end
  end
  assert(values_row, 'no "replicaCount = labels.replicas" line in hello.apt')
  local typed = '            probe = labels.'
  vim.api.nvim_buf_set_lines(buf, values_row + 1, values_row + 1, false, { typed })
  -- The position just after the dot, where the cursor is in insert mode (a normal-mode cursor,
  -- and so make_position_params, cannot be past the last character).
  local params = {
    textDocument = vim.lsp.util.make_text_document_params(buf),
    position = { line = values_row + 1, character = #typed }, -- ASCII: bytes = UTF-16 units
    context = { triggerKind = 2, triggerCharacter = '.' }, -- TriggerCharacter, as when typing the dot
  }
  say('completion: at %d:%d after "%s"', params.position.line + 1, params.position.character + 1, vim.trim(typed))
  local responses, request_err = vim.lsp.buf_request_sync(buf, 'textDocument/completion', params, TIMEOUT_MS)
  assert(responses, 'textDocument/completion: ' .. tostring(request_err))
  local response = responses[client_id]
  assert(response, 'textDocument/completion: no response from aptc')
  assert(not response.error, 'textDocument/completion: ' .. vim.inspect(response.error))
  local items = response.result or {}
  if items.items then
    items = items.items
  end
  local labels, offered = {}, {}
  for _, item in ipairs(items) do
    table.insert(labels, item.label)
    offered[item.label] = item
  end
  say('completion: %d items: %s', #items, table.concat(labels, ', '))
  for _, key in ipairs({ 'env', 'replicas' }) do
    assert(offered[key], 'completion after "labels." does not offer the label key ' .. key)
  end
  say('completion: the label keys env (%s) and replicas (%s) are offered',
    tostring(offered.env.detail), tostring(offered.replicas.detail))

  -- Accept `env` as a completion plugin would: apply its textEdit (another didChange).
  local chosen = offered.env
  if chosen.textEdit then
    vim.lsp.util.apply_text_edits({ chosen.textEdit }, buf, client.offset_encoding)
  else
    local text = chosen.insertText or chosen.label
    vim.api.nvim_buf_set_text(buf, values_row + 1, #typed, values_row + 1, #typed, { text })
  end
  local accepted = vim.api.nvim_buf_get_lines(buf, values_row + 1, values_row + 2, false)[1]
  assert(accepted == typed .. 'env', 'after accepting env the line is "' .. accepted .. '"')
  say('completion: accepted env, line %d is now "%s"', values_row + 2, vim.trim(accepted))

  -- 4. Hover on the accepted `env` (the server must have the edit) and on `replicas` of
  -- `labels.replicas` on the line above.
  local function hover_at(row, col)
    vim.api.nvim_win_set_cursor(0, { row + 1, col })
    local hover_params = vim.lsp.util.make_position_params(0, client.offset_encoding)
    local hover_responses, hover_err = vim.lsp.buf_request_sync(buf, 'textDocument/hover', hover_params, TIMEOUT_MS)
    assert(hover_responses, 'textDocument/hover: ' .. tostring(hover_err))
    local hover_response = hover_responses[client_id]
    assert(hover_response and not hover_response.error, 'textDocument/hover: ' .. vim.inspect(hover_response))
    local hover = hover_response.result
    assert(hover and hover.contents, 'textDocument/hover at ' .. (row + 1) .. ':' .. (col + 1) .. ': no result')
    local markdown = vim.lsp.util.trim_empty_lines(vim.lsp.util.convert_input_to_markdown_lines(hover.contents))
    assert(#markdown > 0, 'textDocument/hover at ' .. (row + 1) .. ':' .. (col + 1) .. ': empty contents')
    local shown = {}
    for _, line in ipairs(markdown) do
      if not line:match('^```') and vim.trim(line) ~= '' and not line:match('^%-%-%-') then
        table.insert(shown, vim.trim(line))
      end
    end
    return table.concat(markdown, '\n'), table.concat(shown, ' | ')
  end
  for _, target in ipairs({
    { row = values_row + 1, name = 'env', declaration = 'label env' },
    { row = values_row, name = 'replicas', declaration = 'label replicas' },
  }) do
    local line = vim.api.nvim_buf_get_lines(buf, target.row, target.row + 1, false)[1]
    local col = line:find('labels.' .. target.name, 1, true) - 1 + #'labels.'
    local text, shown = hover_at(target.row, col)
    assert(text:find(target.declaration, 1, true), 'the hover on labels.' .. target.name .. ' does not show "' .. target.declaration .. '": ' .. text)
    say('hover: labels.%s at %d:%d: %s', target.name, target.row + 1, col + 1, shown)
  end

  -- 5. Stop the client: shutdown and exit; the server must exit with 0.
  vim.lsp.stop_client(client_id)
  ok = vim.wait(TIMEOUT_MS, function()
    return server_exit ~= nil
  end, 20)
  assert(ok, 'the server did not exit within ' .. TIMEOUT_MS .. ' ms of shutdown/exit')
  assert(server_exit.code == 0 and server_exit.signal == 0,
    'the server exited with code ' .. server_exit.code .. ', signal ' .. server_exit.signal)
  say('shutdown: the server exited with code 0')
end

local function log_tail()
  local ok, path = pcall(vim.lsp.get_log_path)
  if ok and path and vim.fn.filereadable(path) == 1 then
    local lines = vim.fn.readfile(path)
    say('last lines of the LSP log (%s):', path)
    for i = math.max(1, #lines - 30), #lines do
      io.stdout:write('    ' .. lines[i] .. '\n')
    end
  end
end

local succeeded, failure = xpcall(main, debug.traceback)
if client_id and server_exit == nil then
  vim.lsp.stop_client(client_id, true)
end
if temp_dir then
  vim.fn.delete(temp_dir, 'rf')
end
if succeeded then
  say('PASS')
  vim.cmd('cquit 0')
else
  say('FAIL: %s', failure)
  log_tail()
  vim.cmd('cquit 1')
end
