-- An example of using the aptc editor support from your init.lua (Neovim 0.7 or later).
-- Set `vim.g.aptc_repo` (default ~/src/aptc) and `vim.g.aptc_cmd` (default { 'aptc', 'lsp' },
-- e.g. { aptc_repo .. '/target/release/aptc', 'lsp' }) before sourcing it, or adjust below.
local aptc_repo = vim.g.aptc_repo or vim.fn.expand('~/src/aptc')
local cmd = vim.g.aptc_cmd or { 'aptc', 'lsp' }

-- ftdetect/apt.vim, ftplugin/apt.lua, lsp/aptc.lua and queries/apt/ (a link to the
-- tree-sitter grammar's queries) come from editors/neovim; parser/apt.so is built there
-- (see README.md).
vim.opt.runtimepath:append(aptc_repo .. '/editors/neovim')

-- Format on save through the language server (`aptc fmt`), where it can format.
local function format_on_save(client, buf)
  local formats
  if vim.fn.has('nvim-0.11') == 1 then
    formats = client:supports_method('textDocument/formatting')
  else
    formats = client.supports_method('textDocument/formatting')
  end
  if not formats then
    return
  end
  vim.api.nvim_create_autocmd('BufWritePre', {
    buffer = buf,
    callback = function()
      if vim.lsp.buf.format then
        vim.lsp.buf.format({ bufnr = buf, id = client.id, timeout_ms = 2000 })
      else -- Neovim 0.7
        vim.lsp.buf.formatting_sync(nil, 2000)
      end
    end,
  })
end

-- The workspace of a buffer: the nearest directory with .git, else the file's directory.
local function root_of(buf)
  local file = vim.api.nvim_buf_get_name(buf)
  local git = vim.fn.finddir('.git', vim.fn.fnamemodify(file, ':p:h') .. ';')
  if git ~= '' then
    return vim.fn.fnamemodify(git, ':p:h:h')
  end
  return vim.fn.fnamemodify(file, ':p:h')
end

if vim.lsp.config then
  -- Neovim 0.11+: lsp/aptc.lua is the configuration.
  vim.lsp.config('aptc', { cmd = cmd })
  vim.lsp.enable('aptc')
  vim.api.nvim_create_autocmd('LspAttach', {
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == 'aptc' then
        format_on_save(client, args.buf)
      end
    end,
  })
else
  -- Neovim 0.8 to 0.10 (vim.lsp.start), and 0.7 (vim.lsp.start_client and buf_attach_client,
  -- one client per workspace).
  local clients = {}
  vim.api.nvim_create_autocmd('FileType', {
    pattern = 'apt',
    callback = function(args)
      local root = root_of(args.buf)
      local config = { name = 'aptc', cmd = cmd, root_dir = root, on_attach = format_on_save }
      if vim.lsp.start then
        vim.lsp.start(config, { bufnr = args.buf })
        return
      end
      local id = clients[root]
      if id == nil or vim.lsp.get_client_by_id(id) == nil then
        id = vim.lsp.start_client(config)
        clients[root] = id
      end
      if id then
        vim.lsp.buf_attach_client(args.buf, id)
      end
    end,
  })
end
